"""The read-ahead thread hands over every item in order, raises its source's error where the
copy takes the next item, and stops (closing its source) when the copy stops early."""

import threading
from collections.abc import Iterator

import pytest

from copyjob_dagster.stores.read_ahead import read_ahead


def test_every_item_arrives_in_order() -> None:
    assert list(read_ahead(iter(range(100)), depth=3)) == list(range(100))


def test_the_sources_error_is_raised_after_the_items_before_it() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("the source broke")

    taken = []
    with pytest.raises(ValueError, match="the source broke"):
        for item in read_ahead(failing()):
            taken.append(item)

    assert taken == [1, 2]


def test_stopping_early_ends_the_thread_and_closes_the_source() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            closed.set()

    items = read_ahead(endless(), depth=2)
    assert next(items) == 1
    items.close()

    assert closed.is_set()
    assert not any(t.name == "copyjob-read-ahead" for t in threading.enumerate())
