"""`copyjob new` shows the job file it saves line for line, however long a line is."""

from pathlib import Path

from test_wizard import _copyjob, _env


def test_the_review_shows_every_line_of_the_saved_file_whole(tmp_path: Path, shop_db: Path) -> None:
    lake = tmp_path / ("a_rather_long_folder_name_for_the_lake_" * 3) / "lake"
    done = _copyjob(
        [
            "new",
            "--non-interactive",
            "--name=reviewed",
            f"--source-url=sqlite:///{shop_db}",
            "--tables=orders",
            "--columns=orders=id,customer_id,status,total,ordered_at,updated_at,note",
            f"--destination-url={lake}",
        ],
        _env(tmp_path),
        tmp_path,
    )  # stdout is a pipe: the console is 80 columns wide
    assert done.returncode == 0, done.stderr
    saved = (tmp_path / "jobs" / "reviewed.yaml").read_text().splitlines()
    assert max(len(line) for line in saved) > 80
    shown = done.stdout.splitlines()
    assert [line for line in saved if line not in shown] == []
