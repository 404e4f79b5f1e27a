"""Tests of the demo raw-zone generator (petinsure_assets/demo_data.py).

The files are parsed here independently (csv / json from the standard library) and every kind of
dirt is detected from the data itself; the generator's report must agree exactly.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
import textwrap
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from petinsure_assets import contracts
from petinsure_assets.demo_data import RATES, STATE_NAMES, generate

ROOT = Path(__file__).resolve().parents[1]

REALTIME_NAME = re.compile(
    r"^(?P<id>(?P<prefix>[A-Z]+)-\d{8})_(?P<d>\d{8})_(?P<t>\d{6})_\d{6}\.json$"
)
US_DATE = re.compile(r"\d{2}/\d{2}/\d{4}")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
CANONICAL_PHONE = re.compile(r"\(\d{3}\) \d{3}-\d{4}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]+", re.IGNORECASE)
ID = {
    "customers": re.compile(r"CUST-\d{8}"),
    "pets": re.compile(r"PET-\d{8}"),
    "policies": re.compile(r"POL-\d{8}"),
    "claims": re.compile(r"CLM-\d{8}"),
    "providers": re.compile(r"PRV-\d{8}"),
}
REALTIME_ENTITIES = [e for e in contracts.ENTITIES if e.realtime_prefix]


# ------------------------------------------------------------------------------------------------
# An independent reader of the raw zone
# ------------------------------------------------------------------------------------------------


@dataclass
class RawZone:
    root: Path
    rows: dict[str, list[dict]] = field(default_factory=dict)  # well-formed batch records
    raw_rows: dict[str, list[tuple]] = field(default_factory=dict)  # same, as value tuples
    malformed: dict[str, list] = field(default_factory=dict)  # wrong field count / bad JSON
    extra_header: list[str] = field(default_factory=list)
    extra_rows: list[dict] = field(default_factory=list)
    realtime: dict[str, list[tuple[str, dict | None]]] = field(default_factory=dict)

    @classmethod
    def read(cls, root: Path) -> RawZone:
        zone = cls(root)
        for e in contracts.ENTITIES:
            path = root / e.name / e.batch_file
            good, bad = [], []
            if e.batch_format == "csv":
                with open(path, newline="") as f:
                    reader = csv.reader(f)
                    assert next(reader) == list(e.columns)
                    for row in reader:
                        (good if len(row) == len(e.columns) else bad).append(tuple(row))
                zone.rows[e.name] = [dict(zip(e.columns, r)) for r in good]
            else:
                zone.rows[e.name] = []
                for line in path.read_text().splitlines():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        bad.append(line)
                        continue
                    assert list(record) == list(e.columns)
                    zone.rows[e.name].append(record)
                    good.append(line)
            zone.raw_rows[e.name] = good
            zone.malformed[e.name] = bad
        with open(root / "providers" / "providers_extra_column.csv", newline="") as f:
            reader = csv.reader(f)
            zone.extra_header = next(reader)
            zone.extra_rows = [dict(zip(zone.extra_header, r)) for r in reader]
        for e in REALTIME_ENTITIES:
            files = []
            for path in sorted((root / e.name).glob("*.json")):
                try:
                    files.append((path.name, json.loads(path.read_text())))
                except json.JSONDecodeError:
                    files.append((path.name, None))
            zone.realtime[e.name] = files
        return zone

    def keys(self, entity: str) -> set[str]:
        key = contracts.BY_NAME[entity].key
        found = {r[key] for r in self.rows[entity] if r[key]}
        if entity == "providers":
            found |= {r["provider_id"] for r in self.extra_rows}
        return found

    def realtime_records(self, entity: str) -> list[dict]:
        return [record for _, record in self.realtime[entity] if record is not None]

    def realtime_keys(self, entity: str) -> set[str]:
        key = contracts.BY_NAME[entity].key
        return {r[key] for r in self.realtime_records(entity)}

    def all_keys(self, entity: str) -> set[str]:
        return self.keys(entity) | (self.realtime_keys(entity) if entity != "providers" else set())


def money(value) -> Decimal:
    return Decimal(str(value))


def us_date(value: str) -> bool:
    """MM/DD/YYYY and a real date (``31/31/2024`` is a bad date, not a US one)."""
    return bool(US_DATE.fullmatch(value)) and parses_as_date(value)


def parses_as_date(value: str) -> bool:
    for pattern, fmt in ((ISO_DATE, "%Y-%m-%d"), (US_DATE, "%m/%d/%Y")):
        if pattern.fullmatch(value):
            try:
                datetime.strptime(value, fmt)
                return True
            except ValueError:
                return False
    return False


def duplicates_and_updates(
    zone: RawZone, entity: str, exclude=lambda record: False
) -> tuple[int, int]:
    """Exact duplicate rows, and extra distinct versions of one key."""
    key = contracts.BY_NAME[entity].key
    counts = Counter(zone.raw_rows[entity])
    duplicates = sum(n - 1 for n in counts.values())
    versions: dict[str, set] = defaultdict(set)
    for raw, record in zip(zone.raw_rows[entity], zone.rows[entity]):
        if record[key] and not exclude(record):
            versions[record[key]].add(raw)
    return duplicates, sum(len(v) - 1 for v in versions.values())


def same_record(realtime: dict, batch: dict) -> bool:
    """A real-time record equals a batch record (JSON numbers compared as numbers)."""
    for column, value in realtime.items():
        other = batch[column]
        if value is None or other is None:
            if (value if value is not None else "") != (other if other is not None else ""):
                return False
        elif isinstance(value, (int, float)) or isinstance(other, (int, float)):
            if money(value) != money(other):
                return False
        elif value != other:
            return False
    return True


def detect_dirt(zone: RawZone) -> dict[str, dict[str, int]]:
    """Every dirt kind, counted from the files alone."""
    found: dict[str, dict[str, int]] = {}
    customers = set(zone.all_keys("customers"))
    pets, providers = zone.all_keys("pets"), zone.keys("providers")

    rows = zone.rows["customers"]
    d = found["customers"] = {}
    d["us_date"] = sum(us_date(r["date_of_birth"]) for r in rows)
    d["bad_phone"] = sum(
        r["phone"] != "" and not CANONICAL_PHONE.fullmatch(r["phone"]) for r in rows
    )
    d["missing_phone"] = sum(r["phone"] == "" for r in rows)
    d["email_upper"] = sum(
        bool(EMAIL.fullmatch(r["email"])) and r["email"] == r["email"].upper() for r in rows
    )
    d["bad_email"] = sum(r["email"] != "" and not EMAIL.fullmatch(r["email"]) for r in rows)
    d["state_full_name"] = sum(r["state"] in STATE_NAMES.values() for r in rows)
    d["state_lower"] = sum(bool(re.fullmatch(r"[a-z]{2}", r["state"])) for r in rows)
    d["bad_zip"] = sum(not re.fullmatch(r"\d{5}", r["zip_code"]) for r in rows)
    d["missing_address"] = sum(r["address"] == "" for r in rows)
    d["missing_key"] = sum(r["customer_id"] == "" for r in rows)
    d["wrong_field_count"] = len(zone.malformed["customers"])
    d["duplicate"], d["update"] = duplicates_and_updates(zone, "customers")

    rows = zone.rows["pets"]
    d = found["pets"] = {}
    d["us_date"] = sum(us_date(r["date_of_birth"]) for r in rows)
    d["missing_breed"] = sum(r["breed"] == "" for r in rows)
    d["missing_microchip_id"] = sum(r["microchip_id"] == "" for r in rows)
    d["bad_weight"] = sum(float(r["weight_lbs"]) <= 0 for r in rows)
    d["case_variant"] = sum(r["species"] not in contracts.SPECIES for r in rows)
    d["missing_key"] = sum(r["pet_id"] == "" for r in rows)
    d["orphan_fk"] = sum(r["customer_id"] not in customers for r in rows)
    d["duplicate"], d["update"] = duplicates_and_updates(zone, "pets")

    rows = zone.rows["policies"]
    d = found["policies"] = {}

    def invalid_version(r: dict) -> bool:
        return money(r["monthly_premium"]) < 0 or not parses_as_date(r["effective_date"])

    d["us_date"] = sum(us_date(r["effective_date"]) for r in rows)
    d["missing_deductible"] = sum(r["deductible"] == "" for r in rows)
    d["case_variant"] = sum(r["plan_name"] not in contracts.PLAN_NAMES for r in rows)
    d["negative_amount"] = sum(money(r["monthly_premium"]) < 0 for r in rows)
    d["bad_date"] = sum(not parses_as_date(r["effective_date"]) for r in rows)
    d["missing_key"] = sum(r["policy_id"] == "" for r in rows)
    d["orphan_fk"] = sum(r["pet_id"] not in pets for r in rows)
    d["duplicate"], d["update"] = duplicates_and_updates(zone, "policies", invalid_version)

    rows = zone.rows["claims"]
    d = found["claims"] = {}
    d["malformed_json"] = len(zone.malformed["claims"])
    d["us_date"] = sum(us_date(r["service_date"]) for r in rows)
    d["bad_date"] = sum(not parses_as_date(r["service_date"]) for r in rows)
    d["negative_amount"] = sum(
        money(r["claim_amount"]) < 0 or money(r["paid_amount"]) < 0 for r in rows
    )
    d["overpaid"] = sum(money(r["paid_amount"]) > money(r["claim_amount"]) >= 0 for r in rows)
    d["orphan_fk"] = sum(r["pet_id"] not in pets for r in rows)
    d["orphan_provider"] = sum(r["provider_id"] not in providers for r in rows)
    d["late_arriving_parent"] = sum(
        r["pet_id"] not in zone.keys("pets") and r["pet_id"] in zone.realtime_keys("pets")
        for r in rows
    )
    d["missing_key"] = sum(r["claim_id"] == "" for r in rows)
    d["missing_claim_category"] = sum(r["claim_category"] == "" for r in rows)
    d["case_variant"] = sum(r["status"] not in contracts.CLAIM_STATUSES for r in rows)
    d["duplicate"], d["update"] = duplicates_and_updates(zone, "claims")

    rows = zone.rows["providers"]
    d = found["providers"] = {}
    d["bad_phone"] = sum(not CANONICAL_PHONE.fullmatch(r["phone"]) for r in rows)
    d["state_full_name"] = sum(r["state"] in STATE_NAMES.values() for r in rows)
    d["state_lower"] = sum(bool(re.fullmatch(r"[a-z]{2}", r["state"])) for r in rows)
    d["missing_address"] = sum(r["address"] == "" for r in rows)
    d["bad_rating"] = sum(float(r["average_rating"]) > 5 for r in rows)
    d["missing_key"] = sum(r["provider_id"] == "" for r in rows)
    d["duplicate"], d["update"] = duplicates_and_updates(zone, "providers")
    d["extra_column_file"] = len(zone.extra_rows)

    for e in REALTIME_ENTITIES:
        batch: dict[str, list[dict]] = defaultdict(list)
        for r in zone.rows[e.name]:
            batch[r[e.key]].append(r)
        d = found[e.name]
        d["realtime_update"] = d["realtime_duplicate"] = 0
        for record in zone.realtime_records(e.name):
            versions = batch.get(record[e.key], [])
            if not versions:
                continue  # a new record
            if record["updated_at"] > max(v["updated_at"] for v in versions):
                d["realtime_update"] += 1
            elif any(same_record(record, v) for v in versions):
                d["realtime_duplicate"] += 1
        invalid = sum(record is None for _, record in zone.realtime[e.name])
        if invalid:
            d["realtime_invalid_json"] = invalid
    return found


# ------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=[100, 3000], ids=lambda n: f"{n}_claims")
def generated(request, tmp_path_factory):
    """(report, parsed raw zone) for a small and a medium run."""
    raw = tmp_path_factory.mktemp(f"raw{request.param}")
    report = generate(raw, claims=request.param, seed=7)
    return report, RawZone.read(raw)


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_other_data(tmp_path):
    generate(tmp_path / "a", claims=300, seed=11)
    generate(tmp_path / "b", claims=300, seed=11)
    generate(tmp_path / "c", claims=300, seed=12)
    a, b, c = (file_hashes(tmp_path / x) for x in "abc")
    assert len(a) > 20 and a == b
    for e in contracts.ENTITIES:
        relative = f"{e.name}/{e.batch_file}"
        assert a[relative] != c[relative], relative
    assert set(a) != set(c)  # real-time file names carry ids and timestamps


@pytest.mark.parametrize("claims", [300, 3000])
def test_sizes_follow_the_number_of_claims(tmp_path, claims):
    report = generate(tmp_path, claims=claims, seed=5)
    zone = RawZone.read(tmp_path)
    sizes = report.sizes
    customers, pets = sizes["customers"], sizes["pets"]
    assert sizes["claims"] == claims
    assert customers == claims // 3
    assert 1.45 <= pets / customers <= 1.55
    assert sizes["policies"] == pets - pets // 50  # every 50th pet is uninsured
    assert sizes["providers"] == min(500, max(20, 50 + claims // 2000))
    assert sizes["providers_extra_column"] >= 3

    # Line counts, counted here, match the report (CSV values never hold a newline).
    for relative, rows in report.rows.items():
        lines = (tmp_path / relative).read_bytes().count(b"\n")
        assert lines - (0 if relative.endswith(".jsonl") else 1) == rows, relative
    dirt = report.dirt
    assert report.rows["claims/claims.jsonl"] == claims + sum(
        dirt["claims"][k] for k in ("duplicate", "update", "malformed_json")
    )
    assert report.rows["customers/customers.csv"] == customers + sum(
        dirt["customers"][k] for k in ("duplicate", "update", "missing_key", "wrong_field_count")
    )

    # Base keys: exactly the promised entities, numbered 1..n (orphan rows' own keys aside).
    def numbered(entity: str) -> set[int]:
        return {int(k[-8:]) for k in zone.keys(entity) if int(k[-8:]) < 98_000_000}

    assert numbered("customers") == set(range(1, customers + 1))
    assert numbered("pets") == set(range(1, pets + 1))
    assert numbered("policies") == {j + 1 for j in range(pets) if j % 50 != 49}
    assert numbered("providers") == set(
        range(1, sizes["providers"] + sizes["providers_extra_column"] + 1)
    )
    assert len(zone.keys("claims")) == claims - dirt["claims"]["missing_key"]

    n = sizes["realtime_files_per_entity"]
    assert n == min(200, max(5, claims // 1000))
    for e in REALTIME_ENTITIES:
        invalid = 1 if e is contracts.CLAIMS else 0
        assert report.realtime_files[e.name] == len(zone.realtime[e.name]) == n + invalid
        new = zone.realtime_keys(e.name) - zone.keys(e.name)
        assert len(new) == sizes["realtime_new"] > 0


def test_every_kind_of_dirt_is_present_and_detected_independently(generated):
    report, data = generated
    detected = detect_dirt(data)
    for entity, kinds in RATES.items():
        for kind in kinds:
            assert report.dirt[entity].get(kind, 0) >= 1, (entity, kind)
    for e in REALTIME_ENTITIES:
        assert report.dirt[e.name]["realtime_update"] >= 1
        assert report.dirt[e.name]["realtime_duplicate"] >= 1
    assert report.dirt["claims"]["late_arriving_parent"] >= 1
    assert report.dirt["claims"]["realtime_invalid_json"] == 1
    assert detected == report.dirt


def test_expected_quarantine_maps_hard_rules(generated):
    report, _ = generated
    q = report.expected_quarantine()
    claims = report.dirt["claims"]
    assert q["claims"] == {
        "malformed_record": claims["malformed_json"],
        "missing_key": claims["missing_key"],
        "bad_date": claims["bad_date"],
        "negative_amount": claims["negative_amount"],
        "overpaid": claims["overpaid"],
        "orphan_fk": claims["orphan_fk"] + claims["orphan_provider"],
    }
    assert q["customers"]["malformed_record"] == report.dirt["customers"]["wrong_field_count"]
    assert "duplicate" not in str(q) and "us_date" not in str(q)


def test_realtime_file_names(generated):
    report, data = generated
    for e in REALTIME_ENTITIES:
        for name, record in data.realtime[e.name]:
            match = REALTIME_NAME.fullmatch(name)
            assert match, name
            assert match["prefix"] == e.realtime_prefix
            if record is None:
                continue
            assert record[e.key] == match["id"]
            stamp = datetime.strptime(record["updated_at"], "%Y-%m-%dT%H:%M:%S")
            assert (match["d"], match["t"]) == (stamp.strftime("%Y%m%d"), stamp.strftime("%H%M%S"))
    assert not list(data.root.rglob(".*.tmp"))  # temporary files were all renamed


def test_referential_integrity_except_the_injected_orphans(generated):
    report, data = generated
    customers, pets, policies = (data.all_keys(x) for x in ("customers", "pets", "policies"))
    providers = data.keys("providers")
    claims = data.rows["claims"] + data.realtime_records("claims")
    dirt = report.dirt

    assert sum(c["pet_id"] not in pets for c in claims) == dirt["claims"]["orphan_fk"]
    assert sum(c["policy_id"] not in policies for c in claims) == dirt["claims"]["orphan_fk"]
    assert sum(c["customer_id"] not in customers for c in claims) == dirt["claims"]["orphan_fk"]
    assert (
        sum(c["provider_id"] not in providers for c in claims) == dirt["claims"]["orphan_provider"]
    )
    if report.claims >= 1000:  # claims also go to the providers of the extra-column file
        assert {c["provider_id"] for c in claims} & {r["provider_id"] for r in data.extra_rows}
    pet_rows = data.rows["pets"] + data.realtime_records("pets")
    assert sum(p["customer_id"] not in customers for p in pet_rows) == dirt["pets"]["orphan_fk"]
    policy_rows = data.rows["policies"] + data.realtime_records("policies")
    assert sum(p["pet_id"] not in pets for p in policy_rows) == dirt["policies"]["orphan_fk"]
    assert (
        sum(p["customer_id"] not in customers for p in policy_rows) == dirt["policies"]["orphan_fk"]
    )

    # The chain is consistent: a claim's customer owns its pet, its policy covers that pet and
    # the service date lies inside the policy's term.
    owner = {p["pet_id"]: p["customer_id"] for p in pet_rows if p["pet_id"]}
    policy = {
        p["policy_id"]: p
        for p in policy_rows
        if p["policy_id"]
        and parses_as_date(p["effective_date"])
        and ISO_DATE.fullmatch(p["effective_date"])
    }
    checked = 0
    for c in claims:
        if (
            c["pet_id"] in owner
            and c["policy_id"] in policy
            and ISO_DATE.fullmatch(c["service_date"])
            and parses_as_date(c["service_date"])
        ):
            p = policy[c["policy_id"]]
            assert owner[c["pet_id"]] == c["customer_id"] == p["customer_id"]
            assert p["pet_id"] == c["pet_id"]
            assert p["effective_date"] <= c["service_date"] <= p["expiration_date"]
            assert c["service_date"] < "2026-01-01"
            checked += 1
    assert checked > 0.9 * report.claims


def test_value_domains(generated):
    report, data = generated
    customers = [r for r in data.rows["customers"] if r["customer_id"]]
    for r in customers:
        assert ID["customers"].fullmatch(r["customer_id"])
        assert r["segment"] in contracts.SEGMENTS
        assert TIMESTAMP.fullmatch(r["updated_at"])
        if ISO_DATE.fullmatch(r["date_of_birth"]):
            assert "1940-01-01" <= r["date_of_birth"] <= "2004-12-31"
        if ISO_DATE.fullmatch(r["customer_since"]):
            assert "2019-01-01" <= r["customer_since"] <= "2025-12-31"
        assert money(r["lifetime_value"]) > 0
    pets = [r for r in data.rows["pets"] if r["pet_id"]]
    for r in pets:
        assert r["species"].capitalize() in contracts.SPECIES
        assert r["gender"] in ("Male", "Female")
        assert r["is_neutered"] in ("true", "false") and r["is_active"] in ("true", "false")
        assert r["microchip_id"] == "" or re.fullmatch(r"\d{15}", r["microchip_id"])
        if ISO_DATE.fullmatch(r["date_of_birth"]):
            assert (
                0 <= (date(2026, 1, 1) - date.fromisoformat(r["date_of_birth"])).days / 365.25 < 17
            )
    assert sum(r["is_active"] == "true" for r in pets) > 0.85 * len(pets)
    assert sum(r["pre_existing_conditions"] == "None" for r in pets) > 0.7 * len(pets)

    premiums: dict[str, list[Decimal]] = defaultdict(list)
    for r in data.rows["policies"]:
        assert r["status"] in contracts.POLICY_STATUSES
        if r["plan_name"] in contracts.PLAN_NAMES and money(r["monthly_premium"]) > 0:
            premiums[r["plan_name"]].append(money(r["monthly_premium"]))
        if ISO_DATE.fullmatch(r["effective_date"]) and parses_as_date(r["effective_date"]):
            eff, exp = (
                date.fromisoformat(r["effective_date"]),
                date.fromisoformat(r["expiration_date"]),
            )
            assert "2023-01-01" <= r["effective_date"] <= "2025-12-31"
            assert (exp.year, exp.month) == (eff.year + 1, eff.month)
    means = [sum(premiums[p]) / len(premiums[p]) for p in contracts.PLAN_NAMES if premiums[p]]
    assert means == sorted(means)  # Basic < Standard < Premium < Unlimited

    claims = [r for r in data.rows["claims"] if r["status"] in contracts.CLAIM_STATUSES]
    for r in claims:
        amount, paid = money(r["claim_amount"]), money(r["paid_amount"])
        assert r["claim_type"] in contracts.CLAIM_TYPES
        approved = r["status"] in ("Approved", "Paid")
        decided = approved or r["status"] == "Denied"
        assert (r["processing_days"] is not None) == decided
        if decided:
            assert 1 <= r["processing_days"] <= 30
        assert (r["denial_reason"] != "") == (r["status"] == "Denied")
        if not approved:
            assert paid == 0 or paid < 0  # (negative amounts are injected dirt)
        if amount >= 0 and paid >= 0 and paid <= amount and approved and amount > 0:
            assert Decimal("0.6") <= paid / amount <= Decimal("0.91")
    in_2024_2025 = sum(r["service_date"][:4] in ("2024", "2025") for r in claims)
    assert in_2024_2025 > 0.7 * len(claims)
    for r in data.rows["providers"] + data.extra_rows:
        assert r["provider_type"] in ("General Practice", "Emergency", "Specialty", "Mobile")
        assert r["is_in_network"] in ("true", "false")
        assert re.fullmatch(r"\d\.\d", r["average_rating"])
    assert data.extra_header == list(contracts.PROVIDERS.columns) + ["website"]
    extra_ids = {r["provider_id"] for r in data.extra_rows}
    assert not extra_ids & {r["provider_id"] for r in data.rows["providers"]}


def test_cli_prints_progress_and_writes_the_same_files(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "petinsure_assets.demo_data",
            "--raw-dir",
            str(tmp_path / "cli"),
            "--claims",
            "200",
            "--seed",
            "3",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    for e in contracts.ENTITIES:
        assert re.search(
            rf"^{e.name}/{re.escape(e.batch_file)}: [\d,]+ rows in [\d.]+s$", result.stdout, re.M
        ), result.stdout
    generate(tmp_path / "api", claims=200, seed=3)
    assert file_hashes(tmp_path / "cli") == file_hashes(tmp_path / "api")


def test_generation_streams_in_bounded_memory(tmp_path):
    """Peak RSS must not grow with the amount of data written, only with the chunk size."""
    script = textwrap.dedent(f"""
        import json, resource
        from pathlib import Path
        import petinsure_assets.demo_data as d

        def peak_mb():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        def written_mb(root):
            return sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file()) / 2**20

        root = Path({str(tmp_path)!r})
        d.generate(root / "warm", claims=2_000, seed=1, workers=1)  # imports, allocator pools
        base = peak_mb()
        d.CHUNK_ROWS = 25_000
        d.generate(root / "small", claims=100_000, seed=1, workers=1)
        small = peak_mb()
        d.generate(root / "big", claims=400_000, seed=1, workers=1)
        big = peak_mb()
        d.CHUNK_ROWS = 200_000
        d.generate(root / "default", claims=200_000, seed=1, workers=1)
        print(json.dumps({{"small": small - base, "big": big - base, "default": peak_mb() - base,
                          "extra_written": written_mb(root / "big") - written_mb(root / "small")}}))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    growth = json.loads(result.stdout.strip().splitlines()[-1])
    assert growth["extra_written"] > 150  # 4x the data really was written ...
    assert growth["big"] - growth["small"] < 50  # ... in about the same peak memory
    assert growth["default"] < 400  # 200k claims with the default 200k-row chunks
