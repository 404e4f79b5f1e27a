"""The lake on ADLS Gen2, for real against Azurite (installed from npm by tests/azurite.py).

Each test has a storage account of its own on the session's Azurite (conftest's `azurite`); the
tests that stop the server have one of their own (`private_azurite`)."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import pytest
from dagster_azure.adls2 import ADLS2Key
from deltalake import DeltaTable

from petinsure_assets import azure, storage
from petinsure_assets.azure import azure_lake, verify
from petinsure_assets.catalog import CATALOG
from petinsure_assets.cli import run_refresh
from petinsure_assets.snapshot_client import AzureBlobStore, SnapshotClient
from petinsure_assets.storage import LakeConfigError
from tests.azurite import AzuriteAccount
from tests.conftest import LakeFixture
from tests.test_pipeline import AS_OF

GOLD = CATALOG.pipeline_tables["gold"]


@pytest.fixture(scope="session")
def reference(served_lake: LakeFixture) -> LakeFixture:
    """The same raw files refreshed on a local lake (the session's small book, `write_base` with
    GOOD_CLAIMS and an uninsured pet): what Azure must reproduce."""
    return served_lake


def use_azurite(monkeypatch, azurite: AzuriteAccount, **credential) -> None:
    monkeypatch.delenv("PETINSURE_LAKE_ROOT", raising=False)
    for name in ("AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", azurite.name)
    monkeypatch.setenv("AZURE_STORAGE_BLOB_ENDPOINT", azurite.endpoint)
    for name, value in (credential or {"AZURE_STORAGE_KEY": azurite.key}).items():
        monkeypatch.setenv(name, value)


def quick_retries(monkeypatch) -> None:
    """For the tests that make storage fail on purpose: the same retries (the storage layer's 4
    attempts, the SDK's one retry), without waiting seconds between them."""
    monkeypatch.setattr(storage, "RETRY_BASE_SECONDS", 0.01)
    monkeypatch.setattr(azure, "SDK_RETRY_BACKOFF_SECONDS", 0.01)


def upload_raw(azurite: AzuriteAccount, reference: LakeFixture) -> None:
    raw = reference.root / "raw"
    container = azurite.service().get_container_client("raw")
    for path in sorted(raw.rglob("*")):
        if path.is_file():
            container.upload_blob(
                path.relative_to(raw).as_posix(), path.read_bytes(), overwrite=True
            )


def storage_options(azurite: AzuriteAccount) -> dict:
    return {
        "account_name": azurite.name,
        "account_key": azurite.key,
        "endpoint": azurite.endpoint,
        "allow_http": "true",
    }


def read_azure(azurite: AzuriteAccount, container: str, table: str) -> list[dict]:
    """Independently of the product: deltalake + DuckDB straight on the Azurite blobs."""
    dataset = DeltaTable(
        f"az://{container}/{table}", storage_options=storage_options(azurite)
    ).to_pyarrow_dataset()
    con = duckdb.connect()
    try:
        con.register("t", dataset)
        return con.sql("SELECT * FROM t ORDER BY ALL").to_arrow_table().to_pylist()
    finally:
        con.close()


def read_only_sas(azurite: AzuriteAccount, container: str = "gold") -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        azurite.name,
        container,
        account_key=azurite.key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


def test_whole_graph_on_azurite_matches_the_local_lake(azurite, reference, monkeypatch):
    use_azurite(monkeypatch, azurite)
    upload_raw(azurite, reference)
    summary = run_refresh(None, as_of=AS_OF, log_level="WARNING")
    assert summary.success, summary.render()
    assert summary.rows == {
        k: v
        for k, v in run_refresh(str(reference.root), as_of=AS_OF, log_level="WARNING").rows.items()
    }

    for table in GOLD:
        assert read_azure(azurite, "gold", table) == reference.rows("gold", table), table
    assert len(read_azure(azurite, "bronze", "claims_raw")) == 4
    gold = azurite.service().get_container_client("gold")
    names = {b.name for b in gold.list_blobs()}
    assert {f"exports/{t}/part-0.parquet" for t in GOLD} <= names
    assert "snapshots/latest.json" in names

    # The API side: a read-only container SAS reads the snapshot, and cannot write.
    sas = read_only_sas(azurite)
    client = SnapshotClient(AzureBlobStore(azurite.name, sas, endpoint=azurite.endpoint))
    snap = client.snapshot()
    assert snap.source == "live"
    assert snap.documents["summary"]["total_claims"] == 3
    assert snap.tables["customer_360_view"].num_rows == 2
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import ContainerClient

    readonly = ContainerClient(azurite.endpoint, "gold", credential=sas)
    with pytest.raises(HttpResponseError) as refused:
        readonly.upload_blob("snapshots/latest.json", b"{}", overwrite=True)
    assert refused.value.status_code == 403


def test_wrong_key_and_missing_container_fail_fast_and_clearly(azurite, monkeypatch):
    wrong = base64.b64encode(b"not-the-key-of-this-account-at-all-0123456789").decode()
    lake = azure_lake(azurite.name, ADLS2Key(key=wrong), endpoint=azurite.endpoint)
    waits: list[float] = []
    with monkeypatch.context() as m:
        # Fast: no retry, so nothing (the SDK's retry policy, the storage layer's backoff) waits.
        m.setattr(time, "sleep", waits.append)
        with pytest.raises(LakeConfigError) as bad_key:
            verify(lake)
    assert waits == []
    assert f"storage account '{azurite.name}' refused the credential" in str(bad_key.value)
    assert wrong not in str(bad_key.value)

    lake = azure_lake(
        azurite.name,
        ADLS2Key(key=azurite.key),
        endpoint=azurite.endpoint,
        containers={"gold": "gold-missing"},
    )
    with pytest.raises(LakeConfigError) as missing:
        verify(lake)
    assert "container 'gold-missing' (the gold layer) does not exist" in str(missing.value)

    # The same through a run: it stops at resource setup, before any step, with the message.
    use_azurite(monkeypatch, azurite, AZURE_STORAGE_KEY=wrong)
    summary = run_refresh(None, as_of=AS_OF, log_level="WARNING")
    assert not summary.success
    assert summary.rows == {}


def test_secrets_never_reach_the_event_log_or_the_logs(
    private_azurite, reference, monkeypatch, capfd
):
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    azurite = private_azurite  # stopped below
    quick_retries(monkeypatch)
    upload_raw(azurite, reference)
    key = azurite.key
    sas = generate_account_sas(
        azurite.name,
        key,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    signature = [p for p in sas.split("&") if p.startswith("sig=")][0][4:]
    secrets = {"key": key, "sas": sas, "sas signature": signature}
    records = []
    with dg.instance_for_test() as instance:
        for credential in ({"AZURE_STORAGE_KEY": key}, {"AZURE_STORAGE_SAS_TOKEN": sas}):
            use_azurite(monkeypatch, azurite, **credential)
            summary = run_refresh(None, as_of=AS_OF, instance=instance, log_level="DEBUG")
            assert summary.success, summary.render()
        # and a failing run, whose errors pass through the storage layer
        use_azurite(monkeypatch, azurite, AZURE_STORAGE_SAS_TOKEN=sas)
        azurite.server.stop()
        failed = run_refresh(None, as_of=AS_OF, instance=instance, log_level="DEBUG")
        assert not failed.success
        for run in instance.get_runs():
            for record in instance.all_logs(run.run_id):
                records.append(dg.serialize_value(record))
            records.append(json.dumps(run.run_config))
            records.append(dg.serialize_value(run.tags))
    captured = capfd.readouterr()
    haystack = "\n".join(records) + captured.out + captured.err
    assert len(records) > 100
    for name, secret in secrets.items():
        assert secret not in haystack, f"the {name} leaked"


def test_azurite_stopped_mid_run_fails_cleanly_and_a_rerun_converges(
    private_azurite, reference, monkeypatch
):
    from petinsure_assets.lake import Lake

    azurite = private_azurite
    quick_retries(monkeypatch)
    use_azurite(monkeypatch, azurite)
    upload_raw(azurite, reference)
    # Azurite stops the moment silver's fact_claims is committed: silver is being written, gold
    # is not: the middle of the run.
    write = Lake.write

    def write_then_stop(self, uri, *args, **kwargs):
        version = write(self, uri, *args, **kwargs)
        if uri == "az://silver/fact_claims":
            azurite.server.stop()
        return version

    with monkeypatch.context() as m:
        m.setattr(Lake, "write", write_then_stop)
        summary = run_refresh(None, as_of=AS_OF, log_level="WARNING")
    assert azurite.server.process is None  # it was stopped mid-run
    assert not summary.success
    assert any("failed after" in f or "StorageError" in f for f in summary.failures), (
        summary.failures
    )

    azurite.server.start()  # on the same data, on the port it binds now
    use_azurite(monkeypatch, azurite)
    # Nothing half-committed: every table that exists opens and reads whole.
    for container, tables in CATALOG.pipeline_tables.items():
        for table in tables:
            uri = f"az://{container}/{table}"
            if DeltaTable.is_deltatable(uri, storage_options=storage_options(azurite)):
                read_azure(azurite, container, table)
    rerun = run_refresh(None, as_of=AS_OF, log_level="WARNING")
    assert rerun.success, rerun.render()
    for table in GOLD:
        assert read_azure(azurite, "gold", table) == reference.rows("gold", table), table
    assert len(read_azure(azurite, "bronze", "claims_raw")) == 4  # nothing ingested twice
