"""The pandas benchmark baseline computes exactly the product's silver and gold.

Runs bench/baselines/pandas_notebooks.py on the demo lake's bronze (2,000 dirty claims, seed 42)
and compares every gold row, column by column, with what the product wrote to the lake.
"""

from __future__ import annotations

import datetime
import math
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from bench.baselines import pandas_notebooks
from petinsure_assets.catalog import CATALOG
from tests.conftest import DEMO_AS_OF
from tests.test_hostile_records import hostile  # noqa: F401 (fixture)
from tests.test_rules_by_hand import AS_OF, built_v2  # noqa: F401 (fixture)

GOLD_KEYS = {t.name: t.key for t in CATALOG.gold}
# Doubles the product rounds: compared after rounding to their stated decimals.
ROUNDED = {
    "loss_ratio": 4,
    "approval_rate": 4,
    "reimbursement_rate": 4,
    "avg_processing_days": 2,
    "claims_growth_pct": 2,
}


def normalise(column: str, value):
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Decimal):  # money: cents
        return int((value * 100).to_integral_value())
    if isinstance(value, float) and column in ROUNDED:
        return round(value, ROUNDED[column])
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def normalised(rows: list[dict]) -> list[dict]:
    return [{k: normalise(k, v) for k, v in row.items()} for row in rows]


@pytest.fixture(scope="module")
def baseline(demo_lake, tmp_path_factory):
    out = tmp_path_factory.mktemp("pandas_baseline")
    as_of = datetime.date.fromisoformat(DEMO_AS_OF)
    counts = pandas_notebooks.run(str(demo_lake.root), as_of, str(out))
    return counts, out


def test_gold_tables_are_the_six_of_the_product():
    assert set(pandas_notebooks.GOLD_TABLES) == set(GOLD_KEYS)


@pytest.mark.parametrize("table", sorted(GOLD_KEYS))
def test_gold_rows_equal_the_product(demo_lake, baseline, table):
    counts, out = baseline
    assert_gold_equal(demo_lake, counts, out, table)


def assert_gold_equal(product, counts: dict, out, table: str, may_be_empty: bool = False) -> None:
    """The baseline's Parquet file of `table` in `out` has the product's rows, value by value."""
    key = GOLD_KEYS[table]
    expected = normalised(product.rows("gold", table, order_by=", ".join(key)))
    got_table = pq.read_table(out / f"{table}.parquet")
    got = normalised(sorted(got_table.to_pylist(), key=lambda r: tuple(r[k] for k in key)))

    assert counts[table] == len(got) == len(expected), table
    if not expected:
        assert may_be_empty, f"the product's {table} is empty: the comparison would prove nothing"
        return
    assert got_table.column_names == list(expected[0]), "same columns, same order"
    assert [tuple(r[k] for k in key) for r in got] == [tuple(r[k] for k in key) for r in expected]
    mismatches = [
        (tuple(e[k] for k in key), col, g[col], e[col])
        for g, e in zip(got, expected)
        for col in e
        if g[col] != e[col]
    ]
    assert not mismatches, (
        f"{table}: {len(mismatches)} values differ, first ones: {mismatches[:10]}"
    )


def product_count(demo_lake, layer: str, table: str) -> int:
    lake = demo_lake.lake
    return lake.read(lake.table_uri(layer, table), "SELECT count(*) AS n FROM t").to_pylist()[0][
        "n"
    ]


def test_silver_counts_equal_the_product(demo_lake, baseline):
    counts, _ = baseline
    for table in (*pandas_notebooks.SILVER_TABLES, "quarantine"):
        assert counts[table] == product_count(demo_lake, "silver", table), table


def test_quarantine_by_entity_and_reason_equals_the_product(demo_lake):
    silver = pandas_notebooks.build_silver(str(demo_lake.root))
    got = silver["quarantine"].groupby(["entity", "reason"]).size().to_dict()
    product = demo_lake.lake.read(
        demo_lake.lake.table_uri("silver", "quarantine"),
        "SELECT entity, reason, count(*) AS n FROM t GROUP BY ALL",
    ).to_pylist()
    expected = {(r["entity"], r["reason"]): r["n"] for r in product}
    assert len(expected) >= 6, "the demo lake should exercise most quarantine reasons"
    assert got == expected
    # Same records quarantined, not only the same counts.
    product_keys = demo_lake.lake.read(
        demo_lake.lake.table_uri("silver", "quarantine"),
        "SELECT entity, reason, source_file, source_line FROM t ORDER BY ALL",
    ).to_pylist()
    got_keys = (
        silver["quarantine"][["entity", "reason", "source_file", "source_line"]]
        .sort_values(["entity", "reason", "source_file", "source_line"])
        .to_dict("records")
    )
    assert [tuple(r.values()) for r in got_keys] == [tuple(r.values()) for r in product_keys]


def quarantine_rows(silver_quarantine) -> list[tuple]:
    cols = ["entity", "record_key", "reason", "source_file", "source_line"]
    return sorted(tuple(r) for r in silver_quarantine[cols].itertuples(index=False))


@pytest.mark.parametrize("fixture", ["built_v2", "hostile"])
def test_hostile_records_give_the_products_quarantine_and_gold(request, fixture, tmp_path):
    """Rules v2 (bad_value, bounds, strict dates, masking, empty book, names): the two small
    hostile lakes of test_rules_by_hand and test_hostile_records, silver and gold."""
    product = request.getfixturevalue(fixture)
    product = product[0] if isinstance(product, tuple) else product
    as_of = datetime.date.fromisoformat(AS_OF)
    counts = pandas_notebooks.run(str(product.root), as_of, str(tmp_path))
    expected = sorted(
        tuple(r.values())
        for r in product.lake.read(
            product.lake.table_uri("silver", "quarantine"),
            "SELECT entity, record_key, reason, source_file, source_line FROM t",
        ).to_pylist()
    )
    assert (
        quarantine_rows(pandas_notebooks.build_silver(str(product.root))["quarantine"]) == expected
    )
    for table in pandas_notebooks.SILVER_TABLES:
        assert counts[table] == product_count(product, "silver", table), table
    for table in sorted(GOLD_KEYS):
        assert_gold_equal(product, counts, tmp_path, table, may_be_empty=True)
