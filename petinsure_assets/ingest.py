"""Raw files → bronze rows: parsing, the file ledger, exactly-once appends.

Every source column is kept as text. A record that cannot be parsed (a JSON line that is not a
JSON object or repeats a key, a CSV row with the wrong number of fields, a line that is not valid
UTF-8) becomes a bronze row with `_raw_record` and `_parse_error` set, so silver can quarantine it
with its reason: nothing is dropped and nothing is fatal. Columns a file has beyond the contract go
to `_extra_columns` as a JSON object. A JSON object or array where a column expects a scalar is kept
as its JSON text, for silver's rules to judge. Empty and whitespace-only lines are not records.

Each file is first copied (staged) to a local temporary folder while it is hashed; the copy is what
is parsed, so the ledger's sha256 is that of the bytes ingested even when the file changes or
vanishes meanwhile (a vanished file is skipped; the next run sees whatever is there then).

The file ledger (`bronze/_file_ledger`, a Delta table) records every file seen: path, size,
modification time, sha256, outcome (`status`, one of `STATUSES`, with `error` saying why):

    ingested   its records are in bronze (some may be malformed rows); `error` may carry a note
               (header matched case-insensitively, columns missing, lines not UTF-8, UTF-16)
    failed     the file as a whole is not what its format promises (CSV header without the key
               column, real-time file name not matching the pattern, parsing broke off): each of
               its lines is kept as a malformed row with the reason; or it could not be read at
               all (no sha256, tried again next run)
    unchanged  touched, but its content is what the ledger already holds: not read again
    duplicate  the same content as a file already ingested (`error` names it): not ingested again
    refused    not read at all: a symbolic link out of the raw zone, another extension than
               .csv/.jsonl/.json, a subfolder, or not a regular file

A file is read again only when its content changed: same size and mtime → skipped without reading;
otherwise staged and hashed, and skipped if the hash matches what was ingested. Each bronze append
is one Delta commit whose commit metadata names the files it ingested, and the ledger is brought up
to date from those commits first thing on every run, so a crash between the bronze commit and the
ledger write cannot ingest a file twice.

`_source_line` is the physical line for CSV and JSONL files (header = line 1 in a CSV), 1 for a
real-time single-record file. A CSV quote that runs over line breaks into a row with the wrong
number of fields (or to the end of the file) makes each of those lines a malformed record of its
own. (A valid CSV value with a quoted line break keeps its record whole but shifts the numbering
of the rows after it in that file by the breaks; the generator writes none.)
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.csv as pacsv

from petinsure_assets.contracts import BRONZE_METADATA, Entity, realtime_name_problem
from petinsure_assets.lake import Lake, TableWrite
from petinsure_assets.storage import StorageError

LEDGER_TABLE = "_file_ledger"
COMMIT_FILES_KEY = "petinsure.ingested_files"
# Bytes of CSV text per Arrow batch (pyarrow's block_size) handed to DuckDB and the Delta writer;
# bounds memory for huge files.
CSV_BLOCK_SIZE = 64 * 1024 * 1024
REALTIME_FILES_PER_BATCH = 5000
READ_CHUNK = 8 * 1024 * 1024
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "json"}  # matched case-insensitively

INGESTED, FAILED, UNCHANGED, DUPLICATE, REFUSED = (
    "ingested",
    "failed",
    "unchanged",
    "duplicate",
    "refused",
)
STATUSES = (INGESTED, FAILED, UNCHANGED, DUPLICATE, REFUSED)
# Statuses whose content is in bronze: a later file with the same sha256 is a duplicate of it.
IN_BRONZE = (INGESTED, FAILED)

LEDGER_SCHEMA = pa.schema(
    [
        ("entity", pa.string()),
        ("source_file", pa.string()),
        ("size_bytes", pa.int64()),
        ("modified_ns", pa.int64()),
        ("sha256", pa.string()),
        ("status", pa.string()),  # one of STATUSES
        ("rows", pa.int64()),
        ("bad_rows", pa.int64()),
        ("error", pa.string()),  # why (failed, duplicate, refused) or a note (ingested)
        ("batch_id", pa.string()),
        ("bronze_version", pa.int64()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)


def bronze_schema(entity: Entity) -> pa.Schema:
    fields = [pa.field(c, pa.string()) for c in entity.columns]
    for name in BRONZE_METADATA:
        if name == "_source_line":
            fields.append(pa.field(name, pa.int64()))
        elif name == "_ingested_at":
            fields.append(pa.field(name, pa.timestamp("us", tz="UTC")))
        else:
            fields.append(pa.field(name, pa.string()))
    return pa.schema(fields)


@dataclass
class RawFile:
    path: str  # where the parser reads it: the staged local copy (lake-relative before staging)
    source_file: str  # path relative to the lake root, e.g. raw/claims/claims.jsonl
    size_bytes: int
    modified_ns: int
    sha256: str | None = None
    refused: str | None = None  # why the storage will not read it
    data: bytes | None = None  # a staged real-time file (small): held in memory, not on disk

    @property
    def format(self) -> str | None:
        """csv, jsonl or json (a real-time single-record file), from the extension in any case."""
        return FORMATS.get(os.path.splitext(self.source_file)[1].lower())


@dataclass
class FileOutcome:
    file: RawFile
    status: str
    rows: int = 0
    bad_rows: int = 0
    error: str | None = None

    def note(self, text: str) -> None:
        self.error = f"{self.error}; {text}" if self.error else text


@dataclass
class IngestResult:
    entity: str
    bronze_version: int | None
    rows_added: int
    bad_rows_added: int
    files: list[FileOutcome] = field(default_factory=list)

    @property
    def files_ingested(self) -> int:
        return sum(1 for f in self.files if f.status in IN_BRONZE)

    @property
    def files_skipped(self) -> int:
        return sum(1 for f in self.files if f.status == UNCHANGED)

    def metadata(self) -> dict:
        problems = [
            f"{f.file.source_file}: {f.status}: {f.error}"
            for f in self.files
            if f.status in (FAILED, DUPLICATE, REFUSED)
        ]
        return {
            "rows_added": self.rows_added,
            "malformed_rows_added": self.bad_rows_added,
            "files_ingested": self.files_ingested,
            "files_unchanged": self.files_skipped,
            **{
                f"files_{s}": sum(1 for f in self.files if f.status == s)
                for s in (FAILED, DUPLICATE, REFUSED)
            },
            **({"file_problems": "\n".join(problems[:20])} if problems else {}),
        }


Log = Callable[[str], None]


def list_raw_files(lake: Lake, entity: Entity) -> list[RawFile]:
    """Files in raw/<entity>/, sorted by name; hidden and temporary (`.`, `_`) files ignored.
    Those that will not be read are listed with the reason (`refused`): a link out of the raw
    zone, an extension other than .csv, .jsonl or .json (any case), a subfolder."""
    folder = f"raw/{entity.name}"
    files = []
    for info in lake.files.list(folder):
        name = info.path.rsplit("/", 1)[-1]
        if name.startswith((".", "_")):
            continue
        refused = info.refused
        if os.path.splitext(name)[1].lower() not in FORMATS:
            refused = refused or f"not a {', '.join(FORMATS)} file (never read)"
        files.append(
            RawFile(
                path=info.path,
                source_file=info.path,
                size_bytes=info.size_bytes,
                modified_ns=info.modified_ns,
                refused=refused,
            )
        )
    for name in lake.files.list_dirs(folder):  # nothing in a subfolder is read: say so
        if not name.startswith((".", "_")):
            files.append(
                RawFile(
                    path=f"{folder}/{name}",
                    source_file=f"{folder}/{name}",
                    size_bytes=0,
                    modified_ns=0,
                    refused=f"a folder: only files directly in {folder}/ are read",
                )
            )
    return sorted(files, key=lambda f: f.source_file)


# ---- the ledger -------------------------------------------------------------------------------


def _ledger_uri(lake: Lake) -> str:
    return lake.table_uri("bronze", LEDGER_TABLE)


def _ledger_state(lake: Lake, entity: Entity) -> tuple[dict[str, dict], dict[str, str]]:
    """(the latest ledger entry per source file, the first file whose content is in bronze per
    sha256) for this entity."""
    uri = _ledger_uri(lake)
    if not lake.exists(uri):
        return {}, {}
    con = duckdb.connect()
    try:
        lake.register(con, "ledger", uri)
        params = {"entity": entity.name}
        rows = (
            con.sql(
                "SELECT * FROM ledger WHERE entity = $entity QUALIFY row_number() OVER "
                "(PARTITION BY source_file ORDER BY recorded_at DESC, bronze_version DESC) = 1",
                params=params,
            )
            .to_arrow_table()
            .to_pylist()
        )
        firsts = con.sql(
            "SELECT sha256, arg_min(source_file, (recorded_at, source_file)) AS f FROM ledger "
            f"WHERE entity = $entity AND sha256 IS NOT NULL AND status IN {IN_BRONZE} GROUP BY 1",
            params=params,
        ).fetchall()
    finally:
        con.close()
    return {r["source_file"]: r for r in rows}, dict(firsts)


def read_ledger(lake: Lake, entity: Entity) -> dict[str, dict]:
    """The latest ledger entry per source file of this entity."""
    return _ledger_state(lake, entity)[0]


def _recover_ledger(
    lake: Lake, entity: Entity, ledger: dict[str, dict], firsts: dict[str, str], log: Log
) -> None:
    """Add ledger rows for bronze commits the ledger does not know (a crash after the commit)."""
    uri = lake.table_uri("bronze", entity.bronze_table)
    if not lake.exists(uri):
        return
    known = max(
        (r["bronze_version"] for r in ledger.values() if r["bronze_version"] is not None),
        default=-1,
    )
    missing = []
    for commit in lake.delta_table(uri).history(limit=20):
        version = commit.get("version")
        payload = commit.get(COMMIT_FILES_KEY)
        if version is None or version <= known or not payload:
            continue
        for entry in json.loads(payload):
            missing.append({**entry, "bronze_version": version})
    if not missing:
        return
    log(f"{entity.name}: ledger recovered {len(missing)} file(s) from bronze commit metadata")
    now = datetime.now(UTC)
    rows = [
        {**{k: None for k in LEDGER_SCHEMA.names}, **m, "entity": entity.name, "recorded_at": now}
        for m in missing
    ]
    lake.write(_ledger_uri(lake), pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA), mode="append")
    for r in sorted(rows, key=lambda r: r["bronze_version"]):
        ledger[r["source_file"]] = r
        firsts.setdefault(r["sha256"], r["source_file"])


@dataclass
class Plan:
    todo: list[RawFile]  # staged copies to parse
    settled: list[FileOutcome]  # unchanged, duplicate, refused or unreadable: nothing to parse
    staging: str  # the local folder of the staged copies


def plan_files(lake: Lake, entity: Entity, log: Log) -> Plan:
    """Stage the new and changed raw files (copy and hash the same bytes) and settle the others;
    files whose size and mtime the ledger already holds are left out without being read."""
    ledger, firsts = _ledger_state(lake, entity)
    _recover_ledger(lake, entity, ledger, firsts, log)
    staging = tempfile.mkdtemp(prefix=f"petinsure-{entity.name}-")
    todo: list[RawFile] = []
    settled: list[FileOutcome] = []
    for f in list_raw_files(lake, entity):
        seen = ledger.get(f.source_file)
        if (
            seen
            and seen["size_bytes"] == f.size_bytes
            and seen["modified_ns"] == f.modified_ns
            and (seen["sha256"] is not None or seen["status"] == REFUSED)
        ):
            continue
        if f.refused:
            log(f"{entity.name}: {f.source_file} refused: {f.refused}")
            settled.append(FileOutcome(f, REFUSED, error=f.refused))
            continue
        # Real-time files are single records: staged in memory, batch files on local disk.
        local = io.BytesIO() if f.format == "json" else os.path.join(staging, f"{len(todo):06d}")
        try:
            staged = lake.files.stage(f.source_file, local)
        except StorageError as e:  # tried again next run: no sha256 is recorded
            log(f"{entity.name}: {f.source_file} could not be read: {e}")
            settled.append(FileOutcome(f, FAILED, error=f"could not be read: {e}"))
            continue
        if staged is None:
            log(f"{entity.name}: {f.source_file} vanished before it was read; skipped")
            continue
        f.size_bytes, f.modified_ns, f.sha256 = staged.size_bytes, staged.modified_ns, staged.sha256
        first = firsts.get(f.sha256)
        if seen and seen["sha256"] == f.sha256:
            settled.append(FileOutcome(f, UNCHANGED))
        elif first and first != f.source_file:
            log(f"{entity.name}: {f.source_file} has the same content as {first}; not ingested")
            settled.append(FileOutcome(f, DUPLICATE, error=f"same content as {first}"))
        else:
            if isinstance(local, str):
                f.path = local
            else:
                f.data = local.getvalue()
            firsts.setdefault(f.sha256, f.source_file)
            todo.append(f)
            continue
        if isinstance(local, str):
            os.remove(local)
    return Plan(todo, settled, staging)


# ---- reading text -----------------------------------------------------------------------------


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# A line break followed by an empty line (searched, not matched line by line: gigabytes pass here).
_EMPTY_LINE = re.compile(rb"\n(?=\r?\n)")


def _pieces(path: str) -> Iterator[bytes]:
    """A local file in chunks of whole lines."""
    with open(path, "rb") as fh:
        carry = b""
        for chunk in iter(lambda: fh.read(READ_CHUNK), b""):
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            if cut:
                yield data[:cut]
            carry = data[cut:]
        if carry:
            yield carry


@dataclass
class _Text:
    """What a pass over a staged CSV/JSONL copy found: the empty lines (which the reader skips and
    which are not records), the lines that are not UTF-8 (blanked in the copy, kept as malformed
    records) and notes for the ledger."""

    empty: set[int] = field(default_factory=set)
    undecodable: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def skip(self) -> set[int]:
        return self.empty | {n for n, _ in self.undecodable}


def _prepare_text(path: str) -> _Text:
    """Make the staged copy UTF-8 line by line, and find its empty lines.

    A UTF-16 file with a byte-order mark is decoded as such (with a note); a line that is not
    UTF-8 spoils only itself: it is kept as a malformed record and blanked in the copy."""
    text = _Text()
    with open(path, "rb") as fh:
        head = fh.read(4096)
    encoding = _utf16(head)
    if encoding:
        with (
            open(path, encoding=encoding, errors="replace", newline="") as src,
            open(path + ".utf8", "w", encoding="utf-8", newline="") as out,
        ):
            shutil.copyfileobj(src, out, READ_CHUNK)
        os.replace(path + ".utf8", path)
        how = "byte-order mark" if head[:2] in UTF16_BOMS else "no byte-order mark, NUL bytes"
        text.notes.append(f"decoded as {encoding.upper()} ({how}); expected UTF-8")
    line, valid = 0, True
    for piece in _pieces(path):
        if valid:
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError:
                valid = False
        if piece.startswith((b"\n", b"\r\n")):  # pieces start at a line start
            text.empty.add(line + 1)
        for m in _EMPTY_LINE.finditer(piece):
            text.empty.add(line + piece.count(b"\n", 0, m.end()) + 1)
        line += piece.count(b"\n")
    if not valid:
        text.empty.clear()
        with open(path, "rb") as src, open(path + ".utf8", "wb") as out:
            for number, raw in enumerate(src, start=1):
                body = raw.rstrip(b"\r\n")
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError:
                    text.undecodable.append((number, body.decode("utf-8", "backslashreplace")))
                    text.empty.discard(number)
                    out.write(raw[len(body) :])  # the line break only: the reader skips it
                    continue
                if not body.strip(b"\r"):
                    text.empty.add(number)
                out.write(raw)
        os.replace(path + ".utf8", path)
        text.notes.append(f"{len(text.undecodable)} line(s) not UTF-8, kept as malformed records")
    return text


def _utf16(head: bytes) -> str | None:
    """The UTF-16 codec of a file starting with `head`: by its byte-order mark, or by the NUL
    bytes that ASCII text in UTF-16 has at every other position; None for anything else."""
    if head[:2] in UTF16_BOMS:
        return "utf-16"
    if len(head) < 8 or b"\x00" not in head:
        return None
    even, odd = head[0::2], head[1::2]
    if odd.count(0) > len(odd) * 0.3 and even.count(0) < len(even) * 0.05:
        return "utf-16-le"
    if even.count(0) > len(even) * 0.3 and odd.count(0) < len(odd) * 0.05:
        return "utf-16-be"
    return None


def _decode_document(data: bytes) -> tuple[str, str | None]:
    """A real-time file's text and, if it is not UTF-8, why (a UTF-8 or UTF-16 BOM is accepted)."""
    if encoding := _utf16(data[:4096]):
        return data.decode(encoding, errors="replace"), None
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        return data.decode("utf-8", "backslashreplace"), f"not UTF-8: {e}"


def realtime_rows(
    entity: Entity,
    source_file: str,
    data: bytes,
    *,
    batch_id: str,
    ingested_at: datetime,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """The bronze rows a real-time file of these bytes becomes, parsed exactly as bronze parses it
    (the front door judges a record by them before it writes the file), in `con` if given."""
    parser = _Parser(entity, batch_id, ingested_at, con)
    try:
        f = RawFile(source_file, source_file, len(data), 0, data=data)
        return pa.concat_tables(parser.realtime([f]))
    finally:
        parser.close()


class FileProblem(ValueError):
    """The file as a whole is not what its format promises; its lines are kept as malformed."""


# ---- parsing ----------------------------------------------------------------------------------


class _Parser:
    """Turns raw files of one entity into Arrow batches with the bronze schema."""

    def __init__(
        self,
        entity: Entity,
        batch_id: str,
        ingested_at: datetime,
        con: duckdb.DuckDBPyConnection | None = None,
    ):
        self.entity = entity
        self.schema = bronze_schema(entity)
        self.batch_id = batch_id
        self.ingested_at = ingested_at
        self.own_con = con is None
        self.con = duckdb.connect() if con is None else con
        self.structure = json.dumps({c: "VARCHAR" for c in entity.columns})
        self.known = list(entity.columns)

    def close(self) -> None:
        if self.own_con:
            self.con.close()

    # JSON: one object per line (JSONL) or per file (real-time); anything else is malformed.
    # A line is parsed once for its keys (which finds non-objects, invalid JSON and repeated
    # keys) and once into the columns; only the rare lines with extra keys are parsed again.
    def json_batch(self, lines: pa.Table) -> pa.Table:
        """lines: (_source_file, _source_line, line, _parse_error) → bronze rows; blank lines
        are not records and give no row."""
        self.con.register("lines", lines)
        result = self.con.sql(
            """
            WITH k AS (
                SELECT *, CASE WHEN _parse_error IS NULL THEN try(json_keys(line)) END AS keys
                FROM lines
                WHERE trim(line, chr(32) || chr(9) || chr(13) || chr(10)) <> ''
            ), p AS (
                SELECT *,
                    CASE WHEN len(keys) = len(list_distinct(keys))
                              AND (len(keys) > 0 OR json_type(line) = 'OBJECT')
                         THEN try(from_json(line, $structure)) END AS cols,
                    list_filter(keys, lambda k: NOT list_contains($known, k)) AS extra_keys
                FROM k
            )
            SELECT
                unnest(cols),
                CASE WHEN cols IS NOT NULL AND len(extra_keys) > 0 THEN CAST(to_json(
                    map_from_entries(list_filter(
                        map_entries(from_json(line, '"MAP(VARCHAR, JSON)"')),
                        lambda e: NOT list_contains($known, e.key)))) AS VARCHAR) END
                    AS _extra_columns,
                CASE WHEN cols IS NULL THEN line END AS _raw_record,
                CASE
                    WHEN cols IS NOT NULL THEN NULL
                    WHEN _parse_error IS NOT NULL THEN _parse_error
                    WHEN keys IS NULL THEN 'invalid JSON'
                    WHEN len(keys) > len(list_distinct(keys)) THEN 'duplicate key ' || array_to_string(
                        list_transform(list_sort(list_distinct(list_filter(keys, lambda k, i:
                            list_position(keys, k) < i))), lambda k: to_json(k)), ', ')
                    WHEN json_type(line) = 'OBJECT' THEN 'JSON object could not be read'
                    ELSE 'JSON value is a ' || lower(json_type(line)) || ', not an object'
                END AS _parse_error,
                $ingested_at AS _ingested_at,
                _source_file,
                _source_line,
                $batch_id AS _batch_id,
                md5(line) AS _record_hash
            FROM p
            """,
            params={
                "structure": self.structure,
                "known": self.known,
                "ingested_at": self.ingested_at,
                "batch_id": self.batch_id,
            },
        ).to_arrow_table()
        self.con.unregister("lines")
        return result.cast(self.schema)

    def jsonl(self, f: RawFile, text: _Text) -> Iterator[pa.Table]:
        bad: list[tuple[int, str]] = []
        numbers = _LineNumbers(first=1, skip=text.skip)

        def on_invalid(row) -> str:  # a raw \x1f splits the line: not valid JSON anyway
            bad.append((numbers.physical(row.number), row.text))
            return "skip"

        def malformed() -> Iterator[pa.Table]:
            if bad:
                yield self._malformed(
                    f, [(n, t, "invalid JSON (raw control character)") for n, t in bad]
                )
                bad.clear()

        reader = pacsv.open_csv(
            f.path,
            read_options=pacsv.ReadOptions(
                column_names=["line"], use_threads=False, block_size=CSV_BLOCK_SIZE
            ),
            parse_options=pacsv.ParseOptions(
                delimiter="\x1f",
                quote_char=False,
                escape_char=False,
                ignore_empty_lines=True,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={"line": pa.string()}, strings_can_be_null=False
            ),
        )
        for batch in reader:
            lines = batch.column("line")
            yield self.json_batch(
                pa.table(
                    {
                        "_source_file": pa.array([f.source_file] * len(lines), pa.string()),
                        "_source_line": numbers.assign(len(lines), bad),
                        "line": lines,
                        "_parse_error": pa.nulls(len(lines), pa.string()),
                    }
                )
            )
            yield from malformed()
        yield from malformed()  # invalid lines after the last block of valid ones

    def realtime(self, files: list[RawFile]) -> Iterator[pa.Table]:
        for start in range(0, len(files), REALTIME_FILES_PER_BATCH):
            chunk = files[start : start + REALTIME_FILES_PER_BATCH]
            texts, errors = [], []
            for f in chunk:
                text, error = _decode_document(f.data)
                f.data = None  # parsed: no longer held
                texts.append(text)
                errors.append(error)
            yield self.json_batch(
                pa.table(
                    {
                        "_source_file": pa.array([f.source_file for f in chunk], pa.string()),
                        "_source_line": pa.array([1] * len(chunk), pa.int64()),
                        "line": pa.array(texts, pa.string()),
                        "_parse_error": pa.array(errors, pa.string()),
                    }
                )
            )

    def csv_header(self, f: RawFile, text: _Text) -> tuple[list[str], dict[str, str], list[str]]:
        """(the header's names, contract column → header name, notes). Names match the contract
        exactly, else case-insensitively; the key column is required."""
        if 1 in {n for n, _ in text.undecodable}:
            raise FileProblem("the header line is not UTF-8")
        with open(f.path, "rb") as fh:
            header_line = fh.readline().decode("utf-8-sig").rstrip("\r\n")
        if not header_line.strip():
            raise FileProblem("the first line is empty; expected the header")
        names = [n.strip() for n in next(csv.reader([header_line]))]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise FileProblem(f"header repeats column(s) {', '.join(repeated)}")
        columns = {c: c for c in self.entity.columns if c in names}
        by_lower = {n.lower(): n for n in names if n not in columns}
        renamed = {
            c: by_lower[c.lower()]
            for c in self.entity.columns
            if c not in columns and c.lower() in by_lower
        }
        key = self.entity.key
        if key not in columns and key not in renamed:
            found = ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
            hint = ""
            if len(names) == 1:
                for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
                    if sep in header_line:
                        hint = f" (the header looks {name}-delimited; expected commas)"
                        break
            raise FileProblem(f"header has no column {key}; found: {found[:300]}{hint}")
        notes = []
        if renamed:
            notes.append(
                "header matched case-insensitively: "
                + ", ".join(f"{n} as {c}" for c, n in renamed.items())
            )
        columns.update(renamed)
        missing = [c for c in self.entity.columns if c not in columns]
        if missing:
            notes.append(f"header lacks column(s) {', '.join(missing)} (read as empty)")
        return names, columns, notes

    def csv(
        self, f: RawFile, text: _Text, names: list[str], columns: dict[str, str]
    ) -> Iterator[pa.Table]:
        used = set(columns.values())
        extra = [n for n in names if n not in used]
        bad: list[tuple[int, str]] = []
        numbers = _LineNumbers(first=2, skip=text.skip)

        def on_invalid(row) -> str:
            # A quote that does not close runs over the next lines: each physical line is kept
            # as its own malformed record, so the lines after it keep their numbers.
            first = numbers.physical(row.number)
            parts = row.text.split("\n")
            bad.extend((first + i, part.rstrip("\r")) for i, part in enumerate(parts))
            numbers.extra += len(parts) - 1
            return "skip"

        def malformed() -> Iterator[pa.Table]:
            rows = [
                (num, t, f"CSV row has the wrong number of fields (header has {len(names)})")
                for num, t in bad
                if t.strip()
            ]  # a whitespace-only line is not a record
            bad.clear()
            if rows:
                yield self._malformed(f, rows)

        reader = pacsv.open_csv(
            f.path,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1, use_threads=False, block_size=CSV_BLOCK_SIZE
            ),
            parse_options=pacsv.ParseOptions(
                ignore_empty_lines=True, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
        for batch in reader:
            n = batch.num_rows
            cols = {}
            for c in self.entity.columns:
                cols[c] = batch.column(columns[c]) if c in columns else pa.nulls(n, pa.string())
            cols["_extra"] = (
                pa.StructArray.from_arrays([batch.column(e) for e in extra], names=extra)
                if extra
                else pa.nulls(n, pa.null())
            )
            cols["_source_line"] = numbers.assign(n, bad)
            self.con.register("rows", pa.table(cols))
            out = self.con.sql(
                f"""
                SELECT * EXCLUDE (_extra, _source_line),
                    {"CAST(to_json(_extra) AS VARCHAR)" if extra else "NULL"} AS _extra_columns,
                    NULL AS _raw_record, NULL AS _parse_error,
                    $ingested_at AS _ingested_at, $source_file AS _source_file, _source_line,
                    $batch_id AS _batch_id,
                    md5(concat_ws(chr(31), *COLUMNS(* EXCLUDE (_source_line)))) AS _record_hash
                FROM rows
                """,
                params={
                    "ingested_at": self.ingested_at,
                    "source_file": f.source_file,
                    "batch_id": self.batch_id,
                },
            ).to_arrow_table()
            self.con.unregister("rows")
            yield out.select(self.schema.names).cast(self.schema)
            yield from malformed()
        yield from malformed()  # invalid rows after the last block of valid ones

    def lines_as_malformed(
        self, f: RawFile, message: str, after_line: int = 0
    ) -> Iterator[pa.Table]:
        """Each non-blank line of a file (after `after_line`) kept as a malformed record with
        `message`, in slices so that a large file does not need much memory."""
        rows: list[tuple[int, str, str]] = []
        with io.BytesIO(f.data) if f.data is not None else open(f.path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if number <= after_line or not raw.strip():
                    continue
                text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
                rows.append((number, text, message))
                if len(rows) >= 100_000:
                    yield self._malformed(f, rows)
                    rows = []
        if rows:
            yield self._malformed(f, rows)

    def _malformed(self, f: RawFile, rows: list[tuple[int, str, str]]) -> pa.Table:
        n = len(rows)
        cols = {c: pa.nulls(n, pa.string()) for c in self.entity.columns}
        cols.update(
            {
                "_extra_columns": pa.nulls(n, pa.string()),
                "_raw_record": pa.array([r[1] for r in rows], pa.string()),
                "_parse_error": pa.array([r[2] for r in rows], pa.string()),
                "_ingested_at": pa.array([self.ingested_at] * n, pa.timestamp("us", tz="UTC")),
                "_source_file": pa.array([f.source_file] * n, pa.string()),
                "_source_line": pa.array([r[0] for r in rows], pa.int64()),
                "_batch_id": pa.array([self.batch_id] * n, pa.string()),
                "_record_hash": pa.array(
                    [hashlib.md5(r[1].encode("utf-8", errors="replace")).hexdigest() for r in rows],
                    pa.string(),
                ),
            }
        )
        return pa.table(cols, schema=self.schema)


class _LineNumbers:
    """Physical line numbers for the rows of a file read in blocks, skipping the lines that give
    no row: empty or undecodable lines (`skip`, known beforehand) and invalid lines (which the
    reader reports, with their numbers, before the block that follows them)."""

    def __init__(self, first: int, skip: set[int]):
        self.next = first
        self.skip = skip
        self.skipped = sorted(skip)
        self.extra = 0  # line breaks inside the invalid rows reported so far

    def physical(self, number: int) -> int:
        """The physical line of the reader's `number`, which counts rows: not the empty lines
        it skipped, nor the line breaks inside earlier invalid rows."""
        number += self.extra
        line = number
        while (shifted := number + bisect.bisect_right(self.skipped, line)) != line:
            line = shifted
        return line

    def assign(self, count: int, invalid: list[tuple[int, str]]) -> pa.Array:
        skip = {n for n in self.skip if n >= self.next} | {n for n, _ in invalid if n >= self.next}
        out, line = [], self.next
        if not skip:
            self.next = line + count
            return pa.array(np.arange(line, line + count, dtype="int64"))
        while len(out) < count:
            if line not in skip:
                out.append(line)
            line += 1
        self.next = line
        return pa.array(out, pa.int64())


def ingest(lake: Lake, entity: Entity, batch_id: str, log: Log = print) -> TableWrite | None:
    """The bronze append for the new or changed raw files of `entity`, or None when there are none.

    The append streams: staged files are parsed block by block while the Delta writer consumes
    them. Its `on_commit` records the files in the ledger and returns the materialization's
    metadata."""
    plan = plan_files(lake, entity, log)
    if not plan.todo:
        shutil.rmtree(plan.staging, ignore_errors=True)
        log(f"{entity.name}: no new or changed files")
        _record(lake, entity, plan.settled, batch_id, None)
        return None

    log(f"{entity.name}: ingesting {len(plan.todo)} new or changed file(s)")
    parser = _Parser(entity, batch_id, datetime.now(UTC))
    # The staged copies go with the parser, also if the stream is never consumed.
    weakref.finalize(parser, shutil.rmtree, plan.staging, True)
    outcomes: list[FileOutcome] = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from _parse_all(parser, plan.todo, outcomes, log)
        finally:
            parser.close()
            shutil.rmtree(plan.staging, ignore_errors=True)

    def on_commit(version: int) -> dict:
        _record(lake, entity, plan.settled + outcomes, batch_id, version)
        result = IngestResult(
            entity.name,
            version,
            sum(o.rows for o in outcomes),
            sum(o.bad_rows for o in outcomes),
            plan.settled + outcomes,
        )
        log(
            f"{entity.name}: appended {result.rows_added} rows ({result.bad_rows_added} "
            f"malformed) from {result.files_ingested} file(s) as bronze version {version}"
        )
        return result.metadata()

    files_meta = json.dumps(
        [
            {
                "source_file": f.source_file,
                "size_bytes": f.size_bytes,
                "modified_ns": f.modified_ns,
                "sha256": f.sha256,
                "status": INGESTED,
                "batch_id": batch_id,
            }
            for f in plan.todo
        ]
    )
    return TableWrite(
        data=pa.RecordBatchReader.from_batches(parser.schema, batches()),
        mode="append",
        commit_metadata={COMMIT_FILES_KEY: files_meta},
        on_commit=on_commit,
    )


def _count(outcome: FileOutcome, t: pa.Table) -> None:
    outcome.rows += t.num_rows
    outcome.bad_rows += t.num_rows - t.column("_parse_error").null_count


def _fail(
    parser: _Parser, outcome: FileOutcome, reason: str, log: Log, after_line: int = 0
) -> Iterator[pa.RecordBatch]:
    """The file fails as a whole: its lines (after `after_line`) become malformed records."""
    f = outcome.file
    outcome.status, outcome.error = FAILED, reason[:1000]
    log(
        f"{parser.entity.name}: {f.source_file} failed ({outcome.error}); "
        + (f"the lines after line {after_line}" if after_line else "its lines")
        + " are kept as malformed records"
    )
    for t in parser.lines_as_malformed(f, outcome.error, after_line=after_line):
        _count(outcome, t)
        yield from t.to_batches()


def _parse_batch_file(
    parser: _Parser, f: RawFile, outcomes: list[FileOutcome], log: Log
) -> Iterator[pa.RecordBatch]:
    entity = parser.entity.name
    outcome = FileOutcome(f, INGESTED)
    outcomes.append(outcome)
    text = _prepare_text(f.path)
    for note in text.notes:
        outcome.note(note)
    last_line, failure = 0, None
    try:
        if _is_blank(f.path):
            tables = iter(())
        elif f.format == "jsonl":
            tables = parser.jsonl(f, text)
        else:
            names, columns, notes = parser.csv_header(f, text)
            for note in notes:
                outcome.note(note)
            tables = parser.csv(f, text, names, columns)
        for t in tables:
            _count(outcome, t)
            last_line = max(last_line, pa.compute.max(t.column("_source_line")).as_py() or 0)
            yield from t.to_batches()
    except FileProblem as e:
        failure, last_line = str(e), 1
    except (pa.ArrowInvalid, ValueError, UnicodeDecodeError, duckdb.Error) as e:
        failure = f"file could not be parsed: {type(e).__name__}: {e}"
        if f.format == "csv":  # the header is not a record
            last_line = max(last_line, 1)
    if failure:
        yield from _fail(parser, outcome, failure, log, after_line=last_line)
    # Blanked in the copy, so never read above: kept here (a CSV header is not a record).
    undecodable = [
        (n, raw, "not UTF-8") for n, raw in text.undecodable if not (n == 1 and f.format == "csv")
    ]
    if undecodable:
        t = parser._malformed(f, undecodable)
        _count(outcome, t)
        yield from t.to_batches()
    log(
        f"{entity}: {f.source_file}: {outcome.rows} rows"
        + (f", {outcome.bad_rows} malformed" if outcome.bad_rows else "")
    )


def _is_blank(path: str) -> bool:
    """Whether a file holds nothing but whitespace (no records, and no header either)."""
    with open(path, "rb") as fh:
        return all(not chunk.strip() for chunk in iter(lambda: fh.read(READ_CHUNK), b""))


def _parse_all(
    parser: _Parser, todo: list[RawFile], outcomes: list[FileOutcome], log: Log
) -> Iterator[pa.RecordBatch]:
    entity = parser.entity
    realtime = []
    for f in todo:
        if f.format != "json":
            yield from _parse_batch_file(parser, f, outcomes, log)
            os.remove(f.path)  # the staged copy is done with
        elif problem := realtime_name_problem(entity, f.source_file.rsplit("/", 1)[-1]):
            outcome = FileOutcome(f, INGESTED)
            outcomes.append(outcome)
            yield from _fail(parser, outcome, problem, log)
        else:
            realtime.append(f)
    if realtime:
        by_file = {f.source_file: FileOutcome(f, INGESTED) for f in realtime}
        outcomes.extend(by_file.values())
        for t in parser.realtime(realtime):
            errors = t.column("_parse_error").to_pylist()
            for src, err in zip(t.column("_source_file").to_pylist(), errors):
                o = by_file[src]
                o.rows += 1
                if err is not None:
                    o.bad_rows += 1
                    o.status, o.error = FAILED, err
            yield from t.to_batches()
        log(f"{entity.name}: {len(realtime)} real-time file(s)")
    for o in outcomes:
        if o.status == INGESTED and o.rows == 0:
            o.note("no records (empty or whitespace only)")


def _record(
    lake: Lake, entity: Entity, outcomes: list[FileOutcome], batch_id: str, version: int | None
) -> None:
    if not outcomes:
        return
    now = datetime.now(UTC)
    rows = [
        {
            "entity": entity.name,
            "source_file": o.file.source_file,
            "size_bytes": o.file.size_bytes,
            "modified_ns": o.file.modified_ns,
            "sha256": o.file.sha256,
            "status": o.status,
            "rows": o.rows,
            "bad_rows": o.bad_rows,
            "error": o.error,
            "batch_id": batch_id,
            "bronze_version": version if o.status in IN_BRONZE and o.file.sha256 else None,
            "recorded_at": now,
        }
        for o in outcomes
    ]
    lake.write(_ledger_uri(lake), pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA), mode="append")
