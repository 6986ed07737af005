"""A copy job as a Dagster Component, for projects made with `dg`.

Its `defs.yaml` attributes are the keys of a job file (name, source, destination, mode, tables,
...), read by the same loader (`${VAR}` expansion, the same models and messages, naming the
defs.yaml) and built by the same builders as `definitions.py`: the same assets, checks, asset
job, schedule and sensor. Relative paths resolve against the project's root.
"""

import re
from pathlib import Path

import dagster as dg
from pydantic import BaseModel, ConfigDict

from copyjob_dagster.cli.sample import create_shop
from copyjob_dagster.config import CopyJob
from copyjob_dagster.definitions import build_definitions
from copyjob_dagster.engine import load_job_tree

SAMPLE_SOURCE = Path("data") / "shop.sqlite"  # under the project's root
SAMPLE_SCALE = 0.05  # of the demo's rows: a start that copies in seconds


class CopyJobAttributes(BaseModel):
    """A copy job, keyed as in a job file; copyjob's own models validate it when it loads, so
    that its messages are those of `copyjob validate`."""

    model_config = ConfigDict(extra="allow")


class CopyJobScaffolder(dg.Scaffolder):
    """`dg scaffold defs copyjob_dagster.CopyJobComponent <name>`: a job named after its folder
    that copies the sample shop database (made now, under data/) into Parquet files."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        root = request.project_root or Path.cwd()
        if not (root / SAMPLE_SOURCE).exists():
            (root / SAMPLE_SOURCE).parent.mkdir(parents=True, exist_ok=True)
            create_shop(root / SAMPLE_SOURCE, scale=SAMPLE_SCALE)
        name = re.sub(r"\W", "_", request.target_path.name).lower()
        dg.scaffold_component(
            request,
            {
                "name": name,
                "source": {"url": f"sqlite:///{SAMPLE_SOURCE.as_posix()}", "name": "shop"},
                "destination": {"url": "data/lake"},
                "mode": "incremental",
                "tables": [
                    {"name": "customers", "incremental_column": "created_at"},
                    {"name": "orders", "to": "orders_copy", "incremental_column": "updated_at"},
                ],
            },
        )


@dg.scaffold_with(CopyJobScaffolder)
class CopyJobComponent(dg.Component):
    """Copies tables from a source store to a destination store, each table an asset."""

    def __init__(self, job: CopyJob) -> None:
        self.job = job

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return CopyJobAttributes

    @classmethod
    def load(
        cls, attributes: BaseModel | None, context: dg.ComponentLoadContext
    ) -> "CopyJobComponent":
        where = context.path / "defs.yaml" if context.path.is_dir() else context.path
        tree = attributes.model_dump() if attributes else {}
        return cls(load_job_tree(tree, where, context.project_root))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # Without the location-wide executor of `build_definitions`: components' Definitions
        # merge, and two different executors would not. The asset job keeps its own. Nor with
        # the run summaries, which add up every job of a location (and one sensor would clash
        # with the next component's).
        built = build_definitions([self.job], monitoring=False)
        return dg.Definitions(
            assets=built.assets, jobs=built.jobs, schedules=built.schedules, sensors=built.sensors
        )
