"""Hostile raw files and moments: each fails only itself, is named in the ledger, and every raw
record is accounted for (raw records in = bronze rows = silver before dedup + quarantine).

The file cases share one lake refreshed once through the CLI (exit status 0); the moments (a file
rewritten or vanishing while bronze reads it) run bronze alone, with a hook at that moment."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from petinsure_assets import contracts, ingest
from petinsure_assets.cli import main
from petinsure_assets.lake import Lake
from tests.conftest import LakeFixture
from tests.test_pipeline import AS_OF, CUSTOMERS, PETS, PROVIDERS, claim, write_base


def account(lake: LakeFixture, entity: contracts.Entity, source_file: str) -> tuple[int, int, dict]:
    """(bronze rows, of them valid: in silver before dedup, quarantined by reason) of one raw
    file; asserts that every bronze row of it is in exactly one of the two."""
    bronze = [
        r for r in lake.rows("bronze", entity.bronze_table) if r["_source_file"] == source_file
    ]
    quarantine = [
        q
        for q in lake.rows("silver", "quarantine")
        if q["entity"] == entity.name and q["source_file"] == source_file
    ]
    silver_table = "fact_claims" if entity is contracts.CLAIMS else f"dim_{entity.name}"
    silver_keys = {r[entity.key] for r in lake.rows("silver", silver_table)}
    quarantined_lines = {q["source_line"] for q in quarantine}
    valid = [r for r in bronze if r["_source_line"] not in quarantined_lines]
    assert len(quarantined_lines) == len(quarantine)
    assert all(r[entity.key] in silver_keys for r in valid)
    return len(bronze), len(valid), dict(Counter(q["reason"] for q in quarantine))


def ledger(lake: LakeFixture, source_file: str) -> list[tuple]:
    return [
        (r["status"], r["rows"], r["bad_rows"], r["error"])
        for r in lake.rows("bronze", "_file_ledger", order_by="recorded_at")
        if r["source_file"] == source_file
    ]


def bronze(lake: LakeFixture, entity: contracts.Entity, source_file: str) -> list[dict]:
    return [
        r
        for r in lake.rows("bronze", entity.bronze_table, order_by="_source_line")
        if r["_source_file"] == source_file
    ]


def quick(claim_id: str, **changes) -> dict:
    return {**json.loads(claim(claim_id, "2025-04-01", "10.00", "5.00")), **changes}


def line(record: dict) -> str:
    return json.dumps(record)


CUSTOMER_HEADER = CUSTOMERS.strip().splitlines()[0]
PROVIDER_HEADER = PROVIDERS.strip().splitlines()[0]
PROVIDER_ROW = (
    "PRV-{n},Vet {n},General Practice,2 Oak,Austin,TX,78701,5551112222,true,4.5,Dogs,2024-01-01"
)


def write_bytes(lake: LakeFixture, entity: str, name: str, data: bytes) -> Path:
    path = lake.root / "raw" / entity / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[LakeFixture, int, str]:
    """The base lake plus one hostile file per case, refreshed once by `petinsure refresh`."""
    root = tmp_path_factory.mktemp("hostile")
    lake = LakeFixture(root / "lake")
    write_base(lake)

    # JSON keys no path can name, nested values, a repeated key, a non-object, blank lines.
    lake.write_raw("claims", "keys.jsonl", line({**quick("CLM-10"), 'we"ird': "x", "": 1}) + "\n")
    lake.write_raw(
        "claims",
        "nested.jsonl",
        "\n".join(
            [
                line(quick("CLM-11", policy_id={"id": "POL-1"})),
                line(quick("CLM-12", denial_reason=["late", "no receipt"])),
                "[1, 2]",
            ]
        )
        + "\n",
    )
    write_bytes(
        lake,
        "claims",
        "dupkey.jsonl",
        (line(quick("CLM-13"))[:-1] + ', "claim_amount": "999.00"}\n').encode(),
    )
    write_bytes(
        lake,
        "claims",
        "blank.jsonl",
        ("\n" + line(quick("CLM-14")) + "\n   \n\r\n" + line(quick("CLM-15")) + "\n\n").encode(),
    )
    write_bytes(
        lake,
        "pets",
        "pets_blank.csv",
        (
            PETS.strip().splitlines()[0]
            + "\n"
            + PETS.strip().splitlines()[1].replace("PET-1", "PET-3")
            + "\n\n   \n"
            + PETS.strip().splitlines()[1].replace("PET-1", "PET-4")
            + "\n\nPET-5,CUST-1\n"
        ).encode(),
    )
    write_bytes(lake, "providers", "empty.csv", b"  \n\n")

    # File-level problems.
    write_bytes(
        lake,
        "customers",
        "customers_nokey.csv",
        b"first_name,last_name,email\nAnn,Lee,ann@example.com\nBob,Ray,bob@example.com\n",
    )
    write_bytes(
        lake,
        "providers",
        "providers_semi.csv",
        (
            PROVIDER_HEADER.replace(",", ";")
            + "\n"
            + PROVIDER_ROW.format(n=4).replace(",", ";")
            + "\n"
        ).encode(),
    )
    write_bytes(
        lake,
        "providers",
        "providers_upper.csv",
        (PROVIDER_HEADER.upper() + "\n" + PROVIDER_ROW.format(n=5) + "\n").encode(),
    )
    write_bytes(
        lake,
        "providers",
        "providers_utf16.csv",
        (PROVIDER_HEADER + "\n" + PROVIDER_ROW.format(n=6) + "\n").encode("utf-16"),
    )
    write_bytes(lake, "claims", "utf16le.jsonl", (line(quick("CLM-20")) + "\n").encode("utf-16-le"))
    write_bytes(
        lake,
        "customers",
        "customers_latin1.csv",
        (
            CUSTOMER_HEADER
            + "\n"
            + "CUST-3,José,Ruiz,jose@example.com,5551234560,1 Main St,Austin,TX,78701,1980-01-02,"
            "2023-01-15,Family,0,2024-01-01T00:00:00\n"
            + "CUST-4,Eve,Ng,eve@example.com,5551234561,1 Main St,Austin,TX,78701,1980-01-02,"
            "2023-01-15,Family,0,2024-01-01T00:00:00\n"
        ).encode("latin-1"),
    )
    write_bytes(lake, "claims", "CLM-18.json", line(quick("CLM-18")).encode())
    write_bytes(
        lake,
        "claims",
        "CLM-17_20250401_101500_000001.json",
        b"\xef\xbb\xbf" + line(quick("CLM-17")).encode(),
    )

    # Quotes: one that closes on a later line, one that never closes, a quoted line break.
    pet = PETS.strip().splitlines()[1]
    header = PETS.strip().splitlines()[0]
    write_bytes(
        lake,
        "pets",
        "pets_quote.csv",
        "\n".join(
            [
                header,
                pet.replace("PET-1,CUST-1,Rex", 'PET-6,CUST-1,"Rex'),
                'PET-7",Dog',
                pet.replace("PET-1", "PET-8"),
            ]
        ).encode()
        + b"\n",
    )
    write_bytes(
        lake,
        "pets",
        "pets_unterminated.csv",
        "\n".join(
            [
                header,
                pet.replace("PET-1", "PET-9"),
                pet.replace("PET-1,CUST-1,Rex", 'PET-10,CUST-1,"Rex'),
                pet.replace("PET-1", "PET-11"),
            ]
        ).encode()
        + b"\n",
    )
    write_bytes(
        lake,
        "pets",
        "pets_multiline.csv",
        "\n".join(
            [
                header,
                pet.replace("PET-1,CUST-1,Rex", 'PET-12,CUST-1,"Rex\nJr"'),
                pet.replace("PET-1", "PET-13"),
            ]
        ).encode()
        + b"\n",
    )
    write_bytes(lake, "claims", "zero.jsonl", b"")

    # The raw zone's boundary: extensions in any case, links, the same content twice, files that
    # are not read (another extension, a subfolder).
    write_bytes(lake, "claims", "claims.txt", (line(quick("CLM-21")) + "\n").encode())
    write_bytes(lake, "claims", "2025/claims.jsonl", (line(quick("CLM-22")) + "\n").encode())
    lake.write_raw("claims", "MORE.JSONL", line(quick("CLM-16")) + "\n")
    outside = root / "outside.jsonl"
    outside.write_text(line(quick("CLM-19")) + "\n")
    os.symlink(outside, lake.root / "raw" / "claims" / "outside.jsonl")
    os.symlink(
        lake.root / "raw" / "claims" / "claims.jsonl", lake.root / "raw" / "claims" / "link.jsonl"
    )
    write_bytes(
        lake, "claims", "copy.jsonl", (lake.root / "raw" / "claims" / "claims.jsonl").read_bytes()
    )

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        status = main(["refresh", "--lake", str(lake.root), "--as-of", AS_OF])
    return lake, status, out.getvalue()


def test_the_refresh_succeeds_and_names_every_file_needing_a_look(hostile):
    lake, status, output = hostile
    assert status == 0, output
    listed = output.split("raw files needing a look (bronze/_file_ledger):\n")[1].splitlines()
    listed = [entry.strip() for entry in listed if entry.startswith("    ")]
    assert listed == [
        "raw/claims/2025: refused: a folder: only files directly in raw/claims/ are read",
        "raw/claims/CLM-18.json: failed: file name does not match "
        "CLM-<ID>_<YYYYMMDD>_<HHMMSS>_<ffffff>.json",
        "raw/claims/claims.txt: refused: not a .csv, .jsonl, .json file (never read)",
        "raw/claims/copy.jsonl: duplicate: same content as raw/claims/claims.jsonl",
        "raw/claims/link.jsonl: duplicate: same content as raw/claims/claims.jsonl",
        "raw/claims/outside.jsonl: refused: symbolic link pointing outside raw/ (not followed)",
        "raw/claims/utf16le.jsonl: ingested: decoded as UTF-16-LE (no byte-order mark, NUL bytes); "
        "expected UTF-8",
        "raw/claims/zero.jsonl: ingested: no records (empty or whitespace only)",
        "raw/customers/customers_latin1.csv: ingested: 1 line(s) not UTF-8, kept as malformed records",
        "raw/customers/customers_nokey.csv: failed: header has no column customer_id; "
        "found: first_name, last_name, email",
        "raw/providers/empty.csv: ingested: no records (empty or whitespace only)",
        "raw/providers/providers_semi.csv: failed: header has no column provider_id; found: "
        + PROVIDER_HEADER.replace(",", ";")
        + " (the header looks semicolon-delimited; expected commas)",
        "raw/providers/providers_upper.csv: ingested: header matched case-insensitively: "
        + ", ".join(f"{c.upper()} as {c}" for c in contracts.PROVIDERS.columns),
        "raw/providers/providers_utf16.csv: ingested: decoded as UTF-16 (byte-order mark); "
        "expected UTF-8",
    ]


def test_json_keys_with_a_double_quote_or_empty_go_to_extra_columns(hostile):
    lake = hostile[0]
    assert account(lake, contracts.CLAIMS, "raw/claims/keys.jsonl") == (1, 1, {})
    row = bronze(lake, contracts.CLAIMS, "raw/claims/keys.jsonl")[0]
    assert json.loads(row["_extra_columns"]) == {'we"ird': "x", "": 1}
    assert ledger(lake, "raw/claims/keys.jsonl") == [("ingested", 1, 0, None)]


def test_objects_and_arrays_in_scalar_columns_are_kept_as_json_text(hostile):
    lake = hostile[0]
    # CLM-11's policy_id is an object: no such policy (orphan_fk); CLM-12's denial reason is an
    # array: a soft field, kept as text; a line that is an array is malformed.
    assert account(lake, contracts.CLAIMS, "raw/claims/nested.jsonl") == (
        3,
        1,
        {"orphan_fk": 1, "malformed_record": 1},
    )
    rows = bronze(lake, contracts.CLAIMS, "raw/claims/nested.jsonl")
    assert [
        (r["claim_id"], r["policy_id"], r["denial_reason"], r["_parse_error"]) for r in rows
    ] == [
        ("CLM-11", '{"id":"POL-1"}', None, None),
        ("CLM-12", "POL-1", '["late","no receipt"]', None),
        (None, None, None, "JSON value is a array, not an object"),
    ]


def test_a_repeated_json_key_is_a_malformed_record(hostile):
    lake = hostile[0]
    assert account(lake, contracts.CLAIMS, "raw/claims/dupkey.jsonl") == (
        1,
        0,
        {"malformed_record": 1},
    )
    row = bronze(lake, contracts.CLAIMS, "raw/claims/dupkey.jsonl")[0]
    assert (row["claim_id"], row["_parse_error"]) == (None, 'duplicate key "claim_amount"')
    assert row["_raw_record"].endswith('"claim_amount": "999.00"}')


def test_blank_lines_and_whitespace_only_files_are_not_records(hostile):
    lake = hostile[0]
    assert account(lake, contracts.CLAIMS, "raw/claims/blank.jsonl") == (2, 2, {})
    assert [
        r["_source_line"] for r in bronze(lake, contracts.CLAIMS, "raw/claims/blank.jsonl")
    ] == [2, 5]
    assert account(lake, contracts.PETS, "raw/pets/pets_blank.csv") == (
        3,
        2,
        {"malformed_record": 1},
    )
    assert [
        (r["pet_id"], r["_source_line"], r["_raw_record"])
        for r in bronze(lake, contracts.PETS, "raw/pets/pets_blank.csv")
    ] == [("PET-3", 2, None), ("PET-4", 5, None), (None, 7, "PET-5,CUST-1")]
    assert account(lake, contracts.PROVIDERS, "raw/providers/empty.csv") == (0, 0, {})
    assert ledger(lake, "raw/providers/empty.csv") == [
        ("ingested", 0, 0, "no records (empty or whitespace only)")
    ]


def test_a_quote_running_over_lines_spoils_each_of_its_lines_only(hostile):
    lake = hostile[0]
    # The quote opened on line 2 closes on line 3: both lines malformed, line 4 read as usual.
    assert account(lake, contracts.PETS, "raw/pets/pets_quote.csv") == (
        3,
        1,
        {"malformed_record": 2},
    )
    rows = bronze(lake, contracts.PETS, "raw/pets/pets_quote.csv")
    assert [(r["pet_id"], r["_source_line"]) for r in rows] == [(None, 2), (None, 3), ("PET-8", 4)]
    assert rows[1]["_raw_record"] == 'PET-7",Dog'
    assert rows[1]["_parse_error"] == "CSV row has the wrong number of fields (header has 14)"
    # A quote that never closes runs to the end of the file: every line after it is kept.
    assert account(lake, contracts.PETS, "raw/pets/pets_unterminated.csv") == (
        3,
        1,
        {"malformed_record": 2},
    )
    rows = bronze(lake, contracts.PETS, "raw/pets/pets_unterminated.csv")
    assert [(r["pet_id"], r["_source_line"], (r["_raw_record"] or "")[:7]) for r in rows] == [
        ("PET-9", 2, ""),
        (None, 3, "PET-10,"),
        (None, 4, "PET-11,"),
    ]


def test_a_quoted_line_break_is_part_of_its_value(hostile):
    lake = hostile[0]
    assert account(lake, contracts.PETS, "raw/pets/pets_multiline.csv") == (2, 2, {})
    rows = bronze(lake, contracts.PETS, "raw/pets/pets_multiline.csv")
    assert [(r["pet_id"], r["pet_name"]) for r in rows] == [
        ("PET-12", "Rex\nJr"),
        ("PET-13", "Rex"),
    ]


def test_an_empty_file_has_no_records(hostile):
    lake = hostile[0]
    assert account(lake, contracts.CLAIMS, "raw/claims/zero.jsonl") == (0, 0, {})
    assert ledger(lake, "raw/claims/zero.jsonl") == [
        ("ingested", 0, 0, "no records (empty or whitespace only)")
    ]


def test_another_extension_or_a_subfolder_is_refused_by_name(hostile):
    lake = hostile[0]
    assert ledger(lake, "raw/claims/claims.txt") == [
        ("refused", 0, 0, "not a .csv, .jsonl, .json file (never read)")
    ]
    assert ledger(lake, "raw/claims/2025") == [
        ("refused", 0, 0, "a folder: only files directly in raw/claims/ are read")
    ]
    assert {"CLM-21", "CLM-22"}.isdisjoint(r["claim_id"] for r in lake.rows("bronze", "claims_raw"))


def test_csv_header_without_the_key_column_fails_the_file_not_the_run(hostile):
    lake = hostile[0]
    source = "raw/customers/customers_nokey.csv"
    assert account(lake, contracts.CUSTOMERS, source) == (2, 0, {"malformed_record": 2})
    reason = "header has no column customer_id; found: first_name, last_name, email"
    assert ledger(lake, source) == [("failed", 2, 2, reason)]
    assert [
        (r["_source_line"], r["_raw_record"], r["_parse_error"])
        for r in bronze(lake, contracts.CUSTOMERS, source)
    ] == [(2, "Ann,Lee,ann@example.com", reason), (3, "Bob,Ray,bob@example.com", reason)]


def test_semicolon_delimited_csv_fails_with_a_hint(hostile):
    lake = hostile[0]
    source = "raw/providers/providers_semi.csv"
    assert account(lake, contracts.PROVIDERS, source) == (1, 0, {"malformed_record": 1})
    [(status, rows, bad, error)] = ledger(lake, source)
    assert (status, rows, bad) == ("failed", 1, 1)
    assert error.endswith("(the header looks semicolon-delimited; expected commas)")


def test_csv_header_in_another_case_is_matched(hostile):
    lake = hostile[0]
    assert account(lake, contracts.PROVIDERS, "raw/providers/providers_upper.csv") == (1, 1, {})
    row = bronze(lake, contracts.PROVIDERS, "raw/providers/providers_upper.csv")[0]
    assert (row["provider_id"], row["provider_name"], row["_extra_columns"]) == (
        "PRV-5",
        "Vet 5",
        None,
    )


def test_utf16_files_are_decoded_with_a_note(hostile):
    lake = hostile[0]
    assert account(lake, contracts.PROVIDERS, "raw/providers/providers_utf16.csv") == (1, 1, {})
    row = bronze(lake, contracts.PROVIDERS, "raw/providers/providers_utf16.csv")[0]
    assert (row["provider_id"], row["_source_line"]) == ("PRV-6", 2)
    assert account(lake, contracts.CLAIMS, "raw/claims/utf16le.jsonl") == (1, 1, {})


def test_a_latin1_line_spoils_only_itself(hostile):
    lake = hostile[0]
    source = "raw/customers/customers_latin1.csv"
    assert account(lake, contracts.CUSTOMERS, source) == (2, 1, {"malformed_record": 1})
    rows = bronze(lake, contracts.CUSTOMERS, source)
    assert [(r["customer_id"], r["_source_line"], r["_parse_error"]) for r in rows] == [
        (None, 2, "not UTF-8"),
        ("CUST-4", 3, None),
    ]
    assert rows[0]["_raw_record"].startswith("CUST-3,Jos\\xe9,Ruiz,")


def test_realtime_file_with_a_wrong_name_fails_alone(hostile):
    lake = hostile[0]
    assert account(lake, contracts.CLAIMS, "raw/claims/CLM-18.json") == (
        1,
        0,
        {"malformed_record": 1},
    )
    assert ledger(lake, "raw/claims/CLM-18.json") == [
        ("failed", 1, 1, "file name does not match CLM-<ID>_<YYYYMMDD>_<HHMMSS>_<ffffff>.json")
    ]


def test_realtime_file_with_a_utf8_bom_is_accepted(hostile):
    lake = hostile[0]
    source = "raw/claims/CLM-17_20250401_101500_000001.json"
    assert account(lake, contracts.CLAIMS, source) == (1, 1, {})
    assert ledger(lake, source) == [("ingested", 1, 0, None)]


def test_extensions_match_in_any_case(hostile):
    lake = hostile[0]
    assert account(lake, contracts.CLAIMS, "raw/claims/MORE.JSONL") == (1, 1, {})


def test_a_link_out_of_the_raw_zone_is_refused_and_never_read(hostile):
    lake = hostile[0]
    assert account(lake, contracts.CLAIMS, "raw/claims/outside.jsonl") == (0, 0, {})
    assert "CLM-19" not in {r["claim_id"] for r in lake.rows("bronze", "claims_raw")}
    assert ledger(lake, "raw/claims/outside.jsonl") == [
        ("refused", 0, 0, "symbolic link pointing outside raw/ (not followed)")
    ]


def test_same_content_under_another_name_is_a_duplicate_and_counted_once(hostile):
    lake = hostile[0]
    for source in ("raw/claims/copy.jsonl", "raw/claims/link.jsonl"):
        assert account(lake, contracts.CLAIMS, source) == (0, 0, {})
        assert ledger(lake, source) == [
            ("duplicate", 0, 0, "same content as raw/claims/claims.jsonl")
        ]
    # CUST-1's valid claims: CLM-1, CLM-2 (150 + 80 paid) and CLM-10, 12, 14, 15, 16, 17, 20 (5
    # each).
    customer = [r for r in lake.rows("gold", "customer_360_view") if r["customer_id"] == "CUST-1"][
        0
    ]
    assert (customer["total_claims"], str(customer["total_paid"])) == (9, "265.00")


def test_every_raw_record_is_accounted_for_and_nothing_is_read_twice(hostile):
    lake = hostile[0]
    # Raw records per entity, by hand: claims 2 + 1 + 3 + 1 + 2 + 1 (CLM-18) + 1 (CLM-17) + 1
    # (MORE.JSONL) + 1 (UTF-16); customers 2 + 2 + 2; pets 2 + 3 + 3 (quote) + 3 (unterminated)
    # + 2 (line break); providers 1 + 1 + 1 + 1; policies 2.
    expected = {"claims": 13, "customers": 6, "pets": 13, "providers": 4, "policies": 2}
    assert {
        e.name: len(lake.rows("bronze", e.bronze_table)) for e in contracts.ENTITIES
    } == expected
    quarantined = Counter(q["entity"] for q in lake.rows("silver", "quarantine"))
    assert quarantined == {"claims": 4, "customers": 3, "pets": 5, "providers": 1}
    # A second look at the raw zone reads and records nothing: every file is settled.
    for entity in contracts.ENTITIES:
        plan = ingest.plan_files(lake.lake, entity, log=lambda _: None)
        shutil.rmtree(plan.staging)
        assert (plan.todo, plan.settled) == ([], []), entity.name


# ---- moments ------------------------------------------------------------------------------------


def run_bronze(lake: Lake, entity: contracts.Entity, batch_id: str, log: list[str]) -> None:
    """The bronze asset without Dagster: ingest, commit, record."""
    write = ingest.ingest(lake, entity, batch_id, log=log.append)
    if write is not None:
        uri = lake.table_uri("bronze", entity.bronze_table)
        version = lake.write(
            uri, write.data, mode=write.mode, commit_metadata=write.commit_metadata
        )
        write.on_commit(version)


OLD = "\n".join(line(quick(f"CLM-{n}")) for n in (1, 2)) + "\n"
NEW = "\n".join(line(quick(f"CLM-{n}")) for n in (3, 4, 5)) + "\n"


def claims_in_bronze(lake: LakeFixture) -> list[str]:
    return [r["claim_id"] for r in lake.rows("bronze", "claims_raw", order_by="claim_id")]


def test_a_file_rewritten_while_it_is_read_is_ingested_as_one_version(
    lake: LakeFixture, monkeypatch
):
    path = lake.write_raw("claims", "claims.jsonl", OLD)
    prepare = ingest._prepare_text

    def rewrite_then_prepare(staged: str):  # after the copy was hashed, before it is parsed
        path.write_text(NEW)
        monkeypatch.setattr(ingest, "_prepare_text", prepare)
        return prepare(staged)

    monkeypatch.setattr(ingest, "_prepare_text", rewrite_then_prepare)
    log: list[str] = []
    run_bronze(lake.lake, contracts.CLAIMS, "run-1", log)
    assert claims_in_bronze(lake) == ["CLM-1", "CLM-2"]
    [entry] = lake.rows("bronze", "_file_ledger")
    assert (entry["sha256"], entry["size_bytes"]) == (
        hashlib.sha256(OLD.encode()).hexdigest(),
        len(OLD),
    )

    run_bronze(lake.lake, contracts.CLAIMS, "run-2", log)  # the new content, once
    run_bronze(lake.lake, contracts.CLAIMS, "run-3", log)
    assert claims_in_bronze(lake) == ["CLM-1", "CLM-2", "CLM-3", "CLM-4", "CLM-5"]
    assert [
        (r["batch_id"], r["sha256"]) for r in lake.rows("bronze", "_file_ledger", "recorded_at")
    ] == [
        ("run-1", hashlib.sha256(OLD.encode()).hexdigest()),
        ("run-2", hashlib.sha256(NEW.encode()).hexdigest()),
    ]


def test_a_file_rewritten_after_listing_is_read_as_its_new_content_once(
    lake: LakeFixture, monkeypatch
):
    path = lake.write_raw("claims", "claims.jsonl", OLD)
    listing = ingest.list_raw_files

    def list_then_rewrite(*args):
        files = listing(*args)
        path.write_text(NEW)
        return files

    monkeypatch.setattr(ingest, "list_raw_files", list_then_rewrite)
    run_bronze(lake.lake, contracts.CLAIMS, "run-1", [])
    monkeypatch.setattr(ingest, "list_raw_files", listing)
    run_bronze(lake.lake, contracts.CLAIMS, "run-2", [])
    assert claims_in_bronze(lake) == ["CLM-3", "CLM-4", "CLM-5"]
    [entry] = lake.rows("bronze", "_file_ledger")
    assert (entry["status"], entry["sha256"], entry["size_bytes"]) == (
        "ingested",
        hashlib.sha256(NEW.encode()).hexdigest(),
        len(NEW),
    )


def test_a_file_that_vanishes_after_listing_is_skipped(lake: LakeFixture, monkeypatch):
    lake.write_raw("claims", "claims.jsonl", OLD)
    gone = lake.write_raw("claims", "gone.jsonl", NEW)
    listing = ingest.list_raw_files

    def list_then_delete(*args):
        files = listing(*args)
        gone.unlink()
        return files

    monkeypatch.setattr(ingest, "list_raw_files", list_then_delete)
    log: list[str] = []
    run_bronze(lake.lake, contracts.CLAIMS, "run-1", log)
    assert claims_in_bronze(lake) == ["CLM-1", "CLM-2"]
    assert "claims: raw/claims/gone.jsonl vanished before it was read; skipped" in log
    assert [r["source_file"] for r in lake.rows("bronze", "_file_ledger")] == [
        "raw/claims/claims.jsonl"
    ]

    monkeypatch.setattr(ingest, "list_raw_files", listing)
    lake.write_raw("claims", "gone.jsonl", NEW)  # back again: the next run sees it
    run_bronze(lake.lake, contracts.CLAIMS, "run-2", log)
    assert claims_in_bronze(lake) == ["CLM-1", "CLM-2", "CLM-3", "CLM-4", "CLM-5"]


def test_a_utf8_bom_is_accepted_on_batch_files_too(lake: LakeFixture):
    write_bytes(lake, "claims", "claims.jsonl", b"\xef\xbb\xbf" + OLD.encode())
    write_bytes(
        lake,
        "providers",
        "providers.csv",
        b"\xef\xbb\xbf" + (PROVIDER_HEADER + "\n" + PROVIDER_ROW.format(n=7) + "\n").encode(),
    )
    for entity in (contracts.CLAIMS, contracts.PROVIDERS):
        run_bronze(lake.lake, entity, "run-1", [])
    assert [
        (r["claim_id"], r["_source_line"], r["_parse_error"])
        for r in lake.rows("bronze", "claims_raw", order_by="claim_id")
    ] == [("CLM-1", 1, None), ("CLM-2", 2, None)]
    assert [
        (r["provider_id"], r["_source_line"], r["_parse_error"])
        for r in lake.rows("bronze", "providers_raw")
    ] == [("PRV-7", 2, None)]
