"""The table catalog: everything about each silver and gold table, in one spec beside its SQL.

    sql/silver/<table>.sql    the rules: a query that types, cleans and judges each bronze record
    sql/silver/<table>.toml   its spec: entity, key, sequence, parents, checks' values, freshness…
    sql/gold/<table>.sql      the query that computes the table
    sql/gold/<table>.toml     its spec: key, checks' values and totals, freshness, PII…
    sql/gold/views/<v>.sql    views shared by several gold tables

`load_catalog()` reads and validates every spec; the assets (silver.py, gold.py, serving.py), their
checks (checks.py), freshness policies (automation.py), exports and every list of tables in the
code and the tests are built from the result. What can be read from the SQL is not declared: a gold
table's inputs (silver tables, earlier gold tables, shared views) are the tables its query reads,
found with sqlglot; a silver table's declared parents must be exactly the silver tables its file
reads, and a spec that says otherwise is refused with the file named.

Adding a gold table is one SQL file plus one spec; a silver table, the same plus its bronze entity
in contracts.py (the raw landing-zone contract)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from petinsure_assets import contracts, thresholds

SQL_DIR = Path(__file__).parent / "sql"
LAYERS = ("silver", "gold")
# The one quarantine table of silver; each silver table's step owns its entity's rows of it and
# publishes them as the asset silver/quarantine/<entity>.
QUARANTINE = "quarantine"


class CatalogError(ValueError):
    """A spec that cannot be used: the message names the file and what is wrong."""


@dataclass(frozen=True)
class Freshness:
    warn: timedelta
    fail: timedelta


@dataclass(frozen=True)
class Accepted:
    column: str
    vocabulary: str  # a name of thresholds.VOCABULARIES
    nullable: bool = False

    @property
    def values(self) -> tuple[str, ...]:
        return thresholds.VOCABULARIES[self.vocabulary]


@dataclass(frozen=True)
class Range:
    column: str
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Format:
    column: str
    pattern: str  # a regular expression the whole value must match
    what: str  # how the check describes it


@dataclass(frozen=True)
class CustomCheck:
    """A check the catalog's kinds do not cover: a query over `t` returning the failing rows."""

    name: str
    description: str
    sql: str
    column: str | None = None
    uses: tuple[str, ...] = ()  # other tables the query reads, as "layer/table"


@dataclass(frozen=True)
class Incremental:
    """How a gold table follows a change of its inputs without being rebuilt: its rows are
    replaced per value of `key` (a column of its key). The values a change touches are, for an
    input holding that column, those of its changed rows (before and after the change), else
    what `touches[input]` selects from `changes` (the input's changed rows) and the inputs.
    Inputs holding the column are read only for the touched values, except those in
    `rebuild_on`: a book-wide figure depends on them, so they are read whole and a change of one
    rebuilds the table."""

    key: str
    touches: dict[str, str] = field(default_factory=dict)
    rebuild_on: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class TableSpec:
    layer: str  # silver | gold
    name: str
    description: str
    key: tuple[str, ...]  # the primary key; exports and snapshots are ordered by it
    freshness: Freshness
    entity: contracts.Entity | None = None  # silver: the bronze entity it is built from
    # silver: the columns whose greatest value (nulls lowest) makes a version the latest
    sequence_by: tuple[str, ...] = ()
    parents: dict[str, str] = field(default_factory=dict)  # foreign key column -> silver table
    accepted: tuple[Accepted, ...] = ()
    ranges: tuple[Range, ...] = ()
    formats: tuple[Format, ...] = ()
    # gold: column -> silver table every row of which has a row here (by that column)
    every_present: dict[str, str] = field(default_factory=dict)
    # gold: total name (a key of checks.SILVER_TOTALS) -> the same total over this table
    totals: dict[str, str] = field(default_factory=dict)
    checks: tuple[CustomCheck, ...] = ()
    partition_by: tuple[str, ...] = ()  # the Delta table's partition columns
    pii: tuple[str, ...] = ()  # personal-data columns: never in an export or a snapshot
    incremental: Incremental | None = None  # gold: None = rebuilt whenever an input changes
    # Read from the SQL (gold): the silver and gold tables read, and the shared views run first.
    inputs: tuple[str, ...] = ()
    views: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        """ "layer/name", as check history and metadata name the table."""
        return f"{self.layer}/{self.name}"

    @property
    def parent_tables(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.parents.values()))


@dataclass(frozen=True, eq=False)
class Catalog:
    root: Path
    silver: tuple[TableSpec, ...]  # parents before children
    gold: tuple[TableSpec, ...]  # inputs before the tables that read them
    view_inputs: dict[str, tuple[str, ...]]  # shared view -> the tables and views it reads

    @property
    def tables(self) -> tuple[TableSpec, ...]:
        return (*self.silver, *self.gold)

    def table(self, name: str) -> TableSpec:
        for spec in self.tables:
            if spec.name == name:
                return spec
        raise KeyError(f"no table {name!r} in the catalog at {self.root}")

    def silver_for(self, entity: contracts.Entity) -> TableSpec:
        return next(s for s in self.silver if s.entity == entity)

    def sql(self, name: str) -> str:
        """The text of <root>/<name>.sql, e.g. sql("silver/dim_customers") or sql("macros")."""
        return _read(self.root / f"{name}.sql")

    @property
    def pipeline_tables(self) -> dict[str, tuple[str, ...]]:
        """Every Delta table of the pipeline by layer: bronze (from the raw contract), silver
        with the quarantine, gold."""
        return {
            "bronze": tuple(e.bronze_table for e in contracts.ENTITIES),
            "silver": (*(s.name for s in self.silver), QUARANTINE),
            "gold": tuple(s.name for s in self.gold),
        }

    @property
    def pii_columns(self) -> frozenset[str]:
        """Every column any table declares as personal data."""
        return frozenset(c for spec in self.tables for c in spec.pii)


@cache
def _read(path: Path) -> str:
    return path.read_text()


# ---- reading the specs ----------------------------------------------------------------------------

_SILVER_FIELDS = {
    "description",
    "entity",
    "key",
    "sequence_by",
    "parents",
    "accepted",
    "ranges",
    "formats",
    "checks",
    "freshness",
    "partition_by",
    "pii",
}
_GOLD_FIELDS = {
    "description",
    "key",
    "accepted",
    "ranges",
    "every_present",
    "totals",
    "parents",
    "checks",
    "freshness",
    "partition_by",
    "pii",
    "incremental",
}


def _fail(path: Path, message: str) -> CatalogError:
    return CatalogError(f"{path}: {message}")


def _strings(path: Path, value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(path, f"{what} must be a list of names")
    return tuple(value)


def _freshness(path: Path, raw: Any) -> Freshness:
    if not isinstance(raw, dict) or set(raw) != {"warn_hours", "fail_hours"}:
        raise _fail(path, "[freshness] needs warn_hours and fail_hours (and nothing else)")
    warn, fail = raw["warn_hours"], raw["fail_hours"]
    if not all(isinstance(h, int | float) and h > 0 for h in (warn, fail)) or warn > fail:
        raise _fail(path, "freshness hours must be positive, warn_hours <= fail_hours")
    return Freshness(timedelta(hours=warn), timedelta(hours=fail))


def _accepted(path: Path, raw: dict) -> tuple[Accepted, ...]:
    out = []
    for column, rule in raw.items():
        if not isinstance(rule, dict) or not set(rule) <= {"values", "nullable"}:
            raise _fail(path, f"accepted.{column} must be {{ values = <name>, nullable = bool }}")
        if rule.get("values") not in thresholds.VOCABULARIES:
            raise _fail(
                path,
                f"accepted.{column}: values must name one of {sorted(thresholds.VOCABULARIES)}",
            )
        out.append(Accepted(column, rule["values"], bool(rule.get("nullable", False))))
    return tuple(out)


def _ranges(path: Path, raw: dict) -> tuple[Range, ...]:
    out = []
    for column, rule in raw.items():
        if not isinstance(rule, dict) or not rule or not set(rule) <= {"min", "max"}:
            raise _fail(path, f"ranges.{column} must be {{ min = n, max = n }} (either or both)")
        out.append(Range(column, rule.get("min"), rule.get("max")))
    return tuple(out)


def _formats(path: Path, raw: dict) -> tuple[Format, ...]:
    out = []
    for column, rule in raw.items():
        if not isinstance(rule, dict) or set(rule) != {"pattern", "what"}:
            raise _fail(path, f"formats.{column} must be {{ pattern = '<regex>', what = '...' }}")
        out.append(Format(column, rule["pattern"], rule["what"]))
    return tuple(out)


def _checks(path: Path, raw: Any) -> tuple[CustomCheck, ...]:
    if not isinstance(raw, list):
        raise _fail(path, "[[checks]] must be an array of tables")
    out = []
    for check in raw:
        if not isinstance(check, dict) or not {"name", "description", "sql"} <= set(check):
            raise _fail(path, "every [[checks]] needs name, description and sql")
        unknown = set(check) - {"name", "description", "sql", "column", "uses"}
        if unknown:
            raise _fail(path, f"[[checks]] {check['name']}: unknown fields {sorted(unknown)}")
        out.append(
            CustomCheck(
                check["name"],
                check["description"],
                " ".join(check["sql"].split()),
                check.get("column"),
                _strings(path, check.get("uses", []), "uses"),
            )
        )
    return tuple(out)


def _incremental(path: Path, raw: Any) -> Incremental:
    if not isinstance(raw, dict) or not isinstance(raw.get("key"), str):
        raise _fail(path, "incremental must be a table with a key (a column name)")
    unknown = set(raw) - {"key", "touches", "rebuild_on"}
    if unknown:
        raise _fail(path, f"unknown incremental fields {sorted(unknown)}")
    return Incremental(
        key=raw["key"],
        touches=_string_map(path, raw.get("touches", {}), "incremental.touches"),
        rebuild_on=_strings(path, raw.get("rebuild_on", []), "incremental.rebuild_on"),
    )


def _string_map(path: Path, raw: Any, what: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise _fail(path, f"[{what}] maps names to names")
    return dict(raw)


def _spec(layer: str, path: Path) -> TableSpec:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise _fail(path, f"not valid TOML: {e}") from None
    allowed = _SILVER_FIELDS if layer == "silver" else _GOLD_FIELDS
    unknown = set(raw) - allowed
    if unknown:
        raise _fail(path, f"unknown fields {sorted(unknown)}; a {layer} spec has {sorted(allowed)}")
    for required in ("description", "key", "freshness"):
        if required not in raw:
            raise _fail(path, f"{required} is required")
    entity = None
    if layer == "silver":
        if raw.get("entity") not in contracts.BY_NAME:
            raise _fail(path, f"entity must be one of {sorted(contracts.BY_NAME)}")
        entity = contracts.BY_NAME[raw["entity"]]
        if "sequence_by" not in raw:
            raise _fail(path, "sequence_by is required (the columns that order versions)")
    spec = TableSpec(
        layer=layer,
        name=path.stem,
        description=" ".join(str(raw["description"]).split()),
        key=_strings(path, raw["key"], "key"),
        freshness=_freshness(path, raw["freshness"]),
        entity=entity,
        sequence_by=_strings(path, raw.get("sequence_by", []), "sequence_by"),
        parents=_string_map(path, raw.get("parents", {}), "parents"),
        accepted=_accepted(path, raw.get("accepted", {})),
        ranges=_ranges(path, raw.get("ranges", {})),
        formats=_formats(path, raw.get("formats", {})),
        every_present=_string_map(path, raw.get("every_present", {}), "every_present"),
        totals=_string_map(path, raw.get("totals", {}), "totals"),
        checks=_checks(path, raw.get("checks", [])),
        partition_by=_strings(path, raw.get("partition_by", []), "partition_by"),
        pii=_strings(path, raw.get("pii", []), "pii"),
        incremental=_incremental(path, raw["incremental"]) if "incremental" in raw else None,
    )
    if spec.incremental is not None and spec.incremental.key not in spec.key:
        raise _fail(path, f"incremental.key {spec.incremental.key!r} is not a column of the key")
    if entity is not None and spec.key != (entity.key,):
        raise _fail(path, f"key must be [{entity.key!r}], the key of raw {entity.name}")
    return spec


# ---- what the SQL reads -------------------------------------------------------------------------


def tables_read(sql: str, where: Path) -> set[str]:
    """The tables and views a SQL file reads: every table it names, less its CTEs and the tables
    it creates itself."""
    try:
        trees = [t for t in sqlglot.parse(sql, read="duckdb") if t is not None]
    except sqlglot.errors.ParseError as e:
        raise _fail(where, f"cannot be parsed: {e}") from None
    read: set[str] = set()
    local: set[str] = set()
    for tree in trees:
        local |= {cte.alias for cte in tree.find_all(exp.CTE)}
        if isinstance(tree, exp.Create):
            local.add(tree.this.name)
        read |= {t.name for t in tree.find_all(exp.Table)}
    return read - local


def _order(specs: list[TableSpec], needs: dict[str, set[str]], what: str) -> list[TableSpec]:
    """`specs` sorted so that every table comes after those it needs (then by name)."""
    done: list[TableSpec] = []
    pending = sorted(specs, key=lambda s: s.name)
    while pending:
        ready = [s for s in pending if needs[s.name] <= {d.name for d in done}]
        if not ready:
            raise CatalogError(
                f"{what} tables read each other in a cycle: {[s.name for s in pending]}"
            )
        done += ready
        pending = [s for s in pending if s not in ready]
    return done


def load_catalog(root: Path = SQL_DIR) -> Catalog:
    """Read and check every spec under `root` (the package's sql/ folder by default)."""
    root = Path(root)
    silver = [_spec("silver", p) for p in sorted((root / "silver").glob("*.toml"))]
    gold = [_spec("gold", p) for p in sorted((root / "gold").glob("*.toml"))]
    for spec in (*silver, *gold):
        if not (root / f"{spec.path}.sql").exists():
            raise _fail(root / f"{spec.path}.toml", f"has no SQL file {spec.path}.sql")
    orphans = sorted(
        p.name
        for layer in LAYERS
        for p in (root / layer).glob("*.sql")
        if not p.with_suffix(".toml").exists()
    )
    if orphans:
        raise CatalogError(f"{root}: SQL files without a spec beside them: {orphans}")
    silver_names = {s.name for s in silver}
    entities = [s.entity.name for s in silver]
    if sorted(entities) != sorted(contracts.BY_NAME):
        raise CatalogError(
            f"{root}/silver: every raw entity needs exactly one silver table; have {entities}"
        )

    # Silver: the declared parents are the silver tables the SQL reads, besides its bronze table.
    for spec in silver:
        where = root / f"{spec.path}.sql"
        read = tables_read(_read(where), where)
        expected = {spec.entity.bronze_table, *spec.parent_tables}
        if read != expected:
            raise _fail(
                where.with_suffix(".toml"),
                f"parents {sorted(spec.parent_tables)} disagree with {where.name}, which reads "
                f"{sorted(read - {spec.entity.bronze_table})} besides {spec.entity.bronze_table}",
            )
        missing = set(spec.parent_tables) - silver_names
        if missing:
            raise _fail(
                where.with_suffix(".toml"), f"parents {sorted(missing)} are not silver tables"
            )
    silver = _order(silver, {s.name: set(s.parent_tables) for s in silver}, "silver")

    # Gold: the inputs are what the query and the shared views it uses read.
    view_inputs = {
        p.stem: tuple(sorted(tables_read(_read(p), p)))
        for p in sorted((root / "gold" / "views").glob("*.sql"))
    }
    gold_names = {s.name for s in gold}
    resolved = []
    for spec in gold:
        where = root / f"{spec.path}.sql"
        views: list[str] = []
        tables: set[str] = set()

        def visit(names, where=where, views=views, tables=tables):
            for name in sorted(names):
                if name in view_inputs:
                    if name not in views:
                        visit(view_inputs[name])
                        views.append(name)  # after the views it reads
                elif name in silver_names or name in gold_names:
                    tables.add(name)
                else:
                    raise _fail(where, f"reads {name!r}: not a silver or gold table nor a view")

        visit(tables_read(_read(where), where))
        for column, table in {**spec.parents, **spec.every_present}.items():
            if table not in silver_names:
                raise _fail(where.with_suffix(".toml"), f"{column} -> {table}: not a silver table")
        inputs = tuple([s.name for s in silver if s.name in tables] + sorted(tables & gold_names))
        if spec.incremental is not None:
            named = set(spec.incremental.touches) | set(spec.incremental.rebuild_on)
            if named - set(inputs):
                raise _fail(
                    where,
                    f"incremental names {sorted(named - set(inputs))}, which its SQL does not "
                    f"read (it reads {list(inputs)})",
                )
        resolved.append(TableSpec(**{**spec.__dict__, "inputs": inputs, "views": tuple(views)}))
    gold = _order(resolved, {s.name: set(s.inputs) & gold_names for s in resolved}, "gold")
    return Catalog(root, tuple(silver), tuple(gold), view_inputs)


CATALOG = load_catalog()
