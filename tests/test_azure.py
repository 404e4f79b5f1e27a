"""The lake on ADLS Gen2, for real against Azurite (installed from npm by tests/azurite.py)."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster_azure.adls2 import ADLS2Key
from deltalake import DeltaTable

from petinsure_assets.azure import azure_lake, verify
from petinsure_assets.cli import run_refresh
from petinsure_assets.snapshot_client import AzureBlobStore, SnapshotClient
from petinsure_assets.storage import LakeConfigError
from tests.azurite import ACCOUNT, KEY, Azurite
from tests.conftest import LakeFixture
from tests.test_checks import GOOD_CLAIMS
from tests.test_pipeline import AS_OF, write_base
from tests.test_serving import add_uninsured_pet

GOLD = (
    "customer_360_view",
    "risk_scoring",
    "claims_analytics",
    "monthly_kpis",
    "provider_performance",
    "cross_sell_recommendations",
)


@pytest.fixture
def azurite(tmp_path: Path):
    server = Azurite(tmp_path / "azurite").start()
    try:
        server.create_containers()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> LakeFixture:
    """The same raw files refreshed on a local lake: what Azure must reproduce."""
    lake = LakeFixture(tmp_path_factory.mktemp("reference") / "lake")
    write_base(lake, GOOD_CLAIMS)
    add_uninsured_pet(lake)
    lake.refresh(as_of=AS_OF)
    return lake


def use_azurite(monkeypatch, azurite: Azurite, **credential) -> None:
    monkeypatch.delenv("PETINSURE_LAKE_ROOT", raising=False)
    for name in ("AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_BLOB_ENDPOINT", azurite.endpoint)
    for name, value in (credential or {"AZURE_STORAGE_KEY": KEY}).items():
        monkeypatch.setenv(name, value)


def upload_raw(azurite: Azurite, reference: LakeFixture) -> None:
    raw = reference.root / "raw"
    container = azurite.service().get_container_client("raw")
    for path in sorted(raw.rglob("*")):
        if path.is_file():
            container.upload_blob(
                path.relative_to(raw).as_posix(), path.read_bytes(), overwrite=True
            )


def storage_options(azurite: Azurite) -> dict:
    return {
        "account_name": ACCOUNT,
        "account_key": KEY,
        "endpoint": azurite.endpoint,
        "allow_http": "true",
    }


def read_azure(azurite: Azurite, container: str, table: str) -> list[dict]:
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


def read_only_sas(container: str = "gold") -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        ACCOUNT,
        container,
        account_key=KEY,
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
    sas = read_only_sas()
    client = SnapshotClient(AzureBlobStore(ACCOUNT, sas, endpoint=azurite.endpoint))
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
    lake = azure_lake(ACCOUNT, ADLS2Key(key=wrong), endpoint=azurite.endpoint)
    start = time.perf_counter()
    with pytest.raises(LakeConfigError) as bad_key:
        verify(lake)
    assert time.perf_counter() - start < 5
    assert f"storage account '{ACCOUNT}' refused the credential" in str(bad_key.value)
    assert wrong not in str(bad_key.value)

    lake = azure_lake(
        ACCOUNT, ADLS2Key(key=KEY), endpoint=azurite.endpoint, containers={"gold": "gold-missing"}
    )
    with pytest.raises(LakeConfigError) as missing:
        verify(lake)
    assert "container 'gold-missing' (the gold layer) does not exist" in str(missing.value)

    # The same through a run: it stops at resource setup, before any step, with the message.
    use_azurite(monkeypatch, azurite, AZURE_STORAGE_KEY=wrong)
    summary = run_refresh(None, as_of=AS_OF, log_level="WARNING")
    assert not summary.success
    assert summary.rows == {}


def test_secrets_never_reach_the_event_log_or_the_logs(azurite, reference, monkeypatch, capfd):
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    upload_raw(azurite, reference)
    sas = generate_account_sas(
        ACCOUNT,
        KEY,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    signature = [p for p in sas.split("&") if p.startswith("sig=")][0][4:]
    secrets = {"key": KEY, "sas": sas, "sas signature": signature}
    records = []
    with dg.instance_for_test() as instance:
        for credential in ({"AZURE_STORAGE_KEY": KEY}, {"AZURE_STORAGE_SAS_TOKEN": sas}):
            use_azurite(monkeypatch, azurite, **credential)
            summary = run_refresh(None, as_of=AS_OF, instance=instance, log_level="DEBUG")
            assert summary.success, summary.render()
        # and a failing run, whose errors pass through the storage layer
        use_azurite(monkeypatch, azurite, AZURE_STORAGE_SAS_TOKEN=sas)
        azurite.stop()
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
    azurite, reference, monkeypatch, tmp_path
):
    use_azurite(monkeypatch, azurite)
    upload_raw(azurite, reference)
    silver = azurite.service().get_container_client("silver")
    outcome = {}
    thread = threading.Thread(
        target=lambda: outcome.setdefault(
            "summary", run_refresh(None, as_of=AS_OF, log_level="WARNING")
        )
    )
    thread.start()
    deadline = time.time() + 120
    while time.time() < deadline and not any(
        b.name.startswith("fact_claims/_delta_log/") for b in silver.list_blobs()
    ):
        time.sleep(0.05)
    azurite.stop()  # silver is being written, gold is not: the middle of the run
    thread.join(timeout=600)
    assert not outcome["summary"].success
    assert any("failed after" in f or "StorageError" in f for f in outcome["summary"].failures), (
        outcome["summary"].failures
    )

    azurite.start()
    # Nothing half-committed: every table that exists opens and reads whole.
    for container, tables in (
        ("bronze", [f"{e}_raw" for e in ("customers", "pets", "policies", "claims", "providers")]),
        (
            "silver",
            [
                "dim_customers",
                "dim_pets",
                "dim_policies",
                "dim_providers",
                "fact_claims",
                "quarantine",
            ],
        ),
        ("gold", list(GOLD)),
    ):
        for table in tables:
            uri = f"az://{container}/{table}"
            if DeltaTable.is_deltatable(uri, storage_options=storage_options(azurite)):
                read_azure(azurite, container, table)
    rerun = run_refresh(None, as_of=AS_OF, log_level="WARNING")
    assert rerun.success, rerun.render()
    for table in GOLD:
        assert read_azure(azurite, "gold", table) == reference.rows("gold", table), table
    assert len(read_azure(azurite, "bronze", "claims_raw")) == 4  # nothing ingested twice
