"""Resources: the lake location, the Delta IO manager, the reporting date and the alert webhook.

Everything is chosen from the environment in `build_resources()`; the embedded default is a local
lake folder (`./lake`, or `PETINSURE_LAKE_ROOT`). Steps compute in DuckDB sessions of one
in-memory database per process (`queries.session`, `lake.duckdb_cursor`).
"""

import contextlib
import datetime as dt
import hashlib
import json
import os
import urllib.request
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa
from dagster_azure.adls2 import ADLS2DefaultAzureCredential, ADLS2Key, ADLS2SASToken
from pydantic import Field, PrivateAttr

from petinsure_assets.azure import Credential, ServicePrincipal, azure_lake, verify
from petinsure_assets.catalog import CATALOG, QUARANTINE, Catalog
from petinsure_assets.engines import EngineResource
from petinsure_assets.lake import (
    CURSOR_ONLY_COMMIT_KEY,
    DEFAULT_LAKE_ROOT,
    LAKE_ROOT_ENV,
    DeltaSource,
    Lake,
    TableWrite,
)
from petinsure_assets.lock import LakeBusyError, writer_lock
from petinsure_assets.thresholds import ACCEPTED_VALUES, THRESHOLDS

PREVIEW_ROWS = 5

# Run tags that change how the silver and gold steps of a run work: rebuild every table from all
# of bronze instead of merging what changed (`--full-refresh`, the job refresh_all_full), and
# check whole tables instead of the changed rows (the daily schedule).
FULL_REFRESH_TAG = "petinsure/full_refresh"
FULL_CHECKS_TAG = "petinsure/full_checks"


def _tag_set(run: dg.DagsterRun, tag: str) -> bool:
    return run.tags.get(tag, "").lower() in ("true", "1", "yes")


def full_refresh_asked(run: dg.DagsterRun) -> bool:
    return _tag_set(run, FULL_REFRESH_TAG)


def full_checks_asked(run: dg.DagsterRun) -> bool:
    return _tag_set(run, FULL_REFRESH_TAG) or _tag_set(run, FULL_CHECKS_TAG)


ALERT_WEBHOOK_ENV = "PETINSURE_ALERT_WEBHOOK_URL"


class LakeResource(dg.ConfigurableResource):
    """Where the lake lives: a local folder whose top folders are raw, bronze, silver and gold
    (the default), or, when `storage_account` is set, an ADLS Gen2 account with one container
    per layer."""

    root: str = Field(
        default=DEFAULT_LAKE_ROOT,
        description=f"Lake root folder (environment: {LAKE_ROOT_ENV}).",
    )
    storage_account: str = Field(default="", description="ADLS Gen2 account; empty = local folder.")
    credential: Credential = Field(
        default_factory=lambda: ADLS2DefaultAzureCredential(kwargs={}),
        discriminator="credential_type",
        description="SAS token, account key, service principal or DefaultAzureCredential.",
    )
    blob_endpoint: str = Field(
        default="",
        description="Blob endpoint (Azurite, sovereign clouds); "
        "empty = https://<account>.blob.core.windows.net",
    )
    raw_container: str = "raw"
    bronze_container: str = "bronze"
    silver_container: str = "silver"
    gold_container: str = "gold"
    _lake: Lake | None = PrivateAttr(default=None)

    def lake(self) -> Lake:
        if self._lake is None:
            if self.storage_account:
                self._lake = azure_lake(
                    self.storage_account,
                    self.credential,
                    endpoint=self.blob_endpoint,
                    containers={
                        "raw": self.raw_container,
                        "bronze": self.bronze_container,
                        "silver": self.silver_container,
                        "gold": self.gold_container,
                    },
                )
            else:
                self._lake = Lake(root=os.path.abspath(self.root))
        return self._lake

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext):
        """On Azure, check the containers and the credential before any step runs. A run holds
        the lake's writer lock from its start to its end, waiting for another writer up to
        PETINSURE_LOCK_WAIT_SECONDS (lock.py); sensors only read."""
        if self.storage_account:
            verify(self.lake())
        with contextlib.ExitStack() as held:
            if context.run is not None:
                try:
                    held.enter_context(
                        writer_lock(
                            self.lake(),
                            f"Dagster run of {context.run.job_name}",
                            run_id=context.run.run_id,
                            log=context.log.warning if context.log else None,
                        )
                    )
                except LakeBusyError as e:
                    raise dg.Failure(str(e)) from None
            yield self


class ReportingDate(dg.ConfigurableResource):
    """The as-of date of gold numbers. Empty means today (UTC). Set it in the launchpad under
    `resources.reporting_date.config.as_of`, or with `--as-of` on the command line."""

    as_of: str = Field(default="", description="YYYY-MM-DD; empty = today (UTC).")

    def date(self) -> dt.date:
        if not self.as_of:
            return dt.datetime.now(dt.UTC).date()
        try:
            return dt.date.fromisoformat(self.as_of)
        except ValueError:
            raise dg.Failure(
                f"reporting_date.as_of must be YYYY-MM-DD, got {self.as_of!r}"
            ) from None


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])


def markdown_preview(table: pa.Table) -> str:
    def cell(v: Any) -> str:
        return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")[:60]

    names = table.column_names
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in table.to_pylist():
        lines.append("| " + " | ".join(cell(row[n]) for n in names) + " |")
    return "\n".join(lines)


def row_count(lake: Lake, uri: str, where: str | None = None) -> int:
    """The rows of a Delta table (from its log), or of those `where` selects (a scan)."""
    if where is None:
        return int(lake.delta_table(uri).count())
    return lake.read(uri, f"SELECT count(*) AS n FROM t WHERE {where}").column("n")[0].as_py()


def table_metadata(lake: Lake, uri: str, where: str | None = None) -> dict[str, Any]:
    """Row count, Delta version, column schema and a preview of a Delta table (or of the rows
    `where` selects)."""
    table = lake.delta_table(uri)
    if where is None:
        preview = lake.read(uri, f"SELECT * FROM t LIMIT {PREVIEW_ROWS}")
        count = int(table.count())
    else:
        preview, counted = lake.read_all(
            uri,
            [
                f"SELECT * FROM t WHERE {where} LIMIT {PREVIEW_ROWS}",
                f"SELECT count(*) AS n FROM t WHERE {where}",
            ],
        )
        count = counted.column("n")[0].as_py()
    return {
        "dagster/row_count": dg.MetadataValue.int(count),
        "delta_version": dg.MetadataValue.int(table.version()),
        "dagster/column_schema": column_schema(preview.schema),
        "dagster/uri": dg.MetadataValue.path(uri),
        "preview": dg.MetadataValue.md(markdown_preview(preview)),
    }


# ---- inputs fingerprints: a rebuilt table is written only when what it is computed from changed --

# Commit metadata of every silver and gold write: what the table was computed from (the content
# versions of the tables it read, the as-of date for gold, a hash of its SQL, macros and
# thresholds), and the sha256 of that, which the next run compares with its own.
INPUTS_COMMIT_KEY = "petinsure.inputs"
FINGERPRINT_COMMIT_KEY = "petinsure.inputs_sha256"
# Commits that rewrite files without changing the rows (maintenance.py): not a new content version.
MAINTENANCE_OPERATIONS = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES"})
# Each commit read is a request on Azure: the newest few first (usually enough), then more.
_HISTORY_LIMITS = (3, 50, 500)
# Commit metadata of the silver and gold parts of one Delta table (the quarantine's entities).
PART_COMMIT_KEY = "petinsure.entity"


def last_write(
    lake: Lake, uri: str, part: str | None = None, *, rows_changed: bool = True
) -> dict[str, Any] | None:
    """The newest commit of a Delta table that changed its rows (compaction, vacuum and, unless
    not `rows_changed`, cursor-only commits skipped; with `part`, of those that wrote that part),
    with its commit metadata; None if none is among the newest 500 commits."""
    table = lake.delta_table(uri)
    for limit in _HISTORY_LIMITS:
        history = table.history(limit)
        for commit in history:
            if (
                commit.get("operation") not in MAINTENANCE_OPERATIONS
                and (not rows_changed or commit.get(CURSOR_ONLY_COMMIT_KEY) is None)
                and (part is None or commit.get(PART_COMMIT_KEY) == part)
            ):
                return commit
        if len(history) < limit:
            break
    return None


def content_version(lake: Lake, uri: str, part: str | None = None) -> int:
    """The Delta version that last changed the table's rows (or those of one part): compaction
    and commits of cursors alone do not count, so they do not make children rebuild."""
    commit = last_write(lake, uri, part)
    return commit["version"] if commit else lake.delta_table(uri).version()


# Bump when Python code changes how a silver or gold table is computed from its SQL: every table's
# code version changes, and the next run rebuilds them in full.
ENGINE_VERSION = "3"
CODE_VERSION_COMMIT_KEY = "petinsure.code_version"


def code_version(
    sql: list[str], *, generated: list[str] = (), catalog: Catalog = CATALOG, **params: str
) -> str:
    """The code version of a table (Dagster's `code_version` of its asset, and recorded with
    every write): a hash of the SQL files it runs (names in the catalog; the macros are added),
    the statements generated from its spec, the thresholds and value lists, its layout
    (`params`) and ENGINE_VERSION. A table written under another code version is rebuilt in
    full."""
    code = json.dumps(
        {
            "sql": [catalog.sql(n) for n in ["macros", *sql]] + list(generated),
            "thresholds": THRESHOLDS,
            "accepted_values": ACCEPTED_VALUES,
            "engine": ENGINE_VERSION,
            **params,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def inputs_commit_metadata(
    sources: dict[str, DeltaSource], code: str, **params: str
) -> dict[str, str]:
    """The commit metadata recording what a table is computed from: `sources` (input name ->
    table) at their content versions, its code version, and any parameters (the as-of date)."""
    inputs = json.dumps(
        {
            "tables": {name: content_version(s.lake, s.uri) for name, s in sorted(sources.items())},
            "code_version": code,
            **params,
        },
        sort_keys=True,
    )
    return {
        INPUTS_COMMIT_KEY: inputs,
        FINGERPRINT_COMMIT_KEY: hashlib.sha256(inputs.encode()).hexdigest(),
        CODE_VERSION_COMMIT_KEY: code,
    }


def unchanged_version(lake: Lake, uri: str, commit_metadata: dict[str, str]) -> int | None:
    """The table's current version if its last write was computed from the same inputs (same
    fingerprint), else None (missing table, other inputs, or written before fingerprints)."""
    if not lake.exists(uri):
        return None
    commit = last_write(lake, uri, rows_changed=False)  # a merge of nothing records inputs too
    if (
        commit is None
        or commit.get(FINGERPRINT_COMMIT_KEY) != commit_metadata[FINGERPRINT_COMMIT_KEY]
    ):
        return None
    return lake.delta_table(uri).version()


@dataclass(frozen=True)
class Unchanged:
    """What a table asset returns when its inputs are those of its last write: nothing is
    written; the materialization reports the table as it is."""

    since_version: int


def asset_location(lake: Lake, key: dg.AssetKey) -> tuple[str, str | None]:
    """The Delta table of a table asset `[layer, table]`, and the predicate selecting its rows
    when it is a part of one (silver/quarantine/<entity>: that entity's rows of
    silver/quarantine)."""
    if key.path[:2] == ["silver", QUARANTINE] and len(key.path) == 3:
        return lake.table_uri("silver", QUARANTINE), f"entity = '{key.path[2]}'"
    return lake.table_uri(key.path[-2], key.path[-1]), None


def store(lake: Lake, key: dg.AssetKey, obj: Any, log) -> dict[str, Any]:
    """Write what a table step returned for the asset `key` (a TableWrite, Arrow data, or
    Unchanged: nothing written) and return the materialization's metadata. The IO manager calls
    it here; the Databricks task calls it on the cluster."""
    uri, where = asset_location(lake, key)
    if isinstance(obj, Unchanged):
        metadata = table_metadata(lake, uri, where)
        metadata["rows_added"] = dg.MetadataValue.int(0)
        metadata["unchanged"] = dg.MetadataValue.bool(True)
        log.info(
            f"{key.to_user_string()}: inputs unchanged, not "
            f"rewritten (unchanged since version {obj.since_version})"
        )
        return metadata
    write = obj if isinstance(obj, TableWrite) else TableWrite(data=obj)
    if write.where != where:
        raise dg.Failure(
            f"{key.to_user_string()} must be written where {where}, not where {write.where}"
        )
    before = row_count(lake, uri, where) if lake.exists(uri) else 0
    if write.merge_on is not None:
        version = lake.merge(
            uri,
            write.data,
            on=write.merge_on,
            commit_metadata=write.commit_metadata,
            cursors=write.cursors,
        )
    else:
        version = lake.write(
            uri,
            write.data,
            mode=write.mode,
            commit_metadata=write.commit_metadata,
            where=where,
            partition_by=write.partition_by,
            cursors=write.cursors,
        )
    metadata = table_metadata(lake, uri, where)
    # Rows added by this materialization (for a rebuilt table: the change in its size).
    metadata["rows_added"] = dg.MetadataValue.int(metadata["dagster/row_count"].value - before)
    metadata["unchanged"] = dg.MetadataValue.bool(False)
    if write.on_commit is not None:
        metadata.update(write.on_commit(version))
    if write.metadata:
        metadata.update(write.metadata)
    return metadata


class DeltaIOManager(dg.ConfigurableIOManager):
    """Persists every table asset `[layer, table]` as the Delta table <lake>/<layer>/<table>, and
    hands downstream assets a `DeltaSource` of it (for their DuckDB session to scan; nothing is
    loaded into memory here)."""

    lake: LakeResource

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        context.add_output_metadata(store(self.lake.lake(), context.asset_key, obj, context.log))

    def load_input(self, context: dg.InputContext) -> DeltaSource:
        lake = self.lake.lake()
        uri, where = asset_location(lake, context.asset_key)
        if where is not None:
            raise dg.Failure(f"{context.asset_key.to_user_string()} is not an input of a step")
        if not lake.exists(uri):
            raise dg.Failure(
                f"{context.asset_key.to_user_string()} has no Delta table at {uri}: "
                "materialize it first."
            )
        return DeltaSource(lake, uri)


class AlertWebhook(dg.ConfigurableResource):
    """Where alerts go besides the log: a URL that receives a JSON POST (Slack-style incoming
    webhook, Teams, PagerDuty Events, ...). Empty: log only. The URL is treated as a secret: it
    is never logged."""

    url: str = ""
    timeout_seconds: float = 10.0

    def send(self, context, payload: dict) -> None:
        context.log.error(f"ALERT {payload['kind']}: {payload['message']}")
        if not self.url:
            return
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                context.log.info(f"alert delivered to the webhook (HTTP {response.status})")
        except Exception as e:  # the alert must not crash the sensor; say why, without the URL
            reason = getattr(e, "reason", None) or getattr(e, "code", None) or type(e).__name__
            context.log.warning(f"alert could not be delivered to the webhook: {reason}")


AZURE_ENV = {
    "account": "AZURE_STORAGE_ACCOUNT",
    "sas": "AZURE_STORAGE_SAS_TOKEN",
    "key": "AZURE_STORAGE_KEY",
    "client_id": "AZURE_CLIENT_ID",
    "client_secret": "AZURE_CLIENT_SECRET",
    "tenant_id": "AZURE_TENANT_ID",
    "endpoint": "AZURE_STORAGE_BLOB_ENDPOINT",
}


def credential_from_env(*, resolve: bool = False) -> Credential:
    """The Azure credential of the environment: the first of SAS token, account key, service
    principal, else DefaultAzureCredential; `EnvVar`s unless `resolve`."""
    env = os.environ

    def var(name: str):
        return env[name] if resolve else dg.EnvVar(name)

    if env.get(AZURE_ENV["sas"]):
        return ADLS2SASToken(token=var(AZURE_ENV["sas"]))
    if env.get(AZURE_ENV["key"]):
        return ADLS2Key(key=var(AZURE_ENV["key"]))
    if env.get(AZURE_ENV["client_secret"]):
        return ServicePrincipal(
            client_id=var(AZURE_ENV["client_id"]),
            client_secret=var(AZURE_ENV["client_secret"]),
            tenant_id=var(AZURE_ENV["tenant_id"]),
        )
    return ADLS2DefaultAzureCredential(kwargs={})


def lake_resource_from_env(lake_root: str | None = None, *, resolve: bool = False) -> LakeResource:
    """The embedded default (a local folder) unless AZURE_STORAGE_ACCOUNT is set; then the
    credential from the first of: SAS token, account key, service principal, else
    DefaultAzureCredential. Secrets stay `EnvVar`s (never in the UI or the run config), unless
    `resolve` (for use outside Dagster, e.g. the command line)."""
    env = os.environ

    def var(name: str):
        return env[name] if resolve else dg.EnvVar(name)

    if lake_root or not env.get(AZURE_ENV["account"]):
        return LakeResource(root=lake_root or env.get(LAKE_ROOT_ENV, DEFAULT_LAKE_ROOT))
    containers = {
        f"{layer}_container": env.get(f"AZURE_{layer.upper()}_CONTAINER", layer)
        for layer in ("raw", "bronze", "silver", "gold")
    }
    return LakeResource(
        storage_account=var(AZURE_ENV["account"]),
        credential=credential_from_env(resolve=resolve),
        blob_endpoint=env.get(AZURE_ENV["endpoint"], ""),
        **containers,
    )


def build_resources(
    lake_root: str | None = None, engine: EngineResource | None = None
) -> dict[str, Any]:
    """The resources of the code location; the lake from the argument, else the environment;
    the engine given (default: DuckDB, in this process)."""
    lake = lake_resource_from_env(lake_root)
    return {
        "lake": lake,
        "engine": engine or EngineResource(),
        "io_manager": DeltaIOManager(lake=lake),
        "reporting_date": ReportingDate.configure_at_launch(),
        # An EnvVar keeps the webhook URL (a secret) out of the UI's resource config.
        "alert_webhook": AlertWebhook(url=dg.EnvVar(ALERT_WEBHOOK_ENV))
        if os.environ.get(ALERT_WEBHOOK_ENV)
        else AlertWebhook(),
    }
