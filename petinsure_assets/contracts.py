"""The raw landing-zone contract: which entities exist, their files and their columns.

One place for it: the demo generator writes these columns, bronze reads them, tests build
fixtures from them. Column order here is the order of the batch CSV headers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Entity:
    name: str  # folder under raw/, e.g. "customers"
    key: str  # business key column
    batch_file: str  # the batch file's name inside raw/<name>/
    realtime_prefix: str | None  # ID prefix of real-time single-record JSON files
    columns: tuple[str, ...]

    @property
    def bronze_table(self) -> str:
        return f"{self.name}_raw"

    @property
    def batch_format(self) -> str:
        return "jsonl" if self.batch_file.endswith(".jsonl") else "csv"


CUSTOMERS = Entity(
    name="customers",
    key="customer_id",
    batch_file="customers.csv",
    realtime_prefix="CUST",
    columns=(
        "customer_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "address",
        "city",
        "state",
        "zip_code",
        "date_of_birth",
        "customer_since",
        "segment",
        "lifetime_value",
        "updated_at",
    ),
)

PETS = Entity(
    name="pets",
    key="pet_id",
    batch_file="pets.csv",
    realtime_prefix="PET",
    columns=(
        "pet_id",
        "customer_id",
        "pet_name",
        "species",
        "breed",
        "gender",
        "date_of_birth",
        "weight_lbs",
        "microchip_id",
        "is_neutered",
        "vaccination_status",
        "pre_existing_conditions",
        "is_active",
        "updated_at",
    ),
)

POLICIES = Entity(
    name="policies",
    key="policy_id",
    batch_file="policies.csv",
    realtime_prefix="POL",
    columns=(
        "policy_id",
        "policy_number",
        "customer_id",
        "pet_id",
        "plan_name",
        "monthly_premium",
        "deductible",
        "coverage_limit",
        "effective_date",
        "expiration_date",
        "status",
        "includes_wellness",
        "includes_dental",
        "includes_behavioral",
        "updated_at",
    ),
)

CLAIMS = Entity(
    name="claims",
    key="claim_id",
    batch_file="claims.jsonl",
    realtime_prefix="CLM",
    columns=(
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
        "updated_at",
    ),
)

PROVIDERS = Entity(
    name="providers",
    key="provider_id",
    batch_file="providers.csv",
    realtime_prefix=None,
    columns=(
        "provider_id",
        "provider_name",
        "provider_type",
        "address",
        "city",
        "state",
        "zip_code",
        "phone",
        "is_in_network",
        "average_rating",
        "specialties",
        "updated_at",
    ),
)

# The raw entities; the silver tables built from them are ordered by the catalog (parents first).
ENTITIES: tuple[Entity, ...] = (CUSTOMERS, PROVIDERS, PETS, POLICIES, CLAIMS)
BY_NAME: dict[str, Entity] = {e.name: e for e in ENTITIES}

# Accepted values (docs/rules.md, "Vocabulary"). Silver maps case variants onto these spellings;
# anything else becomes null.
CLAIM_STATUSES = ("Submitted", "Under Review", "Approved", "Denied", "Paid")
POLICY_STATUSES = ("Active", "Expired", "Cancelled", "Pending")
PLAN_NAMES = ("Basic", "Standard", "Premium", "Unlimited")
CLAIM_TYPES = ("Accident", "Illness", "Wellness", "Emergency")
SPECIES = ("Dog", "Cat", "Bird", "Rabbit", "Other")
# The generator's customer segments, kept as given by silver.
SEGMENTS = ("Budget", "Standard", "Premium", "Family", "Senior")

# Bronze metadata columns, appended after an entity's source columns (all text but _source_line).
BRONZE_METADATA = (
    "_extra_columns",  # JSON object of columns/keys the contract does not know, else null
    "_raw_record",  # the record's original text, kept only when it could not be parsed
    "_parse_error",  # why it could not be parsed, else null
    "_ingested_at",
    "_source_file",
    "_source_line",
    "_batch_id",
    "_record_hash",
)

# Real-time single-record files: <ID>_<YYYYMMDD>_<HHMMSS>_<ffffff>.json, the ID starting with the
# entity's prefix (CLM-…); the extension in any case.
REALTIME_NAME = re.compile(r"(?P<id>[^_]+)_(?P<stamp>\d{8}_\d{6})_\d{6}\.json", re.IGNORECASE)


def realtime_name_problem(entity: Entity, name: str) -> str | None:
    """Why `name` is not a real-time file name of `entity`, or None when it is one."""
    if entity.realtime_prefix is None:
        return f"{entity.name} take no real-time .json files"
    expected = f"{entity.realtime_prefix}-<ID>_<YYYYMMDD>_<HHMMSS>_<ffffff>.json"
    m = REALTIME_NAME.fullmatch(name)
    if not m or not m["id"].startswith(f"{entity.realtime_prefix}-"):
        return f"file name does not match {expected}"
    try:
        datetime.strptime(m["stamp"], "%Y%m%d_%H%M%S")
    except ValueError:
        return f"file name has no valid date and time ({m['stamp']}); expected {expected}"
    return None
