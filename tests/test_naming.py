"""Asset keys, source keys, op names and specs of a job's tables; nothing is executed."""

import dagster as dg
import pytest
from markdown_it import MarkdownIt
from pydantic import ValidationError

from copyjob_dagster.config import CopyJob, TableConfig, mask_url
from copyjob_dagster.defs import naming

SECRET = "s3cret-Zq81x"


def make_job(
    source: str = "sqlite:////data/shop.sqlite",
    destination: str = "/data/lake",
    name: str = "shop_copy",
    **table: object,
) -> tuple[CopyJob, TableConfig]:
    job = CopyJob.model_validate(
        {
            "name": name,
            "source": {"url": source},
            "destination": {"url": destination},
            "tables": [{"name": "orders", **table}],
        }
    )
    return job, job.tables[0]


@pytest.mark.parametrize(
    ("job_name", "table", "asset_path", "op_name"),
    [
        pytest.param("shop_copy", {}, ["shop_copy", "orders"], "shop_copy__orders", id="plain"),
        pytest.param(
            "shop_copy",
            {"to": "orders_copy"},
            ["shop_copy", "orders_copy"],
            "shop_copy__orders_copy",
            id="mapped",
        ),
        pytest.param(
            "shop_copy",
            {"to": "order-lines 2024"},
            ["shop_copy", "order_lines_2024"],
            "shop_copy__order_lines_2024",
            id="not-a-key-part",
        ),
        pytest.param("s3", {"to": "__x"}, ["s3", "__x"], "s3____x", id="leading-underscores"),
    ],
)
def test_asset_key_and_op_name(
    job_name: str, table: dict, asset_path: list[str], op_name: str
) -> None:
    job, config = make_job(name=job_name, **table)
    assert naming.asset_key(job, config) == dg.AssetKey(asset_path)
    assert naming.op_name(job, config) == op_name


@pytest.mark.parametrize(
    ("source", "source_path"),
    [
        pytest.param("sqlite:////data/shop.sqlite", ["source", "shop", "orders"], id="sqlite"),
        pytest.param("postgresql://bob@db/crm", ["source", "crm", "orders"], id="postgres"),
        pytest.param("/data/exports", ["source", "exports", "orders"], id="folder"),
    ],
)
def test_source_key_names_the_source_store(source: str, source_path: list[str]) -> None:
    job, table = make_job(source=source, to="orders_copy")
    assert naming.source_key(job, table) == dg.AssetKey(source_path)


def test_jobs_reading_one_database_share_source_keys() -> None:
    first, first_table = make_job(name="to_lake")
    second, second_table = make_job(name="to_warehouse", destination="postgresql://db/wh")
    assert naming.source_key(first, first_table) == naming.source_key(second, second_table)
    assert naming.source_spec(first, first_table) == naming.source_spec(second, second_table)


@pytest.mark.parametrize(
    ("source", "destination", "table", "kinds", "description"),
    [
        pytest.param(
            "sqlite:////data/shop.sqlite",
            "/data/lake",
            {},
            {"sqlite", "parquet"},
            "Full copy of table `orders` (all columns) from `sqlite:////data/shop.sqlite` into "
            "`orders` at `/data/lake`.",
            id="sqlite-to-folder",
        ),
        pytest.param(
            "mysql+pymysql://app@db/shop",
            f"postgresql+psycopg://loader:{SECRET}@wh:5432/dw",
            {"columns": ["id", "amount"], "rename": {"amount": "total"}, "to": "sales"},
            {"mysql", "postgres"},
            "Full copy of table `orders` (`id`, `amount`, renaming `amount` → `total`) from "
            "`mysql+pymysql://app@db/shop` into `sales` at "
            "`postgresql+psycopg://loader:***@wh:5432/dw`.",
            id="mysql-to-postgres",
        ),
        pytest.param(
            "sqlite:////data/shop.sqlite",
            "sqlite:////data/copy.sqlite",
            {},
            {"sqlite"},
            "Full copy of table `orders` (all columns) from `sqlite:////data/shop.sqlite` into "
            "`orders` at `sqlite:////data/copy.sqlite`.",
            id="same-technology",
        ),
    ],
)
def test_copy_spec(
    source: str, destination: str, table: dict, kinds: set[str], description: str
) -> None:
    job, config = make_job(source=source, destination=destination, **table)
    spec = naming.copy_spec(job, config)
    assert spec.key == naming.asset_key(job, config)
    assert spec.group_name == "shop_copy"
    assert spec.kinds == kinds
    assert [dep.asset_key for dep in spec.deps] == [naming.source_key(job, config)]
    assert spec.description == description
    assert spec.metadata["copyjob/destination"] == mask_url(destination)
    assert SECRET not in repr(spec)


def test_password_never_reaches_a_spec() -> None:
    url = f"postgresql+psycopg://app:{SECRET}@db/shop?password={SECRET}"
    job, table = make_job(source=url)
    specs = [naming.copy_spec(job, table), naming.source_spec(job, table)]
    assert "postgresql+psycopg://app:***@db/shop?password=***" in specs[0].description
    assert all(SECRET not in repr(spec) for spec in specs)


def test_masked_urls_keep_their_asterisks_when_the_description_is_rendered() -> None:
    """The UI renders descriptions as Markdown: `user:***@host` must not turn into emphasis."""
    job, table = make_job(
        source="mysql+pymysql://app:${PW}@db/my_shop",
        destination=f"postgresql+psycopg://loader:{SECRET}@wh/dw?password={SECRET}",
        columns=["id", "created_at"],
        rename={"created_at": "created__at"},
    )
    html = MarkdownIt().render(naming.copy_spec(job, table).description or "")
    assert "<em>" not in html and "<strong>" not in html
    assert "<code>postgresql+psycopg://loader:***@wh/dw?password=***</code>" in html
    assert "<code>mysql+pymysql://app:***@db/my_shop</code>" in html
    assert "<code>created__at</code>" in html


def test_source_spec() -> None:
    job, table = make_job(source="postgresql://bob@db/crm")
    spec = naming.source_spec(job, table)
    assert spec.key == dg.AssetKey(["source", "crm", "orders"])
    assert spec.group_name == naming.SOURCE_GROUP
    assert spec.kinds == {"postgres"}
    assert spec.description == "Table `orders` of the source database `crm`."


@pytest.mark.parametrize("job_name", ["a__b", "a_", "_a"])
def test_job_names_that_could_make_op_names_collide_are_refused(job_name: str) -> None:
    # Job "a__b" with table "c" and job "a" with table "b__c" would both be op "a__b__c".
    with pytest.raises(ValidationError, match="string_pattern_mismatch"):
        make_job(name=job_name)


@pytest.mark.parametrize("job_name", ["import", "class", "config", "context"])
def test_job_names_that_dagster_reserves_are_refused(job_name: str) -> None:
    with pytest.raises(ValidationError, match="reserved by Python or Dagster"):
        make_job(name=job_name)
