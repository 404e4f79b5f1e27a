"""Raw files → bronze rows: parsing, the file ledger, exactly-once appends.

Every source column is kept as text. A record that cannot be parsed (a JSON line that is not a
JSON object, a CSV row with the wrong number of fields, a file that is not valid UTF-8) becomes a
bronze row with `_raw_record` and `_parse_error` set, so silver can quarantine it with its reason:
nothing is dropped and nothing is fatal. Columns a file has beyond the contract go to
`_extra_columns` as a JSON object.

The file ledger (`bronze/_file_ledger`, a Delta table) records every file seen: path, size,
modification time, sha256, outcome. A file is read again only when its content changed:
same size and mtime → skipped without reading; otherwise hashed, and skipped if the hash matches
what was ingested. Each bronze append is one Delta commit whose commit metadata names the files it
ingested, and the ledger is brought up to date from those commits first thing on every run, so a
crash between the bronze commit and the ledger write cannot ingest a file twice.

`_source_line` is the physical line for CSV and JSONL files (header = line 1 in a CSV), 1 for a
real-time single-record file. (A CSV value with a quoted line break would shift the numbering of
the rows after it in that file; the generator writes none.)
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.csv as pacsv

from petinsure_assets.contracts import BRONZE_METADATA, Entity
from petinsure_assets.lake import Lake, TableWrite
from petinsure_assets.storage import file_sha256

LEDGER_TABLE = "_file_ledger"
COMMIT_FILES_KEY = "petinsure.ingested_files"
# Rows per Arrow batch handed to DuckDB and the Delta writer; bounds memory for huge files.
CSV_BLOCK_SIZE = 64 * 1024 * 1024
REALTIME_FILES_PER_BATCH = 5000

LEDGER_SCHEMA = pa.schema(
    [
        ("entity", pa.string()),
        ("source_file", pa.string()),
        ("size_bytes", pa.int64()),
        ("modified_ns", pa.int64()),
        ("sha256", pa.string()),
        ("status", pa.string()),  # ingested | failed (kept as malformed rows) | unchanged
        ("rows", pa.int64()),
        ("bad_rows", pa.int64()),
        ("error", pa.string()),
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
    path: str  # where the parser reads it: lake-relative, or a local copy while it is parsed
    source_file: str  # path relative to the lake root, e.g. raw/claims/claims.jsonl
    size_bytes: int
    modified_ns: int
    sha256: str | None = None


@dataclass
class FileOutcome:
    file: RawFile
    status: str
    rows: int = 0
    bad_rows: int = 0
    error: str | None = None


@dataclass
class IngestResult:
    entity: str
    bronze_version: int | None
    rows_added: int
    bad_rows_added: int
    files: list[FileOutcome] = field(default_factory=list)

    @property
    def files_ingested(self) -> int:
        return sum(1 for f in self.files if f.status in ("ingested", "failed"))

    @property
    def files_skipped(self) -> int:
        return sum(1 for f in self.files if f.status == "unchanged")

    def metadata(self) -> dict:
        failed = [f"{f.file.source_file}: {f.error}" for f in self.files if f.status == "failed"]
        return {
            "rows_added": self.rows_added,
            "malformed_rows_added": self.bad_rows_added,
            "files_ingested": self.files_ingested,
            "files_unchanged": self.files_skipped,
            "files_failed": len(failed),
            **({"failed_files": "\n".join(failed[:20])} if failed else {}),
        }


Log = Callable[[str], None]


def list_raw_files(lake: Lake, entity: Entity) -> list[RawFile]:
    """Files in raw/<entity>/, sorted by name; hidden and temporary (`.`, `_`) files ignored."""
    files = []
    for info in lake.files.list(f"raw/{entity.name}"):
        name = info.path.rsplit("/", 1)[-1]
        if name.startswith((".", "_")) or not name.endswith((".csv", ".jsonl", ".json")):
            continue
        files.append(RawFile(path=info.path, source_file=info.path, size_bytes=info.size_bytes,
                             modified_ns=info.modified_ns))
    return sorted(files, key=lambda f: f.source_file)


# ---- the ledger -------------------------------------------------------------------------------


def _ledger_uri(lake: Lake) -> str:
    return lake.table_uri("bronze", LEDGER_TABLE)


def read_ledger(lake: Lake, entity: Entity) -> dict[str, dict]:
    """The latest ledger entry per source file of this entity."""
    uri = _ledger_uri(lake)
    if not lake.exists(uri):
        return {}
    con = duckdb.connect()
    try:
        lake.register(con, "ledger", uri)
        rows = (
            con.sql(
                "SELECT * FROM ledger WHERE entity = $entity QUALIFY row_number() OVER "
                "(PARTITION BY source_file ORDER BY recorded_at DESC, bronze_version DESC) = 1",
                params={"entity": entity.name},
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    return {r["source_file"]: r for r in rows}


def _recover_ledger(lake: Lake, entity: Entity, ledger: dict[str, dict], log: Log) -> None:
    """Add ledger rows for bronze commits the ledger does not know (a crash after the commit)."""
    uri = lake.table_uri("bronze", entity.bronze_table)
    if not lake.exists(uri):
        return
    known = max(
        (r["bronze_version"] for r in ledger.values() if r["bronze_version"] is not None), default=-1
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
    now = datetime.now(timezone.utc)
    rows = [
        {**{k: None for k in LEDGER_SCHEMA.names}, **m, "entity": entity.name, "recorded_at": now}
        for m in missing
    ]
    lake.write(_ledger_uri(lake), pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA), mode="append")
    for r in rows:
        ledger[r["source_file"]] = r


def plan_files(lake: Lake, entity: Entity, log: Log) -> tuple[list[RawFile], list[RawFile]]:
    """Split the raw files into (to ingest, unchanged-but-touched); untouched files are left out."""
    ledger = read_ledger(lake, entity)
    _recover_ledger(lake, entity, ledger, log)
    todo, touched = [], []
    for f in list_raw_files(lake, entity):
        seen = ledger.get(f.source_file)
        if seen and seen["size_bytes"] == f.size_bytes and seen["modified_ns"] == f.modified_ns:
            continue
        with lake.files.local_copy(f.source_file) as local:
            f.sha256 = file_sha256(local)
        if seen and seen["sha256"] == f.sha256:
            touched.append(f)
        else:
            todo.append(f)
    return todo, touched


# ---- parsing ----------------------------------------------------------------------------------


class _Parser:
    """Turns raw files of one entity into Arrow batches with the bronze schema."""

    def __init__(self, lake: Lake, entity: Entity, batch_id: str, ingested_at: datetime):
        self.lake = lake
        self.entity = entity
        self.schema = bronze_schema(entity)
        self.batch_id = batch_id
        self.ingested_at = ingested_at
        self.con = duckdb.connect()
        self.structure = json.dumps({c: "VARCHAR" for c in entity.columns})
        self.known = list(entity.columns)

    def close(self) -> None:
        self.con.close()

    # JSON: one object per line (JSONL) or per file (real-time); anything else is malformed.
    def json_batch(self, lines: pa.Table) -> pa.Table:
        """lines: (_source_file, _source_line, line, _parse_error) → bronze rows."""
        self.con.register("lines", lines)
        result = self.con.sql(
            """
            WITH v AS (
                SELECT *, CASE WHEN _parse_error IS NULL AND json_valid(line) THEN line::JSON END AS j
                FROM lines
            ), o AS (
                SELECT *, CASE WHEN json_type(j) = 'OBJECT' THEN j END AS rec FROM v
            ), p AS (
                SELECT *,
                    from_json(rec, $structure) AS cols,
                    list_filter(json_keys(rec), lambda k: NOT list_contains($known, k)) AS extra_keys
                FROM o
            )
            SELECT
                unnest(cols),
                CASE WHEN len(extra_keys) > 0 THEN CAST(to_json(map_from_entries(list_transform(
                    extra_keys,
                    lambda k: struct_pack(k := k, v := json_extract(rec, '$."' || k || '"'))
                ))) AS VARCHAR) END AS _extra_columns,
                CASE WHEN rec IS NULL THEN line END AS _raw_record,
                CASE
                    WHEN rec IS NOT NULL THEN NULL
                    WHEN _parse_error IS NOT NULL THEN _parse_error
                    WHEN trim(line) = '' THEN 'empty line'
                    WHEN j IS NULL THEN 'invalid JSON'
                    ELSE 'JSON value is a ' || lower(json_type(j)) || ', not an object'
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

    def jsonl(self, f: RawFile) -> Iterator[pa.Table]:
        bad: list[tuple[int, str]] = []

        def on_invalid(row) -> str:  # a raw \x1f splits the line: not valid JSON anyway
            bad.append((row.number, row.text))
            return "skip"

        reader = pacsv.open_csv(
            f.path,
            read_options=pacsv.ReadOptions(
                column_names=["line"], use_threads=False, block_size=CSV_BLOCK_SIZE
            ),
            parse_options=pacsv.ParseOptions(
                delimiter="\x1f", quote_char=False, escape_char=False,
                ignore_empty_lines=False, invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={"line": pa.string()}, strings_can_be_null=False
            ),
        )
        numbers = _LineNumbers(first=1)
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
            if bad:
                yield self._malformed(f, [(n, t, "invalid JSON (raw control character)") for n, t in bad])
                bad.clear()

    def realtime(self, files: list[RawFile]) -> Iterator[pa.Table]:
        for start in range(0, len(files), REALTIME_FILES_PER_BATCH):
            chunk = files[start : start + REALTIME_FILES_PER_BATCH]
            texts, errors = [], []
            for f in chunk:
                data = self.lake.files.read_bytes(f.source_file)
                try:
                    texts.append(data.decode("utf-8"))
                    errors.append(None)
                except UnicodeDecodeError as e:
                    texts.append(data.decode("utf-8", errors="replace"))
                    errors.append(f"not UTF-8: {e}")
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

    def csv(self, f: RawFile) -> Iterator[pa.Table]:
        with open(f.path, "rb") as fh:
            header_line = fh.readline().decode("utf-8-sig").rstrip("\r\n")
        names = [n.strip() for n in next(csv.reader([header_line]))] if header_line else []
        if not names or len(set(names)) != len(names):
            raise ValueError(f"unusable CSV header: {header_line[:200]!r}")
        extra = [n for n in names if n not in self.entity.columns]
        bad: list[tuple[int, str]] = []

        def on_invalid(row) -> str:
            bad.append((row.number, row.text))
            return "skip"

        reader = pacsv.open_csv(
            f.path,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1, use_threads=False, block_size=CSV_BLOCK_SIZE
            ),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
        numbers = _LineNumbers(first=2)
        for batch in reader:
            n = batch.num_rows
            cols = {}
            for c in self.entity.columns:
                cols[c] = batch.column(c) if c in names else pa.nulls(n, pa.string())
            cols["_extra"] = (
                pa.StructArray.from_arrays([batch.column(e) for e in extra], names=extra)
                if extra else pa.nulls(n, pa.null())
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
                params={"ingested_at": self.ingested_at, "source_file": f.source_file,
                        "batch_id": self.batch_id},
            ).to_arrow_table()
            self.con.unregister("rows")
            yield out.select(self.schema.names).cast(self.schema)
            if bad:
                yield self._malformed(
                    f,
                    [(num, text, f"CSV row has the wrong number of fields (header has {len(names)})")
                     for num, text in bad],
                )
                bad.clear()

    def unreadable(self, f: RawFile, error: Exception, after_line: int = 0) -> Iterator[pa.Table]:
        """A file that could not be parsed (from some line on): each of its remaining lines kept
        as a malformed record, in slices so that a large file does not need much memory."""
        message = f"file could not be parsed: {type(error).__name__}: {error}"[:1000]
        rows: list[tuple[int, str, str]] = []
        with open(f.path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if number <= after_line:
                    continue
                rows.append((number, raw.decode("utf-8", errors="replace").rstrip("\r\n"), message))
                if len(rows) >= 100_000:
                    yield self._malformed(f, rows)
                    rows = []
        if rows or after_line == 0:
            yield self._malformed(f, rows or [(1, "", message)])

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
    """Physical line numbers for the valid rows of a file read in blocks, skipping invalid lines
    (which the reader reports, with their numbers, before the block that follows them)."""

    def __init__(self, first: int):
        self.next = first

    def assign(self, count: int, invalid: list[tuple[int, str]]) -> pa.Array:
        skip = {n for n, _ in invalid if n >= self.next}
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

    The append streams: files are parsed block by block while the Delta writer consumes them. Its
    `on_commit` records the files in the ledger and returns the materialization's metadata."""
    todo, touched = plan_files(lake, entity, log)
    unchanged = [FileOutcome(f, "unchanged") for f in touched]
    if not todo:
        log(f"{entity.name}: no new or changed files")
        _record(lake, entity, unchanged, batch_id, None)
        return None

    log(f"{entity.name}: ingesting {len(todo)} new or changed file(s)")
    parser = _Parser(lake, entity, batch_id, datetime.now(timezone.utc))
    outcomes: list[FileOutcome] = []

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from _parse_all(parser, todo, outcomes, log)
        finally:
            parser.close()

    def on_commit(version: int) -> dict:
        _record(lake, entity, unchanged + outcomes, batch_id, version)
        result = IngestResult(entity.name, version, sum(o.rows for o in outcomes),
                              sum(o.bad_rows for o in outcomes), unchanged + outcomes)
        log(f"{entity.name}: appended {result.rows_added} rows ({result.bad_rows_added} "
            f"malformed) from {result.files_ingested} file(s) as bronze version {version}")
        return result.metadata()

    files_meta = json.dumps(
        [
            {"source_file": f.source_file, "size_bytes": f.size_bytes,
             "modified_ns": f.modified_ns, "sha256": f.sha256, "status": "ingested",
             "batch_id": batch_id}
            for f in todo
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


def _parse_batch_file(parser: "_Parser", f: RawFile, outcomes: list[FileOutcome],
                      log: Log) -> Iterator[pa.RecordBatch]:
    entity = parser.entity.name
    outcome = FileOutcome(f, "ingested")
    outcomes.append(outcome)
    last_line = 0
    try:
        for t in parser.jsonl(f) if f.source_file.endswith(".jsonl") else parser.csv(f):
            _count(outcome, t)
            last_line = max(last_line, pa.compute.max(t.column("_source_line")).as_py() or 0)
            yield from t.to_batches()
    except (pa.ArrowInvalid, ValueError, UnicodeDecodeError) as e:
        outcome.status, outcome.error = "failed", f"{type(e).__name__}: {e}"[:1000]
        log(f"{entity}: {f.source_file} could not be parsed after line {last_line} "
            f"({outcome.error}); the lines after it are kept as malformed records")
        for t in parser.unreadable(f, e, after_line=last_line):
            _count(outcome, t)
            yield from t.to_batches()
    log(f"{entity}: {f.source_file}: {outcome.rows} rows"
        + (f", {outcome.bad_rows} malformed" if outcome.bad_rows else ""))


def _parse_all(parser: "_Parser", todo: list[RawFile], outcomes: list[FileOutcome],
               log: Log) -> Iterator[pa.RecordBatch]:
    entity = parser.entity.name
    realtime = [f for f in todo if f.source_file.endswith(".json")]
    for f in (f for f in todo if not f.source_file.endswith(".json")):
        with parser.lake.files.local_copy(f.source_file) as local:
            yield from _parse_batch_file(parser, RawFile(local, f.source_file, f.size_bytes,
                                                         f.modified_ns, f.sha256), outcomes, log)
    if realtime:
        by_file = {f.source_file: FileOutcome(f, "ingested") for f in realtime}
        outcomes.extend(by_file.values())
        for t in parser.realtime(realtime):
            errors = t.column("_parse_error").to_pylist()
            for src, err in zip(t.column("_source_file").to_pylist(), errors):
                o = by_file[src]
                o.rows += 1
                if err is not None:
                    o.bad_rows += 1
                    o.status, o.error = "failed", err
            yield from t.to_batches()
        log(f"{entity}: {len(realtime)} real-time file(s)")


def _record(lake: Lake, entity: Entity, outcomes: list[FileOutcome], batch_id: str,
            version: int | None) -> None:
    if not outcomes:
        return
    now = datetime.now(timezone.utc)
    rows = [
        {
            "entity": entity.name, "source_file": o.file.source_file,
            "size_bytes": o.file.size_bytes, "modified_ns": o.file.modified_ns,
            "sha256": o.file.sha256, "status": o.status, "rows": o.rows, "bad_rows": o.bad_rows,
            "error": o.error, "batch_id": batch_id,
            "bronze_version": version if o.status != "unchanged" else None, "recorded_at": now,
        }
        for o in outcomes
    ]
    lake.write(_ledger_uri(lake), pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA), mode="append")
