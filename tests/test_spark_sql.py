"""The product's SQL translated to Spark (petinsure_assets.spark_sql) gives the product's results.

The Spark baseline (bench/baselines/spark_local.py) runs on the shared 2,000-claim demo lake and
every gold table must equal the product's row for row, column for column; silver tables and the
quarantine too. The macros are also compared with DuckDB on dirty inputs chosen by hand where the
dialects differ (trim, date and timestamp parsing, numeric text, regexes, lookups, rounding)."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections import Counter

import pytest
import sqlglot

from petinsure_assets import spark_sql
from petinsure_assets.catalog import CATALOG
from tests.conftest import DEMO_AS_OF
from tests.test_hostile_records import hostile  # noqa: F401 (fixture)
from tests.test_rules_by_hand import AS_OF as HAND_AS_OF
from tests.test_rules_by_hand import built_v2  # noqa: F401 (fixture)

AS_OF = dt.date.fromisoformat(DEMO_AS_OF)


# ---- translation only (no Spark) -----------------------------------------------------------------


def test_every_file_translates_to_spark_sql_without_duckdb_leftovers():
    statements = spark_sql.spark_statements(AS_OF)
    names = [s.name for s in statements]
    silver = [spec.name for spec in CATALOG.silver]
    silver_and_staged = [n for n in names if n.endswith("_staged") or n in silver]
    assert len(silver_and_staged) == 2 * len(silver)
    assert names.index("quarantine") == len(silver_and_staged)
    gold = [s.name for s in statements if s.kind == spark_sql.GOLD]
    assert gold == [spec.name for spec in CATALOG.gold]
    assert names.index("risk_scoring") < names.index("customer_360_view")
    leftovers = re.compile(
        r"\b(getvariable|exclude|try_strptime|regexp_full_match|list_position|list_filter|"
        r"list_transform|unnest|range|" + "|".join(spark_sql.macros()) + r")\s*\("
        r"|\b(QUALIFY|INT128|HUGEINT)\b|//|\bMAP\s+STRUCT",
        re.IGNORECASE,
    )
    for statement in statements:
        sqlglot.parse_one(statement.sql, read="spark")  # well-formed for sqlglot's Spark grammar
        found = leftovers.search(statement.sql)
        assert found is None, f"{statement.name}: {found.group(0)!r} left in {statement.sql[:200]}"


def test_macros_expand_recursively_with_arguments_substituted():
    (sql,) = spark_sql.translate("SELECT age_years(dob, getvariable('as_of')) AS a FROM t", AS_OF)
    assert "CAST('2026-01-31' AS DATE)" in sql
    assert "YEAR(dob)" in sql and " DIV 12" in sql  # whole_months inside age_years, // -> DIV


# ---- on Spark ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark():
    from bench.baselines.spark_local import spark_session

    session = spark_session("petinsure-test-spark-sql")
    yield session
    session.stop()


# Dirty text where DuckDB and Spark differ unless translated with care.
DIRTY = [
    None,
    "",
    " ",
    "  x  ",
    "\tx\t",
    "\u00a0x\u3000",
    "abc",
    "12",
    "12.5",
    "-12.5",
    "12.345",
    "-0.005",
    "1e3",
    ".5",
    "12.",
    "+5",
    "0012",
    "1.5d",
    "0x1p3",
    "inf",
    "-Infinity",
    "NaN",
    "1,000",
    "$5",
    "2147483648",
    "99999999999999999.995",
    "2024-01-05",
    "2024-1-5",
    "24-01-05",
    "5-01-01",
    "02024-01-05",
    "2024-01-05x",
    "2023-02-29",
    "2024-02-29",
    "2024-13-01",
    "2024-01-05T10:20:30",
    "2024-01-05 10:20:30.123456",
    "2024-01-05T10:20:30Z",
    "2024-01-05 10:20:30+02",
    "2024-01-05 10:20",
    " 2024-01-05 ",
    "2024-01-05 10",
    "2024-01-05  10:20",
    "2024-1-5 1:2:3.4",
    "2024-01-05 10:20:30 UTC",
    "2024/01/05",
    "2024 01 05 10:20",
    "2024-01-05 25:00",
    "2024",
    "01/05/2024",
    "1/5/2024",
    "13/05/2024",
    "02/30/2024",
    "01/05/24",
    "31/31/2024",
    "2025-13-45",
    "not a date",
    "true",
    "T",
    "Yes",
    "n",
    "0",
    "FALSE",
    "maybe",
    "dog",
    "DOG",
    " Cat ",
    "fish",
    "a@b.com",
    "A.B@Example.COM",
    "bad@",
    "x@y.z",
    "a@b.com\n",
    "a b@c.com",
    "f.l+tag@sub.dom.org",
    "555-123-4567",
    "(555) 123-4567",
    "555.123.4567",
    "15551234567",
    "25551234567",
    "123",
    "+1 (555) 123 4567",
    "CA",
    "ca",
    "California",
    "new york",
    "XX",
    " tx ",
    "12345",
    "1234",
    "12345-6789",
    "123456789012345",
    "12345678901234a",
    # Strict dates and their bounds, amounts and their bounds, accepted values, contact data.
    "2025-12-31garbage",
    "2025-12-31T25:00:00",
    "2025-12-31T23:59:59.5Z",
    "2025-04-02T23:59:59+02:00",
    "2025-04-02T23:59:59.1234567",
    "2025-04-02T10:00:00-0530",
    "0001-01-01",
    "9999-12-31",
    "1899-12-31",
    "1900-01-01",
    "2027-01-10",
    "2027-01-11",
    "02/29/2024",
    "100000000000",
    "2026-01-11T23:30:00",
    "2026-01-11T23:30:01",
    "9999-12-31T00:00:00",
    "1899-12-31T23:59:59",
    "9999999999999999.99",
    "999999999.99",
    "999999999.995",
    "1000000000",
    "-1000000000.00",
    "Pending Payment",
    " uNDER rEVIEW ",
    "Call (555) 201-3344 or mail a.b@Vet-Clinic.co.uk",
    "+1 555.123.4567 x@y.io, 1-555-123-4567; 555 123 4567 and 12345678901",
]
TEXT_MACROS = [
    "clean_text(x)",
    "parse_date(x)",
    "parse_ts(x)",
    "parse_money(x)",
    "parse_double(x)",
    "parse_int(x)",
    "parse_bool(x)",
    "canonical(x, getvariable('accepted_species'))",
    "canonical(x, ['Male', 'Female'])",
    "clean_email(x)",
    "clean_phone(x)",
    "clean_state(x)",
    "clean_zip(x)",
    "parse_amount(x)",
    "canonical(x, getvariable('accepted_claim_statuses'))",
    "bounded_date(parse_date(x), CAST('2026-01-10 23:30:00' AS TIMESTAMP), INTERVAL 1 YEAR)",
    "bounded_ts(parse_ts(x), CAST('2026-01-10 23:30:00' AS TIMESTAMP))",
    "mask_contacts(x)",
    "full_name(clean_text(x), 'Lee')",
    "full_name(NULL, clean_text(x))",
]
NUMBERS = [  # (n, d): DECIMAL(18, 2) amounts and counts, signs, zero, NULL, halves
    ("10.00", "3.00"),
    ("-10.00", "3.00"),
    ("2.00", "-3.00"),
    ("1.00", "8.00"),
    ("0.05", "1.00"),
    ("0.00", "5.00"),
    ("5.00", "0.00"),
    (None, "1.00"),
    ("1.00", None),
    ("12345.67", "0.01"),
    ("0.005", "1.00"),
    ("1.00", "3.00"),
    ("2.50", "1.00"),
    ("-2.50", "1.00"),
]
NUMBER_MACROS = [
    "ratio(n, d)",
    "pct(n, d)",
    "money_div(n, d)",
    "div_round(n, d, 0)",
    "ratio(CAST(n * 100 AS BIGINT), CAST(d * 100 AS BIGINT))",
    "quality_score(i % 8, 7)",
    # A BIGINT numerator that overflows a BIGINT once scaled by 10^6 (Spark sums INT as BIGINT).
    "div_round(CAST(n * 100 AS BIGINT) * 1000000000, CAST(d * 100 AS BIGINT), 2)",
]
DATES = [  # (a, b) for the calendar macros
    ("2020-02-29", "2026-01-31"),
    ("2024-01-31", "2024-02-29"),
    ("2024-03-31", "2024-02-29"),
    ("2000-01-01", "2026-01-31"),
    ("2025-02-01", "2026-01-31"),
    ("2016-01-31", "2026-01-30"),
]
DATE_MACROS = [
    "whole_months(a, b)",
    "age_years(a, b)",
    "month_index(a)",
    "age_years(a, getvariable('as_of'))",
]


def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None).isoformat()
    if isinstance(value, (dt.date, decimal.Decimal)):
        return str(value)
    return value


_SQL_TYPES = {"x": "STRING", "n": "DECIMAL(18, 2)", "d": "DECIMAL(18, 2)", "a": "DATE", "b": "DATE"}
_PYTHON_TYPES = {
    "x": str,
    "n": decimal.Decimal,
    "d": decimal.Decimal,
    "a": dt.date.fromisoformat,
    "b": dt.date.fromisoformat,
}


def _compare_macros(spark, table: str, columns: dict[str, list], macros: list[str]):
    """Run `SELECT macro AS v FROM table` in DuckDB and, translated, in Spark; the mismatches."""
    import duckdb

    from petinsure_assets.queries import prepare_session

    names = list(columns)
    rows = [(i, *values) for i, values in enumerate(zip(*columns.values()))]
    # The same typed table on both sides.
    con = duckdb.connect()
    prepare_session(con, AS_OF)
    select = " UNION ALL ".join(
        "SELECT "
        + ", ".join(
            [f"{i} AS i"]
            + [
                f"CAST({'NULL' if v is None else sqlglot.exp.Literal.string(v).sql('duckdb')}"
                f" AS {_SQL_TYPES[c]}) AS {c}"
                for c, v in zip(names, values)
            ]
        )
        for i, *values in rows
    )
    con.execute(f"CREATE TABLE {table} AS {select}")
    typed = [
        (i, *(_PYTHON_TYPES[c](v) if v is not None else None for c, v in zip(names, values)))
        for i, *values in rows
    ]
    schema = ", ".join(["i BIGINT"] + [f"{c} {_SQL_TYPES[c]}" for c in names])
    spark.createDataFrame(typed, schema).createOrReplaceTempView(table)
    # One query per table, a column per macro: Spark's per-query overhead dominates here.
    query = f"SELECT i, {', '.join(f'{m} AS v{k}' for k, m in enumerate(macros))} FROM {table}"
    expected = {row[0]: row[1:] for row in con.sql(query).fetchall()}
    (spark_query,) = spark_sql.translate(query, AS_OF)
    actual = {row[0]: tuple(row[1:]) for row in spark.sql(spark_query).collect()}
    mismatches = []
    for i, values in expected.items():
        for macro, value, got in zip(macros, values, actual[i]):
            # DuckDB parses year 0 as 1 BC; Spark has no year 0 to parse into.
            if _plain(got) != _plain(value) and not str(value).endswith("(BC)"):
                mismatches.append((macro, dict(zip(names, rows[i][1:])), value, got))
    con.close()
    return mismatches


def test_text_macros_match_duckdb_on_dirty_input(spark):
    # (DuckDB's infinite timestamps, 'inf' and '-Infinity', which Spark lacks, are no dates or
    # timestamps under the strict grammar of parse_date and parse_ts.)
    assert _compare_macros(spark, "dirty", {"x": DIRTY}, TEXT_MACROS) == []


def test_number_and_date_macros_match_duckdb(spark):
    n, d = zip(*NUMBERS)
    assert _compare_macros(spark, "numbers", {"n": list(n), "d": list(d)}, NUMBER_MACROS) == []
    a, b = zip(*DATES)
    assert _compare_macros(spark, "dates", {"a": list(a), "b": list(b)}, DATE_MACROS) == []


# ---- the whole program on the demo lake ----------------------------------------------------------


@pytest.fixture(scope="module")
def spark_run(spark, demo_lake, tmp_path_factory):
    from bench.baselines.spark_local import run

    out = tmp_path_factory.mktemp("spark_gold")
    rows = run(str(demo_lake.root), AS_OF, str(out), spark=spark)
    return rows, out


def _normal(value):
    """One comparable form per value: money and ratios as exact decimals (cents for money), dates
    as ISO text, timestamps as epoch microseconds (Spark hands back local wall time), NaN as
    None."""
    if isinstance(value, float):
        return None if math.isnan(value) else decimal.Decimal(repr(value)).normalize()
    if isinstance(value, decimal.Decimal):
        return value.normalize()
    if isinstance(value, dt.datetime):
        return round(value.timestamp() * 1_000_000)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _compare_tables(spark, demo_lake, layer: str, table: str, key: list[str]):
    expected = demo_lake.rows(layer, table, order_by=", ".join(key))
    actual = sorted(
        (r.asDict() for r in spark.table(table).collect()), key=lambda r: tuple(r[k] for k in key)
    )
    assert len(actual) == len(expected), table
    if not expected:
        return
    assert list(actual[0]) == list(expected[0]), f"{table}: columns differ"
    differences = [
        (table, {k: e[k] for k in key}, c, e[c], a[c])
        for e, a in zip(expected, actual)
        for c in expected[0]
        if _normal(e[c]) != _normal(a[c])
    ]
    assert differences[:10] == [], f"{len(differences)} differences in {table}"


@pytest.mark.parametrize("spec", CATALOG.gold, ids=lambda s: s.name)
def test_gold_table_equals_the_products(spark, spark_run, demo_lake, spec):
    _compare_tables(spark, demo_lake, "gold", spec.name, list(spec.key))
    rows, out = spark_run
    import pyarrow.parquet as pq

    assert pq.read_table(out / spec.name).num_rows == rows[spec.name]


def test_silver_tables_and_quarantine_equal_the_products(spark, spark_run, demo_lake):
    rows, _ = spark_run
    for spec in CATALOG.silver:
        expected = (
            demo_lake.lake.read(
                demo_lake.lake.table_uri("silver", spec.name), "SELECT count(*) AS n FROM t"
            )
            .column("n")[0]
            .as_py()
        )
        assert rows[spec.name] == expected, spec.name
        _compare_tables(spark, demo_lake, "silver", spec.name, list(spec.key))
    by_reason = demo_lake.lake.read(
        demo_lake.lake.table_uri("silver", "quarantine"),
        "SELECT entity, reason, count(*) AS n FROM t GROUP BY ALL",
    ).to_pylist()
    expected = {(r["entity"], r["reason"]): r["n"] for r in by_reason}
    actual = Counter((r["entity"], r["reason"]) for r in spark.table("quarantine").collect())
    assert dict(actual) == expected
    assert rows["quarantine"] == sum(expected.values())
    # Every column, `record` (the rejected bronze row as JSON text) included.
    _compare_tables(
        spark, demo_lake, "silver", "quarantine", ["entity", "source_file", "source_line"]
    )


# ---- rules v2 on hostile records (after the demo tests: this replaces the session's tables) -----


@pytest.mark.parametrize("fixture", ["built_v2", "hostile"])
def test_hostile_records_give_the_products_silver_and_gold(spark, request, fixture, tmp_path):
    """bad_value, strict and bounded dates, bounded amounts, masking, names, an empty book: the
    small hostile lakes of test_rules_by_hand and test_hostile_records, every table and column."""
    from bench.baselines.spark_local import run

    product = request.getfixturevalue(fixture)
    product = product[0] if isinstance(product, tuple) else product
    run(str(product.root), dt.date.fromisoformat(HAND_AS_OF), str(tmp_path), spark=spark)
    _compare_tables(
        spark, product, "silver", "quarantine", ["entity", "source_file", "source_line"]
    )
    for spec in CATALOG.silver:
        _compare_tables(spark, product, "silver", spec.name, list(spec.key))
    for spec in CATALOG.gold:
        _compare_tables(spark, product, "gold", spec.name, list(spec.key))
