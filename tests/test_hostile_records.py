"""Hostile records: no value of any raw record stops the lake (docs/rules.md).

One small raw zone holds every hostile record next to good ones and is refreshed once, through
the real command line (`python -m petinsure_assets refresh`), in its own process. Each case is its
own test: the record lands in quarantine with its reason (or a soft field becomes null), every
raw record is accounted for (raw records = bronze rows = silver + quarantine, by reason), the
refresh exits 0 and gold is built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import LakeFixture
from tests.test_pipeline import AS_OF, CUSTOMERS, PETS, POLICIES, PROVIDERS, claim, write_base


def _claim(claim_id: str, **fields) -> str:
    record = json.loads(claim(claim_id, "2025-03-10", "100.00", "80.00"))
    return json.dumps({**record, **fields})


CONTACT_REASON = "Missing invoice; call (555) 201-3344 or mail claims.desk@Vet-Clinic.co.uk"

# claim_id -> (raw JSON line, the reason it is quarantined for; None = reaches silver)
CLAIMS: dict[str, tuple[str, str | None]] = {
    "CLM-GOOD": (_claim("CLM-GOOD"), None),
    "CLM-PENDING-PAYMENT": (_claim("CLM-PENDING-PAYMENT", status="Pending Payment"), "bad_value"),
    "CLM-EMPTY-STATUS": (_claim("CLM-EMPTY-STATUS", status=""), "bad_value"),
    "CLM-CASE-STATUS": (_claim("CLM-CASE-STATUS", status="  uNDER rEVIEW "), None),
    "CLM-NOT-A-NUMBER": (_claim("CLM-NOT-A-NUMBER", claim_amount="abc"), "bad_value"),
    # JSON numbers as the sources write them (the text is kept as written).
    "CLM-1E11": (
        _claim("CLM-1E11", claim_amount=0).replace(
            '"claim_amount": 0', '"claim_amount": 100000000000'
        ),
        "bad_value",
    ),
    "CLM-MAX-DECIMAL": (
        _claim("CLM-MAX-DECIMAL", claim_amount=0).replace(
            '"claim_amount": 0', '"claim_amount": 9999999999999999.99'
        ),
        "bad_value",
    ),
    "CLM-YEAR-1": (_claim("CLM-YEAR-1", service_date="0001-01-01"), "bad_date"),
    "CLM-YEAR-9999": (_claim("CLM-YEAR-9999", service_date="9999-12-31"), "bad_date"),
    "CLM-GARBAGE-DATE": (_claim("CLM-GARBAGE-DATE", service_date="2025-12-31garbage"), "bad_date"),
    "CLM-HOUR-25": (_claim("CLM-HOUR-25", service_date="2025-12-31T25:00:00"), "bad_date"),
    "CLM-NO-DATE": (_claim("CLM-NO-DATE", service_date=" "), "bad_date"),
    "CLM-ISO-TIME": (_claim("CLM-ISO-TIME", service_date="2025-04-02T23:59:59.5+02:00"), None),
    # Soft fields out of bounds become null: paid amount 10^11, processing days 10^10.
    "CLM-HUGE-PAID": (
        _claim("CLM-HUGE-PAID", paid_amount="100000000000", processing_days="10000000000"),
        None,
    ),
    "CLM-CONTACT": (
        _claim("CLM-CONTACT", status="Denied", paid_amount="0.00", denial_reason=CONTACT_REASON),
        None,
    ),
    # A version stamp far in the future is no stamp: the claim reaches silver, updated_at null.
    "CLM-FUTURE-STAMP": (_claim("CLM-FUTURE-STAMP", updated_at="9999-12-31T00:00:00"), None),
}
POLICY_LINES = {
    "POL-LAPSED": (
        "POL-LAPSED,PN-9,CUST-1,PET-1,Basic,10.00,250,3000,2025-01-01,2025-12-31,Lapsed,"
        "false,false,false,2025-01-01",
        "bad_value",
    ),
    "POL-NO-STATUS": (
        "POL-NO-STATUS,PN-8,CUST-1,PET-1,Basic,10.00,250,3000,2025-01-01,2025-12-31,,"
        "false,false,false,2025-01-01",
        "bad_value",
    ),
    "POL-HUGE-PREMIUM": (
        "POL-HUGE-PREMIUM,PN-7,CUST-2,PET-2,Basic,9999999999999999.99,"
        "1e12,100000000000,2025-01-01,2025-12-31,Expired,false,false,false,"
        "2025-01-01",
        None,
    ),
}


@pytest.fixture
def hostile(hostile_records_lake) -> tuple[LakeFixture, subprocess.CompletedProcess]:
    """The hostile records refreshed by `petinsure refresh`: built once per session (conftest's
    `hostile_records_lake`, by `build_hostile`), shared with the pandas and Spark baselines."""
    return hostile_records_lake


def build_hostile(tmp_path_factory) -> tuple[LakeFixture, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("hostile")
    lake = LakeFixture(root / "lake")
    lake.write_raw("customers", "customers.csv", CUSTOMERS)
    lake.write_raw("pets", "pets.csv", PETS)
    lake.write_raw(
        "policies",
        "policies.csv",
        POLICIES.rstrip("\n") + "\n" + "\n".join(line for line, _ in POLICY_LINES.values()) + "\n",
    )
    lake.write_raw("providers", "providers.csv", PROVIDERS)
    lake.write_raw("claims", "claims.jsonl", "\n".join(line for line, _ in CLAIMS.values()) + "\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(root / "dagster_home"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "petinsure_assets",
            "refresh",
            "--lake",
            str(lake.root),
            "--as-of",
            AS_OF,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    return lake, done


def accounting(lake: LakeFixture, entity: str, table: str, key: str) -> dict:
    """Raw records, bronze rows, silver rows and quarantine rows by reason for one entity, and
    where each key went (silver, or its quarantine reason)."""
    bronze = lake.rows("bronze", f"{entity}_raw")
    silver = lake.rows("silver", table)
    quarantine = [q for q in lake.rows("silver", "quarantine") if q["entity"] == entity]
    # The fixture has one version per key, so silver before dedup = silver.
    assert len({r[key] for r in bronze}) == len(bronze)
    return {
        "bronze": len(bronze),
        "silver": len(silver),
        "quarantine": dict(Counter(q["reason"] for q in quarantine)),
        "where": {
            **{r[key]: None for r in silver},
            **{q["record_key"]: q["reason"] for q in quarantine},
        },
        "detail": {q["record_key"]: q["detail"] for q in quarantine},
    }


def _claims(lake: LakeFixture) -> dict:
    counts = accounting(lake, "claims", "fact_claims", "claim_id")
    assert counts["bronze"] == len(CLAIMS) == 16
    expected = Counter(reason for _, reason in CLAIMS.values() if reason)
    assert counts["quarantine"] == dict(expected) == {"bad_value": 5, "bad_date": 5}
    assert counts["silver"] == 6 and counts["silver"] + 10 == counts["bronze"]
    assert counts["where"] == {k: reason for k, (_, reason) in CLAIMS.items()}
    return counts


def _assert_gold_built(lake: LakeFixture) -> None:
    # Claims in silver are all in 2025-03 and 2025-04: two months, not millennia.
    assert [r["year_month"] for r in lake.rows("gold", "monthly_kpis", "year_month")] == [
        "2025-03",
        "2025-04",
    ]
    assert len(lake.rows("gold", "claims_analytics")) == 6


def _case(hostile, claim_id: str, reason: str | None, detail: str | None = None) -> dict:
    lake, done = hostile
    assert done.returncode == 0, done.stdout + done.stderr
    counts = _claims(lake)
    assert counts["where"][claim_id] == reason
    if detail is not None:
        assert counts["detail"][claim_id] == detail
    _assert_gold_built(lake)
    return counts


def test_claim_status_pending_payment_is_bad_value(hostile):
    _case(
        hostile,
        "CLM-PENDING-PAYMENT",
        "bad_value",
        "status Pending Payment is not one of Submitted, Under Review, Approved, Denied, Paid",
    )


def test_claim_with_empty_status_is_bad_value(hostile):
    _case(
        hostile,
        "CLM-EMPTY-STATUS",
        "bad_value",
        "status (empty) is not one of Submitted, Under Review, Approved, Denied, Paid",
    )


def test_claim_status_matches_case_insensitively_and_is_stored_in_its_accepted_spelling(hostile):
    _case(hostile, "CLM-CASE-STATUS", None)
    (row,) = [
        r for r in hostile[0].rows("silver", "fact_claims") if r["claim_id"] == "CLM-CASE-STATUS"
    ]
    assert row["status"] == "Under Review"


def test_policy_with_unknown_or_empty_status_is_bad_value(hostile):
    lake, done = hostile
    assert done.returncode == 0, done.stdout + done.stderr
    counts = accounting(lake, "policies", "dim_policies", "policy_id")
    assert counts["bronze"] == 5 and counts["silver"] == 3
    assert counts["quarantine"] == {"bad_value": 2}
    assert counts["where"] == {
        "POL-1": None,
        "POL-2": None,
        "POL-HUGE-PREMIUM": None,
        "POL-LAPSED": "bad_value",
        "POL-NO-STATUS": "bad_value",
    }
    assert counts["detail"]["POL-LAPSED"] == (
        "status Lapsed is not one of Active, Expired, Cancelled, Pending"
    )
    _assert_gold_built(lake)


def test_claim_amount_not_a_number_is_bad_value(hostile):
    _case(
        hostile,
        "CLM-NOT-A-NUMBER",
        "bad_value",
        "claim_amount abc is not a number below 10^9 in magnitude",
    )


def test_claim_amount_of_10_to_the_11_is_bad_value(hostile):
    _case(
        hostile,
        "CLM-1E11",
        "bad_value",
        "claim_amount 100000000000 is not a number below 10^9 in magnitude",
    )


def test_claim_amount_at_the_largest_decimal_is_bad_value(hostile):
    counts = _case(hostile, "CLM-MAX-DECIMAL", "bad_value")
    # (The detail quotes bronze's text of the JSON number, which bronze may normalise.)
    assert counts["detail"]["CLM-MAX-DECIMAL"].startswith("claim_amount ")
    assert counts["detail"]["CLM-MAX-DECIMAL"].endswith(" is not a number below 10^9 in magnitude")


def test_service_date_in_year_1_is_bad_date(hostile):
    _case(
        hostile,
        "CLM-YEAR-1",
        "bad_date",
        "service_date 0001-01-01 is not a date from 1900-01-01 to a year after ingestion",
    )


def test_service_date_in_year_9999_is_bad_date(hostile):
    _case(hostile, "CLM-YEAR-9999", "bad_date")


def test_date_with_trailing_garbage_is_bad_date(hostile):
    _case(hostile, "CLM-GARBAGE-DATE", "bad_date")


def test_date_time_with_hour_25_is_bad_date(hostile):
    _case(hostile, "CLM-HOUR-25", "bad_date")


def test_blank_service_date_is_bad_date(hostile):
    _case(
        hostile,
        "CLM-NO-DATE",
        "bad_date",
        "service_date (empty) is not a date from 1900-01-01 to a year after ingestion",
    )


def test_full_iso_date_time_gives_its_date(hostile):
    _case(hostile, "CLM-ISO-TIME", None)
    (row,) = [
        r for r in hostile[0].rows("silver", "fact_claims") if r["claim_id"] == "CLM-ISO-TIME"
    ]
    assert str(row["service_date"]) == "2025-04-02"


def test_soft_amounts_out_of_bounds_become_null(hostile):
    lake, _ = hostile
    _case(hostile, "CLM-HUGE-PAID", None)
    (row,) = [r for r in lake.rows("silver", "fact_claims") if r["claim_id"] == "CLM-HUGE-PAID"]
    assert (row["paid_amount"], row["processing_days"], row["_quality_score"]) == (None, None, 50)
    (policy,) = [
        r for r in lake.rows("silver", "dim_policies") if r["policy_id"] == "POL-HUGE-PREMIUM"
    ]
    # plan_name valid; monthly_premium, deductible and coverage_limit out of bounds: 1 of 4 -> 25.
    assert (
        policy["monthly_premium"],
        policy["deductible"],
        policy["coverage_limit"],
        policy["_quality_score"],
    ) == (None, None, None, 25)
    # A paid amount that is null counts as 0: CLM-HUGE-PAID is Paid, reimbursed 0 of 100.00.
    (analytics,) = [
        r for r in lake.rows("gold", "claims_analytics") if r["claim_id"] == "CLM-HUGE-PAID"
    ]
    assert analytics["reimbursement_rate"] == 0.0


def test_contact_data_in_denial_reason_is_masked_in_gold_exports_and_snapshot(hostile):
    lake, _ = hostile
    _case(hostile, "CLM-CONTACT", None)
    masked = "Missing invoice; call [phone] or mail [email]"
    # Silver (internal) keeps the text as sent; gold and everything published from it mask it.
    (silver,) = [r for r in lake.rows("silver", "fact_claims") if r["claim_id"] == "CLM-CONTACT"]
    assert silver["denial_reason"] == CONTACT_REASON
    (gold,) = [r for r in lake.rows("gold", "claims_analytics") if r["claim_id"] == "CLM-CONTACT"]
    assert gold["denial_reason"] == masked
    export = pq.read_table(lake.root / "gold" / "exports" / "claims_analytics" / "part-0.parquet")
    reasons = {r["claim_id"]: r["denial_reason"] for r in export.to_pylist()}
    assert reasons["CLM-CONTACT"] == masked
    latest = json.loads((lake.root / "gold" / "snapshots" / "latest.json").read_text())
    published = list((lake.root / "gold" / "snapshots" / "v" / latest["version"]).iterdir())
    texts = [p.read_bytes() for p in published]
    assert not any(b"Vet-Clinic" in t or b"201-3344" in t for t in texts)
    snapshot = pq.read_table(
        lake.root / "gold" / "snapshots" / "v" / latest["version"] / "claims_analytics.parquet"
    ).to_pylist()
    assert [r["denial_reason"] for r in snapshot if r["claim_id"] == "CLM-CONTACT"] == [masked]


def test_updated_at_far_in_the_future_is_no_version_stamp(hostile):
    _case(hostile, "CLM-FUTURE-STAMP", None)
    [row] = [
        r for r in hostile[0].rows("silver", "fact_claims") if r["claim_id"] == "CLM-FUTURE-STAMP"
    ]
    assert row["updated_at"] is None


def test_an_updated_at_far_in_the_future_does_not_win_deduplication(lake: LakeFixture):
    """Two versions of one claim: the one stamped 9999-12-31 (a clock error) has no usable stamp,
    so the version stamped 2025-03-11 is the latest; both versions are accounted for."""
    write_base(
        lake,
        [
            _claim("CLM-1", claim_amount="100.00", updated_at="9999-12-31T00:00:00"),
            _claim(
                "CLM-1", claim_amount="90.00", paid_amount="70.00", updated_at="2025-03-11T00:00:00"
            ),
        ],
    )
    lake.refresh(as_of=AS_OF)
    assert len(lake.rows("bronze", "claims_raw")) == 2
    assert [q for q in lake.rows("silver", "quarantine") if q["entity"] == "claims"] == []
    [row] = lake.rows("silver", "fact_claims")
    assert (str(row["claim_amount"]), str(row["updated_at"])) == ("90.00", "2025-03-11 00:00:00")
