"""URLs that name a driver copyjob does not install, or PostgreSQL's short scheme, say what to
write instead."""

from pathlib import Path

import pytest

from copyjob_dagster.engine import load_job
from copyjob_dagster.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@db/shop", "the driver of 'mysql' (MySQLdb) is not installed; write "
         "mysql+pymysql://"),
        ("mariadb://root@db/shop", "the driver of 'mariadb' (MySQLdb) is not installed; write "
         "mariadb+pymysql://"),
        ("postgres://root@db/shop", "unknown database dialect 'postgres'; write "
         "postgresql+psycopg://"),
        ("nosuchdb://root@db/shop", "unknown database dialect 'nosuchdb' (is its SQLAlchemy "
         "dialect installed?)"),
    ],
)  # fmt: skip
def test_a_url_without_an_installed_driver_names_the_one_to_write(
    tmp_path: Path, url: str, message: str
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(f"name: hint\nsource: {{url: '{url}'}}\ndestination: {{url: lake}}\n"
                    "tables: [{name: t}]\n")  # fmt: skip
    with pytest.raises(ConfigError) as raised:
        load_job(path)
    assert f"{path}: job 'hint', field 'source.url': {message}" in str(raised.value)
