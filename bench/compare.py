"""Do two implementations compute the same gold? The product's gold Delta tables against another
implementation's gold Parquet output, row for row, in DuckDB (so it scales to 10M claims).

Each column of the other side is cast to the product's type first (money to DECIMAL(18,2), dates
to DATE, ...); then rows are compared as multisets (EXCEPT ALL both ways). Doubles (ratios,
percentages, averages) are compared after rounding to 6 decimals: the product rounds them to 2 or
4 decimals, so equal numbers agree there exactly, and different ones do not.
"""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa

from petinsure_assets.catalog import CATALOG
from petinsure_assets.lake import Lake


def _parquet_glob(out_dir: str, table: str) -> str:
    """`<out>/<table>.parquet` (one file) or `<out>/<table>/` (a folder of part files)."""
    single = os.path.join(out_dir, f"{table}.parquet")
    return single if os.path.exists(single) else os.path.join(out_dir, table, "*.parquet")


def _normalised(column: str, dtype: str) -> str:
    if dtype in ("DOUBLE", "FLOAT"):
        return f"round(CAST({column} AS DOUBLE), 6) AS {column}"
    return f"CAST({column} AS {dtype}) AS {column}"


def compare_gold(lake: Lake, out_dir: str) -> dict[str, dict[str, int]]:
    """Per gold table: rows on each side and rows that differ (only in the product + only in the
    other). Raises when the other side lacks a table or a column of the product's."""
    con = duckdb.connect()
    try:
        result = {}
        for spec in CATALOG.gold:
            con.register("product_src", lake.dataset(lake.table_uri("gold", spec.name)))
            con.execute(
                f"CREATE OR REPLACE VIEW other_src AS SELECT * FROM "
                f"read_parquet('{_parquet_glob(out_dir, spec.name)}')"
            )
            columns = con.sql("DESCRIBE product_src").fetchall()
            other_columns = {row[0] for row in con.sql("DESCRIBE other_src").fetchall()}
            missing = [name for name, *_ in columns if name not in other_columns]
            if missing:
                raise AssertionError(f"{spec.name}: the other side has no column {missing}")
            select = ", ".join(_normalised(name, dtype) for name, dtype, *_ in columns)
            ((product_rows,),) = con.sql("SELECT count(*) FROM product_src").fetchall()
            ((other_rows,),) = con.sql("SELECT count(*) FROM other_src").fetchall()
            ((only_product,),) = con.sql(
                f"SELECT count(*) FROM (SELECT {select} FROM product_src "
                f"EXCEPT ALL SELECT {select} FROM other_src)"
            ).fetchall()
            ((only_other,),) = con.sql(
                f"SELECT count(*) FROM (SELECT {select} FROM other_src "
                f"EXCEPT ALL SELECT {select} FROM product_src)"
            ).fetchall()
            result[spec.name] = {
                "product_rows": product_rows,
                "other_rows": other_rows,
                "differing_rows": only_product + only_other,
            }
            con.unregister("product_src")
        return result
    finally:
        con.close()


def differing_sample(lake: Lake, out_dir: str, table: str, limit: int = 5) -> pa.Table:
    """A few rows of the product's `table` that the other side does not have (for messages)."""
    con = duckdb.connect()
    try:
        con.register("product_src", lake.dataset(lake.table_uri("gold", table)))
        con.execute(
            f"CREATE VIEW other_src AS SELECT * FROM "
            f"read_parquet('{_parquet_glob(out_dir, table)}')"
        )
        columns = con.sql("DESCRIBE product_src").fetchall()
        select = ", ".join(_normalised(name, dtype) for name, dtype, *_ in columns)
        return con.sql(
            f"SELECT {select} FROM product_src EXCEPT ALL "
            f"SELECT {select} FROM other_src LIMIT {limit}"
        ).to_arrow_table()
    finally:
        con.close()
