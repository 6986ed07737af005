"""Loading job files: `${VAR}` expansion, paths, masked URLs, store names, and located errors."""

from pathlib import Path

import pytest

from copyjob_dagster.config import CopyJob, StoreConfig, mask_url
from copyjob_dagster.config.loading import check_across_jobs
from copyjob_dagster.engine import load_job, load_jobs
from copyjob_dagster.errors import ConfigError

SECRET = "s3cret-Zq81x"
HEAD = "source: {url: 'sqlite:///shop.db'}\ndestination: {url: lake}\n"


def write_job(folder: Path, text: str, file_name: str = "job.yaml") -> Path:
    path = folder / file_name
    path.write_text(text)
    return path


def job_text(name: str = "shop", tables: str = "tables:\n  - name: orders\n", head: str = HEAD):
    return f"name: {name}\n{head}{tables}"


def test_expands_env_variables_and_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CJ_USER", "loader")
    monkeypatch.setenv("CJ_PASSWORD", SECRET)
    monkeypatch.setenv("CJ_TABLE", "orders")
    monkeypatch.delenv("CJ_UNSET", raising=False)
    path = write_job(
        tmp_path,
        "name: shop\n"
        "source: {url: 'sqlite:///shop.db', schema: '${CJ_UNSET:-main}'}\n"
        "destination: {url: 'postgresql+psycopg://${CJ_USER}:${CJ_PASSWORD}@${CJ_UNSET:-db}:"
        "${CJ_UNSET:-5432}/wh', schema: '${CJ_TABLE:-ignored}'}\n"
        "tables:\n"
        "  - name: ${CJ_TABLE}\n"
        "    to: ${CJ_TABLE}_${CJ_UNSET:-}copy\n",
    )
    job = load_job(path)
    assert job.source.db_schema == "main"
    assert job.destination.url == f"postgresql+psycopg://loader:{SECRET}@db:5432/wh"
    assert job.destination.db_schema == "orders"
    assert (job.tables[0].name, job.tables[0].destination_name) == ("orders", "orders_copy")


def test_env_value_is_not_expanded_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CJ_TABLE", "${CJ_OTHER}")
    job = load_job(write_job(tmp_path, job_text(tables="tables:\n  - name: ${CJ_TABLE}\n")))
    assert job.tables[0].name == "${CJ_OTHER}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("sqlite:///data/shop.db", "sqlite:///{base}/data/shop.db", id="relative-file"),
        pytest.param("sqlite:///../shop.db", "sqlite:///{parent}/shop.db", id="parent-folder"),
        pytest.param("sqlite:////abs/shop.db", "sqlite:////abs/shop.db", id="absolute-file"),
        pytest.param("sqlite://", "sqlite://", id="in-memory"),
        pytest.param("lake", "{base}/lake", id="relative-folder"),
        pytest.param("/abs/lake", "/abs/lake", id="absolute-folder"),
        pytest.param("postgresql://db/wh", "postgresql://db/wh", id="server-url"),
    ],
)
def test_relative_paths_resolve_against_base_dir(tmp_path: Path, url: str, expected: str) -> None:
    base = tmp_path / "project"
    base.mkdir()
    path = write_job(
        tmp_path, job_text(head=f"source: {{url: '{url}'}}\ndestination: {{url: x}}\n")
    )
    job = load_job(path, base)
    assert job.source.url == expected.format(base=base, parent=tmp_path)
    assert job.destination.url == str(base / "x")


def test_base_dir_defaults_to_the_job_files_folder(tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path, job_text()))
    assert job.source.url == f"sqlite:///{tmp_path}/shop.db"
    assert job.destination.url == str(tmp_path / "lake")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            f"postgresql+psycopg://bob:{SECRET}@db:5432/wh",
            "postgresql+psycopg://bob:***@db:5432/wh",
            id="password",
        ),
        pytest.param(
            f"postgresql://bob@db/wh?sslmode=require&password={SECRET}",
            "postgresql://bob@db/wh?password=***&sslmode=require",
            id="query-password",
        ),
        pytest.param(
            f"mysql+pymysql://bob:{SECRET}@db:port/shop",
            "mysql+pymysql://bob:***@db:port/shop",
            id="unparseable-port",
        ),
        pytest.param("postgresql://bob@db/wh", "postgresql://bob@db/wh", id="no-password"),
        pytest.param("/data/lake", "/data/lake", id="folder"),
    ],
)
def test_masked_url_hides_passwords(url: str, expected: str) -> None:
    assert mask_url(url) == expected
    assert SECRET not in mask_url(url)


def test_store_masked_url_and_repr_hide_the_password() -> None:
    store = StoreConfig(url=f"postgresql://bob:{SECRET}@db/wh")
    assert store.masked_url == "postgresql://bob:***@db/wh"
    assert SECRET not in repr(store)


@pytest.mark.parametrize(
    ("store", "display_name", "technology"),
    [
        pytest.param({"url": "sqlite:////data/shop.sqlite"}, "shop", "sqlite", id="sqlite-stem"),
        pytest.param({"url": "sqlite://"}, "default", "sqlite", id="sqlite-memory"),
        pytest.param(
            {"url": "postgresql+psycopg://bob@db/ware-house"}, "ware_house", "postgres", id="pg"
        ),
        pytest.param({"url": "postgresql://db"}, "default", "postgres", id="pg-no-database"),
        pytest.param({"url": "mysql+pymysql://bob@db/shop"}, "shop", "mysql", id="mysql"),
        pytest.param({"url": "mariadb+pymysql://bob@db/shop"}, "shop", "mysql", id="mariadb"),
        pytest.param({"url": "/data/my lake"}, "my_lake", "parquet", id="folder"),
        pytest.param(
            {"url": "sqlite:////data/shop.sqlite", "name": "crm"}, "crm", "sqlite", id="named"
        ),
    ],
)
def test_display_name_and_technology(store: dict, display_name: str, technology: str) -> None:
    config = StoreConfig.model_validate(store)
    assert config.display_name == display_name
    assert config.technology == technology


def test_destination_name_defaults_to_the_source_table() -> None:
    job = CopyJob.model_validate(
        {
            "name": "shop",
            "source": {"url": "sqlite:///shop.db"},
            "destination": {"url": "lake"},
            "tables": [{"name": "orders", "to": "orders_copy"}, {"name": "customers"}],
        }
    )
    assert [t.destination_name for t in job.tables] == ["orders_copy", "customers"]
    assert job.table("orders_copy").name == "orders"
    with pytest.raises(ConfigError, match="job 'shop' has no table 'orders'"):
        job.table("orders")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            job_text(tables="tables:\n  - name: orders\n  - name: items\n    to: ${CJ_UNSET}\n"),
            "job 'shop', table 'items', field 'to': environment variable CJ_UNSET is not set",
            id="env-error-names-table",
        ),
        pytest.param(
            job_text(tables="tables:\n  - name: orders\n    columns: [id]\n    rename: {x: y}\n"),
            "job 'shop', table 'orders', field 'rename': names columns that are not selected "
            "in `columns`: x",
            id="table-check-names-field",
        ),
        pytest.param(
            job_text(tables="tables:\n  - name: a\n  - name: b\n    to: a\n"),
            "job 'shop', table 'b', field 'to': table 'a' is also copied to 'a'; give one of "
            "them another `to:`",
            id="job-check-names-table-and-field",
        ),
        pytest.param(
            job_text(tables="tables:\n  - name: a\n    rename: {5: x}\n"),
            "job 'shop', table 'a', field 'rename.5': should be a valid string, got a number",
            id="rename-key-type",
        ),
        pytest.param(
            job_text(tables="tables:\n  - name: a\n    primary_key: [id, [x]]\n"),
            "job 'shop', table 'a', field 'primary_key', item 2: should be a valid string, "
            "got a list",
            id="list-item-type",
        ),
        pytest.param(
            job_text(tables="tables:\n  - {name: a, to: b, to: c}\n"),
            "line 5, column 22: invalid YAML: key 'to' is given twice (first on line 5)",
            id="duplicate-key-in-flow-mapping",
        ),
        pytest.param(
            job_text() + "tables: []\n",
            "line 6, column 1: invalid YAML: key 'tables' is given twice (first on line 4)",
            id="duplicate-key-named-like-tab",
        ),
        pytest.param(
            job_text(
                head="source: {url: 'sqlite:///a.db', frobnicate: 1}\ndestination: {url: x}\n"
            ),
            "job 'shop', field 'source.frobnicate': unknown field; the fields are url, schema, "
            "name, connect_timeout, statement_timeout, max_connections",
            id="unknown-field-lists-fields",
        ),
    ],
)
def test_errors_name_file_job_table_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    monkeypatch.delenv("CJ_UNSET", raising=False)
    path = write_job(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_job(path)
    assert str(caught.value) == f"{path}: {expected}"


def test_several_errors_give_one_line_each(tmp_path: Path) -> None:
    path = write_job(
        tmp_path, job_text(tables="batch_rows: 0\nmode: fast\ntables:\n  - name: a\n    to: 1\n")
    )
    with pytest.raises(ConfigError) as caught:
        load_job(path)
    assert str(caught.value).splitlines() == [
        f"{path}: job 'shop', field 'mode': should be 'full', 'incremental' or 'cdc'",
        f"{path}: job 'shop', field 'batch_rows': should be greater than 0",
        f"{path}: job 'shop', table 'a', field 'to': should be a valid string, got a number",
    ]


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"postgresql://bob:{SECRET}@db/wh", id="literal"),
        pytest.param(f"postgresql://bob:${{CJ_UNSET:-{SECRET}}}@db/wh", id="env-default"),
        pytest.param(f"postgresql://${{CJ_USER}}:{SECRET}@db/wh", id="after-env-user"),
        pytest.param(f"postgresql://bob@db/wh?password={SECRET}", id="query"),
        pytest.param(f"${{CJ_UNSET:-postgresql://bob:{SECRET}@db/wh}}", id="url-default"),
    ],
)
def test_literal_password_is_refused_without_echo(tmp_path: Path, url: str) -> None:
    path = write_job(
        tmp_path,
        job_text(head=f"source: {{url: 'sqlite:///a.db'}}\ndestination: {{url: '{url}'}}\n"),
    )
    with pytest.raises(ConfigError) as caught:
        load_job(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: job 'shop', field 'destination.url': the URL holds a")
    assert "environment variable" in message and "${VARIABLE}" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("postgresql://bob:${CJ_PW}@db/wh", id="env-password"),
        pytest.param("postgresql://bob:${CJ_PW:-}@db/wh", id="empty-default"),
        pytest.param("postgresql://${CJ_USER}:${CJ_PW}@db:5432/wh", id="env-user-and-password"),
        pytest.param("postgresql://db:5432/wh?password=${CJ_PW}", id="env-query-password"),
        pytest.param("${CJ_URL:-sqlite:///b.db}", id="url-default-without-password"),
    ],
)
def test_password_from_environment_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("CJ_PW", SECRET)
    monkeypatch.setenv("CJ_USER", "bob")
    monkeypatch.delenv("CJ_URL", raising=False)
    head = f"source: {{url: 'sqlite:///a.db'}}\ndestination: {{url: '{url}'}}\n"
    job = load_job(write_job(tmp_path, job_text(head=head)))
    assert SECRET not in job.destination.masked_url


def test_env_url_that_cannot_be_parsed_does_not_leak_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CJ_URL", f"postgresql://bob:{SECRET}@db:port/wh")
    path = write_job(tmp_path, job_text(head="source: {url: '${CJ_URL}'}\ndestination: {url: x}\n"))
    with pytest.raises(ConfigError, match="field 'source.url': not a valid database URL") as caught:
        load_job(path)
    assert SECRET not in str(caught.value)


def test_load_jobs_checks_jobs_against_each_other(tmp_path: Path) -> None:
    write_job(tmp_path, job_text("shop"), "a.yaml")
    write_job(tmp_path, job_text("shop", "tables:\n  - name: customers\n"), "b.yml")
    with pytest.raises(ConfigError) as caught:
        load_jobs(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'b.yml'}: job 'shop', field 'name': already used by {tmp_path / 'a.yaml'}"
    )


def test_jobs_may_share_a_source_and_a_destination_store(tmp_path: Path) -> None:
    a = load_job(write_job(tmp_path, job_text("a"), "a.yaml"))
    b = load_job(write_job(tmp_path, job_text("b", "tables:\n  - name: items\n"), "b.yaml"))
    assert check_across_jobs([(tmp_path / "a.yaml", a), (tmp_path / "b.yaml", b)]) == []


def test_load_jobs_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the copy jobs folder does not exist"):
        load_jobs(tmp_path / "nowhere")


def test_sample_job_is_valid() -> None:
    project = Path(__file__).resolve().parent.parent
    job = load_job(project / "copy_jobs" / "shop_demo.yaml", project)
    assert job.source.url == f"sqlite:///{project}/.demo/shop.sqlite"
    assert job.source.display_name == "shop"
