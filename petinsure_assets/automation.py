"""How the graph runs by itself: freshness policies, automation conditions and alerts.

Freshness (the 1.13 `FreshnessPolicy.time_window`), applied to every asset in `apply_policies`:
a silver or gold table's window is in its spec (sql/<layer>/<table>.toml, `freshness`; today 25 h
warn / 27 h fail for silver, 25 h / 28 h for gold); bronze, the exports and the snapshot have the
windows of FRESHNESS_WINDOWS below (bronze 25 h / 26 h, exports 26 h / 29 h, snapshot 26 h / 30 h).

The daily refresh lands every layer once a day; an asset that has not been materialized for the
warn window turns yellow in the UI, for the fail window red.

Automation: silver, gold and the exports follow their parents (`eager`) but only while every
blocking check of every parent passes (`all_deps_blocking_checks_passed`), so a failed gate is
never stepped over by automation.

Alerts: a failed run is logged and posted to the webhook of `PETINSURE_ALERT_WEBHOOK_URL` when it
is set (JSON: kind, run id, job, message, failed blocking checks). A failed blocking check always
fails its run (Dagster raises after reporting it), so this one sensor alerts on both.

Sensor intervals: `raw_files_sensor` and `exports_sensor` tick at most every
`PETINSURE_RAW_SENSOR_INTERVAL_SECONDS` and `PETINSURE_EXPORTS_SENSOR_INTERVAL_SECONDS` seconds
(default 30 each), read when the definitions load; anything but a whole number of seconds, 1 or
more, stops the code location from loading with a message naming the variable. The Dagster
daemon evaluates sensors in a loop that passes at most every 5 s (`MIN_INTERVAL_LOOP_TIME` in
dagster/_daemon/sensor.py, dagster 1.13), and a sensor ticks on the first pass at least its
interval after its last tick; so nothing ticks more often than every 5 s. The passes' timing
varies by up to a second, so an interval of 5 skips a pass now and then (ticks 5 or 10 s apart)
while 1 to 4 tick on every pass: 1 is the shortest sensible setting (a tick every ~5 s). A new raw
file waits up to one interval plus the loop's 5 s for the raw sensor, the finished refresh as
long for the exports sensor (`make bench` measures the whole path, bench/front_door.py).
"""

import hashlib
import json
import math
import os
import time
from datetime import timedelta

import dagster as dg

from petinsure_assets import contracts
from petinsure_assets.catalog import CATALOG, QUARANTINE, Catalog
from petinsure_assets.ingest import list_raw_files, read_ledger
from petinsure_assets.lock import number_from_env
from petinsure_assets.queries import output_schemas
from petinsure_assets.resources import (
    FULL_CHECKS_TAG,
    FULL_REFRESH_TAG,
    AlertWebhook,
    LakeResource,
    column_schema,
)
from petinsure_assets.serving import API_SNAPSHOT_KEY

# The layers outside the catalog: (warn window, fail window).
FRESHNESS_WINDOWS: dict[str, tuple[timedelta, timedelta]] = {
    "bronze": (timedelta(hours=25), timedelta(hours=26)),
    "serving": (timedelta(hours=26), timedelta(hours=29)),  # the exports
    "snapshot": (timedelta(hours=26), timedelta(hours=30)),  # api_snapshot
}

GATED_EAGER = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager, while every parent's blocking checks pass")


def freshness_windows(
    key: dg.AssetKey, group: str | None, catalog: Catalog = CATALOG
) -> tuple[timedelta, timedelta]:
    """(warn, fail) of an asset: a catalog table's from its spec (a silver table's quarantine
    rows follow the table), the other layers' from FRESHNESS_WINDOWS."""
    layer, name = key.path[0], key.path[1]
    if layer == "silver" and name == QUARANTINE:
        spec = catalog.silver_for(contracts.BY_NAME[key.path[2]])
    elif layer in ("silver", "gold") and len(key.path) == 2 and key != API_SNAPSHOT_KEY:
        spec = catalog.table(name)
    else:
        return FRESHNESS_WINDOWS["snapshot" if key == API_SNAPSHOT_KEY else group]
    return spec.freshness.warn, spec.freshness.fail


def apply_policies(assets: list, catalog: Catalog = CATALOG) -> list:
    """Every asset gets its freshness policy; silver, gold and the exports the gated eager
    condition (bronze is fed by the raw sensor, the snapshot by the exports sensor); silver and
    gold their column schema, from their SQL."""
    schemas = output_schemas(catalog)

    def with_policies(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.group_name == "raw":  # the landing zone: external, nothing to materialize
            return spec
        follows_parents = spec.group_name != "bronze" and spec.key != API_SNAPSHOT_KEY
        # A quarantine part has the quarantine's columns, an export its gold table's.
        path = spec.key.path
        name = "/".join(path[:2]) if path[1] == QUARANTINE else f"gold/{path[-1]}"
        schema = schemas.get(name if len(path) == 3 else "/".join(path))
        warn, fail = freshness_windows(spec.key, spec.group_name, catalog)
        return spec.replace_attributes(
            freshness_policy=dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn),
            automation_condition=GATED_EAGER if follows_parents else spec.automation_condition,
            metadata={**spec.metadata, "dagster/column_schema": column_schema(schema)}
            if schema is not None
            else spec.metadata,
        )

    return list(dg.map_asset_specs(with_policies, assets))


# ---- jobs and schedule ---------------------------------------------------------------------------

# Raw -> bronze -> silver -> gold -> exports, in one process (on two cores the multiprocess
# executor costs 1-2 s per step; the steps themselves use every core through DuckDB). The API
# snapshot is not part of it: the exports sensor publishes it.
refresh_all = dg.define_asset_job(
    "refresh_all",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(API_SNAPSHOT_KEY),
    executor_def=dg.in_process_executor,
    description="Full refresh of the lakehouse: raw files to bronze, silver, gold and exports.",
)
refresh_all_full = dg.define_asset_job(
    "refresh_all_full",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(API_SNAPSHOT_KEY),
    executor_def=dg.in_process_executor,
    tags={FULL_REFRESH_TAG: "true"},
    description="refresh_all rebuilding every silver and gold table from all of bronze, instead "
    "of merging what changed (the same as `petinsure refresh --full-refresh`).",
)
publish_api_snapshot = dg.define_asset_job(
    "publish_api_snapshot",
    selection=dg.AssetSelection.assets(API_SNAPSHOT_KEY),
    executor_def=dg.in_process_executor,
    description="Publish gold/snapshots/ from the gold exports (started by the exports sensor).",
)
REFRESH_CRON_ENV, REFRESH_TIMEZONE_ENV = "PETINSURE_REFRESH_CRON", "PETINSURE_REFRESH_TIMEZONE"
daily_refresh = dg.ScheduleDefinition(
    name="daily_refresh",
    job=refresh_all,
    cron_schedule=os.environ.get(REFRESH_CRON_ENV, "0 2 * * *"),
    execution_timezone=os.environ.get(REFRESH_TIMEZONE_ENV, "UTC"),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    # Incremental like any run, but its checks examine whole tables, not only the changed rows.
    tags={FULL_CHECKS_TAG: "true"},
    description="The whole graph once a day (the Databricks job it replaces), checking whole "
    "tables; "
    f"time from {REFRESH_CRON_ENV} / {REFRESH_TIMEZONE_ENV}, default 02:00 UTC.",
)


# ---- sensors -----------------------------------------------------------------------------------

RAW_SENSOR_INTERVAL_ENV = "PETINSURE_RAW_SENSOR_INTERVAL_SECONDS"
EXPORTS_SENSOR_INTERVAL_ENV = "PETINSURE_EXPORTS_SENSOR_INTERVAL_SECONDS"
DEFAULT_SENSOR_INTERVAL_SECONDS = 30
# How often the Dagster daemon evaluates sensors at most (dagster/_daemon/sensor.py,
# MIN_INTERVAL_LOOP_TIME): a shorter minimum interval changes nothing.
DAEMON_SENSOR_LOOP_SECONDS = 5


def sensor_interval_seconds(name: str) -> int:
    """The minimum interval of a sensor from the environment variable `name` (default 30 s);
    anything but a whole number of seconds, 1 or more, is refused naming the variable."""
    refusal = ValueError(
        f"{name} must be a whole number of seconds, 1 or more (default "
        f"{DEFAULT_SENSOR_INTERVAL_SECONDS}; the daemon ticks sensors at most every "
        f"{DAEMON_SENSOR_LOOP_SECONDS} s), got {os.environ.get(name)!r}"
    )
    try:
        seconds = number_from_env(name, DEFAULT_SENSOR_INTERVAL_SECONDS)
    except ValueError:
        raise refusal from None
    if not (math.isfinite(seconds) and seconds >= 1 and seconds == int(seconds)):
        raise refusal
    return int(seconds)


def raw_listings(lake) -> dict[str, list[tuple[str, int, int]]]:
    """Per entity with files, its raw files' names, sizes and modification times."""
    listings = {}
    for entity in contracts.ENTITIES:
        listing = [
            (f.source_file, f.size_bytes, f.modified_ns) for f in list_raw_files(lake, entity)
        ]
        if listing:
            listings[entity.name] = listing
    return listings


def _digest(listing: list[tuple[str, int, int]]) -> str:
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def already_ingested(lake, listings: dict[str, list[tuple[str, int, int]]]) -> set[str]:
    """The entities whose every raw file the bronze ledger has seen as it is now (same size and
    modification time): bronze would skip them all."""
    done = set()
    for name, listing in listings.items():
        ledger = read_ledger(lake, contracts.BY_NAME[name])
        if all(
            path in ledger
            and (ledger[path]["size_bytes"], ledger[path]["modified_ns"]) == (size, modified)
            for path, size, modified in listing
        ):
            done.add(name)
    return done


@dg.sensor(
    name="raw_files_sensor",
    job=refresh_all,
    minimum_interval_seconds=sensor_interval_seconds(RAW_SENSOR_INTERVAL_ENV),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Finds new or changed files in raw/ and runs their bronze tables and everything "
    "downstream of them (the Auto Loader of the notebooks). Its first tick takes the files the "
    "bronze ledger already holds (same size and modification time) as seen.",
)
def raw_files_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    the_lake = lake.lake()
    listings = raw_listings(the_lake)
    digests = {e: _digest(listing) for e, listing in listings.items()}
    files = sum(len(listing) for listing in listings.values())
    if context.cursor:
        seen = json.loads(context.cursor)
    else:  # first tick (new sensor, new instance): what bronze holds as it is now is not new
        seen = {e: digests[e] for e in already_ingested(the_lake, listings)}
    changed = sorted(e for e, d in digests.items() if seen.get(e) != d)
    if not changed:
        return dg.SensorResult(
            skip_reason=f"no new or changed files among the {files} files in raw/",
            cursor=json.dumps(digests, sort_keys=True),
        )
    bronze = [dg.AssetKey(["bronze", contracts.BY_NAME[e].bronze_table]) for e in changed]
    # A silver table and its quarantine rows are one step, hence the neighbors.
    selection = dg.AssetSelection.assets(
        *bronze
    ).downstream().required_multi_asset_neighbors() - dg.AssetSelection.assets(API_SNAPSHOT_KEY)
    keys = selection.resolve(context.repository_def.asset_graph)
    run_key = (
        "raw-"
        + hashlib.sha256(
            json.dumps({e: digests[e] for e in changed}, sort_keys=True).encode()
        ).hexdigest()[:16]
    )
    context.log.info(f"new or changed files for {', '.join(changed)}: requesting run {run_key}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=run_key,
                asset_selection=sorted(keys),
                tags={"petinsure/trigger": "raw_files", "petinsure/entities": ",".join(changed)},
            )
        ],
        cursor=json.dumps(digests, sort_keys=True),
    )


def export_keys(context: dg.SensorEvaluationContext) -> list[dg.AssetKey]:
    """The gold exports of the code location (one per gold table of the catalog)."""
    return [
        key
        for key in context.repository_def.asset_graph.get_all_asset_keys()
        if key.path[:2] == ["gold", "exports"]
    ]


def _unchanged(record) -> bool:
    flag = record.asset_materialization.metadata.get("unchanged")
    return flag is not None and flag.value is True


SETTLE_SECONDS = 60


@dg.sensor(
    name="exports_sensor",
    job=publish_api_snapshot,
    minimum_interval_seconds=sensor_interval_seconds(EXPORTS_SENSOR_INTERVAL_ENV),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Publishes the API snapshot once the gold exports have been rewritten: when all "
    f"six are newer than the last snapshot, or when the newest is {SETTLE_SECONDS} s old; not "
    "when every newer one reports itself unchanged.",
)
def exports_sensor(context: dg.SensorEvaluationContext):
    last = int(context.cursor) if context.cursor else -1
    exports = export_keys(context)
    latest = {}
    for key in exports:
        records = context.instance.fetch_materializations(key, limit=1).records
        if records:
            latest[key] = records[0]
    newer = [r for r in latest.values() if r.storage_id > last]
    if not newer:
        return dg.SkipReason("no export materialized since the last snapshot")
    newest = max(newer, key=lambda r: r.storage_id)
    if all(_unchanged(r) for r in newer):  # a refresh with nothing new: nothing to publish
        return dg.SensorResult(
            skip_reason="the exports materialized since the last snapshot are unchanged",
            cursor=str(newest.storage_id),
        )
    settled = time.time() - newest.timestamp >= SETTLE_SECONDS
    if len(newer) < len(exports) and not settled:
        return dg.SkipReason(
            f"{len(newer)} of {len(exports)} exports rewritten; waiting for "
            f"the rest or {SETTLE_SECONDS} s"
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"snapshot-{newest.storage_id}", tags={"petinsure/trigger": "exports"}
            )
        ],
        cursor=str(newest.storage_id),
    )


# ---- alerts -------------------------------------------------------------------------------------


def failed_blocking_checks(instance: dg.DagsterInstance, run_id: str) -> list[dict]:
    failed = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        if evaluation.passed or not evaluation.blocking:
            continue
        failing = evaluation.metadata.get("failing_rows")
        failed.append(
            {
                "asset": evaluation.asset_key.to_user_string(),
                "check": evaluation.check_name,
                "failing_rows": failing.value if failing is not None else None,
            }
        )
    return failed


def _describe(failed: list[dict]) -> str:
    return "; ".join(f"{f['asset']}:{f['check']} ({f['failing_rows']} rows)" for f in failed)


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    description="Alerts (log and webhook) when a run fails, naming its failed blocking checks.",
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, alert_webhook: AlertWebhook):
    run = context.dagster_run
    failed = failed_blocking_checks(context.instance, run.run_id)
    message = f"run {run.run_id} of {run.job_name} failed: {context.failure_event.message}"
    if failed:
        message += f"; failed blocking checks: {_describe(failed)}"
    alert_webhook.send(
        context,
        {
            "kind": "run_failure",
            "run_id": run.run_id,
            "job": run.job_name,
            "message": message,
            "failed_checks": failed,
        },
    )


automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the assets' automation conditions (eager, gated by blocking checks).",
)

jobs = [refresh_all, refresh_all_full, publish_api_snapshot]
schedules = [daily_refresh]
sensors = [raw_files_sensor, exports_sensor, alert_on_run_failure, automation_sensor]
