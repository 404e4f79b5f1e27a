"""The whole graph in-process on a temporary lake: idempotence, new and changed files, bad input."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from petinsure_assets.catalog import CATALOG
from tests.conftest import LakeFixture

AS_OF = "2025-06-30"

CUSTOMERS = """
customer_id,first_name,last_name,email,phone,address,city,state,zip_code,date_of_birth,customer_since,segment,lifetime_value,updated_at
CUST-1,Ann,Lee,ann@example.com,5551234567,1 Main St,Austin,TX,78701,1980-01-02,2023-01-15,Family,0,2024-01-01T00:00:00
CUST-2,Bob,Ray,bob@example.com,5559876543,2 Oak St,Reno,NV,89501,1975-05-05,2024-03-01,Budget,0,2024-01-01T00:00:00
"""
PETS = """
pet_id,customer_id,pet_name,species,breed,gender,date_of_birth,weight_lbs,microchip_id,is_neutered,vaccination_status,pre_existing_conditions,is_active,updated_at
PET-1,CUST-1,Rex,Dog,Lab,Male,2018-05-01,60,123456789012345,true,Current,None,true,2024-01-01
PET-2,CUST-2,Tom,Cat,Siamese,Male,2021-01-01,9,123456789012346,true,Current,None,true,2024-01-01
"""
POLICIES = """
policy_id,policy_number,customer_id,pet_id,plan_name,monthly_premium,deductible,coverage_limit,effective_date,expiration_date,status,includes_wellness,includes_dental,includes_behavioral,updated_at
POL-1,PN-1,CUST-1,PET-1,Standard,40.00,250,5000,2025-01-01,2025-12-31,Active,true,true,false,2025-01-01
POL-2,PN-2,CUST-2,PET-2,Basic,25.00,250,3000,2025-01-01,2025-12-31,Active,true,true,false,2025-01-01
"""
PROVIDERS = """
provider_id,provider_name,provider_type,address,city,state,zip_code,phone,is_in_network,average_rating,specialties,updated_at
PRV-1,Vet A,General Practice,2 Oak,Austin,TX,78701,5551112222,true,4.5,Dogs,2024-01-01
"""


def claim(
    claim_id: str,
    service_date: str,
    amount: str,
    paid: str,
    status: str = "Paid",
    customer: str = "CUST-1",
    policy: str = "POL-1",
    pet: str = "PET-1",
) -> str:
    return json.dumps(
        {
            "claim_id": claim_id,
            "claim_number": f"N-{claim_id}",
            "customer_id": customer,
            "policy_id": policy,
            "pet_id": pet,
            "provider_id": "PRV-1",
            "claim_type": "Illness",
            "claim_category": "Diagnostics",
            "service_date": service_date,
            "claim_amount": amount,
            "paid_amount": paid,
            "status": status,
            "processing_days": 4,
            "denial_reason": None,
            "updated_at": f"{service_date}T12:00:00",
        }
    )


BASE_CLAIMS = [
    claim("CLM-1", "2025-02-10", "200.00", "150.00"),
    claim("CLM-2", "2025-03-10", "100.00", "80.00"),
]


def write_base(lake: LakeFixture, claims: list[str] = BASE_CLAIMS) -> None:
    """The base raw zone: two customers, pets, policies, a provider, and `claims` (JSON lines)."""
    lake.write_raw("customers", "customers.csv", CUSTOMERS)
    lake.write_raw("pets", "pets.csv", PETS)
    lake.write_raw("policies", "policies.csv", POLICIES)
    lake.write_raw("providers", "providers.csv", PROVIDERS)
    lake.write_raw("claims", "claims.jsonl", "\n".join(claims) + "\n")


def add_uninsured_pet(lake: LakeFixture) -> None:
    """An insured customer's second, uninsured pet: a cross-sell recommendation to compute."""
    lake.write_raw(
        "pets",
        "PET-3_20250101_000000_000000.json",
        json.dumps(
            {
                "pet_id": "PET-3",
                "customer_id": "CUST-1",
                "pet_name": "Kit",
                "species": "Cat",
                "is_active": "true",
                "updated_at": "2025-01-01T00:00:00",
            }
        ),
    )


@pytest.fixture
def base_lake(lake: LakeFixture) -> LakeFixture:
    write_base(lake)
    return lake


GOLD = tuple(spec.name for spec in CATALOG.gold)


def test_second_run_adds_nothing_and_gives_identical_gold(base_lake: LakeFixture):
    first = base_lake.refresh(as_of=AS_OF)
    gold_before = {t: base_lake.rows("gold", t) for t in GOLD}
    second = base_lake.refresh(as_of=AS_OF)

    assert second.rows == first.rows
    assert {t: base_lake.rows("gold", t) for t in GOLD} == gold_before
    bronze = base_lake.rows("bronze", "claims_raw")
    assert len(bronze) == 2
    assert len({(r["_source_file"], r["_source_line"]) for r in bronze}) == 2
    # The second run read no file: every ledger entry of it says the files were not touched.
    ledger = base_lake.rows("bronze", "_file_ledger")
    assert {r["status"] for r in ledger} == {"ingested"}
    assert len(ledger) == 5


def test_new_raw_file_adds_exactly_its_rows(base_lake: LakeFixture):
    base_lake.refresh(as_of=AS_OF)
    base_lake.write_raw(
        "claims",
        "CLM-3_20250401_101500_000001.json",
        claim("CLM-3", "2025-04-01", "50.00", "40.00"),
    )
    base_lake.refresh(as_of=AS_OF)

    bronze = base_lake.rows("bronze", "claims_raw")
    assert len(bronze) == 3
    new = [r for r in bronze if r["claim_id"] == "CLM-3"]
    assert len(new) == 1
    assert new[0]["_source_file"] == "raw/claims/CLM-3_20250401_101500_000001.json"
    assert new[0]["_source_line"] == 1
    # Other entities read nothing new.
    assert len(base_lake.rows("bronze", "customers_raw")) == 2
    customer = [
        r for r in base_lake.rows("gold", "customer_360_view") if r["customer_id"] == "CUST-1"
    ][0]
    assert customer["total_claims"] == 3
    assert str(customer["total_paid"]) == "270.00"  # 150 + 80 + 40


def test_changed_file_is_reingested_and_dedup_keeps_latest(base_lake: LakeFixture):
    base_lake.refresh(as_of=AS_OF)
    path = base_lake.root / "raw" / "customers" / "customers.csv"
    path.write_text(
        path.read_text().replace(
            "CUST-2,Bob,Ray,bob@example.com,5559876543,2 Oak St,Reno,NV,89501,1975-05-05,2024-03-01,Budget,0,2024-01-01T00:00:00",
            "CUST-2,Bob,Ray,bob@example.com,5559876543,9 New Rd,Reno,NV,89501,1975-05-05,2024-03-01,Budget,0,2024-06-01T00:00:00",
        )
    )
    base_lake.refresh(as_of=AS_OF)

    assert len(base_lake.rows("bronze", "customers_raw")) == 4  # the changed file, whole, again
    dims = {r["customer_id"]: r for r in base_lake.rows("silver", "dim_customers")}
    assert len(dims) == 2
    assert dims["CUST-2"]["address"] == "9 New Rd"
    # A touched but unchanged file is hashed, recognised and not read again.
    pets = base_lake.root / "raw" / "pets" / "pets.csv"
    os.utime(pets, ns=(pets.stat().st_atime_ns, pets.stat().st_mtime_ns + 10**9))
    base_lake.refresh(as_of=AS_OF)
    assert len(base_lake.rows("bronze", "pets_raw")) == 2
    pet_ledger = [r for r in base_lake.rows("bronze", "_file_ledger") if r["entity"] == "pets"]
    assert [r["status"] for r in sorted(pet_ledger, key=lambda r: r["recorded_at"])] == [
        "ingested",
        "unchanged",
    ]


def test_malformed_json_line_and_extra_csv_column_do_not_break_the_run(base_lake: LakeFixture):
    claims = base_lake.root / "raw" / "claims" / "claims.jsonl"
    claims.write_text(claims.read_text() + '{"claim_id": "CLM-9", "claim_amount": \n')
    base_lake.write_raw(
        "providers",
        "providers_extra.csv",
        """
        provider_id,provider_name,provider_type,address,city,state,zip_code,phone,is_in_network,average_rating,specialties,updated_at,website
        PRV-2,Vet B,Emergency,3 Elm,Austin,TX,78701,5551112223,false,3.9,Cats,2024-01-01,vetb.example
        PRV-3,Vet C,Emergency,4 Elm,Austin,TX,78701,5551112224,false,4.1,Cats,2024-01-01
        """,
    )
    summary = base_lake.refresh(as_of=AS_OF)

    quarantine = base_lake.rows("silver", "quarantine")
    assert [
        (q["entity"], q["reason"], q["source_file"], q["source_line"], q["record"])
        for q in quarantine
    ] == [
        (
            "claims",
            "malformed_record",
            "raw/claims/claims.jsonl",
            3,
            '{"claim_id": "CLM-9", "claim_amount": ',
        ),
        (
            "providers",
            "malformed_record",
            "raw/providers/providers_extra.csv",
            3,
            "PRV-3,Vet C,Emergency,4 Elm,Austin,TX,78701,5551112224,false,4.1,Cats,2024-01-01",
        ),
    ]
    assert summary.quarantined == {"claims.malformed_record": 1, "providers.malformed_record": 1}
    providers = {
        r["provider_id"]: r for r in base_lake.rows("bronze", "providers_raw") if r["provider_id"]
    }
    assert json.loads(providers["PRV-2"]["_extra_columns"]) == {"website": "vetb.example"}
    assert providers["PRV-1"]["_extra_columns"] is None
    assert {r["provider_id"] for r in base_lake.rows("silver", "dim_providers")} == {
        "PRV-1",
        "PRV-2",
    }


def test_a_line_that_is_not_utf8_spoils_only_itself(base_lake: LakeFixture):
    (base_lake.root / "raw" / "pets" / "pets_broken.csv").write_bytes(
        b"pet_id,customer_id\nPET-7,CUST-1\n\xff\xfe broken\n"
    )
    base_lake.refresh(as_of=AS_OF)

    bad = [
        q
        for q in base_lake.rows("silver", "quarantine")
        if q["source_file"] == "raw/pets/pets_broken.csv"
    ]
    assert [(q["reason"], q["source_line"], q["record"]) for q in bad] == [
        ("malformed_record", 3, "\\xff\\xfe broken")
    ]
    assert "PET-7" in {r["pet_id"] for r in base_lake.rows("silver", "dim_pets")}
    ledger = [
        r
        for r in base_lake.rows("bronze", "_file_ledger")
        if r["source_file"] == "raw/pets/pets_broken.csv"
    ]
    assert [(r["status"], r["rows"], r["bad_rows"]) for r in ledger] == [("ingested", 2, 1)]
    assert ledger[0]["error"].startswith(
        "1 line(s) not UTF-8, kept as malformed records; header lacks column(s) pet_name, species, "
    )


def test_ledger_is_recovered_from_bronze_commits_after_a_crash(base_lake: LakeFixture):
    base_lake.refresh(as_of=AS_OF)
    # A crash between the bronze commit and the ledger write: the ledger is gone, bronze is not.
    shutil.rmtree(base_lake.root / "bronze" / "_file_ledger")
    base_lake.refresh(as_of=AS_OF)

    assert len(base_lake.rows("bronze", "claims_raw")) == 2
    assert len(base_lake.rows("bronze", "customers_raw")) == 2


def test_every_bronze_record_is_in_silver_or_quarantine(base_lake: LakeFixture):
    base_lake.write_raw(
        "claims",
        "more.jsonl",
        "\n".join(
            [
                claim("CLM-5", "2025-02-11", "-5.00", "0.00"),
                claim("CLM-6", "not a date", "10.00", "0.00"),
                claim("CLM-7", "2025-02-11", "10.00", "20.00"),
                claim("CLM-8", "2025-02-11", "10.00", "5.00", policy="POL-404"),
                claim("", "2025-02-11", "10.00", "5.00"),
                claim("CLM-1", "2025-02-10", "200.00", "150.00"),  # an exact duplicate
                "not json",
            ]
        )
        + "\n",
    )
    base_lake.refresh(as_of=AS_OF)

    quarantine = base_lake.rows("silver", "quarantine")
    assert {(q["record_key"], q["reason"]) for q in quarantine if q["entity"] == "claims"} == {
        ("CLM-5", "negative_amount"),
        ("CLM-6", "bad_date"),
        ("CLM-7", "overpaid"),
        ("CLM-8", "orphan_fk"),
        (None, "missing_key"),
        (None, "malformed_record"),
    }
    orphan = [q for q in quarantine if q["record_key"] == "CLM-8"][0]
    assert orphan["detail"] == "policy_id POL-404 not in dim_policies"
    assert (orphan["source_file"], orphan["source_line"]) == ("raw/claims/more.jsonl", 4)
    bronze = base_lake.rows("bronze", "claims_raw")
    silver = base_lake.rows("silver", "fact_claims")
    assert len(bronze) == 9
    assert [r["claim_id"] for r in silver] == ["CLM-1", "CLM-2"]
    # 9 bronze = 3 valid before dedup (CLM-1 twice, CLM-2) + 6 quarantined
    assert len([q for q in quarantine if q["entity"] == "claims"]) == 6


def test_exports_are_plain_parquet_without_personal_data(base_lake: LakeFixture):
    import pyarrow.parquet as pq

    base_lake.refresh(as_of=AS_OF)
    for table in GOLD:
        folder = base_lake.root / "gold" / "exports" / table
        assert sorted(p.name for p in folder.iterdir()) == ["part-0.parquet"]
        schema = pq.read_schema(folder / "part-0.parquet")
        assert not {"email", "phone", "address", "date_of_birth"} & set(schema.names), table
    kpis = pq.read_table(base_lake.root / "gold" / "exports" / "monthly_kpis" / "part-0.parquet")
    assert sorted(kpis.column("year_month").to_pylist()) == ["2025-02", "2025-03"]
