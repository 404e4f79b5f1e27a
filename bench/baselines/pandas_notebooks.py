"""Pandas baseline: silver and gold "the way the Databricks notebooks would do it", on one machine.

    .venv/bin/python -m bench.baselines.pandas_notebooks --lake /tmp/lake --as-of 2026-01-31 --out /tmp/x

The same rules as the product (docs/rules.md, the project's statement of every silver rule and
gold number), written as idiomatic, vectorised pandas: typed columns, boolean
masks, `np.select` for "first match wins", `sort_values` + `drop_duplicates` for the dedup,
`groupby`/`merge` for gold, and key lookups through one `pd.factorize` (`key_positions`, far faster
than `isin`/`map` on Arrow-backed strings). No DuckDB or Arrow compute in the logic; DuckDB only
reads bronze (through the product's safe `Lake.read`) and pyarrow only writes the Parquet files.

Memory: bronze columns are popped as they are parsed, the deduplicated rows are taken column by
column, and gold reads only the silver columns it needs, so a 10M-row frame is rarely held twice.

Exactness: money is kept as integer cents (nullable Int64), so sums are exact; every rounded
division (ratios to 4 decimals, percentages and average processing days to 2, money to cents) is an
integer "round half away from zero" on the exact numerator and denominator, converted to the
nearest double at the end, exactly like the product's `div_round` macro. Bronze amounts are parsed
with `pd.to_numeric` and rounded to cents (exact for amounts written with at most 2 decimals, which
is what the sources send; a third decimal that is exactly a half may round differently from
DuckDB's decimal cast).

`run()` returns {table: rows} for the five silver tables, the quarantine and the six gold tables,
and writes each gold table as <out_dir>/<table>.parquet (money as decimal(18,2), dates as date32).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from petinsure_assets import contracts
from petinsure_assets.lake import Lake
from petinsure_assets.thresholds import THRESHOLDS as T

SILVER_TABLES = ("dim_customers", "dim_providers", "dim_pets", "dim_policies", "fact_claims")
GOLD_TABLES = (
    "risk_scoring",
    "customer_360_view",
    "claims_analytics",
    "monthly_kpis",
    "provider_performance",
    "cross_sell_recommendations",
)
BRONZE_META = ["_parse_error", "_ingested_at", "_source_file", "_source_line"]
DEDUP_ORDER = ["updated_at", "_ingested_at", "_source_file", "_source_line"]

US_STATES = {
    "AL": "alabama",
    "AK": "alaska",
    "AZ": "arizona",
    "AR": "arkansas",
    "CA": "california",
    "CO": "colorado",
    "CT": "connecticut",
    "DE": "delaware",
    "DC": "district of columbia",
    "FL": "florida",
    "GA": "georgia",
    "HI": "hawaii",
    "ID": "idaho",
    "IL": "illinois",
    "IN": "indiana",
    "IA": "iowa",
    "KS": "kansas",
    "KY": "kentucky",
    "LA": "louisiana",
    "ME": "maine",
    "MD": "maryland",
    "MA": "massachusetts",
    "MI": "michigan",
    "MN": "minnesota",
    "MS": "mississippi",
    "MO": "missouri",
    "MT": "montana",
    "NE": "nebraska",
    "NV": "nevada",
    "NH": "new hampshire",
    "NJ": "new jersey",
    "NM": "new mexico",
    "NY": "new york",
    "NC": "north carolina",
    "ND": "north dakota",
    "OH": "ohio",
    "OK": "oklahoma",
    "OR": "oregon",
    "PA": "pennsylvania",
    "RI": "rhode island",
    "SC": "south carolina",
    "SD": "south dakota",
    "TN": "tennessee",
    "TX": "texas",
    "UT": "utah",
    "VT": "vermont",
    "VA": "virginia",
    "WA": "washington",
    "WV": "west virginia",
    "WI": "wisconsin",
    "WY": "wyoming",
}
STATE_LOOKUP = {
    **{code.lower(): code for code in US_STATES},
    **{name: code for code, name in US_STATES.items()},
}
EMAIL_RE = r"[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}"
# The grammar of dates and timestamps (docs/rules.md, "Dates"); [0-9], not \d, which is Unicode.
ISO_DATE_TIME_RE = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)?)?"
)
US_DATE_RE = r"[0-9]{1,2}/[0-9]{1,2}/[0-9]{4}"
OLDEST_DATE = pd.Timestamp("1900-01-01")
AMOUNT_LIMIT_CENTS = 10**9 * 100  # amounts: magnitude below 10^9
# Contact data masked in free text shown outside the lake (the product's mask_contacts macro).
MASKS = (
    (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", "[email]"),
    (r"(?:\+?1[ .-]?)?(?:\([0-9]{3}\)|[0-9]{3})[ .-]?[0-9]{3}[ .-]?[0-9]{4}", "[phone]"),
)
TRUE_WORDS = {"true", "t", "yes", "y", "1"}
FALSE_WORDS = {"false", "f", "no", "n", "0"}


# ---------------------------------------------------------------------------------------------
# Parsing helpers (the product's macros.sql, in pandas)
# ---------------------------------------------------------------------------------------------


def clean_text(s: pd.Series) -> pd.Series:
    """Trimmed (spaces, like DuckDB's trim), empty -> missing."""
    s = s.str.strip(" ")
    return s.where(s != "")


def parse_date(s: pd.Series) -> pd.Series:
    """Strictly: ISO YYYY-MM-DD, a full ISO date-time (its date taken) or US MM/DD/YYYY, else NaT."""
    s = clean_text(s)
    iso = s.str.fullmatch(ISO_DATE_TIME_RE, na=False)
    out = pd.to_datetime(s.str[:10].where(iso), format="%Y-%m-%d", errors="coerce")
    us = s.str.fullmatch(US_DATE_RE, na=False)
    if us.any():
        out[us] = pd.to_datetime(s[us], format="%m/%d/%Y", errors="coerce")
    return out.astype("datetime64[us]")


def bounded_date(d: pd.Series, ingested_at: pd.Series, years_ahead: int) -> pd.Series:
    """d within [1900-01-01, the UTC date of ingestion + years_ahead years], else NaT."""
    day = ingested_at.dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize()
    latest = (day + pd.DateOffset(years=years_ahead)).astype("datetime64[us]")
    return d.where((d >= OLDEST_DATE) & (d <= latest))


def bounded_ts(ts: pd.Series, ingested_at: pd.Series) -> pd.Series:
    """updated_at within [1900-01-01, the UTC time of ingestion + 1 day], else NaT."""
    latest = ingested_at.dt.tz_convert("UTC").dt.tz_localize(None) + pd.Timedelta(days=1)
    return ts.where((ts >= OLDEST_DATE) & (ts <= latest.astype("datetime64[us]")))


def parse_ts(s: pd.Series) -> pd.Series:
    """updated_at: strictly an ISO date or date-time, else a US date (midnight), else NaT."""
    c = clean_text(s)
    iso = c.where(c.str.fullmatch(ISO_DATE_TIME_RE, na=False))
    try:
        out = pd.to_datetime(iso, format="ISO8601", errors="coerce")
    except (ValueError, TypeError):  # mixed UTC offsets: DuckDB keeps the wall-clock time
        iso = iso.str.replace(r"(?:Z|[+-]\d{2}:?\d{2})$", "", regex=True)
        out = pd.to_datetime(iso, format="ISO8601", errors="coerce")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_localize(None)
    out = out.astype("datetime64[us]")
    retry = out.isna() & c.str.fullmatch(US_DATE_RE, na=False)
    if retry.any():
        out[retry] = parse_date(c[retry])
    return out


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def parse_cents(s: pd.Series) -> pd.Series:
    """Money as integer cents (nullable Int64); unparseable -> missing."""
    v = pd.to_numeric(clean_text(s), errors="coerce").astype("float64").to_numpy()
    ok = np.isfinite(v) & (np.abs(v) < 1e16)
    cents = np.where(ok, _round_half_away(np.where(ok, v, 0.0) * 100), 0).astype(np.int64)
    return pd.Series(pd.arrays.IntegerArray(cents, ~ok), index=s.index)


def parse_amount(s: pd.Series) -> pd.Series:
    """An amount in cents: money whose magnitude is below 10^9 (after rounding), else missing."""
    cents = parse_cents(s)
    return cents.where(cents.abs() < AMOUNT_LIMIT_CENTS)


def parse_double(s: pd.Series) -> pd.Series:
    return pd.to_numeric(clean_text(s), errors="coerce").astype("float64")


def parse_int(s: pd.Series) -> pd.Series:
    """Like DuckDB's cast to INTEGER: a decimal is rounded half away from zero."""
    v = parse_double(s).to_numpy()
    ok = np.isfinite(v)
    r = _round_half_away(np.where(ok, v, 0.0))
    ok &= (r >= -(2**31)) & (r < 2**31)
    return pd.Series(
        pd.arrays.IntegerArray(np.where(ok, r, 0).astype(np.int64), ~ok), index=s.index
    )


def parse_bool(s: pd.Series) -> pd.Series:
    low = clean_text(s).str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[low.isin(TRUE_WORDS)] = True
    out[low.isin(FALSE_WORDS)] = False
    return out


def canonical(s: pd.Series, accepted) -> pd.Series:
    """The accepted spelling matching case-insensitively, else missing."""
    return clean_text(s).str.lower().map({a.lower(): a for a in accepted})


def clean_email(s: pd.Series) -> pd.Series:
    low = clean_text(s).str.lower()
    return low.where(low.str.fullmatch(EMAIL_RE, na=False))


def clean_phone(s: pd.Series) -> pd.Series:
    digits = s.fillna("").str.replace(r"[^0-9]", "", regex=True)
    n = digits.str.len()
    valid = (n == 10) | ((n == 11) & digits.str.startswith("1"))
    d = digits.str[-10:]
    return ("(" + d.str[:3] + ") " + d.str[3:6] + "-" + d.str[6:10]).where(valid)


def clean_state(s: pd.Series) -> pd.Series:
    return clean_text(s).str.lower().map(STATE_LOOKUP)


def matches(s: pd.Series, pattern: str) -> pd.Series:
    c = clean_text(s)
    return c.where(c.str.fullmatch(pattern, na=False))


def quality_score(valid_counts: pd.Series, checked: int) -> pd.Series:
    return ((200 * valid_counts + checked) // (2 * checked)).astype("int32")


def month_index(d: pd.Series) -> pd.Series:
    return (12 * d.dt.year + d.dt.month - 1).astype("Int64")


def whole_months(a: pd.Series, b: datetime.date) -> pd.Series:
    """Whole months between each date of a and the date b; 0 when b < a; missing when a is."""
    m = 12 * (b.year - a.dt.year) + (b.month - a.dt.month) - (b.day < a.dt.day).astype(int)
    m = m.where(a <= pd.Timestamp(b), 0).where(a.notna())
    return m.astype("Int64")


def div_round(n, d, s: int) -> pd.Series:
    """n / d rounded half away from zero to s decimals, as the nearest double; missing when n or d
    is missing or d = 0. n and d must be integers on the same scale (e.g. cents / cents)."""
    n = pd.Series(n, dtype="Int64")
    d = pd.Series(d, dtype="Int64", index=n.index)
    ok = (n.notna() & d.notna() & (d != 0)).to_numpy(dtype=bool)
    nv = n.fillna(0).to_numpy(dtype=np.int64)
    dv = np.where(ok, d.fillna(1).to_numpy(dtype=np.int64), 1)
    scale = 10**s
    if ok.any() and (
        int(np.abs(nv).max()) >= 2**62 // (2 * scale) or int(np.abs(dv).max()) >= 2**61
    ):
        nv, dv = nv.astype(object), dv.astype(object)  # Python ints: never overflow
    q = (np.abs(nv) * scale * 2 + np.abs(dv)) // (2 * np.abs(dv))
    out = (np.sign(nv) * np.sign(dv) * q).astype(np.float64) / scale
    return pd.Series(np.where(ok, out, np.nan), index=n.index)


def money_div(n_cents, d) -> pd.Series:
    """Money n / d rounded half away from zero to the cent, as integer cents (d a count)."""
    return div_round(n_cents, d, 0).astype("Int64")


def key_positions(keys: pd.Series, table_keys: pd.Series) -> np.ndarray:
    """For each of keys, the row position of the equal value in table_keys (unique, no missing
    values, e.g. a silver key column), or -1.

    One `pd.factorize` over the table's keys followed by the looked-up keys: the table's row i
    gets code i (codes follow first appearance), so a key's code is its row when it is < the
    table's length. Much faster than `Series.isin`/`map`/`reindex` on Arrow-backed strings."""
    codes, _ = pd.factorize(pd.concat([table_keys, keys], ignore_index=True))
    n = len(table_keys)
    pos = codes[n:]
    pos[pos >= n] = -1
    return pos


def has_parent(child: pd.Series, parent_keys: pd.Series) -> pd.Series:
    """child's value is one of the parent's silver keys (a missing child never is)."""
    return pd.Series(key_positions(child, parent_keys) >= 0, index=child.index)


def lookup(keys: pd.Series, table: pd.DataFrame, key: str, columns: list[str]) -> pd.DataFrame:
    """The columns of table's row whose unique `key` equals each of keys (a left join that keeps
    keys' order and index; missing where there is no such row)."""
    pos = key_positions(keys, table[key])
    return pd.DataFrame(
        {c: pd.api.extensions.take(table[c].array, pos, allow_fill=True) for c in columns},
        index=keys.index,
    )


def full_name(first: pd.Series, last: pd.Series) -> pd.Series:
    """First and last joined by one space, a missing part left out, missing when both are."""
    both = first.notna() & last.notna()
    joined = (first.fillna("") + " " + last.fillna("")).where(
        both, first.fillna("") + last.fillna("")
    )
    return joined.where(first.notna() | last.notna())


def mask_contacts(s: pd.Series) -> pd.Series:
    for pattern, mask in MASKS:
        s = s.str.replace(pattern, mask, regex=True)
    return s


# ---------------------------------------------------------------------------------------------
# Silver
# ---------------------------------------------------------------------------------------------


def read_bronze(lake: Lake, entity: contracts.Entity) -> pd.DataFrame:
    cols = ", ".join([*entity.columns, *BRONZE_META])
    df = lake.read(
        lake.table_uri("bronze", entity.bronze_table), f"SELECT {cols} FROM t"
    ).to_pandas()
    # Few distinct files: a categorical keeps the 10M-row frame small; its categories are the
    # sorted file names, so it sorts like the strings (the dedup's _source_file tie-break).
    files = df["_source_file"]
    df["_source_file"] = files.astype(
        pd.CategoricalDtype(sorted(files.dropna().unique()), ordered=True)
    )
    return df


def _finish(
    entity: str,
    key: str,
    t: pd.DataFrame,
    reasons: list[tuple[str, pd.Series]],
    quality: pd.Series,
    checked: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Quarantine the first failing hard rule per record; dedup the rest to the latest version."""
    conds = [c.fillna(False).to_numpy(dtype=bool) for _, c in reasons]
    reason = np.select(conds, [r for r, _ in reasons], default="")
    rejected = reason != ""
    quarantine = pd.DataFrame(
        {
            "entity": entity,
            "record_key": t.loc[rejected, key].to_numpy(),
            "reason": reason[rejected],
            "source_file": t.loc[rejected, "_source_file"].astype(str).to_numpy(),
            "source_line": t.loc[rejected, "_source_line"].to_numpy(),
        }
    )
    t["_quality_score"] = quality_score(quality, checked)
    # Dedup on the few ordering columns, then take the surviving rows of the wide frame once.
    latest = (
        t.loc[~rejected, [key, *DEDUP_ORDER]]
        .sort_values(DEDUP_ORDER, ascending=False, na_position="last")
        .drop_duplicates(key, keep="first")
        .sort_values(key)
    )
    del t["_parse_error"]
    rows = t.index.get_indexer(latest.index)
    # Column by column, popping from t, so the wide frame is never held twice.
    silver = pd.DataFrame({col: t.pop(col).array.take(rows) for col in list(t.columns)})
    return silver, quarantine


def positive(parse, minimum=0, strict=True):
    """parse, keeping only values > minimum (>= when not strict); others become missing."""

    def parse_positive(s: pd.Series) -> pd.Series:
        v = parse(s)
        return v.where(v > minimum if strict else v >= minimum)

    return parse_positive


def in_range(parse, low, high):
    def parse_in_range(s: pd.Series) -> pd.Series:
        v = parse(s)
        return v.where(v.between(low, high))

    return parse_in_range


def in_range_open(parse, low, high):
    """low < value < high (which leaves out inf and NaN), else missing."""

    def parse_in_range(s: pd.Series) -> pd.Series:
        v = parse(s)
        return v.where((v > low) & (v < high))

    return parse_in_range


def one_of(accepted):
    return lambda s: canonical(s, accepted)


def full_match(pattern):
    return lambda s: matches(s, pattern)


def typed(raw: pd.DataFrame, fields: dict) -> pd.DataFrame:
    """Parse each source column with its parser, popping it from raw as it goes (so one copy of a
    10M-row column is alive at a time), then updated_at and the bronze metadata."""
    t = pd.DataFrame(index=raw.index)
    for col, parse in fields.items():
        t[col] = parse(raw.pop(col))
    t["updated_at"] = parse_ts(raw.pop("updated_at"))
    for col in BRONZE_META:
        t[col] = raw.pop(col)
    t["updated_at"] = bounded_ts(t["updated_at"], t["_ingested_at"])
    return t


CUSTOMER_FIELDS = {
    "customer_id": clean_text,
    "first_name": clean_text,
    "last_name": clean_text,
    "email": clean_email,
    "phone": clean_phone,
    "address": clean_text,
    "city": clean_text,
    "state": clean_state,
    "zip_code": full_match("[0-9]{5}"),
    "date_of_birth": parse_date,
    "customer_since": parse_date,
    "segment": clean_text,
    "lifetime_value": parse_cents,
}
PROVIDER_FIELDS = {
    "provider_id": clean_text,
    "provider_name": clean_text,
    "provider_type": clean_text,
    "address": clean_text,
    "city": clean_text,
    "state": clean_state,
    "zip_code": full_match("[0-9]{5}"),
    "phone": clean_phone,
    "is_in_network": parse_bool,
    "average_rating": in_range(parse_double, 0, 5),
    "specialties": clean_text,
}
PET_FIELDS = {
    "pet_id": clean_text,
    "customer_id": clean_text,
    "pet_name": clean_text,
    "species": one_of(contracts.SPECIES),
    "breed": clean_text,
    "gender": one_of(("Male", "Female")),
    "date_of_birth": parse_date,
    "weight_lbs": in_range_open(parse_double, 0, 1e9),
    "microchip_id": full_match("[0-9]{15}"),
    "is_neutered": parse_bool,
    "vaccination_status": clean_text,
    "pre_existing_conditions": clean_text,
    "is_active": parse_bool,
}
POLICY_FIELDS = {
    "policy_id": clean_text,
    "policy_number": clean_text,
    "customer_id": clean_text,
    "pet_id": clean_text,
    "plan_name": one_of(contracts.PLAN_NAMES),
    "monthly_premium": parse_amount,
    "deductible": positive(parse_amount, strict=False),
    "coverage_limit": positive(parse_amount),
    "effective_date": parse_date,
    "expiration_date": parse_date,
    "status": one_of(contracts.POLICY_STATUSES),
    "includes_wellness": parse_bool,
    "includes_dental": parse_bool,
    "includes_behavioral": parse_bool,
}
CLAIM_FIELDS = {
    "claim_id": clean_text,
    "claim_number": clean_text,
    "customer_id": clean_text,
    "policy_id": clean_text,
    "pet_id": clean_text,
    "provider_id": clean_text,
    "claim_type": one_of(contracts.CLAIM_TYPES),
    "claim_category": clean_text,
    "service_date": parse_date,
    "claim_amount": parse_amount,
    "paid_amount": parse_amount,
    "status": one_of(contracts.CLAIM_STATUSES),
    "processing_days": positive(parse_int, strict=False),
    "denial_reason": clean_text,
}


def silver_customers(raw: pd.DataFrame):
    t = typed(raw, CUSTOMER_FIELDS)
    for col in ("date_of_birth", "customer_since"):
        t[col] = bounded_date(t[col], t["_ingested_at"], 1)
    quality = (
        t[["email", "phone", "address", "city", "state", "zip_code", "date_of_birth"]]
        .notna()
        .sum(axis=1)
    )
    return _finish(
        "customers",
        "customer_id",
        t,
        [
            ("malformed_record", t["_parse_error"].notna()),
            ("missing_key", t["customer_id"].isna()),
        ],
        quality,
        7,
    )


def silver_providers(raw: pd.DataFrame):
    t = typed(raw, PROVIDER_FIELDS)
    quality = t[["address", "phone", "state", "average_rating"]].notna().sum(axis=1)
    return _finish(
        "providers",
        "provider_id",
        t,
        [
            ("malformed_record", t["_parse_error"].notna()),
            ("missing_key", t["provider_id"].isna()),
        ],
        quality,
        4,
    )


def silver_pets(raw: pd.DataFrame, customer_ids: pd.Series):
    t = typed(raw, PET_FIELDS)
    t["date_of_birth"] = bounded_date(t["date_of_birth"], t["_ingested_at"], 1)
    quality = (
        t[["breed", "gender", "date_of_birth", "weight_lbs", "microchip_id"]].notna().sum(axis=1)
    )
    return _finish(
        "pets",
        "pet_id",
        t,
        [
            ("malformed_record", t["_parse_error"].notna()),
            ("missing_key", t["pet_id"].isna()),
            ("orphan_fk", ~has_parent(t["customer_id"], customer_ids)),
        ],
        quality,
        5,
    )


def silver_policies(raw: pd.DataFrame, customer_ids: pd.Series, pet_ids: pd.Series):
    t = typed(raw, POLICY_FIELDS)
    for col in ("effective_date", "expiration_date"):
        t[col] = bounded_date(t[col], t["_ingested_at"], 10)
    quality = (
        t[["plan_name", "monthly_premium", "deductible", "coverage_limit"]].notna().sum(axis=1)
    )
    return _finish(
        "policies",
        "policy_id",
        t,
        [
            ("malformed_record", t["_parse_error"].notna()),
            ("missing_key", t["policy_id"].isna()),
            ("bad_date", t["effective_date"].isna() | t["expiration_date"].isna()),
            ("bad_value", t["status"].isna()),
            ("negative_amount", t["monthly_premium"] < 0),
            (
                "orphan_fk",
                ~has_parent(t["customer_id"], customer_ids) | ~has_parent(t["pet_id"], pet_ids),
            ),
        ],
        quality,
        4,
    )


def silver_claims(raw: pd.DataFrame, customer_ids, policy_ids, pet_ids, provider_ids):
    t = typed(raw, CLAIM_FIELDS)
    t["service_date"] = bounded_date(t["service_date"], t["_ingested_at"], 1)
    quality = (
        t[["claim_type", "claim_category", "paid_amount", "processing_days"]].notna().sum(axis=1)
    )
    orphan = (
        ~has_parent(t["customer_id"], customer_ids)
        | ~has_parent(t["policy_id"], policy_ids)
        | ~has_parent(t["pet_id"], pet_ids)
        | ~has_parent(t["provider_id"], provider_ids)
    )
    return _finish(
        "claims",
        "claim_id",
        t,
        [
            ("malformed_record", t["_parse_error"].notna()),
            ("missing_key", t["claim_id"].isna()),
            ("bad_date", t["service_date"].isna()),
            ("bad_value", t["claim_amount"].isna() | t["status"].isna()),
            ("negative_amount", (t["claim_amount"] < 0) | (t["paid_amount"] < 0)),
            ("overpaid", t["paid_amount"] > t["claim_amount"]),
            ("orphan_fk", orphan),
        ],
        quality,
        4,
    )


def build_silver(lake_root: str) -> dict[str, pd.DataFrame]:
    """The five silver tables and the quarantine, parents before children."""
    lake = Lake(root=lake_root)
    quarantines = []

    def step(fn, entity, *parents):
        table, q = fn(read_bronze(lake, entity), *parents)
        quarantines.append(q)
        return table

    customers = step(silver_customers, contracts.CUSTOMERS)
    providers = step(silver_providers, contracts.PROVIDERS)
    pets = step(silver_pets, contracts.PETS, customers["customer_id"])
    policies = step(silver_policies, contracts.POLICIES, customers["customer_id"], pets["pet_id"])
    claims = step(
        silver_claims,
        contracts.CLAIMS,
        customers["customer_id"],
        policies["policy_id"],
        pets["pet_id"],
        providers["provider_id"],
    )
    quarantine = pd.concat(quarantines, ignore_index=True).sort_values(
        ["entity", "source_file", "source_line"], ignore_index=True
    )
    return {
        "dim_customers": customers,
        "dim_providers": providers,
        "dim_pets": pets,
        "dim_policies": policies,
        "fact_claims": claims,
        "quarantine": quarantine,
    }


# ---------------------------------------------------------------------------------------------
# Gold
# ---------------------------------------------------------------------------------------------


def _minus_12_months(d: datetime.date) -> datetime.date:
    try:
        return d.replace(year=d.year - 1)
    except ValueError:  # Feb 29 -> Feb 28
        return d.replace(year=d.year - 1, day=28)


def _month_label(m: pd.Series) -> pd.Series:
    labels = {k: f"{k // 12:04d}-{k % 12 + 1:02d}" for k in m.dropna().unique()}
    return m.map(labels)


# The silver columns gold reads (the rest is dropped before gold, to save memory).
GOLD_INPUTS = {
    "dim_customers": [
        "customer_id",
        "first_name",
        "last_name",
        "city",
        "state",
        "segment",
        "customer_since",
    ],
    "dim_pets": [
        "pet_id",
        "customer_id",
        "pet_name",
        "species",
        "breed",
        "date_of_birth",
        "pre_existing_conditions",
        "is_active",
    ],
    "dim_policies": [
        "policy_id",
        "customer_id",
        "pet_id",
        "plan_name",
        "monthly_premium",
        "effective_date",
        "expiration_date",
        "status",
        "includes_wellness",
        "includes_dental",
    ],
    "fact_claims": [
        "claim_id",
        "claim_number",
        "customer_id",
        "policy_id",
        "pet_id",
        "provider_id",
        "claim_type",
        "claim_category",
        "service_date",
        "claim_amount",
        "paid_amount",
        "status",
        "processing_days",
        "denial_reason",
    ],
    "dim_providers": [
        "provider_id",
        "provider_name",
        "provider_type",
        "city",
        "state",
        "is_in_network",
        "average_rating",
    ],
}


def build_gold(silver: dict[str, pd.DataFrame], as_of: datetime.date) -> dict[str, pd.DataFrame]:
    """The six gold tables from the silver tables (only GOLD_INPUTS' columns are read).

    Pops the silver tables from `silver` as it takes what it needs, so their other columns are
    freed; pass a copy of the dict to keep it."""
    as_of_ts = pd.Timestamp(as_of)
    as_of_month = 12 * as_of.year + as_of.month - 1
    customers, pets, policies, claims, providers = (
        silver.pop(name)[GOLD_INPUTS[name]]
        for name in ("dim_customers", "dim_pets", "dim_policies", "fact_claims", "dim_providers")
    )

    # --- facts shared by several tables (the product's gold views) ---------------------------
    claims["is_approved"] = claims["status"].isin(["Approved", "Paid"])
    claims["is_decided"] = claims["status"].isin(["Approved", "Paid", "Denied"])
    # Paid counts only on approved claims, a missing paid amount as 0.
    claims["approved_paid"] = claims["paid_amount"].fillna(0).where(claims["is_approved"])
    claims["in_last_12_months"] = (
        claims["service_date"] > pd.Timestamp(_minus_12_months(as_of))
    ) & (claims["service_date"] <= as_of_ts)
    claims["is_denied"] = claims["status"] == "Denied"
    claims["month"] = month_index(claims["service_date"])

    pets = pets.assign(
        is_active_pet=pets["is_active"].fillna(False).astype(bool),
        age_years=whole_months(pets["date_of_birth"], as_of) // 12,
        has_pre_existing=(pets["pre_existing_conditions"].str.lower() != "none")
        & pets["pre_existing_conditions"].notna(),
    )

    pol = policies
    earns = pol["status"].isin(["Active", "Expired"])
    first_month = month_index(pol["effective_date"])
    last_month = month_index(pol["expiration_date"]).clip(upper=as_of_month)
    pol = pol.assign(
        earns=earns,
        is_active_policy=(pol["status"] == "Active")
        & (pol["effective_date"] <= as_of_ts)
        & (pol["expiration_date"] >= as_of_ts),
        first_month=first_month,
        last_month=last_month,
        months_in_force=(last_month - first_month + 1).clip(lower=0).where(earns, 0),
    )
    pol["earned"] = pol["monthly_premium"] * pol["months_in_force"]

    # --- customer metrics ----------------------------------------------------------------------
    pol["active_premium"] = pol["monthly_premium"].where(pol["is_active_policy"])
    pol_agg = pol.groupby("customer_id").agg(
        total_policies=("policy_id", "size"),
        active_policies=("is_active_policy", "sum"),
        active_monthly_premium=("active_premium", "sum"),
        premium_earned=("earned", "sum"),
    )
    cl_agg = claims.groupby("customer_id").agg(
        total_claims=("claim_id", "size"),
        total_claimed=("claim_amount", "sum"),
        total_paid=("approved_paid", "sum"),
        claims_last_12_months=("in_last_12_months", "sum"),
        last_claim_date=("service_date", "max"),
    )
    active_pets = pets[pets["is_active_pet"]]
    pe_agg = pets.groupby("customer_id").agg(
        total_pets=("pet_id", "size"), active_pets=("is_active_pet", "sum")
    )
    pe_agg = pe_agg.join(
        active_pets.groupby("customer_id").agg(
            oldest_active_pet_age=("age_years", "max"),
            has_pre_existing_condition=("has_pre_existing", "any"),
        )
    )

    m = (
        customers[
            ["customer_id", "first_name", "last_name", "city", "state", "segment", "customer_since"]
        ]
        .merge(pol_agg, on="customer_id", how="left")
        .merge(cl_agg, on="customer_id", how="left")
        .merge(pe_agg, on="customer_id", how="left")
    )
    m["full_name"] = full_name(m["first_name"], m["last_name"])
    has_policies = m["total_policies"].notna()
    for col in [
        "total_pets",
        "active_pets",
        "total_policies",
        "active_policies",
        "total_claims",
        "claims_last_12_months",
    ]:
        m[col] = m[col].fillna(0).astype("int64")
    for col in ["active_monthly_premium", "premium_earned", "total_claimed", "total_paid"]:
        m[col] = m[col].fillna(0).astype("int64")  # cents
    m["has_pre_existing_condition"] = m["has_pre_existing_condition"].fillna(False).astype(bool)
    m["oldest_active_pet_age"] = m["oldest_active_pet_age"].astype("Int64")
    m["annual_premium"] = m["active_monthly_premium"] * 12
    m["loss_ratio"] = div_round(m["total_paid"], m["premium_earned"].where(has_policies), 4)

    # --- risk_scoring --------------------------------------------------------------------------
    lr = m["loss_ratio"]
    age = m["oldest_active_pet_age"].astype("float64")
    risk = pd.DataFrame(
        {
            "customer_id": m["customer_id"],
            "full_name": m["full_name"],
            "claims_last_12_months": m["claims_last_12_months"],
            "loss_ratio": lr,
            "oldest_active_pet_age": m["oldest_active_pet_age"],
            "has_pre_existing_condition": m["has_pre_existing_condition"],
            "claim_frequency_score": np.minimum(
                T["risk_claim_frequency_max"],
                T["risk_points_per_recent_claim"] * m["claims_last_12_months"],
            ),
            "loss_ratio_score": np.select(
                [
                    lr.isna() | (lr < T["risk_loss_ratio_low"]),
                    lr < T["risk_loss_ratio_mid"],
                    lr < T["risk_loss_ratio_high"],
                ],
                [0, T["risk_loss_ratio_points_mid"], T["risk_loss_ratio_points_high"]],
                T["risk_loss_ratio_points_max"],
            ),
            "pet_age_score": np.select(
                [age >= T["risk_senior_pet_age"], age >= T["risk_mature_pet_age"]],
                [T["risk_senior_pet_points"], T["risk_mature_pet_points"]],
                0,
            ),
            "pre_existing_score": np.where(
                m["has_pre_existing_condition"], T["risk_pre_existing_points"], 0
            ),
        }
    )
    risk["total_risk_score"] = np.minimum(
        T["risk_score_max"],
        risk[
            ["claim_frequency_score", "loss_ratio_score", "pet_age_score", "pre_existing_score"]
        ].sum(axis=1),
    )
    score = risk["total_risk_score"]
    bands = [
        score >= T["risk_critical_min"],
        score >= T["risk_high_min"],
        score >= T["risk_medium_min"],
    ]
    risk["risk_category"] = np.select(bands, ["Critical", "High", "Medium"], "Low")
    risk["recommended_action"] = np.select(
        bands,
        ["Manual underwriting review", "Review at renewal", "Monitor claims"],
        "Standard renewal",
    )
    risk = risk.sort_values("customer_id", ignore_index=True)

    # --- customer_360_view ---------------------------------------------------------------------
    earned = m["premium_earned"]
    c360 = pd.DataFrame(
        {
            "customer_id": m["customer_id"],
            "full_name": m["full_name"],
            "first_name": m["first_name"],
            "last_name": m["last_name"],
            "city": m["city"],
            "state": m["state"],
            "segment": m["segment"],
            "customer_since": m["customer_since"],
            "tenure_months": whole_months(m["customer_since"], as_of),
            "total_pets": m["total_pets"],
            "active_pets": m["active_pets"],
            "total_policies": m["total_policies"],
            "active_policies": m["active_policies"],
            "annual_premium": m["annual_premium"],
            "premium_earned": earned,
            "total_claims": m["total_claims"],
            "total_claimed": m["total_claimed"],
            "total_paid": m["total_paid"],
            "loss_ratio": m["loss_ratio"],
            "lifetime_value": earned,
            "value_tier": np.select(
                [
                    earned >= T["tier_platinum_min"] * 100,
                    earned >= T["tier_gold_min"] * 100,
                    earned >= T["tier_silver_min"] * 100,
                ],
                ["Platinum", "Gold", "Silver"],
                "Bronze",
            ),
            "last_claim_date": m["last_claim_date"],
        }
    ).merge(
        risk[["customer_id", "total_risk_score", "risk_category"]].rename(
            columns={"total_risk_score": "risk_score"}
        ),
        on="customer_id",
        how="left",
    )
    c360 = c360[[*c360.columns[:21], "risk_score", "risk_category", "last_claim_date"]]
    c360 = c360.sort_values("customer_id", ignore_index=True)

    # --- claims_analytics ----------------------------------------------------------------------
    analytics = claims[
        [
            "claim_id",
            "claim_number",
            "customer_id",
            "policy_id",
            "pet_id",
            "provider_id",
            "claim_type",
            "claim_category",
            "service_date",
            "claim_amount",
            "paid_amount",
            "status",
            "processing_days",
            "denial_reason",
        ]
    ].copy()
    analytics["denial_reason"] = mask_contacts(analytics["denial_reason"])
    analytics["customer_name"] = lookup(analytics["customer_id"], m, "customer_id", ["full_name"])[
        "full_name"
    ]
    analytics[["pet_name", "species", "breed"]] = lookup(
        analytics["pet_id"], pets, "pet_id", ["pet_name", "species", "breed"]
    )
    analytics["plan_name"] = lookup(analytics["policy_id"], policies, "policy_id", ["plan_name"])[
        "plan_name"
    ]
    analytics[["provider_name", "provider_type", "is_in_network"]] = lookup(
        analytics["provider_id"],
        providers,
        "provider_id",
        ["provider_name", "provider_type", "is_in_network"],
    )
    analytics["service_month"] = _month_label(claims["month"])
    analytics["reimbursement_rate"] = div_round(claims["approved_paid"], claims["claim_amount"], 4)
    analytics = analytics.sort_values("claim_id", ignore_index=True)

    # --- monthly_kpis --------------------------------------------------------------------------
    claims["decided_days"] = claims["processing_days"].where(claims["is_decided"])
    by_month = claims.groupby("month").agg(
        total_claims=("claim_id", "size"),
        approved_claims=("is_approved", "sum"),
        denied_claims=("is_denied", "sum"),
        decided_claims=("is_decided", "sum"),
        total_claimed=("claim_amount", "sum"),
        claims_with_amount=("claim_amount", "count"),
        total_paid=("approved_paid", "sum"),
        decided_processing_days=("decided_days", "sum"),
        decided_with_days=("decided_days", "count"),
    )
    if len(by_month):
        months = pd.RangeIndex(int(by_month.index.min()), int(by_month.index.max()) + 1)
    else:
        months = pd.RangeIndex(0, 0)
    k = by_month.reindex(months)
    # Policies in force: +1 in the first month in force, -1 after the last (earning policies).
    inforce = pol[pol["earns"] & (pol["last_month"] >= pol["first_month"])]
    changes = (
        pd.concat(
            [
                pd.DataFrame(
                    {
                        "m": inforce["first_month"],
                        "n": 1,
                        "premium": inforce["monthly_premium"].fillna(0),
                    }
                ),
                pd.DataFrame(
                    {
                        "m": inforce["last_month"] + 1,
                        "n": -1,
                        "premium": -inforce["monthly_premium"].fillna(0),
                    }
                ),
            ]
        )
        .groupby("m")[["n", "premium"]]
        .sum()
    )
    if len(months):
        lo = min(months.start, int(changes.index.min())) if len(changes) else months.start
        running = changes.reindex(pd.RangeIndex(lo, months.stop), fill_value=0).cumsum()
        running = running.reindex(months)
    else:
        running = pd.DataFrame({"n": [], "premium": []})
    new_customers = month_index(customers["customer_since"]).dropna().astype("int64").value_counts()
    total_claims = k["total_claims"].fillna(0).astype("int64")
    previous = total_claims.shift(1).astype("Int64")
    total_paid = k["total_paid"].fillna(0).astype("int64")
    premium = running["premium"].fillna(0).astype("int64")
    total_claimed = k["total_claimed"].fillna(0).astype("int64")
    kpis = pd.DataFrame(
        {
            "year_month": _month_label(pd.Series(months, index=months)),
            "total_claims": total_claims,
            "approved_claims": k["approved_claims"].fillna(0).astype("int64"),
            "denied_claims": k["denied_claims"].fillna(0).astype("int64"),
            "approval_rate": div_round(
                k["approved_claims"].astype("Int64"), k["decided_claims"].astype("Int64"), 4
            ),
            "total_claimed": total_claimed,
            "total_paid": total_paid,
            "avg_claim_amount": money_div(total_claimed, k["claims_with_amount"].astype("Int64")),
            "avg_processing_days": div_round(
                k["decided_processing_days"].astype("Int64"),
                k["decided_with_days"].astype("Int64"),
                2,
            ),
            "new_customers": new_customers.reindex(months, fill_value=0).astype("int64"),
            "policies_in_force": running["n"].fillna(0).astype("int64"),
            "premium_earned": premium,
            "loss_ratio": div_round(total_paid, premium, 4),
            "claims_growth_pct": div_round((total_claims - previous) * 100, previous, 2),
        }
    ).reset_index(drop=True)

    # --- provider_performance ------------------------------------------------------------------
    by_provider = claims.groupby("provider_id").agg(
        total_claims=("claim_id", "size"),
        total_claimed=("claim_amount", "sum"),
        total_paid=("approved_paid", "sum"),
        claims_with_amount=("claim_amount", "count"),
        approved_claims=("is_approved", "sum"),
        decided_claims=("is_decided", "sum"),
        decided_processing_days=("decided_days", "sum"),
        decided_with_days=("decided_days", "count"),
        unique_customers=("customer_id", "nunique"),
    )
    pp = providers[
        [
            "provider_id",
            "provider_name",
            "provider_type",
            "city",
            "state",
            "average_rating",
            "is_in_network",
        ]
    ].merge(by_provider, left_on="provider_id", right_index=True, how="left")
    provider_perf = pd.DataFrame(
        {
            "provider_id": pp["provider_id"],
            "provider_name": pp["provider_name"],
            "provider_type": pp["provider_type"],
            "city": pp["city"],
            "state": pp["state"],
            "total_claims": pp["total_claims"].fillna(0).astype("int64"),
            "total_claimed": pp["total_claimed"].fillna(0).astype("int64"),
            "total_paid": pp["total_paid"].fillna(0).astype("int64"),
            "avg_claim_amount": money_div(
                pp["total_claimed"].astype("Int64"), pp["claims_with_amount"].astype("Int64")
            ),
            "approval_rate": div_round(
                pp["approved_claims"].astype("Int64"), pp["decided_claims"].astype("Int64"), 4
            ),
            "avg_processing_days": div_round(
                pp["decided_processing_days"].astype("Int64"),
                pp["decided_with_days"].astype("Int64"),
                2,
            ),
            "unique_customers": pp["unique_customers"].fillna(0).astype("int64"),
            "average_rating": pp["average_rating"],
            "is_in_network": pp["is_in_network"],
        }
    ).sort_values("provider_id", ignore_index=True)

    # --- cross_sell_recommendations ------------------------------------------------------------
    active_pol = pol[pol["is_active_policy"]]
    insured_pets = (
        active_pol.assign(dental=active_pol["includes_dental"].fillna(False).astype(bool))
        .groupby("pet_id", as_index=False)["dental"]
        .any()
    )
    pf = pets[["customer_id", "pet_id", "is_active_pet", "age_years"]].copy()
    pos = key_positions(pf["pet_id"], insured_pets["pet_id"])
    pf["insured"] = pos >= 0
    # position -1 (not insured) picks the appended False
    pf["any_dental"] = np.append(insured_pets["dental"].to_numpy(dtype=bool), False)[pos]
    pf["uninsured"] = pf["is_active_pet"] & ~pf["insured"]
    pf["no_dental"] = (
        pf["is_active_pet"]
        & pf["insured"]
        & ~pf["any_dental"]
        & (pf["age_years"] >= T["cross_sell_dental_min_pet_age"]).fillna(False)
    )
    pet_flags = pf.groupby("customer_id")[["uninsured", "no_dental"]].sum()
    pol_flags = (
        pd.DataFrame(
            {
                "customer_id": active_pol["customer_id"],
                "no_wellness": ~active_pol["includes_wellness"].fillna(False).astype(bool),
                "basic": active_pol["plan_name"] == "Basic",
            }
        )
        .groupby("customer_id")[["no_wellness", "basic"]]
        .sum()
    )
    wellness = claims.loc[claims["claim_type"] == "Wellness", "customer_id"].value_counts()
    pc = m[
        ["customer_id", "full_name", "active_policies", "annual_premium", "claims_last_12_months"]
    ].set_index("customer_id")
    pc = pc.join(pet_flags).join(pol_flags)
    pc["wellness_claims"] = wellness.reindex(pc.index)
    for col in ["uninsured", "no_dental", "no_wellness", "basic", "wellness_claims"]:
        pc[col] = pc[col].fillna(0).astype("int64")
    pc = pc.reset_index()

    book_premium = active_pol["monthly_premium"].sum(min_count=1) * 12  # NA when none
    book_policies = len(active_pol)
    recs = []
    r = pc[pc["uninsured"] > 0]
    own = r["active_policies"] > 0
    recs.append(
        pd.DataFrame(
            {
                "customer_id": r["customer_id"],
                "full_name": r["full_name"],
                "recommendation": "Insure Additional Pet",
                "reason": r["uninsured"].astype(str) + " active pet(s) without an active policy",
                # An empty book (no active policy at all) estimates 0.
                "estimated_revenue": money_div(
                    r["uninsured"] * r["annual_premium"], r["active_policies"]
                ).where(
                    own,
                    money_div(
                        r["uninsured"] * book_premium,
                        pd.Series(
                            book_policies if book_policies else pd.NA, index=r.index, dtype="Int64"
                        ),
                    ).fillna(0),
                ),
            }
        )
    )
    r = pc[(pc["wellness_claims"] > 0) & (pc["no_wellness"] > 0)]
    recs.append(
        pd.DataFrame(
            {
                "customer_id": r["customer_id"],
                "full_name": r["full_name"],
                "recommendation": "Wellness Add-on",
                "reason": r["wellness_claims"].astype(str)
                + " wellness claim(s) filed and "
                + r["no_wellness"].astype(str)
                + " active policy(ies) without wellness cover",
                "estimated_revenue": T["cross_sell_wellness_revenue"] * 100 * r["no_wellness"],
            }
        )
    )
    r = pc[pc["no_dental"] > 0]
    recs.append(
        pd.DataFrame(
            {
                "customer_id": r["customer_id"],
                "full_name": r["full_name"],
                "recommendation": "Dental Coverage",
                "reason": r["no_dental"].astype(str)
                + " active pet(s) aged "
                + str(T["cross_sell_dental_min_pet_age"])
                + "+ whose active policy lacks dental cover",
                "estimated_revenue": T["cross_sell_dental_revenue"] * 100 * r["no_dental"],
            }
        )
    )
    r = pc[
        (pc["basic"] > 0)
        & (pc["claims_last_12_months"] >= T["cross_sell_upgrade_min_recent_claims"])
    ]
    recs.append(
        pd.DataFrame(
            {
                "customer_id": r["customer_id"],
                "full_name": r["full_name"],
                "recommendation": "Plan Upgrade",
                "reason": r["claims_last_12_months"].astype(str)
                + " claims in the last 12 months on "
                + r["basic"].astype(str)
                + " active Basic policy(ies)",
                "estimated_revenue": T["cross_sell_upgrade_revenue"] * 100 * r["basic"],
            }
        )
    )
    cross = pd.concat(recs, ignore_index=True)
    cross["estimated_revenue"] = cross["estimated_revenue"].astype("Int64")
    rev = cross["estimated_revenue"]
    cross["priority"] = np.select(
        [
            (rev >= T["cross_sell_priority_high_min"] * 100).fillna(False).to_numpy(bool),
            (rev >= T["cross_sell_priority_medium_min"] * 100).fillna(False).to_numpy(bool),
        ],
        ["High", "Medium"],
        "Low",
    )
    cross = cross.sort_values(["customer_id", "recommendation"], ignore_index=True)

    return {
        "risk_scoring": risk,
        "customer_360_view": c360,
        "claims_analytics": analytics,
        "monthly_kpis": kpis,
        "provider_performance": provider_perf,
        "cross_sell_recommendations": cross,
    }


# ---------------------------------------------------------------------------------------------
# Output: the product's gold column types (money decimal(18,2), dates date32, counts int32)
# ---------------------------------------------------------------------------------------------

MONEY = {
    "annual_premium",
    "premium_earned",
    "total_claimed",
    "total_paid",
    "lifetime_value",
    "claim_amount",
    "paid_amount",
    "avg_claim_amount",
    "estimated_revenue",
}
DATES = {"customer_since", "last_claim_date", "service_date"}
INT32 = {
    "tenure_months",
    "total_pets",
    "active_pets",
    "total_policies",
    "active_policies",
    "total_claims",
    "risk_score",
    "processing_days",
    "approved_claims",
    "denied_claims",
    "new_customers",
    "policies_in_force",
    "unique_customers",
    "claims_last_12_months",
    "oldest_active_pet_age",
    "claim_frequency_score",
    "loss_ratio_score",
    "pet_age_score",
    "pre_existing_score",
    "total_risk_score",
}
BOOLS = {"is_in_network", "has_pre_existing_condition"}


def _decimal_from_cents(cents: pd.Series) -> pa.Array:
    """decimal128(18, 2) straight from integer cents (its unscaled value), no rounding step."""
    mask = cents.isna().to_numpy(dtype=bool)
    v = cents.fillna(0).to_numpy(dtype=np.int64)
    words = np.empty((len(v), 2), dtype=np.int64)
    words[:, 0] = v
    words[:, 1] = v >> 63  # sign extension to 128 bits
    validity = pa.array(~mask).buffers()[1] if mask.any() else None
    return pa.Array.from_buffers(
        pa.decimal128(18, 2), len(v), [validity, pa.py_buffer(words)], null_count=int(mask.sum())
    )


def to_arrow(df: pd.DataFrame) -> pa.Table:
    arrays = {}
    for col in df.columns:
        s = df[col]
        if col in MONEY:
            arrays[col] = _decimal_from_cents(s.astype("Int64"))
        elif col in DATES:
            mask = s.isna().to_numpy(dtype=bool)
            arrays[col] = pa.array(
                s.to_numpy(dtype="datetime64[us]").astype("datetime64[D]"),
                mask=mask,
                type=pa.date32(),
            )
        elif col in INT32:
            s = s.astype("Int64")
            arrays[col] = pa.array(
                s.fillna(0).to_numpy(dtype=np.int32), mask=s.isna().to_numpy(dtype=bool)
            )
        elif col in BOOLS:
            s = s.astype("boolean")
            arrays[col] = pa.array(
                s.fillna(False).to_numpy(dtype=bool), mask=s.isna().to_numpy(dtype=bool)
            )
        elif pd.api.types.is_float_dtype(s.dtype):
            arrays[col] = pa.array(s.to_numpy(dtype=np.float64), from_pandas=True)
        else:
            arr = pa.array(s, from_pandas=True)
            arrays[col] = arr if arr.type == pa.string() else arr.cast(pa.string())
    return pa.table(arrays)


def run(lake_root: str, as_of: datetime.date, out_dir: str) -> dict[str, int]:
    """Read the five bronze Delta tables of the lake at lake_root, build silver (5 tables +
    quarantine) and the six gold tables in pandas, write each gold table as
    out_dir/<table>.parquet, return {table: rows} for silver and gold tables."""
    silver = build_silver(lake_root)
    counts = {name: len(df) for name, df in silver.items()}
    gold = build_gold(silver, as_of)
    del silver
    os.makedirs(out_dir, exist_ok=True)
    for name in GOLD_TABLES:
        df = gold.pop(name)
        pq.write_table(to_arrow(df), os.path.join(out_dir, f"{name}.parquet"))
        counts[name] = len(df)
        del df
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", required=True, help="lake root (folder holding bronze/)")
    parser.add_argument(
        "--as-of",
        default=datetime.datetime.now(datetime.UTC).date().isoformat(),
        help="as-of date YYYY-MM-DD (default today UTC)",
    )
    parser.add_argument("--out", required=True, help="folder for the gold Parquet files")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    counts = run(args.lake, datetime.date.fromisoformat(args.as_of), args.out)
    print(
        json.dumps({"seconds": round(time.perf_counter() - started, 2), "rows": counts}, indent=2)
    )


if __name__ == "__main__":
    from petinsure_assets.entry_point import run_and_exit

    run_and_exit(main)
