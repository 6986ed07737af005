"""A password is given raw in `${VAR}`: every character that means something in a URL (`@`, `/`,
`:`, `#`, `?`, `%`) stays part of the password, so the login works and masking hides all of it.

Each password holds the session's marker after the character, where a split URL would show it
(as the host, the path, a fragment or a query).
"""

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import BadInputTally

from copyjob_dagster.cli import main
from copyjob_dagster.config import mask_url
from copyjob_dagster.engine import load_job
from copyjob_dagster.stores import open_source

from .conftest import PgRole
from .private_pg import PrivatePostgres

URL_CHARACTERS = ["@", "/", ":", "#", "?", "%", "%40"]


def _job_file(folder: Path, port: int, role: str) -> Path:
    folder.mkdir()
    path = folder / "pw.yaml"
    path.write_text(
        "name: pw\n"
        f"source: {{url: 'postgresql+psycopg://{role}:${{RAW_PW}}@127.0.0.1:{port}/postgres'}}\n"
        f"destination: {{url: '{folder / 'lake'}'}}\n"
        "tables:\n  - {name: t}\n"
    )
    return path


@pytest.mark.parametrize("character", URL_CHARACTERS)
def test_a_raw_password_logs_in_and_stays_masked(
    character: str,
    private_postgres: PrivatePostgres,
    pg_role: PgRole,
    marker: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    bad_inputs: BadInputTally,
) -> None:
    password = f"pw{character}{marker}"
    role = pg_role(f"raw_pw_{URL_CHARACTERS.index(character)}_{marker[-6:].lower()}", password)
    monkeypatch.setenv("RAW_PW", password)
    path = _job_file(tmp_path / "jobs", private_postgres.port, role)
    job = load_job(path)

    assert sa.engine.make_url(job.source.url).password == password
    masked = [mask_url(job.source.url), job.source.masked_url]
    source = open_source(job.source)
    try:
        assert isinstance(source.list_tables(), list)  # logged in with the whole password
    finally:
        source.close()
    monkeypatch.setenv("COPYJOB_JOBS_DIR", str(path.parent))
    validated = CliRunner().invoke(main, ["validate", "--connect"])
    masked.append(validated.output)
    leaks = sum(text.count(marker) for text in masked)
    bad_inputs.leaks(f"URL with a raw {character!r} in its password", leaks)
    assert leaks == 0, masked
    assert "***" in masked[0]
