"""How the graph runs by itself: freshness policies, automation conditions and alerts.

Freshness (the 1.13 `FreshnessPolicy.time_window`), one window per layer, applied to every asset
in `apply_policies`:

| layer   | warn after | fail after |
|---------|-----------:|-----------:|
| bronze  | 25 h       | 26 h       |
| silver  | 25 h       | 27 h       |
| gold    | 25 h       | 28 h       |
| serving | 26 h       | 29 h       |

The daily refresh lands every layer once a day; an asset that has not been materialized for the
warn window turns yellow in the UI, for the fail window red.

Automation: silver, gold and the exports follow their parents (`eager`) but only while every
blocking check of every parent passes (`all_deps_blocking_checks_passed`), so a failed gate is
never stepped over by automation.

Alerts: a failed run is logged and posted to the webhook of `PETINSURE_ALERT_WEBHOOK_URL` when it
is set (JSON: kind, run id, job, message, failed blocking checks). A failed blocking check always
fails its run (Dagster raises after reporting it), so this one sensor alerts on both.
"""

from datetime import timedelta

import dagster as dg

from petinsure_assets.resources import AlertWebhook

FRESHNESS_WINDOWS: dict[str, tuple[timedelta, timedelta]] = {
    # group: (warn window, fail window)
    "bronze": (timedelta(hours=25), timedelta(hours=26)),
    "silver": (timedelta(hours=25), timedelta(hours=27)),
    "gold": (timedelta(hours=25), timedelta(hours=28)),
    "serving": (timedelta(hours=26), timedelta(hours=29)),
}

GATED_EAGER = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("eager, while every parent's blocking checks pass")


def freshness_policy(group: str) -> dg.FreshnessPolicy:
    warn, fail = FRESHNESS_WINDOWS[group]
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn)


def _with_policies(spec: dg.AssetSpec) -> dg.AssetSpec:
    return spec.replace_attributes(
        freshness_policy=freshness_policy(spec.group_name),
        automation_condition=GATED_EAGER if spec.group_name != "bronze" else spec.automation_condition,
    )


def apply_policies(assets: list) -> list:
    """Every asset gets its layer's freshness policy; all but bronze the gated eager condition."""
    return list(dg.map_asset_specs(_with_policies, assets))


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
    alert_webhook.send(context, {"kind": "run_failure", "run_id": run.run_id, "job": run.job_name,
                                 "message": message, "failed_checks": failed})


automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the assets' automation conditions (eager, gated by blocking checks).",
)

sensors = [alert_on_run_failure, automation_sensor]
