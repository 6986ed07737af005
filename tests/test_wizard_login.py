"""The wizard and a database login: no password variable for a login that needs none, and a
hidden prompt for the password when its variable is not set, to test the connection now."""

from pathlib import Path

import pytest
import sqlalchemy as sa
import test_wizard
from test_wizard import SECRET, Terminal, _copyjob, _env

pg_accounts = test_wizard.pg_accounts  # the fixture: a schema with a table of 500 rows

pytestmark = pytest.mark.postgres


def _login(pg_server: str) -> str:
    """The test server's URL with its user and no password (it trusts local logins)."""
    url = sa.engine.make_url(pg_server)
    assert url.username and not url.password, "the test needs a login without a password"
    return url.render_as_string(hide_password=False)


def test_a_login_without_a_password_gets_no_invented_variable(
    tmp_path: Path, pg_server: str, pg_accounts: str
) -> None:
    env = _env(tmp_path)
    flags = [
        "new",
        "--non-interactive",
        "--name=trusted",
        f"--source-url={_login(pg_server)}",
        f"--source-schema={pg_accounts}",
        f"--destination-url={tmp_path / 'lake'}",
    ]
    done = _copyjob(flags, env, tmp_path)
    assert done.returncode == 0, done.stderr
    job = (tmp_path / "jobs" / "trusted.yaml").read_text()
    assert "${" not in job and "PASSWORD" not in job
    assert "ok: trusted.yaml" in done.stdout


def test_an_unset_password_variable_is_asked_for_hidden_to_test_the_login(
    tmp_path: Path, pg_server: str, pg_accounts: str
) -> None:
    env = _env(tmp_path)
    env.pop("WZ_UNSET_PASSWORD", None)
    terminal = Terminal(env, tmp_path)
    terminal.answer("Name of the copy job", "hidden_pw", replace=True)
    terminal.answer("Source: a database URL, or a folder", _login(pg_server))
    terminal.answer("Source schema", pg_accounts)
    terminal.answer(
        "Environment variable holding the source's password", "WZ_UNSET_PASSWORD", replace=True
    )
    terminal.answer("The source's password, to test the connection now (hidden", SECRET)
    terminal.answer("Tables to copy")
    terminal.child.expect_exact("accounts: columns to copy")
    terminal.child.close(force=True)
    shown = terminal.transcript.getvalue()
    assert "connected to" in shown and "1 tables" in shown
    assert SECRET not in shown
    assert "WZ_UNSET_PASSWORD is not set" in shown
