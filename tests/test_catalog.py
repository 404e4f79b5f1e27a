"""The table catalog: one spec per table beside its SQL, and everything derived from it."""

from __future__ import annotations

import ast
import io
import os
import shutil
import subprocess
import sys
import tarfile
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from deltalake import DeltaTable

from petinsure_assets.catalog import CATALOG, SQL_DIR, CatalogError, load_catalog
from petinsure_assets.checks import CHECK_HISTORY_TABLE
from petinsure_assets.definitions import build_definitions
from tests.conftest import DEMO_AS_OF, LakeFixture
from tests.test_checks import GOOD_CLAIMS
from tests.test_definitions import expected_keys
from tests.test_pipeline import AS_OF, write_base

REPO = Path(__file__).resolve().parents[1]
# The last commit before the catalog: its gold is the reference the restructured code must match.
BEFORE_THE_CATALOG = "f8c292fccae5ea9c1baaca8aff937e262ab235cc"


def test_the_catalog_holds_the_tables_of_the_design():
    """DESIGN.md section 1 (the one list of the product's tables written out in the tests), in
    the order they are built, with what is read from their SQL."""
    assert [s.name for s in CATALOG.silver] == [
        "dim_customers",
        "dim_providers",
        "dim_pets",
        "dim_policies",
        "fact_claims",
    ]
    assert sorted(s.name for s in CATALOG.gold) == [
        "claims_analytics",
        "cross_sell_recommendations",
        "customer_360_view",
        "monthly_kpis",
        "provider_performance",
        "risk_scoring",
    ]
    gold = [s.name for s in CATALOG.gold]
    assert gold.index("risk_scoring") < gold.index("customer_360_view")
    c360 = CATALOG.table("customer_360_view")
    assert c360.inputs == (
        "dim_customers",
        "dim_pets",
        "dim_policies",
        "fact_claims",
        "risk_scoring",
    )
    assert c360.views == ("claim_facts", "pet_facts", "policy_facts", "customer_metrics")
    assert CATALOG.table("provider_performance").inputs == ("dim_providers", "fact_claims")
    assert CATALOG.table("monthly_kpis").views == ("claim_facts", "policy_facts")
    assert CATALOG.table("fact_claims").parents == {
        "customer_id": "dim_customers",
        "policy_id": "dim_policies",
        "pet_id": "dim_pets",
        "provider_id": "dim_providers",
    }
    assert CATALOG.pii_columns == {"email", "phone", "address", "date_of_birth"}


def _imports(path: Path, package: str) -> set[str]:
    """The modules of `package` a module imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(package + ".")}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == package:
                found |= {f"{package}.{a.name}" for a in node.names}
            elif node.module.startswith(package + "."):
                found.add(node.module)
    return found


def test_the_package_has_no_import_cycle():
    package = REPO / "petinsure_assets"
    modules = {f"petinsure_assets.{p.stem}": p for p in package.glob("*.py")}
    graph = {
        name: _imports(path, "petinsure_assets") & set(modules) for name, path in modules.items()
    }
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                cycles.append(stack[stack.index(imported) :] + [imported])
            elif imported not in state:
                visit(imported, [*stack, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
    # The graph is real: the layers import the catalog, which imports neither.
    assert "petinsure_assets.catalog" in graph["petinsure_assets.silver"]
    assert not graph["petinsure_assets.catalog"] & {
        "petinsure_assets.silver",
        "petinsure_assets.gold",
        "petinsure_assets.queries",
    }


# ---- a changed catalog changes the definitions ---------------------------------------------------

CLAIMS_BY_TYPE_SQL = """\
-- gold.claims_by_type: claims and amounts per claim type.
SELECT coalesce(claim_type, 'Unknown') AS claim_type,
       count(*) AS total_claims,
       sum(claim_amount) AS total_claimed,
       max(provider_id) AS any_provider
FROM fact_claims
GROUP BY 1
"""
CLAIMS_BY_TYPE_SPEC = """\
description = "Claims and amounts per claim type, a table added with one SQL file and one spec."
key = ["claim_type"]
pii = ["any_provider"]
partition_by = ["claim_type"]
freshness = { warn_hours = 2, fail_hours = 3 }

[ranges]
total_claims = { min = 1 }

[totals]
claims_count = "sum(total_claims)"
claimed = "sum(total_claimed)"
"""


@pytest.fixture
def changed_catalog(tmp_path: Path) -> Path:
    """A copy of sql/ with a new gold table (one SQL file, one spec) and a silver spec changed:
    dim_providers fresh for 30 h / 40 h, with one more check."""
    root = tmp_path / "sql"
    shutil.copytree(SQL_DIR, root)
    (root / "gold" / "claims_by_type.sql").write_text(CLAIMS_BY_TYPE_SQL)
    (root / "gold" / "claims_by_type.toml").write_text(CLAIMS_BY_TYPE_SPEC)
    providers = root / "silver" / "dim_providers.toml"
    text = providers.read_text()
    assert "freshness = { warn_hours = 25, fail_hours = 27 }" in text
    providers.write_text(
        text.replace(
            "freshness = { warn_hours = 25, fail_hours = 27 }",
            "freshness = { warn_hours = 30, fail_hours = 40 }",
        )
        + '\n[[checks]]\nname = "provider_name_present"\ndescription = "every provider has a name"\n'
        'sql = "SELECT provider_id FROM t WHERE provider_name IS NULL"\n'
    )
    return root


def _windows(node) -> tuple[float, float]:
    policy = node.freshness_policy
    return (
        policy.warn_window.to_timedelta().total_seconds() / 3600,
        policy.fail_window.to_timedelta().total_seconds() / 3600,
    )


def test_assets_checks_freshness_and_exports_follow_the_catalog(
    changed_catalog: Path, lake: LakeFixture
):
    changed = load_catalog(changed_catalog)
    defs = build_definitions(str(lake.root), catalog=changed)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == expected_keys() | {"gold/claims_by_type", "gold/exports/claims_by_type"}

    table = graph.get(dg.AssetKey(["gold", "claims_by_type"]))
    assert table.parent_keys == {dg.AssetKey(["silver", "fact_claims"])}  # read from its SQL
    assert table.description.startswith("Claims and amounts per claim type")
    assert _windows(table) == (2, 3)
    assert [c.name for c in table.metadata["dagster/column_schema"].columns] == [
        "claim_type",
        "total_claims",
        "total_claimed",
        "any_provider",
    ]
    checks = {k.name for k in graph.get_check_keys_for_assets({table.key})}
    assert checks == {
        "claim_type_not_null",
        "claim_type_unique",
        "total_claims_range",
        "claims_count_equals_silver",
        "claimed_equals_silver",
    }
    assert graph.get(dg.AssetKey(["gold", "exports", "claims_by_type"])).parent_keys == {table.key}
    assert (
        dg.AssetKey(["gold", "exports", "claims_by_type"])
        in graph.get(dg.AssetKey(["gold", "api_snapshot"])).parent_keys
    )

    providers = graph.get(dg.AssetKey(["silver", "dim_providers"]))
    assert _windows(providers) == (30, 40)
    assert _windows(graph.get(dg.AssetKey(["silver", "quarantine", "providers"]))) == (30, 40)
    assert "provider_name_present" in {
        k.name for k in graph.get_check_keys_for_assets({providers.key})
    }
    # The catalog of the package is not touched.
    assert _windows(build_definitions(str(lake.root)).resolve_asset_graph().get(providers.key)) == (
        25,
        27,
    )

    # And the new table is built, checked and exported without its personal-data column.
    write_base(lake, GOOD_CLAIMS)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("refresh_all").execute_in_process(
            instance=instance,
            run_config={"resources": {"reporting_date": {"config": {"as_of": AS_OF}}}},
        )
    assert result.success
    assert lake.rows("gold", "claims_by_type") == [
        {
            "claim_type": "Illness",
            "total_claims": 3,
            "total_claimed": Decimal("390.00"),  # 200 + 100 + 90
            "any_provider": "PRV-1",
        }
    ]
    layout = DeltaTable(lake.lake.table_uri("gold", "claims_by_type")).metadata()
    assert layout.partition_columns == ["claim_type"]
    export = lake.root / lake.lake.export_path("claims_by_type")
    assert duckdb.sql(f"SELECT * FROM read_parquet('{export}')").fetchall() == [
        ("Illness", 3, Decimal("390.00"))
    ]
    history = [
        (r["check_name"], r["passed"])
        for r in lake.rows("gold", CHECK_HISTORY_TABLE)
        if r["asset_key"] == "gold/claims_by_type"
    ]
    assert sorted(history) == sorted((name, True) for name in checks)


@pytest.mark.parametrize(
    "file,old,new,message",
    [
        (
            "silver/dim_pets.toml",
            "[parents]",
            "[unused]",
            "dim_pets.toml: unknown fields ['unused']",
        ),
        (
            "silver/dim_pets.toml",
            'customer_id = "dim_customers"',
            "",
            "dim_pets.toml: parents [] disagree with dim_pets.sql, which reads ['dim_customers']",
        ),
        ("gold/orphan.sql", None, "SELECT 1 AS x\n", "SQL files without a spec beside them"),
        (
            "gold/monthly_kpis.sql",
            "FROM claim_facts",
            "FROM claimz",
            "monthly_kpis.sql: reads 'claimz': not a silver or gold table nor a view",
        ),
        (
            "gold/risk_scoring.toml",
            '"risk_categories"',
            '"riskz"',
            "risk_scoring.toml: accepted.risk_category: values must name one of",
        ),
        (
            "gold/risk_scoring.toml",
            "warn_hours = 25",
            "warn_hours = 99",
            "risk_scoring.toml: freshness hours must be positive, warn_hours <= fail_hours",
        ),
    ],
    ids=[
        "unknown-field",
        "parents-disagree",
        "sql-without-spec",
        "unknown-table",
        "vocabulary",
        "freshness",
    ],
)
def test_a_spec_that_cannot_be_used_is_refused_with_its_file_named(
    tmp_path, file, old, new, message
):
    root = tmp_path / "sql"
    shutil.copytree(SQL_DIR, root)
    path = root / file
    if old is None:  # a new file
        path.write_text(new)
    else:
        text = path.read_text()
        assert old in text, (file, old)
        path.write_text(text.replace(old, new, 1))
    with pytest.raises(CatalogError) as raised:
        load_catalog(root)
    assert message in str(raised.value)


# ---- one step per table ---------------------------------------------------------------------------


def test_rematerializing_one_silver_table_equals_a_full_run(lake: LakeFixture, tmp_path: Path):
    """dim_providers alone (its bronze table, then its step: the table and its quarantine rows)
    after a new providers file gives the table a full run gives on the same raw files."""
    write_base(lake, GOOD_CLAIMS)
    lake.refresh(as_of=AS_OF)
    lake.write_raw(
        "providers",
        "providers_2.csv",
        """
        provider_id,provider_name,provider_type,address,city,state,zip_code,phone,is_in_network,average_rating,specialties,updated_at
        PRV-2,Hill Vets,Clinic,9 Hill Rd,Austin,texas,73301,512 555 0199,true,4.5,Dental,2025-01-05T00:00:00
        ,No Key Vets,Clinic,1 Lost St,Austin,TX,73301,5125550100,false,3,,2025-01-05T00:00:00
        """,
    )
    defs = build_definitions(str(lake.root))
    selection = [
        dg.AssetKey(["bronze", "providers_raw"]),
        dg.AssetKey(["silver", "dim_providers"]),
        dg.AssetKey(["silver", "quarantine", "providers"]),
    ]
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("refresh_all").execute_in_process(
            instance=instance,
            asset_selection=selection,
            run_config={"resources": {"reporting_date": {"config": {"as_of": AS_OF}}}},
        )
    assert result.success
    steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert steps == {"bronze__providers_raw", "silver_dim_providers"}

    full = LakeFixture(tmp_path / "full")
    shutil.copytree(lake.root / "raw", full.root / "raw")
    full.refresh(as_of=AS_OF)
    # Compared without when and in which run bronze read each record.
    for table, where, run_columns in (
        ("dim_providers", "true", "_ingested_at, _batch_id"),
        ("quarantine", "entity = 'providers'", "ingested_at, batch_id, record"),
    ):
        sql = f"SELECT * EXCLUDE ({run_columns}) FROM t WHERE {where} ORDER BY ALL"
        rows = [
            f.lake.read(f.lake.table_uri("silver", table), sql).to_pylist() for f in (lake, full)
        ]
        assert rows[0] == rows[1], table
    assert [r["provider_id"] for r in lake.rows("silver", "dim_providers", "provider_id")] == [
        "PRV-1",
        "PRV-2",
    ]
    assert [
        q["reason"] for q in lake.rows("silver", "quarantine") if q["entity"] == "providers"
    ] == ["missing_key"]


# ---- the restructuring changed no number ----------------------------------------------------------


def test_gold_equals_the_gold_of_the_commit_before_the_catalog(demo_lake: LakeFixture, tmp_path):
    """The demo lake refreshed by the code of BEFORE_THE_CATALOG (from git) and by this code:
    every gold table the same, row for row."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BEFORE_THE_CATALOG, "petinsure_assets"],
        capture_output=True,
        check=False,
    )
    assert archive.returncode == 0, (
        f"git cannot read commit {BEFORE_THE_CATALOG} (a shallow clone?): "
        + archive.stderr.decode()[-500:]
    )
    before = tmp_path / "before"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(before, filter="data")
    old = LakeFixture(tmp_path / "lake")
    shutil.copytree(demo_lake.root / "raw", old.root / "raw")
    done = subprocess.run(
        [sys.executable, "-m", "petinsure_assets", "refresh", "--lake", str(old.root)]
        + ["--as-of", DEMO_AS_OF],
        cwd=before,
        env={**os.environ, "PYTHONPATH": str(before), "DAGSTER_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for spec in CATALOG.gold:
        ours = demo_lake.rows("gold", spec.name)
        assert ours == old.rows("gold", spec.name), spec.name
        assert len(ours) > 0 or spec.name == "cross_sell_recommendations", spec.name
