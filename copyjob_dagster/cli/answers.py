"""Where the `copyjob new` wizard gets its answers: a person at a terminal, or flags.

Each question has a key (`name`, `source-url`, `columns:orders`, ...) that is also its flag
(`--name`, `--source-url`, `--columns orders=...`). At a terminal a flag only pre-fills the
answer; with `--non-interactive` it is the answer, and a question without a flag takes the
default a person would be offered.
"""

from collections.abc import Callable, Mapping
from typing import Protocol

import questionary
from rich.console import Console

from copyjob_dagster.errors import ConfigError

Check = Callable[[str], str | None]  # the problem with an answer, or None when it will do
DERIVED_MAP = "map"  # "Rename destination tables or columns?": yes when --to or --rename is given


class Answers(Protocol):
    def text(self, key: str, question: str, default: str, check: Check | None = None) -> str: ...

    def choose(self, key: str, question: str, choices: Mapping[str, str], default: str) -> str:
        """One of `choices` (value -> label)."""
        ...

    def pick(self, key: str, question: str, options: list[str]) -> list[str]:
        """Several of `options`, all of them by default."""
        ...

    def confirm(self, key: str, question: str, default: bool) -> bool: ...

    def secret(self, question: str) -> str:
        """A password typed without echo, used at once and never saved; scripts give none."""
        ...

    def retry(self, problem: str) -> None:
        """Report a problem that another answer can fix; scripts stop on it."""
        ...

    def finish(self) -> None:
        """Called once every question is asked, before anything is saved."""
        ...


class TerminalAnswers:
    """Questions asked with questionary; Ctrl-C raises KeyboardInterrupt."""

    def __init__(self, console: Console, given: Mapping[str, str]) -> None:
        self._console = console
        self._given = given

    def text(self, key: str, question: str, default: str, check: Check | None = None) -> str:
        def validate(answer: str) -> bool | str:
            return (check(answer.strip()) if check else None) or True

        default = self._given.get(key, default)
        answer = questionary.text(question, default=default, validate=validate).unsafe_ask()
        return answer.strip()

    def choose(self, key: str, question: str, choices: Mapping[str, str], default: str) -> str:
        given = self._given.get(key)
        default = given if given in choices else default
        options = [questionary.Choice(label, value) for value, label in choices.items()]
        return questionary.select(question, options, default=default).unsafe_ask()

    def pick(self, key: str, question: str, options: list[str]) -> list[str]:
        chosen = set(split_list(self._given[key])) if key in self._given else set(options)
        return questionary.checkbox(
            question,
            [questionary.Choice(option, option, checked=option in chosen) for option in options],
            validate=lambda picked: bool(picked) or "pick at least one",
        ).unsafe_ask()

    def confirm(self, key: str, question: str, default: bool) -> bool:
        default = self._given.get(key, "yes" if default else "no") == "yes"
        return questionary.confirm(question, default=default).unsafe_ask()

    def secret(self, question: str) -> str:
        return questionary.password(question).unsafe_ask()

    def retry(self, problem: str) -> None:
        self._console.print(problem, style="red", markup=False, highlight=False)

    def finish(self) -> None:
        pass


class FlagAnswers:
    """Answers given as flags, for scripts: a missing flag takes the question's default."""

    def __init__(self, given: Mapping[str, str]) -> None:
        self._given = given
        self._asked = {DERIVED_MAP}  # derived from --to and --rename, which are checked

    def text(self, key: str, question: str, default: str, check: Check | None = None) -> str:
        self._asked.add(key)
        answer = self._given.get(key, default).strip()
        problem = check(answer) if check else None
        if problem:
            raise ConfigError(f"{_flag(key)}: {problem}")
        return answer

    def choose(self, key: str, question: str, choices: Mapping[str, str], default: str) -> str:
        self._asked.add(key)
        answer = self._given.get(key, default)
        if answer not in choices:
            raise ConfigError(f"{_flag(key)}: {answer!r} is not one of {', '.join(choices)}")
        return answer

    def pick(self, key: str, question: str, options: list[str]) -> list[str]:
        self._asked.add(key)
        if key not in self._given:
            return options
        picked = split_list(self._given[key])
        unknown = [name for name in picked if name not in options]
        if unknown or not picked:
            raise ConfigError(
                f"{_flag(key)}: {', '.join(unknown) or 'nothing'} is not among {', '.join(options)}"
            )
        return picked

    def confirm(self, key: str, question: str, default: bool) -> bool:
        self._asked.add(key)
        return self._given.get(key, "yes" if default else "no") == "yes"

    def secret(self, question: str) -> str:
        return ""

    def retry(self, problem: str) -> None:
        raise ConfigError(problem)

    def finish(self) -> None:
        """A flag that no question took is a mistake: a table that is not chosen, a password
        variable for a store without one, a setting of incremental copies in a full one."""
        unused = [_flag(key) for key in self._given if key not in self._asked]
        if unused:
            raise ConfigError(f"{', '.join(unused)}: no question took this answer")


def split_list(text: str) -> list[str]:
    """`a, b c` -> [a, b, c]."""
    return [part for part in text.replace(",", " ").split() if part]


def given_answers(
    options: Mapping[str, str | None], per_table: Mapping[str, tuple[str, ...]]
) -> dict[str, str]:
    """The answers that flags give, by question key.

    `options` are flags with one value (`source-url`); `per_table` are repeatable flags of
    `TABLE=VALUE` (`columns`, `to`, ...), except `rename`, given as `TABLE.COLUMN=NEW`.
    """
    given = {key: value for key, value in options.items() if value is not None}
    for flag, values in per_table.items():
        for value in values:
            target, separator, answer = value.partition("=")
            if not separator or not target:
                form = "TABLE.COLUMN=NEW" if flag == "rename" else "TABLE=VALUE"
                raise ConfigError(f"--{flag} {value}: write {form}")
            if flag == "rename":
                table, _, column = target.partition(".")
                previous = given.get(f"rename:{table}")
                answer = f"{previous}, {column}={answer}" if previous else f"{column}={answer}"
                target = table
            given[f"{flag}:{target}"] = answer
    if per_table.get("to") or per_table.get("rename"):
        given[DERIVED_MAP] = "yes"
    return given


def _flag(key: str) -> str:
    flag, _, table = key.partition(":")
    return f"--{flag} {table}=..." if table else f"--{flag}"
