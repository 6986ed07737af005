"""Job files left out of the Definitions (`jobs_folder`), shown where a user looks for them: as
the job's own assets, in its own group, each saying why it is not copied. They are external
assets: nothing runs them, and the rest of the code location loads as usual.

A file whose tables cannot be told shows as one asset named after the file, in the job's group,
or in the `copyjob_skipped` group when the job's name cannot be told or belongs to a job that
did load (a name used twice).
"""

import dagster as dg

from copyjob_dagster.config import SkippedJob, key_part

SKIPPED_GROUP = "copyjob_skipped"
PROBLEM = "copyjob/problem"
JOB_FILE = "copyjob/job_file"


def skipped_job_specs(
    skipped: list[SkippedJob], taken_keys: set[dg.AssetKey], taken_groups: set[str]
) -> list[dg.AssetSpec]:
    """An asset per table of each skipped job (or one per file), none reusing a taken key."""
    specs: list[dg.AssetSpec] = []
    for job in skipped:
        group = job.job_name if job.job_name and job.job_name not in taken_groups else None
        keys = [dg.AssetKey([key_part(str(group)), key_part(to)]) for _, to in job.tables]
        if group and keys and not taken_keys.intersection(keys) and len(set(keys)) == len(keys):
            specs += [
                _spec(key, group, job, f"table `{name}`")
                for key, (name, _) in zip(keys, job.tables, strict=True)
            ]
        else:
            keys = [dg.AssetKey([group or SKIPPED_GROUP, key_part(job.path.stem)])]
            if keys[0] in taken_keys:
                continue
            specs.append(_spec(keys[0], group or SKIPPED_GROUP, job, "every table"))
        taken_keys.update(keys)
    return specs


def _spec(key: dg.AssetKey, group: str, job: SkippedJob, what: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=key,
        group_name=group,
        description=(
            f"**Not copied: the job file `{job.path.name}` does not load**, so {what} of it is "
            f"left out until it is fixed (the other jobs load and run as usual). Fix the file, "
            f"check it with `copyjob validate`, then reload the definitions.\n\n"
            f"```\n{job.problem}\n```"
        ),
        metadata={
            PROBLEM: dg.MetadataValue.text(job.problem),
            JOB_FILE: dg.MetadataValue.path(str(job.path)),
        },
        tags={"copyjob/skipped": "true"},
    )
