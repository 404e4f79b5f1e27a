"""Seeded, streaming generator of a realistic, dirty raw landing zone.

``generate(raw_dir, claims=15_000, seed=42)`` writes what the source systems would drop into
``raw/`` (DESIGN.md §5): one batch file per entity, named and laid out as ``contracts.py`` says, plus
real-time single-record JSON files ``raw/<entity>/<ID>_<YYYYMMDD>_<HHMMSS>_<ffffff>.json``.
``python -m petinsure_assets.demo_data --raw-dir ./lake/raw --claims 15000 --seed 42`` does the same
from the command line.

Sizes (all derived from ``claims``)
    customers = claims // 3 (at least 1); pets ≈ 1.5 per customer (repeating pattern of 1,1,2,1,3,1,
    2,1,2,1 pets for every 10 customers); one policy per pet except every 50th pet (pet index
    ≡ 49 mod 50 has none, so "Insure Additional Pet" can fire); providers = clamp(50 + claims // 2000,
    20, 500) in ``providers.csv`` plus max(3, providers // 20) more in ``providers_extra_column.csv``;
    real-time files per entity (customers, pets, policies, claims) = clamp(claims // 1000, 5, 200)
    unless ``realtime_files`` is given, plus one invalid claims file. Of these ~65% are new records
    (a new customer with one pet, its policy and a first claim), ~30% later versions of batch keys
    and ~5% exact re-sends of batch records. Below 100 claims there may be too few clean rows to
    source every later version; ``GenerationReport.realtime_files`` has the true counts.

Determinism, streaming, speed
    No wall clock anywhere: every date derives from ``REFERENCE_DATE`` (2026-01-01) and the seed, so
    the same (seed, claims, realtime_files) gives byte-identical files and another seed other data
    (``CHUNK_ROWS`` is part of that identity; keep it fixed). Rows are generated and written in
    chunks of ``CHUNK_ROWS`` with vectorised numpy draws (one ``numpy.random.Generator`` per entity
    and chunk) and pyarrow string kernels; relationships are arithmetic (customer i is
    ``CUST-%08d`` % (i+1), pet j belongs to customer ``owner(j)``, policy j covers pet j, a claim
    draws a pet and derives its customer and policy), and the few parent attributes a child needs
    (customer_since, species, policy dates) come from a counter-based hash, so nothing is held in
    memory beyond one chunk. From ``PARALLEL_FROM_CLAIMS`` claims a spawned worker process writes
    the four CSV entities while this process writes claims.jsonl (same bytes either way). Files
    are written under a hidden ``.<name>.tmp`` name and renamed when complete, so a sensor never
    sees half a file. Measured on 2 cores: 1M claims ≈ 4 s, 10M ≈ 32 s, ~0.45 GB peak RSS per
    process.

Value domains
    Batch updated_at values lie in 2023-01-01 .. 2025-12-31; real-time records arrive between
    2026-01-01 and 2026-01-10 (except exact re-sends, which carry the batch record's updated_at).
    Claims arrive at a constant rate per insured day: each service date lies inside its policy's
    term and before 2026-01-01 (~11% in 2023, ~32% in 2024, ~57% in 2025, growing with the book).
    Segments: ``contracts.SEGMENTS``. Claim categories: Emergency Care, Surgery, Diagnostics,
    Hospitalization, Medication, Vaccination, Wellness Exam, Dental, Preventive Care. Pets without
    a policy never have claims. Policy status: Active when the term reaches 2026-01-01, else
    Expired, with ~4% Cancelled and some Pending (terms starting in December 2025).

What readers must know
    * CSV: header = the entity's contract columns; minimal quoting (only values holding a comma or a
      quote are quoted, e.g. providers.specialties ``"Surgery, Oncology"``); missing values are empty.
    * claims.jsonl: keys = claim columns. ``claim_amount`` and ``paid_amount`` are JSON numbers
      written with 2 decimals (``123.40``; a JSON parser hands back 123.4), ``processing_days`` is a
      JSON integer or ``null`` (undecided claims); every other value is a JSON string.
    * Real-time JSON (pretty or compact, one object): the same typing for claims, and JSON numbers
      for lifetime_value, weight_lbs, monthly_premium, deductible, coverage_limit (``""`` in a CSV
      becomes ``null``); booleans stay the strings "true"/"false". Compare numbers numerically.
    * Everything else is text; dates are ISO ``YYYY-MM-DD`` unless dirt says otherwise, timestamps
      ``YYYY-MM-DDTHH:MM:SS``.

Dirt (counted exactly in ``GenerationReport.dirt[entity][kind]``). A rate r over n rows gives
max(1, floor(r·n)) instances, so every kind below appears at least once from claims=100 up. Each
dirty row carries one kind only, dirty rows are never the source of a duplicate/update, and dirt
that silver quarantines is put where it cannot cascade: on parents (customers, pets, policies,
providers) it is an *extra* row (an invalid later version, or a copy with the key blanked), never
the only version of a key. "extra" = an added row; "in place" = a base row altered.

    kind                  entity: rate                               how
    duplicate             all: 1% (extra)                            exact copy of a row, same file
    update                all: 1% (extra)                            same key, later updated_at, a
                                                                     changed value (customer moved,
                                                                     pet weighed, plan upgraded or
                                                                     cancelled, claim status moved)
    realtime_update       customers, pets, policies, claims:         later version of a batch key
                          ~30% of real-time files                    (claims: Submitted/Under
                                                                     Review → Approved/Paid)
    realtime_duplicate    same four: ~5% of real-time files          exact re-send of a batch record
    us_date               customers 2%, pets 2%, policies 2%,        MM/DD/YYYY instead of ISO (all
                          claims 2% (in place)                       date columns of that row; not
                                                                     updated_at)
    bad_phone             customers 2%, providers 2%                 555.123.4567, 5551234567,
                                                                     +1 555 123 4567, 1-555-123-4567, 123
    email_upper           customers 1%                               JOHN.SMITH42@EXAMPLE.COM
    bad_email             customers 0.5%                             john.smith@ / john.smith42 /
                                                                     "john at example.com" / a@@b
    state_full_name       customers 1%, providers 1%                 California
    state_lower           customers 1%, providers 1%                 ca
    bad_zip               customers 0.5%                             2134 (lost zero), 02134-5678, 021
    missing_<field>       customers address 1%, phone 0.5%;          empty string in a soft field
                          pets breed 1%, microchip_id 3%;
                          policies deductible 0.5%; claims claim_category 0.5%;
                          providers address 1%
    bad_weight            pets 0.3%                                  weight_lbs 0, 0.0 or negative
    bad_rating            providers 1%                               average_rating above 5
    case_variant          pets species 0.5%, policies plan_name 0.5%, dog / CAT / premium / PAID
                          claims status 0.5%
    negative_amount       policies 0.3% (extra later version,        amount < 0
                          monthly_premium); claims 0.5% (in place,
                          claim_amount or paid_amount)
    overpaid              claims 0.5%                                approved, paid_amount > claim_amount
    orphan_fk             pets 0.3% (extra rows, own new key, unknown customer); policies 0.3%
                          (extra rows, unknown pet and customer); claims 0.3% (in place, unknown pet,
                          policy and customer). Unknown ids are ``<PREFIX>-99xxxxxx``, orphan rows'
                          own keys ``<PREFIX>-98xxxxxx``: both ranges are never used otherwise.
    orphan_provider       claims 0.2%                                unknown provider_id
    late_arriving_parent  claims: max(1, new real-time bundles // 2)  a claims.jsonl claim whose pet,
                                                                     policy and customer exist only
                                                                     in real-time JSON files
    missing_key           customers, pets, policies 0.3% (extra copy), claims 0.3% (in place),
                          providers 0.5% (extra copy)                primary key ""
    bad_date              policies 0.3% (extra later version,        2025-13-45, not a date,
                          effective_date); claims 0.3% (in place,    2024-02-30, 31/31/2024
                          service_date)
    malformed_json        claims 0.3% (extra)                        truncated object
                                                                     ``{"claim_id": "CLM-…", "x": ``
    realtime_invalid_json claims: 1 extra real-time file             truncated JSON document
    wrong_field_count     customers 0.1% (extra copy)                address "12 Oak St, Apt 3"
                                                                     unquoted → one field too many
    extra_column_file     providers: the rows of                     header = provider columns +
                          providers/providers_extra_column.csv       ``website``; valid rows, new ids
                                                                     (claims do reference them)

``GenerationReport.expected_quarantine()`` maps these onto the quarantine reasons of docs/rules.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from petinsure_assets import contracts

__all__ = ["generate", "GenerationReport", "main", "REFERENCE_DATE", "CHUNK_ROWS"]

REFERENCE_DATE = date(2026, 1, 1)
CHUNK_ROWS = 200_000
EXTRA_PROVIDERS_FILE = "providers_extra_column.csv"

_EPOCH = date(1970, 1, 1)


def _day(y: int, m: int, d: int) -> int:
    return (date(y, m, d) - _EPOCH).days


_DAY = 86_400
_REF_DAY = (REFERENCE_DATE - _EPOCH).days
_LAST_BATCH_SEC = _REF_DAY * _DAY - 1  # 2025-12-31T23:59:59: no batch record is newer
_UPDATE_BEFORE_SEC = _day(2025, 11, 1) * _DAY  # rows this old can get a later in-batch version
_UPDATED_HI_DAY = _day(2025, 10, 31)
_SINCE_LO, _SINCE_HI = _day(2019, 1, 1), _day(2025, 12, 31)
_DOB_LO, _DOB_HI = _day(1940, 1, 1), _day(2004, 12, 31)
_EFF_LO, _EFF_HI = _day(2023, 1, 1), _day(2025, 12, 15)
_RT_SINCE_LO = _day(2025, 12, 1)  # real-time customers signed up in December 2025
_RT_START_SEC = _REF_DAY * _DAY + 8 * 3600  # real-time records arrive from 2026-01-01T08:00
_RT_SPAN_SEC = 7 * _DAY
_MISSING_REF_BASE = 99_000_000  # ids that are referenced but never exist
_GHOST_KEY_BASE = 98_000_000  # own keys of orphan rows

# --------------------------------------------------------------------------------------------
# Vocabularies
# --------------------------------------------------------------------------------------------

FIRST_NAMES = (
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Lisa",
    "Daniel",
    "Nancy",
    "Matthew",
    "Betty",
    "Anthony",
    "Margaret",
    "Mark",
    "Sandra",
    "Donald",
    "Ashley",
    "Steven",
    "Kimberly",
    "Paul",
    "Emily",
    "Andrew",
    "Donna",
    "Joshua",
    "Michelle",
    "Kevin",
    "Carol",
    "Brian",
    "Amanda",
    "George",
    "Melissa",
    "Timothy",
    "Deborah",
    "Ronald",
    "Stephanie",
    "Jason",
    "Rebecca",
    "Ryan",
    "Laura",
    "Jacob",
    "Sharon",
    "Luis",
    "Maria",
    "Wei",
    "Priya",
    "Aisha",
    "Mateo",
    "Sofia",
    "Noah",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "O'Brien",
    "O'Connor",
    "Patel",
    "Kim",
    "Chen",
)
EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com")
STREETS = (
    "Main",
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Sunset",
    "Highland",
    "Church",
    "Spring",
    "Ridge",
    "Meadow",
    "Forest",
    "River",
    "Willow",
    "Lincoln",
    "Jefferson",
    "Madison",
    "Franklin",
    "Cherry",
    "Walnut",
)
STREET_SUFFIXES = ("St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct", "Way", "Pl")
# (city, state, first three zip digits)
CITIES = (
    ("New York", "NY", "100"),
    ("Brooklyn", "NY", "112"),
    ("Buffalo", "NY", "142"),
    ("Los Angeles", "CA", "900"),
    ("San Diego", "CA", "921"),
    ("San Francisco", "CA", "941"),
    ("Sacramento", "CA", "958"),
    ("San Jose", "CA", "951"),
    ("Chicago", "IL", "606"),
    ("Springfield", "IL", "627"),
    ("Houston", "TX", "770"),
    ("Dallas", "TX", "752"),
    ("Austin", "TX", "787"),
    ("San Antonio", "TX", "782"),
    ("Phoenix", "AZ", "850"),
    ("Tucson", "AZ", "857"),
    ("Philadelphia", "PA", "191"),
    ("Pittsburgh", "PA", "152"),
    ("Jacksonville", "FL", "322"),
    ("Miami", "FL", "331"),
    ("Tampa", "FL", "336"),
    ("Orlando", "FL", "328"),
    ("Columbus", "OH", "432"),
    ("Cleveland", "OH", "441"),
    ("Charlotte", "NC", "282"),
    ("Raleigh", "NC", "276"),
    ("Indianapolis", "IN", "462"),
    ("Seattle", "WA", "981"),
    ("Spokane", "WA", "992"),
    ("Denver", "CO", "802"),
    ("Boston", "MA", "021"),
    ("Nashville", "TN", "372"),
    ("Memphis", "TN", "381"),
    ("Portland", "OR", "972"),
    ("Las Vegas", "NV", "891"),
    ("Detroit", "MI", "482"),
    ("Atlanta", "GA", "303"),
    ("Minneapolis", "MN", "554"),
    ("Kansas City", "MO", "641"),
    ("St. Louis", "MO", "631"),
    ("Baltimore", "MD", "212"),
    ("Milwaukee", "WI", "532"),
    ("Albuquerque", "NM", "871"),
    ("Salt Lake City", "UT", "841"),
    ("Newark", "NJ", "071"),
    ("Richmond", "VA", "232"),
    ("New Orleans", "LA", "701"),
    ("Omaha", "NE", "681"),
    ("Boise", "ID", "837"),
    ("Hartford", "CT", "061"),
)
STATE_NAMES = {
    "NY": "New York",
    "CA": "California",
    "IL": "Illinois",
    "TX": "Texas",
    "AZ": "Arizona",
    "PA": "Pennsylvania",
    "FL": "Florida",
    "OH": "Ohio",
    "NC": "North Carolina",
    "IN": "Indiana",
    "WA": "Washington",
    "CO": "Colorado",
    "MA": "Massachusetts",
    "TN": "Tennessee",
    "OR": "Oregon",
    "NV": "Nevada",
    "MI": "Michigan",
    "GA": "Georgia",
    "MN": "Minnesota",
    "MO": "Missouri",
    "MD": "Maryland",
    "WI": "Wisconsin",
    "NM": "New Mexico",
    "UT": "Utah",
    "NJ": "New Jersey",
    "VA": "Virginia",
    "LA": "Louisiana",
    "NE": "Nebraska",
    "ID": "Idaho",
    "CT": "Connecticut",
}
SEGMENT_WEIGHTS = (0.20, 0.35, 0.15, 0.20, 0.10)  # contracts.SEGMENTS order

PET_NAMES = (
    "Bella",
    "Max",
    "Luna",
    "Charlie",
    "Lucy",
    "Cooper",
    "Daisy",
    "Milo",
    "Bailey",
    "Rocky",
    "Sadie",
    "Buddy",
    "Molly",
    "Bear",
    "Stella",
    "Tucker",
    "Maggie",
    "Duke",
    "Chloe",
    "Oliver",
    "Penny",
    "Leo",
    "Zoe",
    "Jack",
    "Lily",
    "Teddy",
    "Rosie",
    "Oscar",
    "Coco",
    "Winston",
    "Nala",
    "Simba",
    "Ginger",
    "Toby",
    "Pepper",
    "Shadow",
    "Gizmo",
    "Mochi",
    "Biscuit",
    "Pumpkin",
    "Kiwi",
    "Peanut",
    "Thumper",
    "Sunny",
    "Ziggy",
)
SPECIES_WEIGHTS = (0.55, 0.35, 0.04, 0.04, 0.02)  # contracts.SPECIES order
BREEDS = {
    "Dog": (
        "Labrador Retriever",
        "Golden Retriever",
        "German Shepherd",
        "French Bulldog",
        "Bulldog",
        "Poodle",
        "Beagle",
        "Rottweiler",
        "Dachshund",
        "Yorkshire Terrier",
        "Boxer",
        "Siberian Husky",
        "Shih Tzu",
        "Border Collie",
        "Mixed Breed",
    ),
    "Cat": (
        "Domestic Shorthair",
        "Domestic Longhair",
        "Maine Coon",
        "Siamese",
        "Persian",
        "Ragdoll",
        "Bengal",
        "British Shorthair",
        "Sphynx",
        "Mixed Breed",
    ),
    "Bird": ("Cockatiel", "Budgerigar", "African Grey", "Lovebird", "Cockatoo"),
    "Rabbit": ("Holland Lop", "Netherland Dwarf", "Mini Rex", "Lionhead", "Flemish Giant"),
    "Other": ("Ferret", "Guinea Pig", "Hamster", "Bearded Dragon", "Chinchilla"),
}
VACCINATION_STATUSES = ("Up to Date", "Overdue", "Partial", "Unknown")
VACCINATION_WEIGHTS = (0.72, 0.15, 0.08, 0.05)
CONDITIONS = (
    "None",
    "Hip Dysplasia",
    "Diabetes",
    "Allergies",
    "Arthritis",
    "Heart Murmur",
    "Kidney Disease",
    "Epilepsy",
    "Dental Disease",
)
CONDITION_WEIGHTS = (0.85,) + (0.15 / 8,) * 8

PLAN_WEIGHTS = (0.30, 0.35, 0.25, 0.10)  # contracts.PLAN_NAMES order
PLAN_BASE_PREMIUM = np.array([25.0, 45.0, 70.0, 95.0])
SPECIES_PREMIUM_FACTOR = np.array([1.0, 0.8, 0.5, 0.6, 0.6])
PLAN_DEDUCTIBLES = np.array([[500, 750, 1000], [250, 500, 500], [100, 250, 250], [0, 100, 100]])
PLAN_COVERAGE_LIMIT = np.array([5_000, 10_000, 20_000, 100_000])
PLAN_WELLNESS_P = np.array([0.0, 0.3, 0.8, 1.0])
PLAN_DENTAL_P = np.array([0.0, 0.4, 0.8, 1.0])
PLAN_BEHAVIORAL_P = np.array([0.0, 0.1, 0.5, 1.0])


def plan_catalog() -> list[dict]:
    """The plans on offer, as the generator sells them (GET /api/policies/plans/available): the
    monthly premium is the base times the species factor (the generator varies it by -10 %..+15 %
    per policy); an add-on is included, optional or not available."""

    def add_on(p: float) -> str:
        return "included" if p >= 1 else "optional" if p > 0 else "not available"

    return [
        {
            "plan_name": name,
            "base_monthly_premium": float(PLAN_BASE_PREMIUM[i]),
            "species_premium_factor": {
                s: float(f) for s, f in zip(contracts.SPECIES, SPECIES_PREMIUM_FACTOR, strict=True)
            },
            "deductible_options": sorted({int(d) for d in PLAN_DEDUCTIBLES[i]}),
            "coverage_limit": int(PLAN_COVERAGE_LIMIT[i]),
            "wellness": add_on(PLAN_WELLNESS_P[i]),
            "dental": add_on(PLAN_DENTAL_P[i]),
            "behavioral": add_on(PLAN_BEHAVIORAL_P[i]),
        }
        for i, name in enumerate(contracts.PLAN_NAMES)
    ]


CLAIM_TYPE_WEIGHTS = (0.25, 0.40, 0.20, 0.15)  # contracts.CLAIM_TYPES order
CLAIM_CATEGORIES = (  # four per claim type, contracts.CLAIM_TYPES order
    ("Emergency Care", "Surgery", "Diagnostics", "Hospitalization"),  # Accident
    ("Diagnostics", "Medication", "Surgery", "Hospitalization"),  # Illness
    ("Vaccination", "Wellness Exam", "Dental", "Preventive Care"),  # Wellness
    ("Emergency Care", "Hospitalization", "Surgery", "Diagnostics"),  # Emergency
)
# Medians chosen so that the book runs at a loss ratio near 0.7, as in the source documents.
CLAIM_TYPE_MEDIAN_AMOUNT = np.array([260.0, 180.0, 50.0, 450.0])
CLAIM_STATUS_WEIGHTS = (0.12, 0.13, 0.28, 0.15, 0.32)  # contracts.CLAIM_STATUSES order
DENIAL_REASONS = (
    "Pre-existing condition",
    "Not covered under plan",
    "Waiting period not met",
    "Annual limit reached",
    "Incomplete documentation",
    "Policy not active on service date",
)

PROVIDER_TYPES = ("General Practice", "Emergency", "Specialty", "Mobile")
PROVIDER_TYPE_WEIGHTS = (0.55, 0.15, 0.20, 0.10)
PROVIDER_PREFIXES = (
    "Oakwood",
    "Riverside",
    "Bayview",
    "Cedar Grove",
    "Sunset",
    "Maple Leaf",
    "Lakeside",
    "Hillcrest",
    "Brookside",
    "Northgate",
    "Westside",
    "Eastgate",
    "Pinecrest",
    "Valley",
    "Harbor",
    "Summit",
    "Meadowbrook",
    "Greenfield",
    "Willow Creek",
    "Parkview",
    "Silver Lake",
    "Blue Ridge",
    "Redwood",
    "Stonebridge",
    "Fairview",
    "Clearwater",
    "Springdale",
    "Ashford",
)
PROVIDER_SUFFIXES = (  # four per provider type
    ("Veterinary Clinic", "Animal Hospital", "Pet Clinic", "Family Vet"),
    ("Emergency Vet", "Animal ER", "Pet Emergency Center", "24/7 Animal Hospital"),
    (
        "Veterinary Specialists",
        "Animal Referral Center",
        "Veterinary Surgery Center",
        "Pet Cardiology & Oncology",
    ),
    ("Mobile Vet", "Vet on Wheels", "House Call Vets", "Mobile Pet Care"),
)
PROVIDER_SPECIALTIES = (  # four per provider type
    (
        "General Medicine, Vaccination",
        "Wellness, Dental",
        "General Medicine, Dermatology",
        "Wellness, Nutrition",
    ),
    (
        "Emergency Care, Critical Care",
        "Trauma, Surgery",
        "Emergency Care, Toxicology",
        "Critical Care",
    ),
    ("Oncology", "Orthopedic Surgery", "Cardiology, Internal Medicine", "Dermatology, Allergy"),
    ("Wellness, Vaccination", "Hospice Care", "Senior Pet Care, Wellness", "Vaccination"),
)

BAD_DATES = ("2025-13-45", "not a date", "2024-02-30", "31/31/2024")

# Dirt rates per entity and kind (see the module docstring). A rate r over n rows → max(1, r·n).
RATES: dict[str, dict[str, float]] = {
    "customers": {
        "us_date": 0.02,
        "bad_phone": 0.02,
        "email_upper": 0.01,
        "bad_email": 0.005,
        "state_full_name": 0.01,
        "state_lower": 0.01,
        "bad_zip": 0.005,
        "missing_address": 0.01,
        "missing_phone": 0.005,
        "duplicate": 0.01,
        "update": 0.01,
        "missing_key": 0.003,
        "wrong_field_count": 0.001,
    },
    "pets": {
        "us_date": 0.02,
        "missing_breed": 0.01,
        "missing_microchip_id": 0.03,
        "bad_weight": 0.003,
        "case_variant": 0.005,
        "duplicate": 0.01,
        "update": 0.01,
        "missing_key": 0.003,
        "orphan_fk": 0.003,
    },
    "policies": {
        "us_date": 0.02,
        "missing_deductible": 0.005,
        "case_variant": 0.005,
        "duplicate": 0.01,
        "update": 0.01,
        "negative_amount": 0.003,
        "bad_date": 0.003,
        "missing_key": 0.003,
        "orphan_fk": 0.003,
    },
    "claims": {
        "negative_amount": 0.005,
        "overpaid": 0.005,
        "us_date": 0.02,
        "orphan_fk": 0.003,
        "orphan_provider": 0.002,
        "missing_key": 0.003,
        "bad_date": 0.003,
        "missing_claim_category": 0.005,
        "case_variant": 0.005,
        "duplicate": 0.01,
        "update": 0.01,
        "malformed_json": 0.003,
    },
    "providers": {
        "bad_phone": 0.02,
        "state_full_name": 0.01,
        "state_lower": 0.01,
        "missing_address": 0.01,
        "bad_rating": 0.01,
        "duplicate": 0.01,
        "update": 0.01,
        "missing_key": 0.005,
    },
}


def _check_vocabularies() -> None:
    """Claims lines are assembled without JSON escaping: prove no claim value could need it."""
    vocabularies = (
        contracts.CLAIM_TYPES,
        contracts.CLAIM_STATUSES,
        DENIAL_REASONS,
        BAD_DATES,
        tuple(c for group in CLAIM_CATEGORIES for c in group),
    )
    for value in (v for vocabulary in vocabularies for v in vocabulary):
        if json.dumps(value) != f'"{value}"':
            raise AssertionError(f"vocabulary value needs JSON escaping: {value!r}")


_check_vocabularies()

# Columns written as JSON numbers in claims.jsonl and in real-time files.
JSON_NUMERIC_COLUMNS: dict[str, frozenset[str]] = {
    "customers": frozenset({"lifetime_value"}),
    "pets": frozenset({"weight_lbs"}),
    "policies": frozenset({"monthly_premium", "deductible", "coverage_limit"}),
    "claims": frozenset({"claim_amount", "paid_amount", "processing_days"}),
    "providers": frozenset(),
}

_QUARANTINE_REASON = {
    "wrong_field_count": "malformed_record",
    "malformed_json": "malformed_record",
    "missing_key": "missing_key",
    "bad_date": "bad_date",
    "negative_amount": "negative_amount",
    "overpaid": "overpaid",
    "orphan_fk": "orphan_fk",
    "orphan_provider": "orphan_fk",
}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass
class GenerationReport:
    """What one ``generate`` call wrote.

    sizes: base entity counts (clean records before dirt): customers, pets, policies, providers,
        providers_extra_column, claims, plus realtime_new (new customers = pets = policies =
        claims arriving as real-time files) and realtime_files_per_entity.
    rows: relative batch file path → data lines written (header excluded; every line counts,
        duplicates and malformed ones included).
    realtime_files: entity → number of real-time JSON files written (the invalid one included).
    dirt: entity → dirt kind → instances (see the module docstring for the kinds).
    """

    raw_dir: str
    seed: int
    claims: int
    sizes: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    realtime_files: dict[str, int] = field(default_factory=dict)
    dirt: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, kind: str, entity: str | None = None) -> int:
        """Instances of one dirt kind, for one entity or summed over all."""
        entities = [entity] if entity else list(self.dirt)
        return sum(self.dirt.get(e, {}).get(kind, 0) for e in entities)

    def expected_quarantine(self) -> dict[str, dict[str, int]]:
        """Rows silver should quarantine (docs/rules.md), per entity and reason.

        Assumes every batch file and every valid real-time file was ingested (the late-arriving
        claims' parents are in real-time files; the invalid real-time file is a file-level error
        and is not counted). Duplicates, updates and soft dirt are never quarantined.
        """
        out: dict[str, dict[str, int]] = {}
        for entity, kinds in self.dirt.items():
            for kind, n in kinds.items():
                reason = _QUARANTINE_REASON.get(kind)
                if reason and n:
                    out.setdefault(entity, {})
                    out[entity][reason] = out[entity].get(reason, 0) + n
        return out


# --------------------------------------------------------------------------------------------
# Vectorised helpers
# --------------------------------------------------------------------------------------------

_ENTITY_CODES = {
    "customers": 1,
    "pets": 2,
    "policies": 3,
    "claims": 4,
    "providers": 5,
    "providers_extra": 6,
    "realtime": 7,
}
_HASH_STREAMS = {"since": 11, "policy": 12, "species": 13, "rt_since": 14}
_M64 = (1 << 64) - 1


def _rng(seed: int, entity: str, chunk: int) -> np.random.Generator:
    return np.random.default_rng([seed & _M64, _ENTITY_CODES[entity], chunk])


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hash_u(seed: int, stream: str, idx: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) per index, stateless: any entity can recompute a parent's attribute."""
    key = _splitmix(np.array([(seed * 1_000_003 + _HASH_STREAMS[stream]) & _M64], np.uint64))
    with np.errstate(over="ignore"):
        z = _splitmix(np.asarray(idx, np.int64).astype(np.uint64) + key[0])
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _choice(rng: np.random.Generator, n: int, weights: Iterable[float]) -> np.ndarray:
    cum = np.cumsum(np.asarray(tuple(weights), np.float64))
    return np.minimum(np.searchsorted(cum / cum[-1], rng.random(n), side="right"), len(cum) - 1)


def _choice_u(u: np.ndarray, weights: Iterable[float]) -> np.ndarray:
    cum = np.cumsum(np.asarray(tuple(weights), np.float64))
    return np.minimum(np.searchsorted(cum / cum[-1], u, side="right"), len(cum) - 1)


_VOCAB_CACHE: dict[int, pa.Array] = {}


def _take(vocab: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    arr = _VOCAB_CACHE.get(id(vocab))
    if arr is None:
        arr = _VOCAB_CACHE[id(vocab)] = pa.array(vocab, pa.string())
    return pc.take(arr, pa.array(np.asarray(codes, np.int64)))


def _cat(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _str(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, np.int64)).cast(pa.string())


def _pad(values: np.ndarray, width: int) -> pa.Array:
    """Non-negative integers as zero-padded decimal text (wider when a value needs it)."""
    v = np.asarray(values, np.int64)
    if v.size and v.max() >= 10**width:
        return pc.utf8_lpad(_str(v), width, "0")
    return pc.utf8_slice_codeunits(_str(v + 10**width), 1)


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    return _cat(prefix + "-", _pad(numbers, 8))


_TWO_DIGITS = tuple(f"{i:02d}" for i in range(100))
_TIMES_OF_DAY: list[pa.Array] = []


def _money(cents: np.ndarray) -> pa.Array:
    c = np.asarray(cents, np.int64)
    a = np.abs(c)
    text = _cat(_str(a // 100), ".", _take(_TWO_DIGITS, a % 100))
    negative = c < 0
    if negative.any():
        text = pc.if_else(pa.array(negative), _cat("-", text), text)
    return text


def _tenths(values: np.ndarray) -> pa.Array:
    v = np.asarray(values, np.int64)
    return _cat(_str(v // 10), ".", _str(v % 10))


def _bool(flags: np.ndarray) -> pa.Array:
    return _take(("false", "true"), np.asarray(flags, np.int64))


def _iso(days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days, np.int32), type=pa.date32()).cast(pa.string())


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(days, np.int64).astype("datetime64[D]")
    months = d.astype("datetime64[M]")
    mi = months.astype(np.int64)
    day = (d - months.astype("datetime64[D]")).astype(np.int64) + 1
    return mi // 12 + 1970, mi % 12 + 1, day


def _us(days: np.ndarray) -> pa.Array:
    y, m, d = _ymd(days)
    return _cat(_pad(m, 2), "/", _pad(d, 2), "/", _str(y))


def _ts(seconds: np.ndarray) -> pa.Array:
    """``YYYY-MM-DDTHH:MM:SS`` (the time of day from a cached table of all 86,400 of them)."""
    if not _TIMES_OF_DAY:
        day = np.arange(_DAY)
        _TIMES_OF_DAY.append(
            pa.array(
                [
                    f"{h:02d}:{m:02d}:{x:02d}"
                    for h, m, x in zip(day // 3600, day // 60 % 60, day % 60)
                ],
                pa.string(),
            )
        )
    s = np.asarray(seconds, np.int64)
    return _cat(_iso(s // _DAY), "T", pc.take(_TIMES_OF_DAY[0], pa.array(s % _DAY)))


def _plus_one_year(days: np.ndarray) -> np.ndarray:
    """Same calendar date a year later (Feb 29 → Feb 28)."""
    y, m, d = _ymd(days)
    month = ((y + 1 - 1970) * 12 + (m - 1)).astype("datetime64[M]")
    first = month.astype("datetime64[D]")
    length = ((month + 1).astype("datetime64[D]") - first).astype(np.int64)
    return (first.astype(np.int64) + np.minimum(d, length) - 1).astype(np.int64)


def _put(arr: pa.Array, pos: np.ndarray, values) -> pa.Array:
    """``arr`` with ``arr[pos] = values``; pos sorted, values a string or one per position."""
    if len(pos) == 0:
        return arr
    mask = np.zeros(len(arr), dtype=bool)
    mask[pos] = True
    if isinstance(values, str):
        return pc.if_else(pa.array(mask), pa.scalar(values, pa.string()), arr)
    if not isinstance(values, pa.Array):
        values = pa.array(list(values), pa.string())
    return pc.replace_with_mask(arr, pa.array(mask), values)


def _subset(frame: dict[str, np.ndarray], pos: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[pos] for k, v in frame.items()}


def _take_cols(cols: dict[str, pa.Array], pos: np.ndarray) -> dict[str, pa.Array]:
    index = pa.array(np.asarray(pos, np.int64))
    return {k: pc.take(v, index) for k, v in cols.items()}


def _quota(rate: float, start: int, stop: int) -> int:
    """Instances of a kind inside rows [start, stop): cumulative max(1, floor(rate·n))."""

    def upto(x: int) -> int:
        return 0 if x <= 0 else max(1, int(rate * x))

    return upto(stop) - upto(start)


def _quota_before(rate: float, start: int) -> int:
    return 0 if start <= 0 else max(1, int(rate * start))


class _Picker:
    """Hands out disjoint random row positions of one chunk (rows [start, stop) of the file): one
    kind of dirt per dirty row, each kind at its rate, counted in `dirt`."""

    def __init__(
        self,
        rng: np.random.Generator,
        m: int,
        rates: dict[str, float] | None = None,
        start: int = 0,
        stop: int = 0,
    ) -> None:
        self._order = rng.permutation(m)
        self._free = np.ones(m, dtype=bool)
        self._rates, self._start, self._stop = rates or {}, start, stop
        self.dirt: Counter = Counter()

    def kind(self, kind: str, eligible: np.ndarray | None = None) -> np.ndarray:
        pos = self.take(_quota(self._rates[kind], self._start, self._stop), eligible)
        self.dirt[kind] += len(pos)
        return pos

    def reserve(self, pos: np.ndarray) -> None:
        self._free[pos] = False

    def take(self, k: int, eligible: np.ndarray | None = None) -> np.ndarray:
        if k <= 0:
            return np.empty(0, np.int64)
        ok = self._free[self._order]
        if eligible is not None:
            ok &= eligible[self._order]
        chosen = self._order[ok][:k]
        self._free[chosen] = False
        return np.sort(chosen)


def _random_times(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(7 * 3600, 21 * 3600, n)  # business-ish hours


# --------------------------------------------------------------------------------------------
# Lines
# --------------------------------------------------------------------------------------------

_EMPTY = pa.array([], pa.string())


def _csv_field(v: pa.Array) -> pa.Array:
    if len(v) == 0:
        return v
    need = pc.or_(pc.match_substring(v, ","), pc.match_substring(v, '"'))
    if not pc.any(need).as_py():
        return v
    return pc.if_else(need, _cat('"', pc.replace_substring(v, '"', '""'), '"'), v)


def _csv_lines(cols: dict[str, pa.Array], columns: Iterable[str], quote: bool = True) -> pa.Array:
    columns = list(columns)
    if len(cols[columns[0]]) == 0:
        return _EMPTY
    parts: list = []
    for i, c in enumerate(columns):
        if i:
            parts.append(",")
        parts.append(_csv_field(cols[c]) if quote else cols[c])
    parts.append("\n")
    return _cat(*parts)


def _json_lines(
    cols: dict[str, pa.Array], columns: Iterable[str], numeric: frozenset[str]
) -> pa.Array:
    """One JSON object per line, built with string kernels. Values are not escaped: every value is
    digits, dates or a vocabulary entry, and ``_check_vocabularies`` proves none needs escaping."""
    columns = list(columns)
    if len(cols[columns[0]]) == 0:
        return _EMPTY
    parts: list = []
    literal = ""
    for i, c in enumerate(columns):
        v = cols[c]
        literal += ("{" if i == 0 else ", ") + f'"{c}": '
        if c in numeric:
            parts += [literal, pc.if_else(pc.equal(v, ""), pa.scalar("null"), v)]
            literal = ""
        else:
            parts += [literal + '"', v]
            literal = '"'
    parts.append(literal + "}\n")
    return _cat(*parts)


def _csv_piece(cols: dict[str, pa.Array], columns: Iterable[str]) -> _Piece:
    """CSV rows of ``cols``: pyarrow's writer when nothing needs quoting (the common case, ~3x
    faster), else string kernels. Both give the same bytes: minimal quoting, LF line ends."""
    columns = list(columns)
    arrays = [cols[c] for c in columns]
    if len(arrays[0]) == 0:
        return _Piece(_EMPTY, 0)
    sink = pa.BufferOutputStream()
    try:
        pa_csv.write_csv(
            pa.Table.from_arrays(arrays, names=columns),
            sink,
            pa_csv.WriteOptions(include_header=False, quoting_style="none"),
        )
    except pa.ArrowInvalid:  # a value holds a comma or a quote
        return _Piece(_csv_lines(cols, columns), len(arrays[0]))
    return _Piece(sink.getvalue(), len(arrays[0]))


@dataclass
class _Piece:
    """Some complete lines of a batch file: a string array of lines or a buffer of bytes."""

    data: pa.Array | pa.Buffer
    rows: int

    def write(self, f) -> None:
        if self.rows == 0:
            return
        if isinstance(self.data, pa.Buffer):
            f.write(memoryview(self.data))
            return
        arr = self.data
        offsets = np.frombuffer(
            arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4
        )
        f.write(memoryview(arr.buffers()[2])[offsets[0] : offsets[-1]])


def _lines(arr: pa.Array) -> _Piece:
    return _Piece(arr, len(arr))


class _AtomicFile:
    """Writes ``path`` under a hidden temporary name, renamed into place when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.tmp, "wb", buffering=1 << 20)
        return self._f

    def __exit__(self, exc_type, exc, tb) -> None:
        self._f.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# The plan: sizes and the arithmetic relationships
# --------------------------------------------------------------------------------------------

_BLOCK_OWNER = np.array([0, 1, 2, 2, 3, 4, 4, 4, 5, 6, 6, 7, 8, 8, 9])  # pets 1,1,2,1,3,1,2,1,2,1
_BLOCK_CUM = np.array([0, 1, 2, 4, 5, 8, 9, 11, 12, 14])


@dataclass(frozen=True)
class _Plan:
    seed: int
    claims: int
    customers: int
    pets: int
    policies: int
    providers: int
    providers_extra: int
    rt_files: int
    rt_new: int
    rt_dup: int
    rt_upd: int
    late: int

    @staticmethod
    def build(claims: int, seed: int, realtime_files: int | None) -> _Plan:
        if claims < 1:
            raise ValueError("claims must be at least 1")
        customers = max(1, claims // 3)
        pets = 15 * (customers // 10) + int(_BLOCK_CUM[customers % 10])
        providers = min(500, max(20, 50 + claims // 2000))
        n = min(200, max(5, claims // 1000)) if realtime_files is None else int(realtime_files)
        if n < 0:
            raise ValueError("realtime_files must be >= 0")
        dup = max(1, n // 20) if n >= 3 else 0
        upd = max(1, (3 * n) // 10) if n >= 3 else 0
        new = n - dup - upd
        return _Plan(
            seed=seed,
            claims=claims,
            customers=customers,
            pets=pets,
            policies=pets - pets // 50,
            providers=providers,
            providers_extra=max(3, providers // 20),
            rt_files=n,
            rt_new=new,
            rt_dup=dup,
            rt_upd=upd,
            late=max(1, new // 2) if new else 0,
        )

    @property
    def all_providers(self) -> int:
        return self.providers + self.providers_extra

    def owner(self, pets: np.ndarray) -> np.ndarray:
        """Customer index of each pet (real-time pet r belongs to real-time customer r)."""
        pets = np.asarray(pets, np.int64)
        out = 10 * (pets // 15) + _BLOCK_OWNER[pets % 15]
        rt = pets >= self.pets
        out[rt] = self.customers + (pets[rt] - self.pets)
        return out

    def since(self, customers: np.ndarray) -> np.ndarray:
        customers = np.asarray(customers, np.int64)
        u = _hash_u(self.seed, "since", customers)
        out = _SINCE_LO + np.floor((_SINCE_HI - _SINCE_LO + 1) * u**0.6).astype(np.int64)
        rt = customers >= self.customers
        out[rt] = self.rt_since(customers[rt] - self.customers)
        return out

    def rt_since(self, r: np.ndarray) -> np.ndarray:
        return _RT_SINCE_LO + np.floor(21 * _hash_u(self.seed, "rt_since", r)).astype(np.int64)

    def species(self, pets: np.ndarray) -> np.ndarray:
        return _choice_u(_hash_u(self.seed, "species", pets), SPECIES_WEIGHTS)

    def policy_dates(self, pets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Effective and expiration day of policy j (covering pet j)."""
        pets = np.asarray(pets, np.int64)
        since = self.since(self.owner(pets))
        lo = np.maximum(_EFF_LO, since)
        span = np.maximum(_EFF_HI, lo) - lo + 1
        eff = lo + np.floor(span * _hash_u(self.seed, "policy", pets)).astype(np.int64)
        rt = pets >= self.pets
        eff[rt] = since[rt]  # real-time customers insure their pet the day they sign up
        return eff, _plus_one_year(eff)


# --------------------------------------------------------------------------------------------
# Customers
# --------------------------------------------------------------------------------------------

_LAST_EMAIL = tuple(n.lower().replace("'", "") for n in LAST_NAMES)
_FIRST_EMAIL = tuple(n.lower() for n in FIRST_NAMES)
_CITY_NAMES = tuple(c[0] for c in CITIES)
_CITY_STATES = tuple(c[1] for c in CITIES)
_CITY_ZIP3 = np.array([int(c[2]) for c in CITIES])


def _draw_phone(rng: np.random.Generator, n: int) -> np.ndarray:
    area = rng.integers(201, 990, n)
    area = np.where(area % 100 == 11, area + 1, area)  # no N11 service codes
    return area * 10_000_000 + rng.integers(200, 1000, n) * 10_000 + rng.integers(0, 10_000, n)


def _draw_address(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "street_no": rng.integers(1, 10_000, n),
        "street": rng.integers(0, len(STREETS), n),
        "street_suffix": rng.integers(0, len(STREET_SUFFIXES), n),
        "city": rng.integers(0, len(CITIES), n),
        "zip_tail": rng.integers(0, 100, n),
    }


def _draw_updated(rng: np.random.Generator, lo_day: np.ndarray, n: int) -> np.ndarray:
    lo = np.asarray(lo_day, np.int64)
    span = np.maximum(_UPDATED_HI_DAY - lo + 1, 1)
    day = np.where(lo > _UPDATED_HI_DAY, lo, lo + np.floor(rng.random(n) * span).astype(np.int64))
    return day * _DAY + _random_times(rng, n)


def _draw_customers(
    plan: _Plan, idx: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    n = len(idx)
    dob = rng.integers(_DOB_LO, _DOB_HI + 1, n)
    segment = _choice(rng, n, SEGMENT_WEIGHTS)
    senior = contracts.SEGMENTS.index("Senior")
    older = dob < _day(1961, 1, 1)
    segment = np.where(older & (rng.random(n) < 0.5), senior, segment)
    segment = np.where(~older & (segment == senior), contracts.SEGMENTS.index("Standard"), segment)
    since = plan.since(idx)
    ltv = np.clip(np.round(np.exp(rng.normal(np.log(1200.0), 0.7, n)) * 100), 5_000, 2_000_000)
    return {
        "idx": np.asarray(idx, np.int64),
        "first": rng.integers(0, len(FIRST_NAMES), n),
        "last": rng.integers(0, len(LAST_NAMES), n),
        "email_no": rng.integers(1, 100, n),
        "domain": rng.integers(0, len(EMAIL_DOMAINS), n),
        "phone": _draw_phone(rng, n),
        **_draw_address(rng, n),
        "dob": dob,
        "since": since,
        "segment": segment,
        "ltv": ltv.astype(np.int64),
        "updated": _draw_updated(rng, np.maximum(since, _day(2023, 1, 1)), n),
    }


def _fmt_phone(phone: np.ndarray) -> pa.Array:
    s = _str(phone)
    sl = pc.utf8_slice_codeunits
    return _cat("(", sl(s, 0, 3), ") ", sl(s, 3, 6), "-", sl(s, 6, 10))


def _fmt_address(fr: dict[str, np.ndarray]) -> dict[str, pa.Array]:
    return {
        "address": _cat(
            _str(fr["street_no"]),
            " ",
            _take(STREETS, fr["street"]),
            " ",
            _take(STREET_SUFFIXES, fr["street_suffix"]),
        ),
        "city": _take(_CITY_NAMES, fr["city"]),
        "state": _take(_CITY_STATES, fr["city"]),
        "zip_code": _pad(_CITY_ZIP3[fr["city"]] * 100 + fr["zip_tail"], 5),
    }


def _format_customers(fr: dict[str, np.ndarray]) -> dict[str, pa.Array]:
    return {
        "customer_id": _ids("CUST", fr["idx"] + 1),
        "first_name": _take(FIRST_NAMES, fr["first"]),
        "last_name": _take(LAST_NAMES, fr["last"]),
        "email": _cat(
            _take(_FIRST_EMAIL, fr["first"]),
            ".",
            _take(_LAST_EMAIL, fr["last"]),
            _str(fr["email_no"]),
            "@",
            _take(EMAIL_DOMAINS, fr["domain"]),
        ),
        "phone": _fmt_phone(fr["phone"]),
        **_fmt_address(fr),
        "date_of_birth": _iso(fr["dob"]),
        "customer_since": _iso(fr["since"]),
        "segment": _take(contracts.SEGMENTS, fr["segment"]),
        "lifetime_value": _money(fr["ltv"]),
        "updated_at": _ts(fr["updated"]),
    }


def _update_customers(
    fr: dict[str, np.ndarray], rng: np.random.Generator, updated: np.ndarray
) -> dict[str, np.ndarray]:
    """A later version: the customer moved within their city and changed phone number."""
    n = len(fr["idx"])
    out = dict(fr)
    out["phone"] = _draw_phone(rng, n)
    out["street_no"] = rng.integers(1, 10_000, n)
    out["street"] = rng.integers(0, len(STREETS), n)
    out["street_suffix"] = rng.integers(0, len(STREET_SUFFIXES), n)
    out["zip_tail"] = rng.integers(0, 100, n)
    out["updated"] = updated
    return out


def _bad_phones(phones: np.ndarray, rng: np.random.Generator) -> list[str]:
    out = []
    for k, p in zip(rng.integers(0, 5, len(phones)), phones):
        s = f"{int(p):010d}"
        a, e, line = s[:3], s[3:6], s[6:]
        out.append((f"{a}.{e}.{line}", s, f"+1 {a} {e} {line}", f"1-{a}-{e}-{line}", "123")[k])
    return out


def _bad_emails(emails: pa.Array, rng: np.random.Generator) -> list[str]:
    out = []
    for k, e in zip(rng.integers(0, 4, len(emails)), emails.to_pylist()):
        local, _, domain = e.partition("@")
        out.append((f"{local}@", local, f"{local} at {domain}", f"{local}@@{domain}")[k])
    return out


def _bad_zips(zips: pa.Array, rng: np.random.Generator) -> list[str]:
    out = []
    for k, z in zip(rng.integers(0, 3, len(zips)), zips.to_pylist()):
        out.append((z.lstrip("0")[:4] or "1234", f"{z}-{int(z[::-1]) % 9000 + 1000}", z[:3])[k])
    return out


def _full_states(states: pa.Array) -> list[str]:
    return [STATE_NAMES[s] for s in states.to_pylist()]


@dataclass
class _Chunk:
    pieces: list[_Piece]
    dirt: Counter
    keep: dict | None = None  # chunk 0 only: sources of real-time updates and re-sends


def _later(rng: np.random.Generator, updated: np.ndarray, max_days: int = 60) -> np.ndarray:
    later = updated + rng.integers(_DAY, max_days * _DAY, len(updated))
    return np.minimum(later, _LAST_BATCH_SEC)


def _keep_sources(plan: _Plan, pick: _Picker, fr: dict, cols: dict, eligible=None) -> dict:
    upd = pick.take(plan.rt_upd, eligible)
    dup = pick.take(plan.rt_dup)
    return {"update": _subset(fr, upd), "duplicate": _take_cols(cols, dup)}


def _customers_chunk(plan: _Plan, start: int, stop: int, chunk: int) -> _Chunk:
    e = contracts.CUSTOMERS
    rates = RATES[e.name]
    rng = _rng(plan.seed, e.name, chunk)
    fr = _draw_customers(plan, np.arange(start, stop), rng)
    cols = _format_customers(fr)
    pick = _Picker(rng, stop - start, rates, start, stop)
    take, dirt = pick.kind, pick.dirt

    p = take("us_date")
    cols["date_of_birth"] = _put(cols["date_of_birth"], p, _us(fr["dob"][p]))
    cols["customer_since"] = _put(cols["customer_since"], p, _us(fr["since"][p]))
    p = take("bad_phone")
    cols["phone"] = _put(cols["phone"], p, _bad_phones(fr["phone"][p], rng))
    p = take("email_upper")
    cols["email"] = _put(cols["email"], p, pc.utf8_upper(pc.take(cols["email"], pa.array(p))))
    p = take("bad_email")
    cols["email"] = _put(cols["email"], p, _bad_emails(pc.take(cols["email"], pa.array(p)), rng))
    p = take("state_full_name")
    cols["state"] = _put(cols["state"], p, _full_states(pc.take(cols["state"], pa.array(p))))
    p = take("state_lower")
    cols["state"] = _put(cols["state"], p, pc.utf8_lower(pc.take(cols["state"], pa.array(p))))
    p = take("bad_zip")
    cols["zip_code"] = _put(
        cols["zip_code"], p, _bad_zips(pc.take(cols["zip_code"], pa.array(p)), rng)
    )
    cols["address"] = _put(cols["address"], take("missing_address"), "")
    cols["phone"] = _put(cols["phone"], take("missing_phone"), "")

    can_update = fr["updated"] < _UPDATE_BEFORE_SEC
    p_dup, p_upd = take("duplicate"), take("update", can_update)
    p_key, p_bad = take("missing_key"), take("wrong_field_count")
    keep = _keep_sources(plan, pick, fr, cols, can_update) if chunk == 0 else None

    upd = _subset(fr, p_upd)
    keyless = _take_cols(cols, p_key)
    keyless[e.key] = _put(keyless[e.key], np.arange(len(p_key)), "")
    broken = _take_cols(cols, p_bad)  # an address with an unquoted comma: one field too many
    broken["address"] = _cat(broken["address"], ", Apt ", _str(rng.integers(1, 40, len(p_bad))))
    pieces = [
        _csv_piece(cols, e.columns),
        _csv_piece(_take_cols(cols, p_dup), e.columns),
        _csv_piece(
            _format_customers(_update_customers(upd, rng, _later(rng, upd["updated"]))), e.columns
        ),
        _csv_piece(keyless, e.columns),
        _lines(_csv_lines(broken, e.columns, quote=False)),
    ]
    return _Chunk(pieces, dirt, keep)


# --------------------------------------------------------------------------------------------
# Pets
# --------------------------------------------------------------------------------------------

_BREED_FLAT = tuple(b for s in contracts.SPECIES for b in BREEDS[s])
_BREED_COUNT = np.array([len(BREEDS[s]) for s in contracts.SPECIES])
_BREED_OFFSET = np.concatenate([[0], np.cumsum(_BREED_COUNT)[:-1]])
_MICROCHIP_PREFIX = np.array([900, 941, 956, 981, 985], np.int64)


def _draw_weight_tenths(rng: np.random.Generator, species: np.ndarray) -> np.ndarray:
    n = len(species)
    lbs = np.select(
        [species == 0, species == 1, species == 2, species == 3],
        [
            np.clip(np.exp(rng.normal(np.log(45.0), 0.5, n)), 4, 150),
            np.clip(rng.normal(10.0, 2.5, n), 5, 22),
            rng.uniform(0.1, 1.8, n),
            rng.uniform(2.0, 12.0, n),
        ],
        rng.uniform(0.3, 8.0, n),
    )
    return np.maximum(np.round(lbs * 10), 1).astype(np.int64)


def _draw_pets(plan: _Plan, idx: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    idx = np.asarray(idx, np.int64)
    n = len(idx)
    species = plan.species(idx)
    age_days = np.floor(rng.random(n) ** 1.4 * (17 * 365 - 60)).astype(np.int64)
    dob = _REF_DAY - 30 - age_days  # 1 month to 16.9 years old on the reference date
    return {
        "idx": idx,
        "owner": plan.owner(idx),
        "name": rng.integers(0, len(PET_NAMES), n),
        "species": species,
        "breed": _BREED_OFFSET[species]
        + np.floor(rng.random(n) * _BREED_COUNT[species]).astype(np.int64),
        "gender": rng.integers(0, 2, n),
        "dob": dob,
        "weight": _draw_weight_tenths(rng, species),
        "chip": _MICROCHIP_PREFIX[rng.integers(0, 5, n)] * 10**12 + rng.integers(0, 10**12, n),
        "neutered": (rng.random(n) < 0.75).astype(np.int64),
        "vaccination": _choice(rng, n, VACCINATION_WEIGHTS),
        "condition": _choice(rng, n, CONDITION_WEIGHTS),
        "active": (rng.random(n) < 0.95).astype(np.int64),
        "updated": _draw_updated(rng, np.maximum(dob, _day(2023, 1, 1)), n),
    }


def _format_pets(fr: dict[str, np.ndarray]) -> dict[str, pa.Array]:
    return {
        "pet_id": _ids("PET", fr["idx"] + 1),
        "customer_id": _ids("CUST", fr["owner"] + 1),
        "pet_name": _take(PET_NAMES, fr["name"]),
        "species": _take(contracts.SPECIES, fr["species"]),
        "breed": _take(_BREED_FLAT, fr["breed"]),
        "gender": _take(("Male", "Female"), fr["gender"]),
        "date_of_birth": _iso(fr["dob"]),
        "weight_lbs": _tenths(fr["weight"]),
        "microchip_id": _str(fr["chip"]),
        "is_neutered": _bool(fr["neutered"]),
        "vaccination_status": _take(VACCINATION_STATUSES, fr["vaccination"]),
        "pre_existing_conditions": _take(CONDITIONS, fr["condition"]),
        "is_active": _bool(fr["active"]),
        "updated_at": _ts(fr["updated"]),
    }


def _update_pets(
    fr: dict[str, np.ndarray], rng: np.random.Generator, updated: np.ndarray
) -> dict[str, np.ndarray]:
    """A later version: weighed at a check-up, vaccinated, neutered."""
    out = dict(fr)
    n = len(fr["idx"])
    factor = rng.uniform(0.85, 1.15, n)
    out["weight"] = np.maximum(np.round(fr["weight"] * factor), 1).astype(np.int64)
    out["weight"] = np.where(out["weight"] == fr["weight"], fr["weight"] + 1, out["weight"])
    out["vaccination"] = np.zeros(n, np.int64)
    out["neutered"] = np.ones(n, np.int64)
    out["updated"] = updated
    return out


def _case_variants(values: pa.Array, rng: np.random.Generator) -> pa.Array:
    lower, upper = pc.utf8_lower(values), pc.utf8_upper(values)
    return pc.if_else(pa.array(rng.random(len(values)) < 0.5), lower, upper)


def _pets_chunk(plan: _Plan, start: int, stop: int, chunk: int) -> _Chunk:
    e = contracts.PETS
    rates = RATES[e.name]
    rng = _rng(plan.seed, e.name, chunk)
    fr = _draw_pets(plan, np.arange(start, stop), rng)
    cols = _format_pets(fr)
    pick = _Picker(rng, stop - start, rates, start, stop)
    take, dirt = pick.kind, pick.dirt

    p = take("us_date")
    cols["date_of_birth"] = _put(cols["date_of_birth"], p, _us(fr["dob"][p]))
    cols["breed"] = _put(cols["breed"], take("missing_breed"), "")
    cols["microchip_id"] = _put(cols["microchip_id"], take("missing_microchip_id"), "")
    p = take("bad_weight")
    cols["weight_lbs"] = _put(
        cols["weight_lbs"], p, [("0", "0.0", "-4.5")[i % 3] for i in range(len(p))]
    )
    p = take("case_variant")
    cols["species"] = _put(
        cols["species"], p, _case_variants(pc.take(cols["species"], pa.array(p)), rng)
    )

    can_update = fr["updated"] < _UPDATE_BEFORE_SEC
    p_dup, p_upd = take("duplicate"), take("update", can_update)
    p_key, p_orphan = take("missing_key"), take("orphan_fk")
    keep = _keep_sources(plan, pick, fr, cols, can_update) if chunk == 0 else None

    upd = _subset(fr, p_upd)
    keyless = _take_cols(cols, p_key)
    keyless[e.key] = _put(keyless[e.key], np.arange(len(p_key)), "")
    orphans = _take_cols(cols, p_orphan)
    k = _quota_before(rates["orphan_fk"], start) + np.arange(len(p_orphan))
    orphans["pet_id"] = _ids("PET", _GHOST_KEY_BASE + k)
    orphans["customer_id"] = _ids("CUST", _MISSING_REF_BASE + k)
    pieces = [
        _csv_piece(cols, e.columns),
        _csv_piece(_take_cols(cols, p_dup), e.columns),
        _csv_piece(_format_pets(_update_pets(upd, rng, _later(rng, upd["updated"]))), e.columns),
        _csv_piece(keyless, e.columns),
        _csv_piece(orphans, e.columns),
    ]
    return _Chunk(pieces, dirt, keep)


# --------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------


def _draw_policies(
    plan: _Plan, pets: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    pets = np.asarray(pets, np.int64)
    n = len(pets)
    tier = _choice(rng, n, PLAN_WEIGHTS)
    species = plan.species(pets)
    premium = PLAN_BASE_PREMIUM[tier] * SPECIES_PREMIUM_FACTOR[species] * rng.uniform(0.9, 1.15, n)
    eff, exp = plan.policy_dates(pets)
    status = np.where(exp >= _REF_DAY, 0, 1)  # Active / Expired by the calendar
    status = np.where(rng.random(n) < 0.04, 2, status)  # Cancelled
    status = np.where((eff >= _day(2025, 12, 1)) & (rng.random(n) < 0.3), 3, status)  # Pending
    return {
        "idx": pets,
        "owner": plan.owner(pets),
        "tier": tier,
        "premium": np.round(premium * 100).astype(np.int64),
        "deductible": PLAN_DEDUCTIBLES[tier, rng.integers(0, 3, n)] * 100,
        "limit": PLAN_COVERAGE_LIMIT[tier] * 100,
        "eff": eff,
        "exp": exp,
        "status": status,
        "wellness": (rng.random(n) < PLAN_WELLNESS_P[tier]).astype(np.int64),
        "dental": (rng.random(n) < PLAN_DENTAL_P[tier]).astype(np.int64),
        "behavioral": (rng.random(n) < PLAN_BEHAVIORAL_P[tier]).astype(np.int64),
        "updated": np.minimum(eff * _DAY + rng.integers(0, 30 * _DAY, n), _LAST_BATCH_SEC),
    }


def _number_width(plan: _Plan) -> int:
    return max(6, len(str(plan.claims + plan.pets + 1000)))


def _format_policies(fr: dict[str, np.ndarray], width: int) -> dict[str, pa.Array]:
    year, _, _ = _ymd(fr["eff"])
    return {
        "policy_id": _ids("POL", fr["idx"] + 1),
        "policy_number": _cat("POL-", _str(year), "-", _pad(fr["idx"] + 1, width)),
        "customer_id": _ids("CUST", fr["owner"] + 1),
        "pet_id": _ids("PET", fr["idx"] + 1),
        "plan_name": _take(contracts.PLAN_NAMES, fr["tier"]),
        "monthly_premium": _money(fr["premium"]),
        "deductible": _money(fr["deductible"]),
        "coverage_limit": _money(fr["limit"]),
        "effective_date": _iso(fr["eff"]),
        "expiration_date": _iso(fr["exp"]),
        "status": _take(contracts.POLICY_STATUSES, fr["status"]),
        "includes_wellness": _bool(fr["wellness"]),
        "includes_dental": _bool(fr["dental"]),
        "includes_behavioral": _bool(fr["behavioral"]),
        "updated_at": _ts(fr["updated"]),
    }


def _update_policies(fr: dict[str, np.ndarray], updated: np.ndarray) -> dict[str, np.ndarray]:
    """A later version: upgraded one plan tier; an Unlimited policy is cancelled (or reinstated)."""
    out = dict(fr)
    top = fr["tier"] == len(contracts.PLAN_NAMES) - 1
    tier = np.where(top, fr["tier"], fr["tier"] + 1)
    out["tier"] = tier
    ratio = PLAN_BASE_PREMIUM[tier] / PLAN_BASE_PREMIUM[fr["tier"]]
    out["premium"] = np.round(fr["premium"] * ratio).astype(np.int64)
    out["deductible"] = PLAN_DEDUCTIBLES[tier, 0] * 100
    out["limit"] = PLAN_COVERAGE_LIMIT[tier] * 100
    cancelled = contracts.POLICY_STATUSES.index("Cancelled")
    flipped = np.where(
        fr["status"] == cancelled, contracts.POLICY_STATUSES.index("Active"), cancelled
    )
    out["status"] = np.where(top, flipped, fr["status"])
    out["updated"] = updated
    return out


def _policies_chunk(plan: _Plan, start: int, stop: int, chunk: int) -> _Chunk:
    """Policies of pets [start, stop) — every pet but those with index ≡ 49 (mod 50)."""
    e = contracts.POLICIES
    rates = RATES[e.name]
    rng = _rng(plan.seed, e.name, chunk)
    pets = np.arange(start, stop)
    pets = pets[pets % 50 != 49]
    row0, row1 = start - start // 50, stop - stop // 50  # policies before pet index start / stop
    width = _number_width(plan)
    fr = _draw_policies(plan, pets, rng)
    cols = _format_policies(fr, width)
    pick = _Picker(rng, len(pets), rates, row0, row1)
    take, dirt = pick.kind, pick.dirt

    p = take("us_date")
    cols["effective_date"] = _put(cols["effective_date"], p, _us(fr["eff"][p]))
    cols["expiration_date"] = _put(cols["expiration_date"], p, _us(fr["exp"][p]))
    cols["deductible"] = _put(cols["deductible"], take("missing_deductible"), "")
    p = take("case_variant")
    variants = _case_variants(pc.take(cols["plan_name"], pa.array(p)), rng)
    cols["plan_name"] = _put(cols["plan_name"], p, variants)

    can_update = fr["updated"] < _UPDATE_BEFORE_SEC
    p_dup, p_upd = take("duplicate"), take("update", can_update)
    p_neg, p_date = take("negative_amount"), take("bad_date")
    p_key, p_orphan = take("missing_key"), take("orphan_fk")
    keep = _keep_sources(plan, pick, fr, cols, can_update) if chunk == 0 else None

    upd = _subset(fr, p_upd)
    negative = _take_cols(cols, p_neg)  # invalid later versions: the valid one stays in silver
    negative["monthly_premium"] = _cat("-", negative["monthly_premium"])
    negative["updated_at"] = _ts(_later(rng, fr["updated"][p_neg], 30))
    bad_date = _take_cols(cols, p_date)
    bad_date["effective_date"] = _take(BAD_DATES, np.arange(len(p_date)) % len(BAD_DATES))
    bad_date["updated_at"] = _ts(_later(rng, fr["updated"][p_date], 30))
    keyless = _take_cols(cols, p_key)
    keyless[e.key] = _put(keyless[e.key], np.arange(len(p_key)), "")
    orphans = _take_cols(cols, p_orphan)
    k = _quota_before(rates["orphan_fk"], row0) + np.arange(len(p_orphan))
    orphans["policy_id"] = _ids("POL", _GHOST_KEY_BASE + k)
    orphans["pet_id"] = _ids("PET", _MISSING_REF_BASE + 500_000 + k)
    orphans["customer_id"] = _ids("CUST", _MISSING_REF_BASE + 500_000 + k)
    pieces = [
        _csv_piece(cols, e.columns),
        _csv_piece(_take_cols(cols, p_dup), e.columns),
        _csv_piece(
            _format_policies(_update_policies(upd, _later(rng, upd["updated"])), width), e.columns
        ),
        _csv_piece(negative, e.columns),
        _csv_piece(bad_date, e.columns),
        _csv_piece(keyless, e.columns),
        _csv_piece(orphans, e.columns),
    ]
    return _Chunk(pieces, dirt, keep)


# --------------------------------------------------------------------------------------------
# Providers
# --------------------------------------------------------------------------------------------


def _draw_providers(idx: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(idx)
    kind = _choice(rng, n, PROVIDER_TYPE_WEIGHTS)
    return {
        "idx": np.asarray(idx, np.int64),
        "prefix": rng.integers(0, len(PROVIDER_PREFIXES), n),
        "type": kind,
        "name": kind * 4 + rng.integers(0, 4, n),
        **_draw_address(rng, n),
        "phone": _draw_phone(rng, n),
        "network": (rng.random(n) < 0.75).astype(np.int64),
        "rating": np.clip(np.round(rng.normal(42, 5, n)), 10, 50).astype(np.int64),
        "specialties": kind * 4 + rng.integers(0, 4, n),
        "updated": _draw_updated(rng, np.full(n, _day(2024, 1, 1)), n),
    }


_PROVIDER_SUFFIX_FLAT = tuple(s for group in PROVIDER_SUFFIXES for s in group)
_SPECIALTIES_FLAT = tuple(s for group in PROVIDER_SPECIALTIES for s in group)


def _format_providers(fr: dict[str, np.ndarray]) -> dict[str, pa.Array]:
    return {
        "provider_id": _ids("PRV", fr["idx"] + 1),
        "provider_name": _cat(
            _take(PROVIDER_PREFIXES, fr["prefix"]), " ", _take(_PROVIDER_SUFFIX_FLAT, fr["name"])
        ),
        "provider_type": _take(PROVIDER_TYPES, fr["type"]),
        **_fmt_address(fr),
        "phone": _fmt_phone(fr["phone"]),
        "is_in_network": _bool(fr["network"]),
        "average_rating": _tenths(fr["rating"]),
        "specialties": _take(_SPECIALTIES_FLAT, fr["specialties"]),
        "updated_at": _ts(fr["updated"]),
    }


def _providers_lines(plan: _Plan) -> _Chunk:
    e = contracts.PROVIDERS
    rates = RATES[e.name]
    rng = _rng(plan.seed, e.name, 0)
    n = plan.providers
    fr = _draw_providers(np.arange(n), rng)
    cols = _format_providers(fr)
    pick = _Picker(rng, n, rates, 0, n)
    take, dirt = pick.kind, pick.dirt

    p = take("bad_phone")
    cols["phone"] = _put(cols["phone"], p, _bad_phones(fr["phone"][p], rng))
    p = take("state_full_name")
    cols["state"] = _put(cols["state"], p, _full_states(pc.take(cols["state"], pa.array(p))))
    p = take("state_lower")
    cols["state"] = _put(cols["state"], p, pc.utf8_lower(pc.take(cols["state"], pa.array(p))))
    cols["address"] = _put(cols["address"], take("missing_address"), "")
    p = take("bad_rating")
    cols["average_rating"] = _put(
        cols["average_rating"], p, _tenths(51 + rng.integers(0, 45, len(p)))
    )

    can_update = fr["updated"] < _UPDATE_BEFORE_SEC
    p_dup, p_upd, p_key = take("duplicate"), take("update", can_update), take("missing_key")
    upd = _subset(fr, p_upd)
    upd["rating"] = np.clip(upd["rating"] + rng.choice([-3, -2, -1, 1, 2, 3], len(p_upd)), 10, 50)
    upd["network"] = 1 - upd["network"]
    upd["updated"] = _later(rng, upd["updated"])
    keyless = _take_cols(cols, p_key)
    keyless[e.key] = _put(keyless[e.key], np.arange(len(p_key)), "")
    pieces = [
        _csv_piece(cols, e.columns),
        _csv_piece(_take_cols(cols, p_dup), e.columns),
        _csv_piece(_format_providers(upd), e.columns),
        _csv_piece(keyless, e.columns),
    ]
    return _Chunk(pieces, dirt)


def _providers_extra_lines(plan: _Plan) -> _Piece:
    """Valid providers from a newer export that added a ``website`` column."""
    rng = _rng(plan.seed, "providers_extra", 0)
    cols = _format_providers(_draw_providers(np.arange(plan.providers, plan.all_providers), rng))
    slugs = [
        "".join(ch for ch in name.lower().replace(" ", "-") if ch.isalnum() or ch == "-")
        for name in cols["provider_name"].to_pylist()
    ]
    cols["website"] = pa.array([f"https://www.{s.replace('--', '-')}.example.com" for s in slugs])
    return _csv_piece(cols, contracts.PROVIDERS.columns + ("website",))


# --------------------------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------------------------

_SUBMITTED, _UNDER_REVIEW, _APPROVED, _DENIED, _PAID = range(5)
_CATEGORY_FLAT = tuple(c for group in CLAIM_CATEGORIES for c in group)


def _decide(status: np.ndarray, amount: np.ndarray, rng: np.random.Generator):
    """paid cents, processing days (-1 = none) and denial reason (-1 = none) for a status."""
    n = len(status)
    approved = (status == _APPROVED) | (status == _PAID)
    decided = approved | (status == _DENIED)
    paid = np.where(approved, np.round(amount * rng.uniform(0.70, 0.90, n)), 0).astype(np.int64)
    days = np.where(decided, 1 + np.floor(rng.random(n) ** 1.5 * 30).astype(np.int64), -1)
    reason = np.where(status == _DENIED, rng.integers(0, len(DENIAL_REASONS), n), -1)
    return paid, days, reason


def _draw_claim_pets(
    plan: _Plan, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pets and service days such that claims arrive at a constant rate per covered day.

    Draw a pet and a day of its policy year; redraw both while the day is on or after the
    reference date (so a policy that started last month gets a month's worth of claims, not a
    year's). Pets without a policy (index ≡ 49 mod 50) are replaced by their predecessor.
    """

    def draw_pets(k: int) -> np.ndarray:
        pets = rng.integers(0, plan.pets, k)
        return np.where(pets % 50 == 49, pets - 1, pets)

    pet = draw_pets(n)
    service = np.empty(n, np.int64)
    todo = np.arange(n)
    for _ in range(200):
        eff, exp = plan.policy_dates(pet[todo])
        day = eff + np.floor(rng.random(len(todo)) * (exp - eff + 1)).astype(np.int64)
        ok = day < _REF_DAY
        service[todo[ok]] = day[ok]
        todo = todo[~ok]
        if len(todo) == 0:
            break
        pet[todo] = draw_pets(len(todo))
    if len(todo):  # practically unreachable: fall back to the covered days before the reference
        eff, _ = plan.policy_dates(pet[todo])
        service[todo] = eff + np.floor(rng.random(len(todo)) * (_REF_DAY - eff)).astype(np.int64)
    return pet, service


def _draw_claims(
    plan: _Plan,
    idx: np.ndarray,
    rng: np.random.Generator,
    forced_pets: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    idx = np.asarray(idx, np.int64)
    n = len(idx)
    pet, service = _draw_claim_pets(plan, n, rng)
    if forced_pets is not None:
        pos, pet[pos] = forced_pets[0], forced_pets[1]
        eff, exp = plan.policy_dates(pet[pos])
        end = np.minimum(exp, _REF_DAY - 1)
        service[pos] = eff + np.floor(rng.random(len(pos)) * (end - eff + 1)).astype(np.int64)
    kind = _choice(rng, n, CLAIM_TYPE_WEIGHTS)
    amount = np.exp(rng.normal(np.log(CLAIM_TYPE_MEDIAN_AMOUNT[kind]), 0.8))
    amount = np.round(np.clip(amount, 50, 8000) * 100).astype(np.int64)
    status = _choice(rng, n, CLAIM_STATUS_WEIGHTS)
    paid, days, reason = _decide(status, amount, rng)
    wait = np.where(days >= 0, days, rng.integers(0, 4, n))
    updated = np.minimum((service + wait) * _DAY + _random_times(rng, n), _LAST_BATCH_SEC)
    return {
        "idx": idx,
        "pet": pet,
        "owner": plan.owner(pet),
        "provider": np.floor(plan.all_providers * rng.random(n) ** 1.6).astype(np.int64),
        "type": kind,
        "category": kind * 4 + rng.integers(0, 4, n),
        "service": service,
        "amount": amount,
        "status": status,
        "paid": paid,
        "days": days,
        "reason": reason,
        "updated": updated,
    }


def _format_claims(fr: dict[str, np.ndarray], width: int) -> dict[str, pa.Array]:
    year, _, _ = _ymd(fr["service"])
    days = _str(np.maximum(fr["days"], 0))
    reason = _take(("",) + DENIAL_REASONS, fr["reason"] + 1)
    return {
        "claim_id": _ids("CLM", fr["idx"] + 1),
        "claim_number": _cat("CLM-", _str(year), "-", _pad(fr["idx"] + 1, width)),
        "customer_id": _ids("CUST", fr["owner"] + 1),
        "policy_id": _ids("POL", fr["pet"] + 1),
        "pet_id": _ids("PET", fr["pet"] + 1),
        "provider_id": _ids("PRV", fr["provider"] + 1),
        "claim_type": _take(contracts.CLAIM_TYPES, fr["type"]),
        "claim_category": _take(_CATEGORY_FLAT, fr["category"]),
        "service_date": _iso(fr["service"]),
        "claim_amount": _money(fr["amount"]),
        "paid_amount": _money(fr["paid"]),
        "status": _take(contracts.CLAIM_STATUSES, fr["status"]),
        "processing_days": pc.if_else(pa.array(fr["days"] < 0), pa.scalar(""), days),
        "denial_reason": reason,
        "updated_at": _ts(fr["updated"]),
    }


def _progress_claims(
    fr: dict[str, np.ndarray], rng: np.random.Generator, updated: np.ndarray
) -> dict[str, np.ndarray]:
    """A later version: Submitted → Under Review → Approved or Denied, Approved → Paid."""
    out = dict(fr)
    n = len(fr["idx"])
    status = fr["status"].copy()
    status[fr["status"] == _SUBMITTED] = _UNDER_REVIEW
    review = fr["status"] == _UNDER_REVIEW
    status[review] = np.where(rng.random(int(review.sum())) < 0.8, _APPROVED, _DENIED)
    status[fr["status"] == _APPROVED] = _PAID
    paid, days, reason = _decide(status, fr["amount"], rng)
    was_approved = fr["status"] == _APPROVED  # Approved → Paid keeps its amount and days
    out["paid"] = np.where(was_approved, fr["paid"], paid)
    out["days"] = np.where(was_approved, fr["days"], days)
    out["reason"] = reason
    out["status"] = status
    out["updated"] = updated
    assert len(updated) == n
    return out


def _truncate_json(lines: pa.Array, rng: np.random.Generator) -> list[str]:
    """Cut each line right after the k-th ``": `` — an object that never closes."""
    out = []
    for k, line in zip(rng.integers(2, 9, len(lines)), lines.to_pylist()):
        pos = -1
        for _ in range(k):
            pos = line.index('": ', pos + 1)
        out.append(line[: pos + 3] + "\n")
    return out


def _claims_chunk(plan: _Plan, start: int, stop: int, chunk: int) -> _Chunk:
    e = contracts.CLAIMS
    rates = RATES[e.name]
    numeric = JSON_NUMERIC_COLUMNS[e.name]
    rng = _rng(plan.seed, e.name, chunk)
    m = stop - start
    width = _number_width(plan)
    dirt: Counter = Counter()
    forced = None
    late = np.empty(0, np.int64)
    if chunk == 0 and plan.late:
        # Claims in the batch whose pet, policy and customer only arrive later, in real time.
        count = min(plan.late, m)
        late = (np.arange(count) * m) // count
        forced = (late, plan.pets + np.arange(count) % plan.rt_new)
        dirt["late_arriving_parent"] = count
    fr = _draw_claims(plan, np.arange(start, stop), rng, forced)
    pick = _Picker(rng, m, rates, start, stop)
    pick.reserve(late)
    pick.dirt.update(dirt)
    take, dirt = pick.kind, pick.dirt

    # Amount dirt is numeric: apply before formatting.
    p = take("negative_amount")
    approved = (fr["status"][p] == _APPROVED) | (fr["status"][p] == _PAID)
    fr["amount"][p] = np.where(approved, fr["amount"][p], -fr["amount"][p])
    fr["paid"][p] = np.where(approved, -fr["paid"][p], fr["paid"][p])
    p = take("overpaid")
    fr["status"][p] = _PAID
    fr["paid"][p] = np.round(fr["amount"][p] * rng.uniform(1.05, 1.6, len(p))).astype(np.int64)
    fr["days"][p] = np.where(fr["days"][p] < 0, 1 + rng.integers(0, 30, len(p)), fr["days"][p])
    fr["reason"][p] = -1

    cols = _format_claims(fr, width)
    p = take("us_date")
    cols["service_date"] = _put(cols["service_date"], p, _us(fr["service"][p]))
    p = take("orphan_fk")
    k = _MISSING_REF_BASE + _quota_before(rates["orphan_fk"], start) + np.arange(len(p))
    for column, prefix in (("pet_id", "PET"), ("policy_id", "POL"), ("customer_id", "CUST")):
        cols[column] = _put(cols[column], p, _ids(prefix, k))
    p = take("orphan_provider")
    k = _MISSING_REF_BASE + _quota_before(rates["orphan_provider"], start) + np.arange(len(p))
    cols["provider_id"] = _put(cols["provider_id"], p, _ids("PRV", k))
    cols["claim_id"] = _put(cols["claim_id"], take("missing_key"), "")
    p = take("bad_date")
    cols["service_date"] = _put(cols["service_date"], p, _take(BAD_DATES, np.arange(len(p)) % 4))
    cols["claim_category"] = _put(cols["claim_category"], take("missing_claim_category"), "")
    p = take("case_variant")
    cols["status"] = _put(
        cols["status"], p, _case_variants(pc.take(cols["status"], pa.array(p)), rng)
    )

    can_progress = (fr["status"] != _DENIED) & (fr["status"] != _PAID)
    can_update = can_progress & (fr["updated"] < _day(2025, 12, 1) * _DAY)
    p_dup, p_upd, p_bad = take("duplicate"), take("update", can_update), take("malformed_json")
    keep = None
    if chunk == 0:
        undecided = (fr["status"] == _SUBMITTED) | (fr["status"] == _UNDER_REVIEW)
        keep = _keep_sources(plan, pick, fr, cols, undecided)

    base = _json_lines(cols, e.columns, numeric)
    upd = _subset(fr, p_upd)
    updated = _format_claims(_progress_claims(upd, rng, _later(rng, upd["updated"], 20)), width)
    pieces = [
        _lines(base),
        _lines(pc.take(base, pa.array(p_dup))),
        _lines(_json_lines(updated, e.columns, numeric)),
        _lines(pa.array(_truncate_json(pc.take(base, pa.array(p_bad)), rng), pa.string())),
    ]
    return _Chunk(pieces, dirt, keep)


# --------------------------------------------------------------------------------------------
# Real-time files
# --------------------------------------------------------------------------------------------


def _records(cols: dict[str, pa.Array], entity: contracts.Entity) -> list[dict]:
    """Column arrays → JSON-ready records: numeric columns as JSON numbers ("" → null)."""
    numeric = JSON_NUMERIC_COLUMNS[entity.name]
    rows = pa.table({c: cols[c] for c in entity.columns}).to_pylist()
    for row in rows:
        for c in numeric:
            v = row[c]
            row[c] = None if v == "" else (int(v) if c == "processing_days" else float(v))
    return rows


def _realtime_name(record: dict, key: str, micro: int) -> str:
    stamp = record["updated_at"]  # YYYY-MM-DDTHH:MM:SS
    day, clock = stamp[0:10].replace("-", ""), stamp[11:19].replace(":", "")
    return f"{record[key]}_{day}_{clock}_{micro:06d}.json"


def _realtime(
    plan: _Plan, keep: dict[str, dict], raw: Path
) -> tuple[dict[str, int], dict[str, Counter]]:
    """New customers with their pet, policy and first claim; later versions; exact re-sends;
    and one claims file that is not valid JSON."""
    rng = _rng(plan.seed, "realtime", 0)
    width = _number_width(plan)
    r = np.arange(plan.rt_new)
    n = plan.rt_new
    t_customer = _RT_START_SEC + (r * _RT_SPAN_SEC) // max(n, 1) + rng.integers(0, 3600, n)
    t_pet = t_customer + rng.integers(60, 900, n)
    t_policy = t_pet + rng.integers(60, 900, n)
    t_claim = t_policy + rng.integers(3600, _DAY, n)

    def later_now(count: int) -> np.ndarray:
        return _RT_START_SEC + rng.integers(0, _RT_SPAN_SEC, count)

    new: dict[str, dict[str, pa.Array]] = {}
    updates: dict[str, dict[str, pa.Array]] = {}

    fr = _draw_customers(plan, plan.customers + r, rng)
    fr["updated"] = t_customer
    new["customers"] = _format_customers(fr)
    src = keep["customers"]["update"]
    updates["customers"] = _format_customers(
        _update_customers(src, rng, later_now(len(src["idx"])))
    )

    fr = _draw_pets(plan, plan.pets + r, rng)
    fr["active"][:] = 1
    fr["updated"] = t_pet
    new["pets"] = _format_pets(fr)
    src = keep["pets"]["update"]
    updates["pets"] = _format_pets(_update_pets(src, rng, later_now(len(src["idx"]))))

    fr = _draw_policies(plan, plan.pets + r, rng)
    fr["status"][:] = contracts.POLICY_STATUSES.index("Active")
    fr["updated"] = t_policy
    new["policies"] = _format_policies(fr, width)
    src = keep["policies"]["update"]
    updates["policies"] = _format_policies(_update_policies(src, later_now(len(src["idx"]))), width)

    fr = _draw_claims(plan, plan.claims + np.arange(n + 1), rng, (np.arange(n), plan.pets + r))
    fr["status"][:] = _SUBMITTED
    fr["paid"][:], fr["days"][:], fr["reason"][:] = 0, -1, -1
    fr["updated"][:n] = t_claim
    fr["updated"][n:] = later_now(1)
    claims_new = _format_claims(fr, width)
    new["claims"] = _take_cols(claims_new, np.arange(n))
    invalid = _records(_take_cols(claims_new, np.array([n])), contracts.CLAIMS)[0]
    src = keep["claims"]["update"]
    approve = np.where(rng.random(len(src["idx"])) < 0.5, _APPROVED, _PAID)
    paid, days, _ = _decide(approve, src["amount"], rng)
    src = {
        **src,
        "status": approve,
        "paid": paid,
        "days": days,
        "reason": np.full(len(approve), -1),
        "updated": later_now(len(approve)),
    }
    updates["claims"] = _format_claims(src, width)

    files: dict[str, int] = {}
    dirt: dict[str, Counter] = {}
    for entity in (contracts.CUSTOMERS, contracts.PETS, contracts.POLICIES, contracts.CLAIMS):
        batches = [
            ("new", new[entity.name]),
            ("update", updates[entity.name]),
            ("duplicate", keep[entity.name]["duplicate"]),
        ]
        documents: list[tuple[dict, str | None]] = []
        for _, cols in batches:
            documents += [(rec, None) for rec in _records(cols, entity)]
        dirt[entity.name] = Counter(
            realtime_update=len(updates[entity.name][entity.key]),
            realtime_duplicate=len(keep[entity.name]["duplicate"][entity.key]),
        )
        if entity is contracts.CLAIMS and n:
            text = json.dumps(invalid, indent=2)
            documents.append((invalid, text[: text.index('"claim_amount"')]))  # cut off mid-object
            dirt[entity.name]["realtime_invalid_json"] = 1
        names: set[str] = set()
        for i, (record, broken) in enumerate(documents):
            micro = int(rng.integers(0, 1_000_000))
            name = _realtime_name(record, entity.key, micro)
            while name in names:
                micro = (micro + 1) % 1_000_000
                name = _realtime_name(record, entity.key, micro)
            names.add(name)
            text = (
                broken
                if broken is not None
                else (json.dumps(record, indent=2) if i % 2 == 0 else json.dumps(record))
            )
            with _AtomicFile(raw / entity.name / name) as f:
                f.write((text + "\n").encode())
        files[entity.name] = len(documents)
    return files, dirt


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


def _chunks(
    builder: Callable[[_Plan, int, int, int], _Chunk], plan: _Plan, total: int
) -> Iterator[_Chunk]:
    for number, start in enumerate(range(0, total, CHUNK_ROWS)):
        yield builder(plan, start, min(start + CHUNK_ROWS, total), number)


def _write_batch(
    path: Path, header: str, chunks: Iterable[_Chunk]
) -> tuple[int, Counter, dict | None]:
    rows, dirt, keep = 0, Counter(), None
    with _AtomicFile(path) as f:
        if header:
            f.write(header.encode())
        for chunk in chunks:
            for piece in chunk.pieces:
                piece.write(f)
                rows += piece.rows
            dirt.update(chunk.dirt)
            keep = keep or chunk.keep
    return rows, dirt, keep


@dataclass
class _Written:
    """One batch file written: what the report and the real-time step need from it."""

    entity: str
    relative: str
    rows: int
    dirt: dict[str, int]
    seconds: float
    keep: dict | None = None


def _write_entity(plan: _Plan, raw_dir: str, name: str) -> list[_Written]:
    """Write one entity's batch file(s). A top-level function so a worker process can run it."""
    raw = Path(raw_dir)
    entity = contracts.BY_NAME[name]
    chunks = {
        "customers": lambda: _chunks(_customers_chunk, plan, plan.customers),
        "providers": lambda: [_providers_lines(plan)],
        "pets": lambda: _chunks(_pets_chunk, plan, plan.pets),
        "policies": lambda: _chunks(_policies_chunk, plan, plan.pets),
        "claims": lambda: _chunks(_claims_chunk, plan, plan.claims),
    }[name]
    t0 = time.perf_counter()
    header = "" if entity.batch_format == "jsonl" else ",".join(entity.columns) + "\n"
    relative = f"{entity.name}/{entity.batch_file}"
    rows, dirt, keep = _write_batch(raw / relative, header, chunks())
    out = [_Written(name, relative, rows, dict(dirt), time.perf_counter() - t0, keep)]
    if entity is contracts.PROVIDERS:
        t0 = time.perf_counter()
        relative = f"providers/{EXTRA_PROVIDERS_FILE}"
        header = ",".join(contracts.PROVIDERS.columns + ("website",)) + "\n"
        rows, _, _ = _write_batch(
            raw / relative, header, [_Chunk([_providers_extra_lines(plan)], Counter())]
        )
        out.append(
            _Written(name, relative, rows, {"extra_column_file": rows}, time.perf_counter() - t0)
        )
    return out


def _write_entities(plan: _Plan, raw_dir: str, names: list[str]) -> list[_Written]:
    return [w for name in names for w in _write_entity(plan, raw_dir, name)]


PARALLEL_FROM_CLAIMS = 1_000_000


def generate(
    raw_dir: str | Path,
    claims: int = 15_000,
    seed: int = 42,
    realtime_files: int | None = None,
    log: Callable[[str], object] | None = None,
    *,
    workers: int | None = None,
) -> GenerationReport:
    """Write a seeded, dirty raw landing zone under ``raw_dir`` and report what was written.

    raw_dir gets ``customers/``, ``pets/``, ``policies/``, ``claims/``, ``providers/`` (created if
    missing). The batch files and this run's real-time files are (re)written; other files in
    those folders are left alone. ``realtime_files`` is the number of real-time JSON files per
    entity (customers, pets, policies, claims); default clamp(claims // 1000, 5, 200); 0 writes
    none (and then no claim has a late-arriving parent). ``log`` receives one progress line per
    file. ``workers``: 2 writes claims.jsonl in this process while one spawned worker process
    writes the other batch files (default: 2 from ``PARALLEL_FROM_CLAIMS`` claims on a machine
    with 2+ CPUs, else 1). The bytes written do not depend on it.
    """
    started = time.perf_counter()
    plan = _Plan.build(int(claims), int(seed), realtime_files)
    raw = Path(raw_dir)
    say = log or (lambda _line: None)
    if workers is None:
        workers = 2 if plan.claims >= PARALLEL_FROM_CLAIMS and (os.cpu_count() or 1) >= 2 else 1
    report = GenerationReport(
        raw_dir=str(raw),
        seed=int(seed),
        claims=int(claims),
        sizes={
            "customers": plan.customers,
            "pets": plan.pets,
            "policies": plan.policies,
            "providers": plan.providers,
            "providers_extra_column": plan.providers_extra,
            "claims": plan.claims,
            "realtime_new": plan.rt_new,
            "realtime_files_per_entity": plan.rt_files,
        },
    )

    def logged(results: list[_Written]) -> list[_Written]:
        for w in results:
            say(f"{w.relative}: {w.rows:,} rows in {w.seconds:.2f}s")
        return results

    others = [e.name for e in contracts.ENTITIES if e is not contracts.CLAIMS]
    if workers >= 2:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            future = pool.submit(_write_entities, plan, str(raw), others)
            written = logged(_write_entity(plan, str(raw), "claims"))
            written += logged(future.result())
    else:
        written = [
            w for name in others + ["claims"] for w in logged(_write_entity(plan, str(raw), name))
        ]

    keep: dict[str, dict] = {}
    by_file = {w.relative: w for w in written}
    for entity in contracts.ENTITIES:  # report in contract order, whoever wrote what
        report.dirt[entity.name] = {}
        for relative in (
            f"{entity.name}/{entity.batch_file}",
            f"{entity.name}/{EXTRA_PROVIDERS_FILE}",
        ):
            w = by_file.get(relative)
            if w is None:
                continue
            report.rows[relative] = w.rows
            report.dirt[entity.name].update(w.dirt)
            if w.keep is not None:
                keep[entity.name] = w.keep

    if plan.rt_files:
        t0 = time.perf_counter()
        files, dirt = _realtime(plan, keep, raw)
        report.realtime_files = files
        for name, counts in dirt.items():
            report.dirt[name].update({k: v for k, v in counts.items() if v})
        say(
            f"real-time: {sum(files.values()):,} files ({', '.join(f'{k} {v}' for k, v in files.items())}) "
            f"in {time.perf_counter() - t0:.2f}s"
        )
    report.seconds = time.perf_counter() - started
    return report


def _peak_rss_mb(who: str = "self") -> float | None:
    """Peak resident memory of this process ("self") or of its largest child ("children")."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    kb = resource.getrusage(
        resource.RUSAGE_SELF if who == "self" else resource.RUSAGE_CHILDREN
    ).ru_maxrss
    return kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m petinsure_assets.demo_data",
        description="Write a seeded, realistic, dirty pet-insurance raw landing zone.",
    )
    parser.add_argument(
        "--raw-dir", default="./lake/raw", help="raw zone folder (default ./lake/raw)"
    )
    parser.add_argument("--claims", type=int, default=15_000, help="batch claims (default 15000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--realtime-files",
        type=int,
        default=None,
        help="real-time JSON files per entity (default clamp(claims//1000, 5, 200))",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        choices=(1, 2),
        help=f"2 = a worker process writes the CSVs while claims are written "
        f"(default: 2 from {PARALLEL_FROM_CLAIMS:,} claims)",
    )
    args = parser.parse_args(argv)
    report = generate(
        args.raw_dir,
        claims=args.claims,
        seed=args.seed,
        realtime_files=args.realtime_files,
        log=lambda line: print(line, flush=True),
        workers=args.workers,
    )
    for entity, kinds in report.dirt.items():
        print(f"dirt {entity}: " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    rss, child = _peak_rss_mb("self"), _peak_rss_mb("children")
    memory = ""
    if rss is not None:
        memory = f", peak RSS {rss:.0f} MB" + (f" (worker process {child:.0f} MB)" if child else "")
    print(
        f"done: {sum(report.rows.values()):,} batch rows, "
        f"{sum(report.realtime_files.values()):,} real-time files in {report.seconds:.2f}s{memory}"
    )
    return 0


if __name__ == "__main__":
    from petinsure_assets.entry_point import run_and_exit

    run_and_exit(main)
