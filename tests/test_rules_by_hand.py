"""Hand-computed expectations: a tiny dirty raw zone, every silver and gold number worked out BY HAND
from /work/shared/RULES.md (and DESIGN.md section 5), independently of the product's SQL.

The SQL files were read only for output column names and the documented choices where RULES.md is
silent (email regex, phone formats, state names, zip = 5 digits, microchip = 15 digits, weight > 0,
rating 0-5, processing_days >= 0, gender Male/Female, booleans, reason texts of cross-sell, ...).
Every expected value below carries its arithmetic in a comment.

as_of = 2025-06-30, so "last 12 months" is 2024-06-30 < service_date <= 2025-06-30 and the last
month in which a policy can be in force is 2025-06.

Cast of the fixture (5 customers, 8 pets, 7 policies, 10 claims, 3 providers in silver):
  CUST-1 Alice  - Silver tier, Medium risk (exactly 25), pet exactly 10 years old, Dental fires,
                  has a Wellness claim but her policy includes wellness (Wellness Add-on does not fire)
  CUST-2 Bob    - Gold tier, High risk (exactly 50), pet exactly 7, an Expired policy that earns,
                  Plan Upgrade fires (Basic + 2 claims in 12 months), deduplicated (2 versions)
  CUST-3 Carol  - Bronze tier, Medium risk, claim exactly on as_of - 12 months (not counted) and one
                  the day after (counted) -> only 1 recent claim, Plan Upgrade does not fire;
                  pet aged 2 (35 months) -> Dental does not fire; pre-existing condition on active pet
  CUST-4 Dan    - Bronze tier, premium earned 0 (only a Cancelled policy) -> loss_ratio null although
                  he has a paid claim; Low risk; inactive 12-year-old pet with Diabetes scores nothing;
                  Insure Additional Pet at the BOOK-WIDE average
  CUST-5 Eve    - Platinum tier, Critical risk (exactly 75), pet aged 9 (119 months) -> 10 points,
                  Insure Additional Pet at HER OWN average of 2 policies, Wellness Add-on x2, Dental
                  for one pet (the other pet's policy includes dental)
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from petinsure_assets.catalog import CATALOG
from tests.conftest import LakeFixture

AS_OF = "2025-06-30"
D = Decimal
date = dt.date


# --------------------------------------------------------------------------------------------
# Raw files (line numbers matter: CSV header is line 1, JSONL first record is line 1)
# --------------------------------------------------------------------------------------------

CUSTOMERS_CSV = (
    "\n".join(
        [
            # line 1
            "customer_id,first_name,last_name,email,phone,address,city,state,zip_code,date_of_birth,"
            "customer_since,segment,lifetime_value,updated_at",
            # line 2: quoted address with a comma, email with spaces/upper case, full state name
            'CUST-1,Alice,Smith, Alice.Smith@Example.COM ,555-123-4567,"10 Oak St, Apt 2",Austin,Texas,'
            "78701,1980-05-15,2022-01-10,Premium,0,2024-01-01T00:00:00",
            # line 3: Bob, OLDER version (loses dedup)
            "CUST-2,Bob,Jones,bob@old.com,5125550199,22 Pine Rd,  Austin  ,tx,7870,03/22/1975,01/15/2023,"
            "Standard,,2024-01-01T00:00:00",
            # line 4: Carol: bad email (no TLD), 5-digit phone, empty address, bad dob
            "CUST-3,  Carol ,White,carol@invalid,12345,,Boston,Massachusetts,02101,not a date,2024-06-01,"
            "Budget,,2024-06-01T00:00:00",
            # line 5: wrong number of fields -> malformed_record
            "CUST-9,Bad,Row",
            # line 6: empty key -> missing_key
            ",Nobody,Here,nobody@example.com,5125550000,1 Nowhere,Austin,TX,78701,1990-01-01,2024-01-01,"
            "Budget,,2024-01-01T00:00:00",
            # line 7: Dan: spaced phone, lower-case state code, trailing spaces in last name
            "CUST-4,Dan,Brown  ,dan.brown@example.org,303 555 0123,5 Birch Ln,Denver,co,80202,1990-12-01,"
            "2024-09-20,Family,,2024-09-20T00:00:00",
            # line 8: Eve: +1 phone, whitespace-only address, impossible dob, US-format customer_since
            "CUST-5,Eve,Green,eve@example.net,+1 415 555 0177,   ,San Francisco,california,94105,1970-02-30,"
            "07/31/2020,Senior,,2024-01-01T00:00:00",
            # line 9: Bob, NEWER version (wins dedup)
            "CUST-2,Bob,Jones, BOB@NEW.COM ,1-512-555-0199,22 Pine Rd,  Austin  ,tx,7870,03/22/1975,01/15/2023,"
            "Standard,,2024-06-01T10:00:00",
        ]
    )
    + "\n"
)

PROVIDERS_CSV = (
    "\n".join(
        [
            "provider_id,provider_name,provider_type,address,city,state,zip_code,phone,is_in_network,"
            "average_rating,specialties,updated_at",
            "PRV-1,Happy Paws Vet,General Practice,1 Main St,Austin,texas,73301,512.555.0101,yes,4.5,Dogs,2024-01-01",
            "PRV-2,City Emergency Clinic,Emergency,,Dallas,TX,75201,555-0102,N,6.2,,2024-01-01",
            "PRV-3,Quiet Cat Clinic,Specialty,3 Elm Rd,Denver,Colorado,80201,+1 (303) 555-0103,1,5,Cats,2024-01-01",
        ]
    )
    + "\n"
)

PETS_CSV = (
    "\n".join(
        [
            "pet_id,customer_id,pet_name,species,breed,gender,date_of_birth,weight_lbs,microchip_id,"
            "is_neutered,vaccination_status,pre_existing_conditions,is_active,updated_at",
            "PET-1,CUST-1,Rex,dog,Labrador,male,2015-06-30,65.5,985112345678901,Y,Up to date,None,true,2024-01-01",
            "PET-2,CUST-2,Max,Dog,Beagle,Male,06/30/2018,-5,12345,no,Up to date,None,yes,2024-01-01",
            "PET-3,CUST-3,Luna,Cat,,Female,2022-07-01,9.8,985112345678903,true,Overdue,Allergies,1,2024-01-01",
            "PET-4,CUST-4,Bella,Rabbit,Lionhead,,2024-01-10,3.2,985112345678904,false,,None,TRUE,2024-01-01",
            "PET-5,CUST-4,Oscar,Dog,Mixed,Male,2013-01-01,40,985112345678905,y,Up to date,Diabetes,no,2024-01-01",
            "PET-6,CUST-5,Charlie,Dog,Golden Retriever,Male,2015-07-01,70,985112345678906,Y,Up to date,"
            "Hip dysplasia,true,2024-01-01",
            "PET-7,CUST-5,Daisy,Cat,Persian,Female,2021-06-30,8,985112345678907,N,Up to date,None,true,2024-01-01",
            "PET-8,CUST-5,Ziggy,Bird,Parrot,Male,2023-03-01,0,,n,Up to date,,true,2024-01-01",
            # line 10: unknown customer -> orphan_fk
            "PET-99,CUST-99,Ghost,Cat,Sphynx,Female,2020-01-01,7,985112345678999,N,Up to date,None,true,2024-01-01",
        ]
    )
    + "\n"
)

POLICIES_CSV = (
    "\n".join(
        [
            "policy_id,policy_number,customer_id,pet_id,plan_name,monthly_premium,deductible,coverage_limit,"
            "effective_date,expiration_date,status,includes_wellness,includes_dental,includes_behavioral,updated_at",
            "POL-1,PN-0001,CUST-1,PET-1,Premium,50.00,250,10000,2024-01-01,2025-12-31,Active,true,false,false,2024-01-01",
            "POL-2,PN-0002,CUST-2,PET-2,basic,45.00,500,5000,07/01/2023,06/30/2026,active,no,no,no,2024-01-01",
            "POL-3,PN-0003,CUST-3,PET-3,Basic,25.50,,5000,2024-06-01,2026-05-31,Active,false,false,false,2024-06-01",
            "POL-4,PN-0004,CUST-4,PET-5,Gold,30.00,100,abc,2024-09-20,2025-09-19,cancelled,false,false,false,2024-09-20",
            "POL-5,PN-0005,CUST-5,PET-6,Premium,50.00,250,10000,2021-01-01,2025-12-31,Active,false,false,true,2024-01-01",
            "POL-6,PN-0006,CUST-5,PET-7,Standard,40.00,250,8000,2024-07-01,2025-06-30,Active,f,t,f,2024-07-01",
            "POL-7,PN-0007,CUST-2,PET-2,Standard,100.00,250,8000,2023-01-01,2023-06-30,Expired,false,false,false,2023-07-01",
            # line 9: Feb 30 -> bad_date
            "POL-8,PN-0008,CUST-1,PET-1,Basic,20.00,100,3000,2024-01-01,2025-02-30,Active,false,false,false,2024-01-01",
            # line 10: negative premium -> negative_amount
            "POL-9,PN-0009,CUST-3,PET-3,Basic,-10.00,100,3000,2024-01-01,2024-12-31,Active,false,false,false,2024-01-01",
            # line 11: PET-99 is itself quarantined -> not a silver key -> orphan_fk
            "POL-10,PN-0010,CUST-1,PET-99,Basic,10.00,100,3000,2024-01-01,2024-12-31,Active,false,false,false,2024-01-01",
        ]
    )
    + "\n"
)


def _claim(
    cid, num, cust, pol, pet, prv, ctype, cat, sdate, amount, paid, status, days, denial, updated
):
    return json.dumps(
        {
            "claim_id": cid,
            "claim_number": num,
            "customer_id": cust,
            "policy_id": pol,
            "pet_id": pet,
            "provider_id": prv,
            "claim_type": ctype,
            "claim_category": cat,
            "service_date": sdate,
            "claim_amount": amount,
            "paid_amount": paid,
            "status": status,
            "processing_days": days,
            "denial_reason": denial,
            "updated_at": updated,
        }
    )


CLAIMS_JSONL = (
    "\n".join(
        [
            # line 1
            _claim(
                "CLM-01",
                "CN-01",
                "CUST-1",
                "POL-1",
                "PET-1",
                "PRV-1",
                "Wellness",
                "Checkup",
                "2024-07-15",
                200.00,
                150.00,
                "Approved",
                5,
                None,
                "2024-07-20T00:00:00",
            ),
            # line 2
            _claim(
                "CLM-02",
                "CN-02",
                "CUST-2",
                "POL-2",
                "PET-2",
                "PRV-2",
                "Illness",
                "Infection",
                "2024-05-10",
                "800.00",
                "640.00",
                "Paid",
                10,
                None,
                "2024-05-25T00:00:00",
            ),
            # line 3: CLM-03 older, VALID version -> stays in silver
            _claim(
                "CLM-03",
                "CN-03",
                "CUST-2",
                "POL-2",
                "PET-2",
                "PRV-1",
                "Accident",
                "Fracture",
                "2024-07-20",
                1200,
                1000,
                "Approved",
                7,
                None,
                "2024-08-01T00:00:00",
            ),
            # line 4: malformed JSON
            '{"claim_id": "CLM-BROKEN", "claim_amount": ',
            # line 5
            _claim(
                "CLM-04",
                "CN-04",
                "CUST-2",
                "POL-2",
                "PET-2",
                "PRV-2",
                "Emergency",
                "Poisoning",
                "2024-09-03",
                "500.00",
                "0.00",
                "Denied",
                3,
                "Pre-existing condition",
                "2024-09-06T00:00:00",
            ),
            # line 6: exactly as_of - 12 months -> NOT in the last 12 months
            _claim(
                "CLM-05",
                "CN-05",
                "CUST-3",
                "POL-3",
                "PET-3",
                "PRV-2",
                "Illness",
                "Allergy",
                "2024-06-30",
                "300.00",
                "240.00",
                "Approved",
                4,
                None,
                "2024-07-04T00:00:00",
            ),
            # line 7: CLM-06 older version (Submitted); the real-time file has the newer one
            _claim(
                "CLM-06",
                "CN-06",
                "CUST-3",
                "POL-3",
                "PET-3",
                "PRV-1",
                "Accident",
                "Laceration",
                "2024-07-01",
                "150.00",
                None,
                "Submitted",
                None,
                None,
                "2024-07-02T00:00:00",
            ),
            # line 8
            _claim(
                "CLM-07",
                "CN-07",
                "CUST-5",
                "POL-5",
                "PET-6",
                "PRV-2",
                "Emergency",
                "Surgery",
                "2024-05-20",
                "3000.00",
                "2700.00",
                "Paid",
                12,
                None,
                "2024-06-01T00:00:00",
            ),
            # line 9: US date format
            _claim(
                "CLM-08",
                "CN-08",
                "CUST-5",
                "POL-5",
                "PET-6",
                "PRV-1",
                "Wellness",
                "Vaccination",
                "07/10/2024",
                "120.00",
                "100.00",
                "Approved",
                2,
                None,
                "2024-07-12T00:00:00",
            ),
            # line 10
            _claim(
                "CLM-09",
                "CN-09",
                "CUST-5",
                "POL-6",
                "PET-7",
                "PRV-2",
                "Illness",
                "Urinary",
                "2024-09-25",
                "900.00",
                "600.00",
                "Approved",
                8,
                None,
                "2024-10-03T00:00:00",
            ),
            # line 11: unknown claim_type -> null, lower-case status, negative processing_days -> null,
            # on a Cancelled policy of an inactive pet (foreign keys all exist)
            _claim(
                "CLM-10",
                "CN-10",
                "CUST-4",
                "POL-4",
                "PET-5",
                "PRV-1",
                "grooming",
                "  Sprain  ",
                "2024-09-28",
                "250.00",
                "200.00",
                "approved",
                -3,
                "",
                "2024-10-01T00:00:00",
            ),
            # line 12: CLM-03 NEWER but invalid (negative amount) -> quarantine; line 3 stays in silver
            _claim(
                "CLM-03",
                "CN-03",
                "CUST-2",
                "POL-2",
                "PET-2",
                "PRV-1",
                "Accident",
                "Fracture",
                "2024-07-20",
                "-1200.00",
                "1000.00",
                "Approved",
                7,
                None,
                "2024-08-15T00:00:00",
            ),
            # line 13: empty key -> missing_key
            _claim(
                "",
                "CN-XX",
                "CUST-1",
                "POL-1",
                "PET-1",
                "PRV-1",
                "Illness",
                "Other",
                "2024-07-01",
                "100.00",
                "50.00",
                "Approved",
                1,
                None,
                "2024-07-02T00:00:00",
            ),
            # line 14: paid > claimed -> overpaid
            _claim(
                "CLM-11",
                "CN-11",
                "CUST-1",
                "POL-1",
                "PET-1",
                "PRV-1",
                "Illness",
                "Other",
                "2024-08-10",
                "400.00",
                "500.00",
                "Paid",
                6,
                None,
                "2024-08-16T00:00:00",
            ),
            # line 15: unknown provider -> orphan_fk
            _claim(
                "CLM-12",
                "CN-12",
                "CUST-1",
                "POL-1",
                "PET-1",
                "PRV-404",
                "Illness",
                "Other",
                "2024-08-11",
                "100.00",
                "80.00",
                "Approved",
                6,
                None,
                "2024-08-16T00:00:00",
            ),
            # line 16: unparseable service_date (and unknown provider): bad_date wins (first match)
            _claim(
                "CLM-13",
                "CN-13",
                "CUST-1",
                "POL-1",
                "PET-1",
                "PRV-404",
                "Illness",
                "Other",
                "2024-13-01",
                "100.00",
                "80.00",
                "Approved",
                6,
                None,
                "2024-08-16T00:00:00",
            ),
        ]
    )
    + "\n"
)

CLM06_REALTIME_FILE = "CLM-06_20240705_120000_000000.json"
CLM06_REALTIME = (
    _claim(
        "CLM-06",
        "CN-06",
        "CUST-3",
        "POL-3",
        "PET-3",
        "PRV-1",
        "Accident",
        "Laceration",
        "2024-07-01",
        "150.00",
        None,
        "Under Review",
        None,
        None,
        "2024-07-05T12:00:00",
    )
    + "\n"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> LakeFixture:
    lake = LakeFixture(tmp_path_factory.mktemp("rules_by_hand") / "lake")
    lake.write_raw("customers", "customers.csv", CUSTOMERS_CSV)
    lake.write_raw("providers", "providers.csv", PROVIDERS_CSV)
    lake.write_raw("pets", "pets.csv", PETS_CSV)
    lake.write_raw("policies", "policies.csv", POLICIES_CSV)
    lake.write_raw("claims", "claims.jsonl", CLAIMS_JSONL)
    lake.write_raw("claims", CLM06_REALTIME_FILE, CLM06_REALTIME)
    lake.refresh(as_of=AS_OF)
    return lake


def project(rows: list[dict], cols: list[str]) -> list[dict]:
    return [{c: r[c] for c in cols} for r in rows]


def assert_rows_equal(got: list[dict], expected: list[dict], key: str, table: str):
    """Row by row, column by column, with a message naming the table, row and column."""
    got_keys = [r[key] for r in got]
    exp_keys = [r[key] for r in expected]
    assert got_keys == exp_keys, f"{table}: keys {got_keys} != expected {exp_keys}"
    problems = []
    for g, e in zip(got, expected):
        for col, ev in e.items():
            gv = g.get(col, "<missing column>")
            if gv != ev or (type(ev) is bool) != (type(gv) is bool):
                problems.append(f"{table}[{e[key]}].{col}: expected {ev!r}, got {gv!r}")
    assert not problems, "\n".join(problems)


CUSTOMER_FILE = "raw/customers/customers.csv"
PET_FILE = "raw/pets/pets.csv"
POLICY_FILE = "raw/policies/policies.csv"
PROVIDER_FILE = "raw/providers/providers.csv"
CLAIM_FILE = "raw/claims/claims.jsonl"
CLM06_FILE = "raw/claims/" + CLM06_REALTIME_FILE


# --------------------------------------------------------------------------------------------
# Silver
# --------------------------------------------------------------------------------------------


def test_silver_dim_customers(built):
    expected = [
        {
            "customer_id": "CUST-1",
            "first_name": "Alice",
            "last_name": "Smith",
            "email": "alice.smith@example.com",  # trimmed + lower-cased
            "phone": "(555) 123-4567",  # 555-123-4567: 10 digits
            "address": "10 Oak St, Apt 2",
            "city": "Austin",
            "state": "TX",  # "Texas" -> TX
            "zip_code": "78701",
            "date_of_birth": date(1980, 5, 15),
            "customer_since": date(2022, 1, 10),
            "segment": "Premium",
            "lifetime_value": D("0.00"),
            "_quality_score": 100,  # 7 of 7 checked fields valid
            "_source_file": CUSTOMER_FILE,
            "_source_line": 2,
        },
        {
            "customer_id": "CUST-2",
            "first_name": "Bob",
            "last_name": "Jones",
            "email": "bob@new.com",  # line 9 (updated 2024-06-01 10:00) beats line 3
            "phone": "(512) 555-0199",  # 1-512-555-0199: 11 digits starting with 1
            "address": "22 Pine Rd",
            "city": "Austin",  # "  Austin  " trimmed
            "state": "TX",  # "tx"
            "zip_code": None,  # "7870": 4 digits
            "date_of_birth": date(1975, 3, 22),  # 03/22/1975
            "customer_since": date(2023, 1, 15),  # 01/15/2023
            "segment": "Standard",
            "lifetime_value": None,
            "_quality_score": 86,  # 6/7 = 85.71 -> 86 (zip invalid)
            "_source_file": CUSTOMER_FILE,
            "_source_line": 9,
        },
        {
            "customer_id": "CUST-3",
            "first_name": "Carol",  # "  Carol " trimmed
            "last_name": "White",
            "email": None,  # carol@invalid: no TLD
            "phone": None,  # 12345: 5 digits
            "address": None,  # empty
            "city": "Boston",
            "state": "MA",  # Massachusetts
            "zip_code": "02101",  # leading zero kept
            "date_of_birth": None,  # "not a date"
            "customer_since": date(2024, 6, 1),
            "segment": "Budget",
            "lifetime_value": None,
            "_quality_score": 43,  # 3/7 (city, state, zip) = 42.86 -> 43
            "_source_file": CUSTOMER_FILE,
            "_source_line": 4,
        },
        {
            "customer_id": "CUST-4",
            "first_name": "Dan",
            "last_name": "Brown",  # "Brown  " trimmed
            "email": "dan.brown@example.org",
            "phone": "(303) 555-0123",  # "303 555 0123"
            "address": "5 Birch Ln",
            "city": "Denver",
            "state": "CO",  # "co"
            "zip_code": "80202",
            "date_of_birth": date(1990, 12, 1),
            "customer_since": date(2024, 9, 20),
            "segment": "Family",
            "lifetime_value": None,
            "_quality_score": 100,  # 7/7
            "_source_file": CUSTOMER_FILE,
            "_source_line": 7,
        },
        {
            "customer_id": "CUST-5",
            "first_name": "Eve",
            "last_name": "Green",
            "email": "eve@example.net",
            "phone": "(415) 555-0177",  # "+1 415 555 0177": 11 digits starting with 1
            "address": None,  # "   " -> trimmed empty -> null
            "city": "San Francisco",
            "state": "CA",  # "california"
            "zip_code": "94105",
            "date_of_birth": None,  # 1970-02-30 does not exist
            "customer_since": date(2020, 7, 31),  # 07/31/2020
            "segment": "Senior",
            "lifetime_value": None,
            "_quality_score": 71,  # 5/7 = 71.43 -> 71 (address, dob invalid)
            "_source_file": CUSTOMER_FILE,
            "_source_line": 8,
        },
    ]
    got = built.rows("silver", "dim_customers", order_by="customer_id")
    assert_rows_equal(got, expected, "customer_id", "dim_customers")


def test_silver_dim_pets(built):
    # pets quality: breed, gender, date_of_birth, weight_lbs > 0, microchip_id 15 digits (5 fields)
    expected = [
        {
            "pet_id": "PET-1",
            "customer_id": "CUST-1",
            "pet_name": "Rex",
            "species": "Dog",  # "dog"
            "breed": "Labrador",
            "gender": "Male",  # "male"
            "date_of_birth": date(2015, 6, 30),
            "weight_lbs": 65.5,
            "microchip_id": "985112345678901",
            "is_neutered": True,  # "Y"
            "vaccination_status": "Up to date",
            "pre_existing_conditions": "None",
            "is_active": True,  # "true"
            "_quality_score": 100,  # 5/5
            "_source_file": PET_FILE,
            "_source_line": 2,
        },
        {
            "pet_id": "PET-2",
            "customer_id": "CUST-2",
            "pet_name": "Max",
            "species": "Dog",
            "breed": "Beagle",
            "gender": "Male",
            "date_of_birth": date(2018, 6, 30),  # 06/30/2018
            "weight_lbs": None,  # -5 is not > 0
            "microchip_id": None,  # "12345" is not 15 digits
            "is_neutered": False,  # "no"
            "vaccination_status": "Up to date",
            "pre_existing_conditions": "None",
            "is_active": True,  # "yes"
            "_quality_score": 60,  # 3/5
            "_source_file": PET_FILE,
            "_source_line": 3,
        },
        {
            "pet_id": "PET-3",
            "customer_id": "CUST-3",
            "pet_name": "Luna",
            "species": "Cat",
            "breed": None,  # empty
            "gender": "Female",
            "date_of_birth": date(2022, 7, 1),
            "weight_lbs": 9.8,
            "microchip_id": "985112345678903",
            "is_neutered": True,
            "vaccination_status": "Overdue",
            "pre_existing_conditions": "Allergies",
            "is_active": True,  # "1"
            "_quality_score": 80,  # 4/5
            "_source_file": PET_FILE,
            "_source_line": 4,
        },
        {
            "pet_id": "PET-4",
            "customer_id": "CUST-4",
            "pet_name": "Bella",
            "species": "Rabbit",
            "breed": "Lionhead",
            "gender": None,  # empty
            "date_of_birth": date(2024, 1, 10),
            "weight_lbs": 3.2,
            "microchip_id": "985112345678904",
            "is_neutered": False,
            "vaccination_status": None,  # empty
            "pre_existing_conditions": "None",
            "is_active": True,  # "TRUE"
            "_quality_score": 80,  # 4/5
            "_source_file": PET_FILE,
            "_source_line": 5,
        },
        {
            "pet_id": "PET-5",
            "customer_id": "CUST-4",
            "pet_name": "Oscar",
            "species": "Dog",
            "breed": "Mixed",
            "gender": "Male",
            "date_of_birth": date(2013, 1, 1),
            "weight_lbs": 40.0,
            "microchip_id": "985112345678905",
            "is_neutered": True,  # "y"
            "vaccination_status": "Up to date",
            "pre_existing_conditions": "Diabetes",
            "is_active": False,  # "no"
            "_quality_score": 100,
            "_source_file": PET_FILE,
            "_source_line": 6,
        },
        {
            "pet_id": "PET-6",
            "customer_id": "CUST-5",
            "pet_name": "Charlie",
            "species": "Dog",
            "breed": "Golden Retriever",
            "gender": "Male",
            "date_of_birth": date(2015, 7, 1),
            "weight_lbs": 70.0,
            "microchip_id": "985112345678906",
            "is_neutered": True,
            "vaccination_status": "Up to date",
            "pre_existing_conditions": "Hip dysplasia",
            "is_active": True,
            "_quality_score": 100,
            "_source_file": PET_FILE,
            "_source_line": 7,
        },
        {
            "pet_id": "PET-7",
            "customer_id": "CUST-5",
            "pet_name": "Daisy",
            "species": "Cat",
            "breed": "Persian",
            "gender": "Female",
            "date_of_birth": date(2021, 6, 30),
            "weight_lbs": 8.0,
            "microchip_id": "985112345678907",
            "is_neutered": False,  # "N"
            "vaccination_status": "Up to date",
            "pre_existing_conditions": "None",
            "is_active": True,
            "_quality_score": 100,
            "_source_file": PET_FILE,
            "_source_line": 8,
        },
        {
            "pet_id": "PET-8",
            "customer_id": "CUST-5",
            "pet_name": "Ziggy",
            "species": "Bird",
            "breed": "Parrot",
            "gender": "Male",
            "date_of_birth": date(2023, 3, 1),
            "weight_lbs": None,  # 0 is not > 0
            "microchip_id": None,  # empty
            "is_neutered": False,  # "n"
            "vaccination_status": "Up to date",
            "pre_existing_conditions": None,  # empty
            "is_active": True,
            "_quality_score": 60,  # 3/5
            "_source_file": PET_FILE,
            "_source_line": 9,
        },
    ]
    got = built.rows("silver", "dim_pets", order_by="pet_id")
    assert_rows_equal(got, expected, "pet_id", "dim_pets")


def test_silver_dim_policies(built):
    expected = [
        {
            "policy_id": "POL-1",
            "policy_number": "PN-0001",
            "customer_id": "CUST-1",
            "pet_id": "PET-1",
            "plan_name": "Premium",
            "monthly_premium": D("50.00"),
            "deductible": D("250.00"),
            "coverage_limit": D("10000.00"),
            "effective_date": date(2024, 1, 1),
            "expiration_date": date(2025, 12, 31),
            "status": "Active",
            "includes_wellness": True,
            "includes_dental": False,
            "includes_behavioral": False,
            "_quality_score": 100,  # 4/4
            "_source_file": POLICY_FILE,
            "_source_line": 2,
        },
        {
            "policy_id": "POL-2",
            "policy_number": "PN-0002",
            "customer_id": "CUST-2",
            "pet_id": "PET-2",
            "plan_name": "Basic",  # "basic"
            "monthly_premium": D("45.00"),
            "deductible": D("500.00"),
            "coverage_limit": D("5000.00"),
            "effective_date": date(2023, 7, 1),  # 07/01/2023
            "expiration_date": date(2026, 6, 30),  # 06/30/2026
            "status": "Active",  # "active"
            "includes_wellness": False,
            "includes_dental": False,  # "no"
            "includes_behavioral": False,
            "_quality_score": 100,
            "_source_file": POLICY_FILE,
            "_source_line": 3,
        },
        {
            "policy_id": "POL-3",
            "policy_number": "PN-0003",
            "customer_id": "CUST-3",
            "pet_id": "PET-3",
            "plan_name": "Basic",
            "monthly_premium": D("25.50"),
            "deductible": None,  # empty
            "coverage_limit": D("5000.00"),
            "effective_date": date(2024, 6, 1),
            "expiration_date": date(2026, 5, 31),
            "status": "Active",
            "includes_wellness": False,
            "includes_dental": False,
            "includes_behavioral": False,
            "_quality_score": 75,  # 3/4
            "_source_file": POLICY_FILE,
            "_source_line": 4,
        },
        {
            "policy_id": "POL-4",
            "policy_number": "PN-0004",
            "customer_id": "CUST-4",
            "pet_id": "PET-5",
            "plan_name": None,  # "Gold" is not an accepted plan
            "monthly_premium": D("30.00"),
            "deductible": D("100.00"),
            "coverage_limit": None,  # "abc"
            "effective_date": date(2024, 9, 20),
            "expiration_date": date(2025, 9, 19),
            "status": "Cancelled",  # "cancelled"
            "includes_wellness": False,
            "includes_dental": False,
            "includes_behavioral": False,
            "_quality_score": 50,  # 2/4
            "_source_file": POLICY_FILE,
            "_source_line": 5,
        },
        {
            "policy_id": "POL-5",
            "policy_number": "PN-0005",
            "customer_id": "CUST-5",
            "pet_id": "PET-6",
            "plan_name": "Premium",
            "monthly_premium": D("50.00"),
            "deductible": D("250.00"),
            "coverage_limit": D("10000.00"),
            "effective_date": date(2021, 1, 1),
            "expiration_date": date(2025, 12, 31),
            "status": "Active",
            "includes_wellness": False,
            "includes_dental": False,
            "includes_behavioral": True,
            "_quality_score": 100,
            "_source_file": POLICY_FILE,
            "_source_line": 6,
        },
        {
            "policy_id": "POL-6",
            "policy_number": "PN-0006",
            "customer_id": "CUST-5",
            "pet_id": "PET-7",
            "plan_name": "Standard",
            "monthly_premium": D("40.00"),
            "deductible": D("250.00"),
            "coverage_limit": D("8000.00"),
            "effective_date": date(2024, 7, 1),
            "expiration_date": date(2025, 6, 30),
            "status": "Active",
            "includes_wellness": False,
            "includes_dental": True,  # "f", "t"
            "includes_behavioral": False,
            "_quality_score": 100,
            "_source_file": POLICY_FILE,
            "_source_line": 7,
        },
        {
            "policy_id": "POL-7",
            "policy_number": "PN-0007",
            "customer_id": "CUST-2",
            "pet_id": "PET-2",
            "plan_name": "Standard",
            "monthly_premium": D("100.00"),
            "deductible": D("250.00"),
            "coverage_limit": D("8000.00"),
            "effective_date": date(2023, 1, 1),
            "expiration_date": date(2023, 6, 30),
            "status": "Expired",
            "includes_wellness": False,
            "includes_dental": False,
            "includes_behavioral": False,
            "_quality_score": 100,
            "_source_file": POLICY_FILE,
            "_source_line": 8,
        },
    ]
    got = built.rows("silver", "dim_policies", order_by="policy_id")
    assert_rows_equal(got, expected, "policy_id", "dim_policies")


def test_silver_dim_providers(built):
    expected = [
        {
            "provider_id": "PRV-1",
            "provider_name": "Happy Paws Vet",
            "provider_type": "General Practice",
            "address": "1 Main St",
            "city": "Austin",
            "state": "TX",  # "texas"
            "zip_code": "73301",
            "phone": "(512) 555-0101",  # 512.555.0101
            "is_in_network": True,  # "yes"
            "average_rating": 4.5,
            "specialties": "Dogs",
            "_quality_score": 100,  # 4/4
            "_source_file": PROVIDER_FILE,
            "_source_line": 2,
        },
        {
            "provider_id": "PRV-2",
            "provider_name": "City Emergency Clinic",
            "provider_type": "Emergency",
            "address": None,  # empty
            "city": "Dallas",
            "state": "TX",
            "zip_code": "75201",
            "phone": None,  # 555-0102: 7 digits
            "is_in_network": False,  # "N"
            "average_rating": None,  # 6.2 not in 0-5
            "specialties": None,
            "_quality_score": 25,  # 1/4 (state only)
            "_source_file": PROVIDER_FILE,
            "_source_line": 3,
        },
        {
            "provider_id": "PRV-3",
            "provider_name": "Quiet Cat Clinic",
            "provider_type": "Specialty",
            "address": "3 Elm Rd",
            "city": "Denver",
            "state": "CO",  # "Colorado"
            "zip_code": "80201",
            "phone": "(303) 555-0103",  # +1 (303) 555-0103
            "is_in_network": True,  # "1"
            "average_rating": 5.0,  # 5 is inside 0-5
            "specialties": "Cats",
            "_quality_score": 100,
            "_source_file": PROVIDER_FILE,
            "_source_line": 4,
        },
    ]
    got = built.rows("silver", "dim_providers", order_by="provider_id")
    assert_rows_equal(got, expected, "provider_id", "dim_providers")


def _fc(
    cid,
    num,
    cust,
    pol,
    pet,
    prv,
    ctype,
    cat,
    sdate,
    amount,
    paid,
    status,
    days,
    denial,
    q,
    src,
    line,
):
    return {
        "claim_id": cid,
        "claim_number": num,
        "customer_id": cust,
        "policy_id": pol,
        "pet_id": pet,
        "provider_id": prv,
        "claim_type": ctype,
        "claim_category": cat,
        "service_date": sdate,
        "claim_amount": amount,
        "paid_amount": paid,
        "status": status,
        "processing_days": days,
        "denial_reason": denial,
        "_quality_score": q,
        "_source_file": src,
        "_source_line": line,
    }


EXPECTED_FACT_CLAIMS = [
    # claims quality: claim_type, claim_category, paid_amount, processing_days >= 0
    _fc(
        "CLM-01",
        "CN-01",
        "CUST-1",
        "POL-1",
        "PET-1",
        "PRV-1",
        "Wellness",
        "Checkup",
        date(2024, 7, 15),
        D("200.00"),
        D("150.00"),
        "Approved",
        5,
        None,
        100,
        CLAIM_FILE,
        1,
    ),
    _fc(
        "CLM-02",
        "CN-02",
        "CUST-2",
        "POL-2",
        "PET-2",
        "PRV-2",
        "Illness",
        "Infection",
        date(2024, 5, 10),
        D("800.00"),
        D("640.00"),
        "Paid",
        10,
        None,
        100,
        CLAIM_FILE,
        2,
    ),
    # line 3 (valid, updated 2024-08-01) kept: the newer line 12 is quarantined (negative amount)
    _fc(
        "CLM-03",
        "CN-03",
        "CUST-2",
        "POL-2",
        "PET-2",
        "PRV-1",
        "Accident",
        "Fracture",
        date(2024, 7, 20),
        D("1200.00"),
        D("1000.00"),
        "Approved",
        7,
        None,
        100,
        CLAIM_FILE,
        3,
    ),
    _fc(
        "CLM-04",
        "CN-04",
        "CUST-2",
        "POL-2",
        "PET-2",
        "PRV-2",
        "Emergency",
        "Poisoning",
        date(2024, 9, 3),
        D("500.00"),
        D("0.00"),
        "Denied",
        3,
        "Pre-existing condition",
        100,
        CLAIM_FILE,
        5,
    ),
    _fc(
        "CLM-05",
        "CN-05",
        "CUST-3",
        "POL-3",
        "PET-3",
        "PRV-2",
        "Illness",
        "Allergy",
        date(2024, 6, 30),
        D("300.00"),
        D("240.00"),
        "Approved",
        4,
        None,
        100,
        CLAIM_FILE,
        6,
    ),
    # real-time file (updated 2024-07-05 12:00) beats line 7 (2024-07-02); paid and days null: 2/4
    _fc(
        "CLM-06",
        "CN-06",
        "CUST-3",
        "POL-3",
        "PET-3",
        "PRV-1",
        "Accident",
        "Laceration",
        date(2024, 7, 1),
        D("150.00"),
        None,
        "Under Review",
        None,
        None,
        50,
        CLM06_FILE,
        1,
    ),
    _fc(
        "CLM-07",
        "CN-07",
        "CUST-5",
        "POL-5",
        "PET-6",
        "PRV-2",
        "Emergency",
        "Surgery",
        date(2024, 5, 20),
        D("3000.00"),
        D("2700.00"),
        "Paid",
        12,
        None,
        100,
        CLAIM_FILE,
        8,
    ),
    # 07/10/2024
    _fc(
        "CLM-08",
        "CN-08",
        "CUST-5",
        "POL-5",
        "PET-6",
        "PRV-1",
        "Wellness",
        "Vaccination",
        date(2024, 7, 10),
        D("120.00"),
        D("100.00"),
        "Approved",
        2,
        None,
        100,
        CLAIM_FILE,
        9,
    ),
    _fc(
        "CLM-09",
        "CN-09",
        "CUST-5",
        "POL-6",
        "PET-7",
        "PRV-2",
        "Illness",
        "Urinary",
        date(2024, 9, 25),
        D("900.00"),
        D("600.00"),
        "Approved",
        8,
        None,
        100,
        CLAIM_FILE,
        10,
    ),
    # "grooming" -> null type, "  Sprain  " trimmed, "approved" -> Approved, -3 days -> null,
    # "" denial -> null; quality 2/4 = 50
    _fc(
        "CLM-10",
        "CN-10",
        "CUST-4",
        "POL-4",
        "PET-5",
        "PRV-1",
        None,
        "Sprain",
        date(2024, 9, 28),
        D("250.00"),
        D("200.00"),
        "Approved",
        None,
        None,
        50,
        CLAIM_FILE,
        11,
    ),
]


def test_silver_fact_claims(built):
    got = built.rows("silver", "fact_claims", order_by="claim_id")
    assert_rows_equal(got, EXPECTED_FACT_CLAIMS, "claim_id", "fact_claims")


EXPECTED_QUARANTINE = [
    # (entity, record_key or ..., reason, source_file, source_line); ... = not asserted (malformed)
    ("claims", ..., "malformed_record", CLAIM_FILE, 4),
    ("claims", "CLM-03", "negative_amount", CLAIM_FILE, 12),
    ("claims", None, "missing_key", CLAIM_FILE, 13),
    ("claims", "CLM-11", "overpaid", CLAIM_FILE, 14),  # 500.00 > 400.00
    ("claims", "CLM-12", "orphan_fk", CLAIM_FILE, 15),  # PRV-404
    ("claims", "CLM-13", "bad_date", CLAIM_FILE, 16),  # 2024-13-01 (before orphan_fk)
    ("customers", ..., "malformed_record", CUSTOMER_FILE, 5),  # 3 fields instead of 14
    ("customers", None, "missing_key", CUSTOMER_FILE, 6),
    ("pets", "PET-99", "orphan_fk", PET_FILE, 10),  # CUST-99
    ("policies", "POL-8", "bad_date", POLICY_FILE, 9),  # 2025-02-30
    ("policies", "POL-9", "negative_amount", POLICY_FILE, 10),  # -10.00
    ("policies", "POL-10", "orphan_fk", POLICY_FILE, 11),  # PET-99 is quarantined itself
]


def test_silver_quarantine(built):
    got = built.rows("silver", "quarantine", order_by="entity, source_file, source_line")
    got_t = [
        (r["entity"], r["record_key"], r["reason"], r["source_file"], r["source_line"]) for r in got
    ]
    assert len(got_t) == len(EXPECTED_QUARANTINE), got_t
    for g, e in zip(got_t, EXPECTED_QUARANTINE):
        if e[1] is ...:  # malformed: the key is not asserted (the record could not be parsed)
            g, e = g[:1] + g[2:], e[:1] + e[2:]
        assert g == e


def test_bronze_equals_silver_before_dedup_plus_quarantine(built):
    # entity: (bronze rows, silver rows, duplicates removed by dedup, quarantined)
    expected = {
        "customers": (8, 5, 1, 2),  # 8 data lines; CUST-2 line 3 deduped; lines 5, 6 quarantined
        "providers": (3, 3, 0, 0),
        "pets": (9, 8, 0, 1),  # PET-99
        "policies": (10, 7, 0, 3),  # POL-8, POL-9, POL-10
        "claims": (17, 10, 1, 6),  # 16 JSONL lines + 1 real-time file; CLM-06 line 7 deduped
    }
    silver_table = {spec.entity.name: spec.name for spec in CATALOG.silver}
    quarantine = built.rows("silver", "quarantine", order_by="entity, source_file, source_line")
    for entity, (n_bronze, n_silver, n_dups, n_quar) in expected.items():
        assert n_bronze == n_silver + n_dups + n_quar  # the hand numbers themselves add up
        bronze = len(built.rows("bronze", f"{entity}_raw", order_by="_source_file, _source_line"))
        silver = len(built.rows("silver", silver_table[entity], order_by="1"))
        quar = sum(1 for r in quarantine if r["entity"] == entity)
        assert (bronze, silver, quar) == (n_bronze, n_silver, n_quar), entity
        assert bronze == silver + n_dups + quar, entity


# --------------------------------------------------------------------------------------------
# Gold
# --------------------------------------------------------------------------------------------
# Policies, months in force up to 2025-06 (status Active/Expired only), premium earned:
#   POL-1 CUST-1 50.00  2024-01..2025-06 = 18 months -> 900.00   active (2024-01-01<=as_of<=2025-12-31)
#   POL-2 CUST-2 45.00  2023-07..2025-06 = 24 months -> 1080.00  active
#   POL-3 CUST-3 25.50  2024-06..2025-06 = 13 months -> 331.50   active
#   POL-4 CUST-4 30.00  Cancelled -> earns nothing, not active
#   POL-5 CUST-5 50.00  2021-01..2025-06 = 4x12+6 = 54 months -> 2700.00  active
#   POL-6 CUST-5 40.00  2024-07..2025-06 = 12 months -> 480.00   active (expires on as_of itself)
#   POL-7 CUST-2 100.00 2023-01..2023-06 = 6 months -> 600.00 (Expired earns), not active
# Pet ages at 2025-06-30 (whole months // 12):
#   PET-1 2015-06-30: 120 m -> 10   PET-2 2018-06-30: 84 m -> 7   PET-3 2022-07-01: 35 m -> 2
#   PET-4 2024-01-10: 17 m -> 1     PET-5 2013-01-01: 149 m -> 12 (inactive)
#   PET-6 2015-07-01: 119 m -> 9    PET-7 2021-06-30: 48 m -> 4   PET-8 2023-03-01: 27 m -> 2
# Claims in the last 12 months (2024-06-30 < d <= 2025-06-30):
#   CUST-1: CLM-01 (07-15) -> 1;  CUST-2: CLM-03 (07-20), CLM-04 (09-03) -> 2 (CLM-02 05-10 out)
#   CUST-3: CLM-06 (2024-07-01) -> 1 (CLM-05 on 2024-06-30 exactly: out)
#   CUST-4: CLM-10 -> 1;  CUST-5: CLM-08 (07-10), CLM-09 (09-25) -> 2 (CLM-07 05-20 out)


def test_gold_customer_360_view(built):
    expected = [
        {
            "customer_id": "CUST-1",
            "full_name": "Alice Smith",
            "first_name": "Alice",
            "last_name": "Smith",
            "city": "Austin",
            "state": "TX",
            "segment": "Premium",
            "customer_since": date(2022, 1, 10),
            "tenure_months": 41,  # 12x(2025-2022) + (6-1) = 41; 30 >= 10, no -1
            "total_pets": 1,
            "active_pets": 1,
            "total_policies": 1,
            "active_policies": 1,
            "annual_premium": D("600.00"),  # 12 x 50.00
            "premium_earned": D("900.00"),  # POL-1 50.00 x 18
            "total_claims": 1,
            "total_claimed": D("200.00"),
            "total_paid": D("150.00"),  # CLM-01 Approved
            "loss_ratio": 0.1667,  # 150 / 900 = 0.16667
            "lifetime_value": D("900.00"),
            "value_tier": "Silver",  # 500 <= 900 < 1500
            "risk_score": 25,
            "risk_category": "Medium",
            "last_claim_date": date(2024, 7, 15),
        },
        {
            "customer_id": "CUST-2",
            "full_name": "Bob Jones",
            "first_name": "Bob",
            "last_name": "Jones",
            "city": "Austin",
            "state": "TX",
            "segment": "Standard",
            "customer_since": date(2023, 1, 15),
            "tenure_months": 29,  # 12x2 + (6-1) = 29; 30 >= 15
            "total_pets": 1,
            "active_pets": 1,
            "total_policies": 2,
            "active_policies": 1,  # POL-2 active, POL-7 expired
            "annual_premium": D("540.00"),  # 12 x 45.00
            "premium_earned": D("1680.00"),  # 1080.00 + 600.00
            "total_claims": 3,
            "total_claimed": D("2500.00"),  # 800 + 1200 + 500
            "total_paid": D("1640.00"),  # 640 (Paid) + 1000 (Approved); Denied CLM-04 excluded
            "loss_ratio": 0.9762,  # 1640 / 1680 = 0.976190
            "lifetime_value": D("1680.00"),
            "value_tier": "Gold",  # 1500 <= 1680 < 3000
            "risk_score": 50,
            "risk_category": "High",
            "last_claim_date": date(2024, 9, 3),
        },
        {
            "customer_id": "CUST-3",
            "full_name": "Carol White",
            "first_name": "Carol",
            "last_name": "White",
            "city": "Boston",
            "state": "MA",
            "segment": "Budget",
            "customer_since": date(2024, 6, 1),
            "tenure_months": 12,  # 12x1 + 0 = 12
            "total_pets": 1,
            "active_pets": 1,
            "total_policies": 1,
            "active_policies": 1,
            "annual_premium": D("306.00"),  # 12 x 25.50
            "premium_earned": D("331.50"),  # 25.50 x 13
            "total_claims": 2,
            "total_claimed": D("450.00"),  # 300 + 150
            "total_paid": D("240.00"),  # CLM-05 only (CLM-06 Under Review)
            "loss_ratio": 0.7240,  # 240 / 331.50 = 0.723982
            "lifetime_value": D("331.50"),
            "value_tier": "Bronze",  # 331.50 < 500
            "risk_score": 35,
            "risk_category": "Medium",
            "last_claim_date": date(2024, 7, 1),
        },
        {
            "customer_id": "CUST-4",
            "full_name": "Dan Brown",
            "first_name": "Dan",
            "last_name": "Brown",
            "city": "Denver",
            "state": "CO",
            "segment": "Family",
            "customer_since": date(2024, 9, 20),
            "tenure_months": 9,  # 12x1 + (6-9) = 9; 30 >= 20
            "total_pets": 2,
            "active_pets": 1,  # PET-5 inactive
            "total_policies": 1,
            "active_policies": 0,  # POL-4 Cancelled
            "annual_premium": D("0.00"),
            "premium_earned": D("0.00"),  # Cancelled earns nothing
            "total_claims": 1,
            "total_claimed": D("250.00"),
            "total_paid": D("200.00"),  # CLM-10 approved
            "loss_ratio": None,  # premium earned = 0 -> null
            "lifetime_value": D("0.00"),
            "value_tier": "Bronze",
            "risk_score": 10,
            "risk_category": "Low",
            "last_claim_date": date(2024, 9, 28),
        },
        {
            "customer_id": "CUST-5",
            "full_name": "Eve Green",
            "first_name": "Eve",
            "last_name": "Green",
            "city": "San Francisco",
            "state": "CA",
            "segment": "Senior",
            "customer_since": date(2020, 7, 31),
            "tenure_months": 58,  # 12x5 + (6-7) = 59, minus 1 since 30 < 31 -> 58
            "total_pets": 3,
            "active_pets": 3,
            "total_policies": 2,
            "active_policies": 2,
            "annual_premium": D("1080.00"),  # 12 x (50.00 + 40.00)
            "premium_earned": D("3180.00"),  # 2700.00 + 480.00
            "total_claims": 3,
            "total_claimed": D("4020.00"),  # 3000 + 120 + 900
            "total_paid": D("3400.00"),  # 2700 + 100 + 600
            "loss_ratio": 1.0692,  # 3400 / 3180 = 1.069182
            "lifetime_value": D("3180.00"),
            "value_tier": "Platinum",  # >= 3000
            "risk_score": 75,
            "risk_category": "Critical",
            "last_claim_date": date(2024, 9, 25),
        },
    ]
    got = built.rows("gold", "customer_360_view", order_by="customer_id")
    assert_rows_equal(got, expected, "customer_id", "customer_360_view")


def test_gold_risk_scoring(built):
    def row(cid, name, n12, lr, oldest, pre, fs, ls, ps, es, total, cat, action):
        return {
            "customer_id": cid,
            "full_name": name,
            "claims_last_12_months": n12,
            "loss_ratio": lr,
            "oldest_active_pet_age": oldest,
            "has_pre_existing_condition": pre,
            "claim_frequency_score": fs,
            "loss_ratio_score": ls,
            "pet_age_score": ps,
            "pre_existing_score": es,
            "total_risk_score": total,
            "risk_category": cat,
            "recommended_action": action,
        }

    expected = [
        # freq min(40, 10x1) = 10; lr 0.1667 < 0.5 -> 0; PET-1 exactly 10 -> 15;
        # PET-1 pre-existing "None" -> 0; 10+0+15+0 = 25 -> Medium (25 <= x < 50)
        row(
            "CUST-1",
            "Alice Smith",
            1,
            0.1667,
            10,
            False,
            10,
            0,
            15,
            0,
            25,
            "Medium",
            "Monitor claims",
        ),
        # freq 10x2 = 20; lr 0.9762 in [0.8, 1.0) -> 20; PET-2 exactly 7 -> 10; "None" -> 0;
        # 20+20+10+0 = 50 -> High (50 <= x < 75)
        row(
            "CUST-2",
            "Bob Jones",
            2,
            0.9762,
            7,
            False,
            20,
            20,
            10,
            0,
            50,
            "High",
            "Review at renewal",
        ),
        # freq 10 (CLM-05 on the boundary does not count); lr 0.7240 in [0.5, 0.8) -> 10;
        # PET-3 aged 2 -> 0; "Allergies" on active PET-3 -> 15; 10+10+0+15 = 35 -> Medium
        row(
            "CUST-3",
            "Carol White",
            1,
            0.7240,
            2,
            True,
            10,
            10,
            0,
            15,
            35,
            "Medium",
            "Monitor claims",
        ),
        # freq 10; lr null -> 0; oldest ACTIVE pet PET-4 aged 1 -> 0 (inactive PET-5 aged 12
        # ignored); "Diabetes" only on inactive PET-5 -> 0; total 10 -> Low
        row("CUST-4", "Dan Brown", 1, None, 1, False, 10, 0, 0, 0, 10, "Low", "Standard renewal"),
        # freq 20; lr 1.0692 >= 1.0 -> 30; oldest active PET-6 aged 9 (119 months) -> 10;
        # "Hip dysplasia" on active PET-6 -> 15; 20+30+10+15 = 75 -> Critical (>= 75)
        row(
            "CUST-5",
            "Eve Green",
            2,
            1.0692,
            9,
            True,
            20,
            30,
            10,
            15,
            75,
            "Critical",
            "Manual underwriting review",
        ),
    ]
    got = built.rows("gold", "risk_scoring", order_by="customer_id")
    assert_rows_equal(got, expected, "customer_id", "risk_scoring")


def test_gold_claims_analytics(built):
    joins = {
        # claim: (customer_name, pet_name, species, breed, plan_name, provider_name,
        #         provider_type, is_in_network, service_month, reimbursement_rate)
        "CLM-01": (
            "Alice Smith",
            "Rex",
            "Dog",
            "Labrador",
            "Premium",
            "Happy Paws Vet",
            "General Practice",
            True,
            "2024-07",
            0.75,
        ),  # 150/200
        "CLM-02": (
            "Bob Jones",
            "Max",
            "Dog",
            "Beagle",
            "Basic",
            "City Emergency Clinic",
            "Emergency",
            False,
            "2024-05",
            0.8,
        ),  # 640/800 (Paid)
        "CLM-03": (
            "Bob Jones",
            "Max",
            "Dog",
            "Beagle",
            "Basic",
            "Happy Paws Vet",
            "General Practice",
            True,
            "2024-07",
            0.8333,
        ),  # 1000/1200 = 0.83333
        "CLM-04": (
            "Bob Jones",
            "Max",
            "Dog",
            "Beagle",
            "Basic",
            "City Emergency Clinic",
            "Emergency",
            False,
            "2024-09",
            None,
        ),  # Denied -> null
        "CLM-05": (
            "Carol White",
            "Luna",
            "Cat",
            None,
            "Basic",
            "City Emergency Clinic",
            "Emergency",
            False,
            "2024-06",
            0.8,
        ),  # 240/300
        "CLM-06": (
            "Carol White",
            "Luna",
            "Cat",
            None,
            "Basic",
            "Happy Paws Vet",
            "General Practice",
            True,
            "2024-07",
            None,
        ),  # Under Review -> null
        "CLM-07": (
            "Eve Green",
            "Charlie",
            "Dog",
            "Golden Retriever",
            "Premium",
            "City Emergency Clinic",
            "Emergency",
            False,
            "2024-05",
            0.9,
        ),  # 2700/3000
        "CLM-08": (
            "Eve Green",
            "Charlie",
            "Dog",
            "Golden Retriever",
            "Premium",
            "Happy Paws Vet",
            "General Practice",
            True,
            "2024-07",
            0.8333,
        ),  # 100/120
        "CLM-09": (
            "Eve Green",
            "Daisy",
            "Cat",
            "Persian",
            "Standard",
            "City Emergency Clinic",
            "Emergency",
            False,
            "2024-09",
            0.6667,
        ),  # 600/900 = 0.66667
        "CLM-10": (
            "Dan Brown",
            "Oscar",
            "Dog",
            "Mixed",
            None,
            "Happy Paws Vet",
            "General Practice",
            True,
            "2024-09",
            0.8,
        ),  # 200/250; POL-4 plan null
    }
    claim_cols = [
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
    extra_cols = [
        "customer_name",
        "pet_name",
        "species",
        "breed",
        "plan_name",
        "provider_name",
        "provider_type",
        "is_in_network",
        "service_month",
        "reimbursement_rate",
    ]
    expected = []
    for fc in EXPECTED_FACT_CLAIMS:
        r = {c: fc[c] for c in claim_cols}
        r.update(dict(zip(extra_cols, joins[fc["claim_id"]])))
        expected.append(r)
    got = built.rows("gold", "claims_analytics", order_by="claim_id")
    assert_rows_equal(got, expected, "claim_id", "claims_analytics")


def test_gold_monthly_kpis(built):
    def row(ym, n, appr, den, rate, claimed, paid, avg, days, new, pif, prem, lr, growth):
        return {
            "year_month": ym,
            "total_claims": n,
            "approved_claims": appr,
            "denied_claims": den,
            "approval_rate": rate,
            "total_claimed": claimed,
            "total_paid": paid,
            "avg_claim_amount": avg,
            "avg_processing_days": days,
            "new_customers": new,
            "policies_in_force": pif,
            "premium_earned": prem,
            "loss_ratio": lr,
            "claims_growth_pct": growth,
        }

    expected = [
        # 2024-05: CLM-02 (800/640 Paid, 10 d), CLM-07 (3000/2700 Paid, 12 d)
        # approval 2/2; claimed 3800; paid 3340; avg 3800/2 = 1900; days (10+12)/2 = 11
        # in force: POL-1, POL-2, POL-5 (POL-3 starts 2024-06, POL-6 2024-07, POL-7 ended
        # 2023-06, POL-4 cancelled) -> 3; premium 50 + 45 + 50 = 145.00
        # loss ratio 3340/145 = 23.03448; growth: first month -> null
        row(
            "2024-05",
            2,
            2,
            0,
            1.0,
            D("3800.00"),
            D("3340.00"),
            D("1900.00"),
            11.0,
            0,
            3,
            D("145.00"),
            23.0345,
            None,
        ),
        # 2024-06: CLM-05 (300/240 Approved, 4 d); new: CUST-3 (2024-06-01)
        # in force: + POL-3 -> 4; premium 145 + 25.50 = 170.50; lr 240/170.5 = 1.40762
        # growth (1-2)/2 x 100 = -50
        row(
            "2024-06",
            1,
            1,
            0,
            1.0,
            D("300.00"),
            D("240.00"),
            D("300.00"),
            4.0,
            1,
            4,
            D("170.50"),
            1.4076,
            -50.0,
        ),
        # 2024-07: CLM-01 (200/150 Appr 5 d), CLM-03 (1200/1000 Appr 7 d),
        # CLM-06 (150/- Under Review, not decided), CLM-08 (120/100 Appr 2 d)
        # approval 3 approved / 3 decided = 1.0; claimed 200+1200+150+120 = 1670;
        # paid 150+1000+100 = 1250; avg 1670/4 = 417.50; days (5+7+2)/3 = 4.667 -> 4.67
        # in force: + POL-6 -> 5; premium 170.50 + 40 = 210.50; lr 1250/210.5 = 5.93824
        # growth (4-1)/1 x 100 = 300
        row(
            "2024-07",
            4,
            3,
            0,
            1.0,
            D("1670.00"),
            D("1250.00"),
            D("417.50"),
            4.67,
            0,
            5,
            D("210.50"),
            5.9382,
            300.0,
        ),
        # 2024-08: no claims -> zeros, rates/averages null; in force still 5, 210.50;
        # lr 0/210.5 = 0; growth (0-4)/4 x 100 = -100
        row(
            "2024-08",
            0,
            0,
            0,
            None,
            D("0.00"),
            D("0.00"),
            None,
            None,
            0,
            5,
            D("210.50"),
            0.0,
            -100.0,
        ),
        # 2024-09: CLM-04 (500/0 Denied 3 d), CLM-09 (900/600 Appr 8 d),
        # CLM-10 (250/200 Appr, days null); new: CUST-4 (2024-09-20)
        # approval 2/3 = 0.66667; claimed 500+900+250 = 1650; paid 600+200 = 800;
        # avg 1650/3 = 550; days (3+8)/2 = 5.5; in force 5 (POL-4 cancelled), 210.50;
        # lr 800/210.5 = 3.80048; growth: previous month had 0 claims -> null
        row(
            "2024-09",
            3,
            2,
            1,
            0.6667,
            D("1650.00"),
            D("800.00"),
            D("550.00"),
            5.5,
            1,
            5,
            D("210.50"),
            3.8005,
            None,
        ),
    ]
    got = built.rows("gold", "monthly_kpis", order_by="year_month")
    assert_rows_equal(got, expected, "year_month", "monthly_kpis")


def test_gold_provider_performance(built):
    expected = [
        # PRV-1: CLM-01 (200/150 Appr 5 d, CUST-1), CLM-03 (1200/1000 Appr 7 d, CUST-2),
        # CLM-06 (150/- Under Review, CUST-3), CLM-08 (120/100 Appr 2 d, CUST-5),
        # CLM-10 (250/200 Appr, no days, CUST-4)
        # claimed 200+1200+150+120+250 = 1920; paid 150+1000+100+200 = 1450; avg 1920/5 = 384;
        # approval 4/4 = 1; days (5+7+2)/3 = 4.67; customers 5
        {
            "provider_id": "PRV-1",
            "provider_name": "Happy Paws Vet",
            "provider_type": "General Practice",
            "city": "Austin",
            "state": "TX",
            "total_claims": 5,
            "total_claimed": D("1920.00"),
            "total_paid": D("1450.00"),
            "avg_claim_amount": D("384.00"),
            "approval_rate": 1.0,
            "avg_processing_days": 4.67,
            "unique_customers": 5,
            "average_rating": 4.5,
            "is_in_network": True,
        },
        # PRV-2: CLM-02 (800/640 Paid 10 d, CUST-2), CLM-04 (500/0 Denied 3 d, CUST-2),
        # CLM-05 (300/240 Appr 4 d, CUST-3), CLM-07 (3000/2700 Paid 12 d, CUST-5),
        # CLM-09 (900/600 Appr 8 d, CUST-5)
        # claimed 800+500+300+3000+900 = 5500; paid 640+240+2700+600 = 4180; avg 5500/5 = 1100;
        # approval 4/5 = 0.8; days (10+3+4+12+8)/5 = 37/5 = 7.4; customers {2,3,5} = 3
        {
            "provider_id": "PRV-2",
            "provider_name": "City Emergency Clinic",
            "provider_type": "Emergency",
            "city": "Dallas",
            "state": "TX",
            "total_claims": 5,
            "total_claimed": D("5500.00"),
            "total_paid": D("4180.00"),
            "avg_claim_amount": D("1100.00"),
            "approval_rate": 0.8,
            "avg_processing_days": 7.4,
            "unique_customers": 3,
            "average_rating": None,
            "is_in_network": False,
        },
        # PRV-3: no claims
        {
            "provider_id": "PRV-3",
            "provider_name": "Quiet Cat Clinic",
            "provider_type": "Specialty",
            "city": "Denver",
            "state": "CO",
            "total_claims": 0,
            "total_claimed": D("0.00"),
            "total_paid": D("0.00"),
            "avg_claim_amount": None,
            "approval_rate": None,
            "avg_processing_days": None,
            "unique_customers": 0,
            "average_rating": 5.0,
            "is_in_network": True,
        },
    ]
    got = built.rows("gold", "provider_performance", order_by="provider_id")
    assert_rows_equal(got, expected, "provider_id", "provider_performance")


def test_gold_cross_sell_recommendations(built):
    # Book-wide average annual premium over active policies:
    #   POL-1 50 + POL-2 45 + POL-3 25.50 + POL-5 50 + POL-6 40 = 210.50 / month
    #   x 12 = 2526.00 over 5 policies = 505.20
    # Not firing:
    #   Insure Additional Pet: CUST-1/2/3 (every active pet insured; CUST-4's PET-5 is inactive)
    #   Wellness Add-on: CUST-1 has a Wellness claim but POL-1 includes wellness (0 policies);
    #                    CUST-2/3/4 have no Wellness claim
    #   Dental: CUST-3's PET-3 is 2 (35 months) < 3; CUST-5's PET-7 (4) has POL-6 with dental;
    #           CUST-4's PET-4 is 1 and uninsured
    #   Plan Upgrade: CUST-3 has active Basic POL-3 but only 1 claim in 12 months (CLM-05 on
    #                 2024-06-30 is outside); CUST-1/5 have no Basic policy
    expected = [
        # PET-1 aged 10, POL-1 has no dental: 96 x 1 = 96.00 -> Low (< 100)
        {
            "customer_id": "CUST-1",
            "full_name": "Alice Smith",
            "recommendation": "Dental Coverage",
            "reason": "1 active pet(s) aged 3+ whose active policy lacks dental cover",
            "estimated_revenue": D("96.00"),
            "priority": "Low",
        },
        # PET-2 aged 7, POL-2 has no dental: 96 x 1 = 96.00 -> Low
        {
            "customer_id": "CUST-2",
            "full_name": "Bob Jones",
            "recommendation": "Dental Coverage",
            "reason": "1 active pet(s) aged 3+ whose active policy lacks dental cover",
            "estimated_revenue": D("96.00"),
            "priority": "Low",
        },
        # active Basic POL-2 and 2 claims in 12 months: 180 x 1 = 180.00 -> Medium (100..199)
        {
            "customer_id": "CUST-2",
            "full_name": "Bob Jones",
            "recommendation": "Plan Upgrade",
            "reason": "2 claims in the last 12 months on 1 active Basic policy(ies)",
            "estimated_revenue": D("180.00"),
            "priority": "Medium",
        },
        # PET-4 active, no active policy; Dan has no active policy -> book-wide 505.20 x 1
        # -> High (>= 200)
        {
            "customer_id": "CUST-4",
            "full_name": "Dan Brown",
            "recommendation": "Insure Additional Pet",
            "reason": "1 active pet(s) without an active policy",
            "estimated_revenue": D("505.20"),
            "priority": "High",
        },
        # PET-6 aged 9, POL-5 has no dental (PET-7's POL-6 has): 96 x 1 = 96.00 -> Low
        {
            "customer_id": "CUST-5",
            "full_name": "Eve Green",
            "recommendation": "Dental Coverage",
            "reason": "1 active pet(s) aged 3+ whose active policy lacks dental cover",
            "estimated_revenue": D("96.00"),
            "priority": "Low",
        },
        # PET-8 uninsured; Eve's own average: 12 x (50 + 40) / 2 = 540.00 x 1 -> High
        {
            "customer_id": "CUST-5",
            "full_name": "Eve Green",
            "recommendation": "Insure Additional Pet",
            "reason": "1 active pet(s) without an active policy",
            "estimated_revenue": D("540.00"),
            "priority": "High",
        },
        # CLM-08 is Wellness; POL-5 and POL-6 lack wellness: 120 x 2 = 240.00 -> High
        {
            "customer_id": "CUST-5",
            "full_name": "Eve Green",
            "recommendation": "Wellness Add-on",
            "reason": "1 wellness claim(s) filed and 2 active policy(ies) without wellness cover",
            "estimated_revenue": D("240.00"),
            "priority": "High",
        },
    ]
    got = built.rows("gold", "cross_sell_recommendations", order_by="customer_id, recommendation")
    got_p = project(got, list(expected[0].keys()))
    assert [(r["customer_id"], r["recommendation"]) for r in got_p] == [
        (r["customer_id"], r["recommendation"]) for r in expected
    ]
    problems = [
        f"cross_sell[{e['customer_id']}, {e['recommendation']}].{c}: expected {e[c]!r}, "
        f"got {g[c]!r}"
        for g, e in zip(got_p, expected)
        for c in e
        if g[c] != e[c]
    ]
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# Rules v2, each worked by hand on two more tiny raw zones (as_of 2025-06-30 again).
#
# Lake "v2": a book with NO active policy (every policy Expired by as_of), so Insure Additional
# Pet falls back to the book-wide average of an empty book; a loss ratio of exactly 0.49998; an
# approved claim with no paid amount; names with missing parts; every bad_value case.
# Lake "dental": one customer whose pets have several active policies each.
# --------------------------------------------------------------------------------------------

V2_CUSTOMERS_CSV = (
    "\n".join(
        [
            "customer_id,first_name,last_name,email,phone,address,city,state,zip_code,date_of_birth,"
            "customer_since,segment,lifetime_value,updated_at",
            "CUST-A,Ann,,ann@example.com,5551230001,1 Main St,Austin,TX,78701,1980-01-01,2023-01-01,"
            "Budget,,2024-01-01T00:00:00",  # no last name -> "Ann"
            "CUST-B,,,b@example.com,5551230002,2 Main St,Austin,TX,78701,1981-01-01,2023-01-01,"
            "Budget,,2024-01-01T00:00:00",  # neither -> null
            "CUST-C,  ,Cruz,c@example.com,5551230003,3 Main St,Austin,TX,78701,1982-01-01,2023-01-01,"
            "Budget,,2024-01-01T00:00:00",  # whitespace-only first name -> "Cruz"
        ]
    )
    + "\n"
)
V2_PETS_CSV = (
    "\n".join(
        [
            "pet_id,customer_id,pet_name,species,breed,gender,date_of_birth,weight_lbs,microchip_id,"
            "is_neutered,vaccination_status,pre_existing_conditions,is_active,updated_at",
            "PET-A1,CUST-A,Rex,Dog,Lab,Male,2015-01-01,60,123456789012301,true,Current,None,true,2024-01-01",
            "PET-B1,CUST-B,Tom,Cat,Siamese,Male,2020-01-01,9,123456789012302,true,Current,None,true,2024-01-01",
            "PET-C1,CUST-C,Max,Dog,Pug,Male,2018-01-01,20,123456789012303,true,Current,None,false,2024-01-01",
        ]
    )
    + "\n"
)
V2_POLICY_HEADER = (
    "policy_id,policy_number,customer_id,pet_id,plan_name,monthly_premium,deductible,coverage_limit,"
    "effective_date,expiration_date,status,includes_wellness,includes_dental,includes_behavioral,"
    "updated_at"
)
V2_POLICIES_CSV = (
    "\n".join(
        [
            V2_POLICY_HEADER,
            # line 2: 5000.00 x 10 months (2024-01..2024-10) = 50000.00 earned; not active at as_of
            "POL-A1,PN-A1,CUST-A,PET-A1,Basic,5000.00,250,100000,2024-01-01,2024-10-31,Expired,"
            "false,false,false,2024-01-01",
            # line 3: status "  eXPIRED " -> Expired (accepted values match case-insensitively, trimmed)
            "POL-C1,PN-C1,CUST-C,PET-C1,Standard,10.00,250,5000,2024-01-01,2024-12-31,  eXPIRED ,"
            "false,false,false,2024-01-01",
            # line 4: unknown status -> bad_value
            "POL-BV1,PN-B1,CUST-A,PET-A1,Basic,10.00,250,5000,2024-01-01,2024-12-31,Lapsed,"
            "false,false,false,2024-01-01",
            # line 5: empty status -> bad_value
            "POL-BV2,PN-B2,CUST-A,PET-A1,Basic,10.00,250,5000,2024-01-01,2024-12-31,,"
            "false,false,false,2024-01-01",
            # line 6: unknown status AND negative premium -> bad_value (before negative_amount)
            "POL-BV3,PN-B3,CUST-A,PET-A1,Basic,-1.00,250,5000,2024-01-01,2024-12-31,Lapsed,"
            "false,false,false,2024-01-01",
            # line 7: bad date AND unknown status -> bad_date (before bad_value)
            "POL-BV4,PN-B4,CUST-A,PET-A1,Basic,10.00,250,5000,2024-13-01,2024-12-31,Lapsed,"
            "false,false,false,2024-01-01",
        ]
    )
    + "\n"
)


def _v2_claim(cid, sdate, amount, paid, status, provider="PRV-1"):
    return _claim(
        cid,
        f"CN-{cid}",
        "CUST-A",
        "POL-A1",
        "PET-A1",
        provider,
        "Illness",
        "Other",
        sdate,
        amount,
        paid,
        status,
        5,
        None,
        "2024-05-01T00:00:00",
    )


V2_CLAIMS_JSONL = (
    "\n".join(
        [
            _v2_claim("CLM-A1", "2024-03-01", "30000.00", "24999.00", "Paid"),  # line 1
            _v2_claim("CLM-A2", "2024-04-01", "100.00", None, "Approved"),  # line 2: paid null
            _v2_claim("CLM-A3", "2024-04-15", "50.00", "0.00", " dENIED "),  # line 3 -> Denied
            _v2_claim("CLM-BV1", "2024-04-01", "10.00", "0.00", "Pending Payment"),  # line 4
            _v2_claim("CLM-BV2", "2024-04-01", "10.00", "0.00", ""),  # line 5
            _v2_claim("CLM-BV3", "2024-04-01", "abc", "0.00", "Submitted"),  # line 6
            _v2_claim("CLM-BV4", "2024-04-01", None, None, "Submitted"),  # line 7
            _v2_claim(
                "CLM-BV5", "2024-04-01", "1000000000.00", None, "Submitted"
            ),  # line 8: = 10^9
            _v2_claim(
                "CLM-BV6", "2024-04-01", "-1000000000.00", None, "Submitted"
            ),  # line 9: |x| = 10^9
            _v2_claim("CLM-NEG", "2024-04-01", "-5.00", None, "Submitted"),  # line 10
            _v2_claim("CLM-DS", "2024-02-30", "10.00", None, "Lost"),  # line 11
            _v2_claim("CLM-SN", "2024-04-01", "10.00", "-1.00", "Lost"),  # line 12
            _v2_claim("CLM-SO", "2024-04-01", "10.00", None, "Lost", provider="PRV-404"),  # line 13
        ]
    )
    + "\n"
)
ONE_PROVIDER_CSV = (
    "\n".join(
        [
            "provider_id,provider_name,provider_type,address,city,state,zip_code,phone,is_in_network,"
            "average_rating,specialties,updated_at",
            "PRV-1,Vet A,General Practice,2 Oak,Austin,TX,78701,5551112222,true,4.5,Dogs,2024-01-01",
        ]
    )
    + "\n"
)


@pytest.fixture
def built_v2(rules_v2_lake) -> LakeFixture:
    """Built once per session (conftest's `rules_v2_lake`, by `build_v2`), shared with the pandas
    and Spark baselines."""
    return rules_v2_lake


def build_v2(tmp_path_factory) -> LakeFixture:
    lake = LakeFixture(tmp_path_factory.mktemp("rules_v2") / "lake")
    lake.write_raw("customers", "customers.csv", V2_CUSTOMERS_CSV)
    lake.write_raw("providers", "providers.csv", ONE_PROVIDER_CSV)
    lake.write_raw("pets", "pets.csv", V2_PETS_CSV)
    lake.write_raw("policies", "policies.csv", V2_POLICIES_CSV)
    lake.write_raw("claims", "claims.jsonl", V2_CLAIMS_JSONL)
    lake.refresh(as_of=AS_OF)
    return lake


CLAIM_STATUS_LIST = "Submitted, Under Review, Approved, Denied, Paid"
NOT_AN_AMOUNT = " is not a number below 10^9 in magnitude"


def test_v2_bad_value_cases_and_their_place_in_the_order(built_v2):
    got = [
        (r["entity"], r["record_key"], r["reason"], r["source_line"], r["detail"])
        for r in built_v2.rows("silver", "quarantine", order_by="entity, source_line")
    ]
    assert got == [
        (
            "claims",
            "CLM-BV1",
            "bad_value",
            4,
            f"status Pending Payment is not one of {CLAIM_STATUS_LIST}",
        ),
        ("claims", "CLM-BV2", "bad_value", 5, f"status (empty) is not one of {CLAIM_STATUS_LIST}"),
        ("claims", "CLM-BV3", "bad_value", 6, "claim_amount abc" + NOT_AN_AMOUNT),
        ("claims", "CLM-BV4", "bad_value", 7, "claim_amount (empty)" + NOT_AN_AMOUNT),
        ("claims", "CLM-BV5", "bad_value", 8, "claim_amount 1000000000.00" + NOT_AN_AMOUNT),
        ("claims", "CLM-BV6", "bad_value", 9, "claim_amount -1000000000.00" + NOT_AN_AMOUNT),
        ("claims", "CLM-NEG", "negative_amount", 10, "claim_amount -5.00, paid_amount null"),
        (
            "claims",
            "CLM-DS",
            "bad_date",
            11,
            "service_date 2024-02-30 is not a date from 1900-01-01 to a year after ingestion",
        ),
        ("claims", "CLM-SN", "bad_value", 12, f"status Lost is not one of {CLAIM_STATUS_LIST}"),
        ("claims", "CLM-SO", "bad_value", 13, f"status Lost is not one of {CLAIM_STATUS_LIST}"),
        (
            "policies",
            "POL-BV1",
            "bad_value",
            4,
            "status Lapsed is not one of Active, Expired, Cancelled, Pending",
        ),
        (
            "policies",
            "POL-BV2",
            "bad_value",
            5,
            "status (empty) is not one of Active, Expired, Cancelled, Pending",
        ),
        (
            "policies",
            "POL-BV3",
            "bad_value",
            6,
            "status Lapsed is not one of Active, Expired, Cancelled, Pending",
        ),
        (
            "policies",
            "POL-BV4",
            "bad_date",
            7,
            "effective_date 2024-13-01 is not a date from 1900-01-01 to 10 years after ingestion",
        ),
    ]
    # Accepted values are stored in their accepted spelling.
    assert [
        (r["claim_id"], r["status"]) for r in built_v2.rows("silver", "fact_claims", "claim_id")
    ] == [("CLM-A1", "Paid"), ("CLM-A2", "Approved"), ("CLM-A3", "Denied")]
    assert [
        (r["policy_id"], r["status"]) for r in built_v2.rows("silver", "dim_policies", "policy_id")
    ] == [("POL-A1", "Expired"), ("POL-C1", "Expired")]


def test_v2_loss_ratio_band_uses_the_rounded_ratio(built_v2):
    # CUST-A: premium earned 5000.00 x 10 = 50000.00; paid CLM-A1 24999.00 + CLM-A2 null (0)
    # = 24999.00; 24999 / 50000 = 0.49998 -> 0.5000 as shown -> band [0.5, 0.8) -> 10 points
    # (0.49998 itself would score 0). Pet PET-A1 born 2015-01-01: 125 months -> 10 y -> 15.
    # No claim in the last 12 months (both before 2024-06-30): 0. Total 25 -> Medium.
    (risk,) = [r for r in built_v2.rows("gold", "risk_scoring") if r["customer_id"] == "CUST-A"]
    assert (
        risk["loss_ratio"],
        risk["loss_ratio_score"],
        risk["pet_age_score"],
        risk["claim_frequency_score"],
        risk["total_risk_score"],
        risk["risk_category"],
    ) == (0.5, 10, 15, 0, 25, "Medium")
    (c360,) = [
        r for r in built_v2.rows("gold", "customer_360_view") if r["customer_id"] == "CUST-A"
    ]
    assert (
        c360["premium_earned"],
        c360["total_paid"],
        c360["total_claimed"],
        c360["loss_ratio"],
        c360["risk_score"],
    ) == (D("50000.00"), D("24999.00"), D("30150.00"), 0.5, 25)


def test_v2_null_paid_amount_on_an_approved_claim_counts_as_zero(built_v2):
    rates = {
        r["claim_id"]: (r["paid_amount"], r["reimbursement_rate"])
        for r in built_v2.rows("gold", "claims_analytics")
    }
    assert rates == {
        "CLM-A1": (D("24999.00"), 0.8333),  # 24999 / 30000 = 0.83330
        "CLM-A2": (None, 0.0),  # approved, paid null -> 0 / 100.00
        "CLM-A3": (D("0.00"), None),  # Denied: not approved
    }
    # 2024-04: CLM-A2 (approved, paid 0) and CLM-A3 (denied); in force POL-A1 5000 + POL-C1 10.
    april = [r for r in built_v2.rows("gold", "monthly_kpis") if r["year_month"] == "2024-04"][0]
    assert (
        april["total_claims"],
        april["approved_claims"],
        april["total_paid"],
        april["premium_earned"],
        april["loss_ratio"],
    ) == (2, 1, D("0.00"), D("5010.00"), 0.0)


def test_v2_full_name_with_a_missing_part(built_v2):
    names = {r["customer_id"]: r["full_name"] for r in built_v2.rows("gold", "customer_360_view")}
    assert names == {"CUST-A": "Ann", "CUST-B": None, "CUST-C": "Cruz"}
    assert {r["customer_name"] for r in built_v2.rows("gold", "claims_analytics")} == {"Ann"}


def test_v2_empty_book_estimates_zero_for_insure_additional_pet(built_v2):
    # No active policy anywhere (POL-A1 ended 2024-10-31, POL-C1 2024-12-31): PET-A1 and PET-B1 are
    # active and uninsured; neither customer has an active policy, the book-wide average of an
    # empty book is 0 -> 0.00, Low. PET-C1 is inactive. No other recommendation fires (they all
    # need an active policy).
    got = project(
        built_v2.rows("gold", "cross_sell_recommendations", "customer_id, recommendation"),
        ["customer_id", "full_name", "recommendation", "reason", "estimated_revenue", "priority"],
    )
    reason = "1 active pet(s) without an active policy"
    assert got == [
        {
            "customer_id": "CUST-A",
            "full_name": "Ann",
            "recommendation": "Insure Additional Pet",
            "reason": reason,
            "estimated_revenue": D("0.00"),
            "priority": "Low",
        },
        {
            "customer_id": "CUST-B",
            "full_name": None,
            "recommendation": "Insure Additional Pet",
            "reason": reason,
            "estimated_revenue": D("0.00"),
            "priority": "Low",
        },
    ]


DENTAL_POLICIES_CSV = (
    "\n".join(
        [V2_POLICY_HEADER]
        + [
            f"{pid},PN-{pid},CUST-D,{pet},Standard,30.00,250,5000,2025-01-01,2025-12-31,Active,"
            f"false,{dental},false,2025-01-01"
            for pid, pet, dental in [
                ("POL-D1", "PET-D1", "false"),
                ("POL-D2", "PET-D1", "true"),  # one of two has dental
                ("POL-D3", "PET-D2", "false"),
                ("POL-D4", "PET-D2", "false"),  # none of two has dental
                ("POL-D5", "PET-D3", "false"),  # pet aged 2
            ]
        ]
    )
    + "\n"
)


@pytest.fixture(scope="module")
def built_dental(tmp_path_factory) -> LakeFixture:
    lake = LakeFixture(tmp_path_factory.mktemp("rules_dental") / "lake")
    lake.write_raw(
        "customers",
        "customers.csv",
        "\n".join(
            [
                V2_CUSTOMERS_CSV.splitlines()[0],
                "CUST-D,Dee,Dent,d@example.com,5551230004,4 Main St,Austin,TX,78701,1980-01-01,2023-01-01,"
                "Family,,2024-01-01T00:00:00",
            ]
        )
        + "\n",
    )
    lake.write_raw("providers", "providers.csv", ONE_PROVIDER_CSV)
    lake.write_raw(
        "pets",
        "pets.csv",
        "\n".join(
            [V2_PETS_CSV.splitlines()[0]]
            + [
                f"{pet},CUST-D,{name},Dog,Lab,Male,{dob},50,12345678901230{i},true,Current,None,true,2024-01-01"
                for i, (pet, name, dob) in enumerate(
                    [
                        ("PET-D1", "Ace", "2020-01-01"),
                        ("PET-D2", "Bo", "2019-06-30"),
                        ("PET-D3", "Cy", "2023-01-01"),
                    ]
                )
            ]
        )
        + "\n",
    )
    lake.write_raw("policies", "policies.csv", DENTAL_POLICIES_CSV)
    lake.write_raw(
        "claims",
        "claims.jsonl",
        _claim(
            "CLM-D1",
            "CN-D1",
            "CUST-D",
            "POL-D1",
            "PET-D1",
            "PRV-1",
            "Illness",
            "Other",
            "2025-03-01",
            "100.00",
            "80.00",
            "Paid",
            3,
            None,
            "2025-03-05T00:00:00",
        )
        + "\n",
    )
    lake.refresh(as_of=AS_OF)
    return lake


def test_v2_dental_counts_pets_none_of_whose_active_policies_includes_dental(built_dental):
    # PET-D1 (5 y): POL-D2 includes dental -> no. PET-D2 (2019-06-30 -> 72 months, 6 y): neither
    # POL-D3 nor POL-D4 includes dental -> 1 pet (not 2 policies). PET-D3: 29 months -> 2 y < 3.
    # 96 x 1 = 96.00 -> Low. Every active pet is insured, no Wellness claim, no Basic policy: the
    # only recommendation.
    got = project(
        built_dental.rows("gold", "cross_sell_recommendations"),
        ["customer_id", "full_name", "recommendation", "reason", "estimated_revenue", "priority"],
    )
    assert got == [
        {
            "customer_id": "CUST-D",
            "full_name": "Dee Dent",
            "recommendation": "Dental Coverage",
            "reason": "1 active pet(s) aged 3+ whose active policy lacks dental cover",
            "estimated_revenue": D("96.00"),
            "priority": "Low",
        }
    ]
