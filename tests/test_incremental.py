"""Incremental runs: a lake after any sequence of incremental runs equals a full rebuild of the
same bronze, row for row; full rebuilds happen when they must and only then; an incremental
run's checks catch a bad changed row in that run."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from deltalake import DeltaTable

from petinsure_assets.catalog import CATALOG, QUARANTINE
from petinsure_assets.cli import run_refresh
from tests.conftest import LakeFixture
from tests.test_pipeline import AS_OF, claim, write_base

SILVER = [*(s.name for s in CATALOG.silver), QUARANTINE]
GOLD = [s.name for s in CATALOG.gold]


def _json(record: dict) -> str:
    return json.dumps(record)


def parent_records(customer_id: str, pet_id: str, policy_id: str) -> dict[str, dict]:
    """A customer, a pet of theirs and its policy, as raw records by entity."""
    return {
        "customers": {
            "customer_id": customer_id,
            "first_name": "Late",
            "last_name": "Parent",
            "customer_since": "2024-06-01",
            "segment": "Budget",
            "updated_at": "2024-06-01T00:00:00",
        },
        "pets": {
            "pet_id": pet_id,
            "customer_id": customer_id,
            "pet_name": "Late",
            "species": "Dog",
            "is_active": "true",
            "updated_at": "2024-06-01T00:00:00",
        },
        "policies": {
            "policy_id": policy_id,
            "policy_number": f"PN-{policy_id}",
            "customer_id": customer_id,
            "pet_id": pet_id,
            "plan_name": "Basic",
            "monthly_premium": "20.00",
            "effective_date": "2025-01-01",
            "expiration_date": "2025-12-31",
            "status": "Active",
            "updated_at": "2025-01-01T00:00:00",
        },
    }


class Drops:
    """Random raw drops on the hand-made book of test_pipeline (2 customers, pets, policies, a
    provider): new claims, newer and older versions of existing claims, invalid versions,
    orphans and their late parents, a changed batch file, updates of parents."""

    def __init__(self, lake: LakeFixture, seed: int):
        self.lake = lake
        self.rng = random.Random(seed)
        self.claims = ["CLM-1", "CLM-2"]
        self.customers = ["CUST-1", "CUST-2"]
        self.pets = {"PET-1": "CUST-1", "PET-2": "CUST-2"}
        self.policies = {"POL-1": ("CUST-1", "PET-1"), "POL-2": ("CUST-2", "PET-2")}
        self.late: list[tuple[str, str, str]] = []  # (customer, pet, policy) referenced early
        self.n = 0
        self.providers_version = 0

    def _name(self, entity: str, record_id: str) -> str:
        self.n += 1
        return f"{record_id}_20250101_000000_{self.n:06d}.json"

    def _claim(self, claim_id: str, day: int, amount: str, paid: str, **kw) -> str:
        text = claim(claim_id, f"2025-{self.rng.randint(1, 6):02d}-{day:02d}", amount, paid, **kw)
        record = json.loads(text)
        # updated_at decides which version wins; some versions are older than others.
        record["updated_at"] = (
            f"2025-0{self.rng.randint(1, 6)}-{day:02d}T{self.rng.randint(0, 23):02d}:00:00"
        )
        return json.dumps(record)

    def step(self, first: bool = False, last: bool = False) -> None:
        """One drop of raw files. The first drop has an orphan claim, the last brings every
        parent still missing; in between anything goes."""
        lines = []
        kinds = [
            self.rng.choice(
                ["new", "update", "update", "invalid", "orphan", "late_parent", "late_parent"]
            )
            for _ in range(self.rng.randint(1, 4))
        ]
        kinds = ["orphan", "stale", *kinds] if first else kinds
        kinds += ["late_parent"] * len(self.late) * 3 if last else []
        for kind in kinds:
            day = self.rng.randint(1, 28)
            customer = self.rng.choice(self.customers)
            pet = next(p for p, c in self.pets.items() if c == customer)
            policy = next(p for p, (c, _) in self.policies.items() if c == customer)
            if kind == "new":
                claim_id = f"CLM-{100 + self.n}"
                self.n += 1
                self.claims.append(claim_id)
                lines.append(
                    self._claim(
                        claim_id, day, "120.00", "90.00", customer=customer, pet=pet, policy=policy
                    )
                )
            elif kind == "update":
                status = self.rng.choice(["Paid", "Denied", "Approved", "Submitted"])
                lines.append(
                    self._claim(
                        self.rng.choice(self.claims),
                        day,
                        f"{self.rng.randint(50, 400)}.00",
                        "40.00",
                        status=status,
                        customer=customer,
                        pet=pet,
                        policy=policy,
                    )
                )
            elif kind == "stale":  # an older version of a base claim, valid: it must lose
                record = json.loads(claim("CLM-1", "2025-02-10", "999.00", "1.00"))
                record["updated_at"] = "2025-01-01T00:00:00"
                lines.append(json.dumps(record))
            elif kind == "invalid":
                lines.append(
                    self._claim(
                        self.rng.choice(self.claims),
                        day,
                        "-5.00",
                        "1.00",
                        customer=customer,
                        pet=pet,
                        policy=policy,
                    )
                )
            elif kind == "orphan":
                k = 10 + self.n
                self.n += 1
                ids = (f"CUST-{k}", f"PET-{k}", f"POL-{k}")
                self.late.append(ids)
                claim_id = f"CLM-{100 + self.n}"
                self.claims.append(claim_id)
                lines.append(
                    self._claim(
                        claim_id,
                        day,
                        "75.00",
                        "75.00",
                        customer=ids[0],
                        pet=ids[2 - 1],
                        policy=ids[2],
                    )
                )
            elif kind == "late_parent" and self.late:
                # Parents arrive one at a time, in a random order: a claim waits for all three.
                customer_id, pet_id, policy_id = self.late[0]
                missing = [
                    e
                    for e, i in (
                        ("customers", customer_id),
                        ("pets", pet_id),
                        ("policies", policy_id),
                    )
                    if not self._present(e, i)
                ]
                arriving = missing if self.rng.random() < 0.5 else [self.rng.choice(missing)]
                for entity in arriving:
                    self._write_parent(entity, customer_id, pet_id, policy_id)
                if len(arriving) == len(missing):
                    self.late.pop(0)
                    self.customers.append(customer_id)
                    self.pets[pet_id] = customer_id
                    self.policies[policy_id] = (customer_id, pet_id)
        if lines:
            self.n += 1
            self.lake.write_raw("claims", f"claims_{self.n:04d}.jsonl", "\n".join(lines) + "\n")
        if self.rng.random() < 0.3:  # the batch file of providers changes (re-ingested)
            self.providers_version += 1
            rating = f"{3 + self.providers_version % 2}.{self.providers_version}"
            self.lake.write_raw(
                "providers",
                "providers.csv",
                "provider_id,provider_name,provider_type,address,city,state,zip_code,phone,"
                "is_in_network,average_rating,specialties,updated_at\n"
                f"PRV-1,Vet A,General Practice,2 Oak,Austin,TX,78701,5551112222,true,{rating},Dogs,"
                f"2024-02-0{self.providers_version % 9 + 1}\n",
            )
        if self.rng.random() < 0.3:  # a customer's newer (or older) version
            customer_id = self.rng.choice(self.customers[:2])
            self.lake.write_raw(
                "customers",
                self._name("customers", customer_id),
                _json(
                    {
                        "customer_id": customer_id,
                        "first_name": self.rng.choice(["Ann", "Bea"]),
                        "last_name": "Lee",
                        "state": "texas",
                        "customer_since": "2023-01-15",
                        "segment": "Family",
                        "updated_at": f"2024-0{self.rng.randint(1, 9)}-01T00:00:00",
                    }
                ),
            )

    def _present(self, entity: str, record_id: str) -> bool:
        return any((self.lake.root / "raw" / entity).glob(f"{record_id}_*.json"))

    def _write_parent(self, entity: str, customer_id: str, pet_id: str, policy_id: str) -> None:
        record = parent_records(customer_id, pet_id, policy_id)[entity]
        record_id = {"customers": customer_id, "pets": pet_id, "policies": policy_id}[entity]
        self.lake.write_raw(entity, self._name(entity, record_id), _json(record))


def tables(lake: LakeFixture) -> dict[str, list[dict]]:
    return {
        **{f"silver/{t}": lake.rows("silver", t) for t in SILVER},
        **{f"gold/{t}": lake.rows("gold", t) for t in GOLD},
    }


def operations(lake: LakeFixture, layer: str, table: str) -> list[str]:
    return [c["operation"] for c in DeltaTable(lake.lake.table_uri(layer, table)).history()]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_runs_equal_a_full_rebuild(lake: LakeFixture, tmp_path: Path, seed: int):
    write_base(lake)
    lake.refresh(as_of=AS_OF, snapshot=False)
    drops = Drops(lake, seed)
    for i in range(5):
        drops.step(first=i == 0, last=i == 4)
        lake.refresh(as_of=AS_OF, snapshot=False)
    # The runs after the first merged what changed into silver and gold. monthly_kpis is
    # rebuilt every time (every month depends on the ones before); cross-sell is rebuilt when
    # policies change (the book's average premium), here in most drops.
    merged = ["claims_analytics", "customer_360_view", "risk_scoring", "provider_performance"]
    for layer, table in [("silver", "fact_claims"), *(("gold", t) for t in merged)]:
        assert "MERGE" in operations(lake, layer, table), table
    assert "MERGE" not in operations(lake, "gold", "monthly_kpis")

    rebuilt = LakeFixture(tmp_path / "rebuilt")
    shutil.copytree(lake.root, rebuilt.root)
    rebuilt.refresh(as_of=AS_OF, snapshot=False, full_refresh=True)
    assert operations(rebuilt, "silver", "fact_claims")[0] == "WRITE"

    incremental, full = tables(lake), tables(rebuilt)
    for name in full:
        assert incremental[name] == full[name], name
    # The sequence reached the cases that matter: invalid versions, orphans released by their
    # late parents (claims of customers, pets and policies that arrived after them).
    reasons = {r["reason"] for r in full["silver/quarantine"]}
    assert "negative_amount" in reasons
    released = {c["customer_id"] for c in full["silver/fact_claims"]} - {"CUST-1", "CUST-2"}
    assert released, "no orphan claim was released in this sequence"


# ---- what makes a run rebuild in full -----------------------------------------------------------


def last_commit(lake: LakeFixture, layer: str, table: str) -> dict:
    return DeltaTable(lake.lake.table_uri(layer, table)).history(1)[0]


def rebuilt(lake: LakeFixture, versions: dict, after: dict) -> set[str]:
    """The silver and gold tables a run overwrote whole (not merged, not left alone)."""
    out = set()
    for name in [*(f"silver/{s}" for s in SILVER), *(f"gold/{g}" for g in GOLD)]:
        if after[name] == versions[name]:
            continue
        commit = last_commit(lake, *name.split("/"))
        parameters = commit.get("operationParameters", {})
        if commit["operation"] == "WRITE" and parameters.get("mode") == "Overwrite":
            out.add(name + (" (part)" if parameters.get("predicate") else ""))
    return out


def test_as_of_and_code_version_changes_rebuild_what_depends_on_them(
    refreshed_lake: LakeFixture, monkeypatch
):
    from petinsure_assets import catalog, resources
    from tests.test_noop_and_maintenance import delta_versions

    lake = refreshed_lake  # write_base(lake, GOOD_CLAIMS), refreshed as of AS_OF
    # A new as-of date: every gold table is rebuilt, silver is left alone.
    before = delta_versions(lake.root)
    lake.refresh(as_of="2025-07-31", snapshot=False)
    after = delta_versions(lake.root)
    assert rebuilt(lake, before, after) == {f"gold/{g}" for g in GOLD}
    assert all(after[f"silver/{s}"] == before[f"silver/{s}"] for s in SILVER)

    # A revised silver SQL file (a new code version of dim_providers): that table and its
    # quarantine rows are rebuilt, then the gold tables that read it (a full rebuild of an input
    # rebuilds them too); the customer tables, which do not read providers, are left alone.
    read = catalog._read
    revised = catalog.SQL_DIR / "silver" / "dim_providers.sql"
    monkeypatch.setattr(
        catalog, "_read", lambda path: read(path) + ("\n-- revised" if path == revised else "")
    )
    before = after
    lake.refresh(as_of="2025-07-31", snapshot=False)
    after = delta_versions(lake.root)
    assert rebuilt(lake, before, after) == {
        "silver/dim_providers",
        "silver/quarantine (part)",
        "gold/provider_performance",
        "gold/claims_analytics",
    }
    monkeypatch.undo()

    # A new engine version (Python code that computes the tables changed): everything.
    monkeypatch.setattr(resources, "ENGINE_VERSION", "test-" + resources.ENGINE_VERSION)
    before = after
    lake.refresh(as_of="2025-07-31", snapshot=False)
    after = delta_versions(lake.root)
    assert rebuilt(lake, before, after) == {
        *(f"silver/{s}" for s in SILVER if s != QUARANTINE),
        "silver/quarantine (part)",
        *(f"gold/{g}" for g in GOLD),
    }
    # And nothing else: the same run again writes nothing.
    before = after
    lake.refresh(as_of="2025-07-31", snapshot=False)
    assert delta_versions(lake.root) == before


# ---- checks of an incremental run --------------------------------------------------------------


def test_incremental_checks_catch_a_duplicate_key_in_the_run_that_brings_it(
    refreshed_lake: LakeFixture, monkeypatch
):
    from petinsure_assets import silver

    lake = refreshed_lake
    # A bug in the merge: the key is never matched, so a newer version of CLM-1 is added as a
    # second row instead of replacing the first.
    monkeypatch.setattr(silver, "merge_predicate", lambda con, spec: "false")
    newer = json.loads(claim("CLM-1", "2025-02-10", "210.00", "150.00"))
    newer["updated_at"] = "2025-03-01T00:00:00"
    lake.write_raw("claims", "CLM-1_20250301_000000_000000.json", json.dumps(newer))
    summary = run_refresh(str(lake.root), as_of=AS_OF, log_level="CRITICAL", snapshot=False)
    assert not summary.success
    assert summary.failures == [
        "silver_fact_claims: dagster._core.errors.DagsterAssetCheckFailedError: 1 blocking asset "
        "check failed with ERROR severity:\n"
        "silver/fact_claims: claim_id_unique"
    ]
    history = lake.rows("gold", "_check_history", order_by="evaluated_at DESC, check_name")
    failed = [(h["check_name"], h["failing_rows"]) for h in history if not h["passed"]]
    assert failed == [("claim_id_unique", 1)]
    assert last_commit(lake, "silver", "fact_claims")["operation"] == "MERGE"


def test_incremental_checks_catch_an_orphan_in_the_run_that_brings_it(
    refreshed_lake: LakeFixture, monkeypatch
):
    from petinsure_assets import silver

    lake = refreshed_lake
    # A bug in the rules: orphans pass. The claim of an unknown customer reaches silver.
    statements = silver.silver_statements
    monkeypatch.setattr(
        silver,
        "silver_statements",
        lambda spec, catalog: [
            statements(spec, catalog)[0],
            f"UPDATE {spec.entity.name}_staged SET _reject_reason = NULL, _reject_detail = NULL, "
            "_rejected_record = NULL WHERE _reject_reason = 'orphan_fk'",
            *statements(spec, catalog)[1:],
        ],
    )
    lake.write_raw(
        "claims",
        "CLM-9_20250301_000000_000000.json",
        claim("CLM-9", "2025-03-01", "50.00", "10.00", customer="CUST-404"),
    )
    summary = run_refresh(str(lake.root), as_of=AS_OF, log_level="CRITICAL", snapshot=False)
    assert summary.failures == [
        "silver_fact_claims: dagster._core.errors.DagsterAssetCheckFailedError: 1 blocking asset "
        "check failed with ERROR severity:\n"
        "silver/fact_claims: customer_id_in_dim_customers"
    ]
    assert last_commit(lake, "silver", "fact_claims")["operation"] == "MERGE"


# ---- a run stopped between its two commits -------------------------------------------------------


def test_a_run_stopped_between_table_and_quarantine_commits_heals_in_the_next(
    refreshed_lake: LakeFixture, tmp_path: Path, monkeypatch
):
    from petinsure_assets.lake import Lake

    lake = refreshed_lake  # write_base(lake, GOOD_CLAIMS), refreshed as of AS_OF
    # A claim of a customer, pet and policy that do not exist yet: quarantined (orphan_fk).
    lake.write_raw(
        "claims",
        "claims_orphan.jsonl",
        claim(
            "CLM-8", "2025-04-01", "80.00", "10.00", customer="CUST-8", policy="POL-8", pet="PET-8"
        )
        + "\n",
    )
    lake.refresh(as_of=AS_OF, snapshot=False)
    assert [r["reason"] for r in lake.rows("silver", QUARANTINE) if r["record_key"] == "CLM-8"] == [
        "orphan_fk"
    ]

    # Its parents arrive with a bad claim; the step stops right after fact_claims' table commit
    # (the released orphan added, the cursor moved) and before the quarantine commit that would
    # remove the orphan and add the bad claim (as when the process is killed there).
    for entity, record in parent_records("CUST-8", "PET-8", "POL-8").items():
        record_id = next(iter(record.values()))
        lake.write_raw(entity, f"{record_id}_20250101_000000_000000.json", json.dumps(record))
    lake.write_raw(
        "claims", "claims_bad.jsonl", claim("CLM-9", "2025-04-02", "-1.00", "0.00") + "\n"
    )
    merge = Lake.merge

    def dies_at_the_claims_quarantine(self, uri, data, **kwargs):
        if uri.endswith(f"/{QUARANTINE}") and "'claims'" in kwargs["on"]:
            raise OSError("the machine went away")
        return merge(self, uri, data, **kwargs)

    monkeypatch.setattr(Lake, "merge", dies_at_the_claims_quarantine)
    stopped = run_refresh(str(lake.root), as_of=AS_OF, log_level="CRITICAL", snapshot=False)
    assert [f.split(":")[0] for f in stopped.failures] == ["silver_fact_claims"]
    monkeypatch.undo()
    claims = {r["claim_id"] for r in lake.rows("silver", "fact_claims")}
    quarantined = {r["record_key"] for r in lake.rows("silver", QUARANTINE)}
    assert "CLM-8" in claims and "CLM-8" in quarantined and "CLM-9" not in quarantined

    # The next run starts from the quarantine's older cursor and finishes the work: the lake
    # equals a full rebuild of the same bronze.
    lake.refresh(as_of=AS_OF, snapshot=False)
    rebuilt = LakeFixture(tmp_path / "rebuilt")
    shutil.copytree(lake.root, rebuilt.root)
    rebuilt.refresh(as_of=AS_OF, snapshot=False, full_refresh=True)
    assert tables(lake) == tables(rebuilt)
    quarantined = {r["record_key"]: r["reason"] for r in lake.rows("silver", QUARANTINE)}
    assert "CLM-8" not in quarantined and quarantined["CLM-9"] == "negative_amount"
