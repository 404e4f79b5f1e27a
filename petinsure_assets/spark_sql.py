"""The product's silver and gold SQL (DuckDB dialect, `sql/`) translated to Spark SQL with sqlglot.

DESIGN.md section 4: the same SQL runs on Spark, so nothing here is a hand-written Spark copy of a
table. Every file is parsed as DuckDB, the macros of `macros.sql` are expanded inline and the
`getvariable(...)` calls replaced by the values `queries.prepare_session` would set; then a few AST
transforms turn what sqlglot's Spark generator leaves invalid or not equivalent into Spark SQL that
returns the same rows (each transform says why below). `spark_statements()` is the whole silver +
gold program in the order the product runs it; `run_on_spark()` runs it in a Spark session over
bronze Parquet files.

Spark SQL written here is ANSI-safe (Spark 4 runs with `spark.sql.ansi.enabled=true` by default):
lookups that DuckDB answers with NULL use `try_element_at`, casts of text use `try_cast`.

Known differences left (tests/test_spark_sql.py compares the macros with DuckDB on dirty text):
DuckDB's special timestamps ('infinity', 'epoch', BC dates, 24:00:00) and year 0 have no Spark
equivalent and come out NULL (the strict grammar of parse_date and parse_ts accepts none of them); numeric text with '_' separators or hex integers is NULL on Spark;
CAST of a non-integer to an integer type rounds in DuckDB and truncates in Spark (the SQL files
cast only integers that way; TRY_CAST of text is translated exactly); DuckDB's `/` on DECIMALs
gives a DOUBLE, Spark's a DECIMAL (the SQL files divide only by DOUBLE).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB

from petinsure_assets.catalog import CATALOG, Catalog
from petinsure_assets.queries import quarantine_union_sql, silver_statements
from petinsure_assets.thresholds import ACCEPTED_VALUES, THRESHOLDS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


class _DuckDBAsWritten(DuckDB):
    # sqlglot shifts some 1-based DuckDB bracket indexes to 0-based at parse time and not others
    # (it depends on what it can infer about the indexed value); keep them as written, since
    # every bracket is translated below by what it indexes (string, list or map).
    INDEX_OFFSET = 0


READ = _DuckDBAsWritten
WRITE = "spark"

# Characters DuckDB's trim() removes: the Unicode space separators (category Zs), not tab/newline.
# Spark's trim(x) removes only U+0020, so trim(BOTH <these> FROM x) is the equivalent.
_DUCKDB_TRIM_CHARS = (
    " \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u202f\u205f\u3000"
)
# strptime specifiers: the digits DuckDB accepts for each (a year of only zeros excluded), and
# its place in a canonical 'YYYY-MM-DD HH:MM:SS' that Spark's cast to TIMESTAMP_NTZ validates.
_STRPTIME_FIELDS = {
    "Y": (r"(?!0+(?!\d))(\d{1,4})", 0),
    "m": (r"(\d{1,2})", 1),
    "d": (r"(\d{1,2})", 2),
    "H": (r"(\d{1,2})", 3),
    "M": (r"(\d{1,2})", 4),
    "S": (r"(\d{1,2})", 5),
}
_INTEGER_TYPES = {
    exp.DataType.Type.TINYINT,
    exp.DataType.Type.SMALLINT,
    exp.DataType.Type.INT,
    exp.DataType.Type.BIGINT,
}
_FLOAT_TYPES = {exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT}
_TIMESTAMP_TYPES = {exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ}
# Text both DuckDB and Spark cast to the same timestamp, and the wider grammar DuckDB accepts.
_ISO_TIMESTAMP = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"
    r"(Z|[+-]\d{2}(:?\d{2})?)?)?\z"
)
_DUCKDB_DATE_PART = r"^\s*(\d+)[-/\\ ](\d{1,2})[-/\\ ](\d{1,2})(?:T|\s+)?"
_DUCKDB_TIMESTAMP = (
    r"^\s*\d+([-/\\ ])\d{1,2}\1\d{1,2}((T|\s+)\d{1,2}:\d{1,2}(:\d{1,2}(\.\d*)?)?"
    r"\s*(Z|UTC|[+-]\d{1,2}(:?\d{2})?)?)?\z"
)
# Text Java's Double.parseDouble accepts and DuckDB does not: a d/f type suffix or a hex float.
_NOT_A_DUCKDB_DOUBLE = r"(?i)^\s*[+-]?(0x|.*[0-9.][df]\s*\z)"
# A timestamp as written by _to_json's formats: the seconds, the fraction up to its last non-zero
# digit, then trailing zeros (dropped) and the offset if any, up to the closing quote.
_SPARK_JSON_TIMESTAMP = (
    r'("\d{4,}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?=\.\d{6}(?:[+-]\d{2,4})?")'
    r'(\.\d*[1-9])?\.?0*((?:[+-]\d{2,4})?")'
)
# Expressions that are lists in DuckDB (so x[i] is a 1-based element, not a character).
_LIST_EXPRESSIONS = (
    exp.Array,
    exp.ArrayFilter,
    exp.Transform,
    exp.ArrayAgg,
    exp.Split,
    exp.ArrayConcat,
    exp.ArraySlice,
    exp.ArraySort,
)
# Expressions that are strings in DuckDB (so x[i] and x[a:b] are characters).
_STRING_EXPRESSIONS = (
    exp.Right,
    exp.Left,
    exp.Substring,
    exp.RegexpReplace,
    exp.Lower,
    exp.Upper,
    exp.Trim,
    exp.DPipe,
    exp.Concat,
    exp.ConcatWs,
    exp.Literal,
)

GOLD = "gold"  # statement kinds: a silver temp table, a shared gold view, a gold table's query
TABLE = "table"
VIEW = "view"


class Statement(NamedTuple):
    name: str
    kind: str  # "table" (a DuckDB temp table: a materialized temp view), "view", or "gold"
    sql: str  # one Spark SQL query (SELECT ...)


# ---- macros and variables ------------------------------------------------------------------------


class Macro(NamedTuple):
    params: tuple[str, ...]
    body: exp.Expression


@cache
def macros(catalog: Catalog = CATALOG) -> dict[str, Macro]:
    """The CREATE MACRO definitions of the catalog's macros.sql, parsed: name -> (parameters,
    body)."""
    out: dict[str, Macro] = {}
    for statement in sqlglot.parse(catalog.sql("macros"), read=READ):
        if not (isinstance(statement, exp.Create) and statement.kind == "MACRO"):
            raise ValueError(f"macros.sql: not a macro: {statement.sql(READ)[:80]}")
        signature = statement.this
        out[signature.this.name.lower()] = Macro(
            tuple(p.name for p in signature.expressions), statement.expression
        )
    return out


def variables(as_of: dt.date) -> dict[str, object]:
    """What queries.prepare_session sets with SET VARIABLE, by name."""
    return {**{k: list(v) for k, v in ACCEPTED_VALUES.items()}, **THRESHOLDS, "as_of": as_of}


def _call_name(node: exp.Expression) -> str | None:
    return node.name.lower() if isinstance(node, exp.Anonymous) else None


def expand_macros(
    tree: exp.Expression, defined: Mapping[str, Macro] | None = None
) -> exp.Expression:
    """Replace every macro call by the macro's body with the call's arguments substituted, until
    no call is left (macros call macros, and arguments may be macro calls themselves)."""
    defined = macros() if defined is None else defined
    for _ in range(1000):
        call = next((n for n in tree.find_all(exp.Anonymous) if _call_name(n) in defined), None)
        if call is None:
            return tree
        macro = defined[_call_name(call)]
        if len(call.expressions) != len(macro.params):
            raise ValueError(f"{call.sql(READ)}: macro takes {len(macro.params)} arguments")
        expanded = _substitute(macro.body.copy(), dict(zip(macro.params, call.expressions)))
        # A body is an expression; parenthesised so that operator precedence stays the macro's.
        replacement = (
            exp.paren(expanded, copy=False) if isinstance(expanded, exp.Binary) else expanded
        )
        if call is tree:
            tree = replacement
        else:
            call.replace(replacement)
    raise RecursionError("macro expansion does not terminate")


def _substitute(body: exp.Expression, args: Mapping[str, exp.Expression]) -> exp.Expression:
    targets = [
        c
        for c in body.find_all(exp.Column)
        if (c.name in args and not c.table) or (c.table in args and not c.args.get("db"))
    ]
    for column in targets:
        if not column.table:
            new = args[column.name].copy()
        else:  # p.field where p is a struct argument: field access on the argument
            new = exp.Dot(this=args[column.table].copy(), expression=column.this.copy())
        new = exp.paren(new, copy=False) if isinstance(new, exp.Binary) else new
        if column is body:
            body = new
        else:
            column.replace(new)
    return body


def _literal(value: object) -> exp.Expression:
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, dt.date):
        return exp.cast(exp.Literal.string(value.isoformat()), exp.DataType.Type.DATE)
    if isinstance(value, int):
        return exp.Literal.number(value)
    if isinstance(value, float):  # DuckDB holds a Python float as a DOUBLE variable
        return exp.cast(exp.Literal.number(repr(value)), exp.DataType.Type.DOUBLE)
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, (list, tuple)):
        return exp.Array(expressions=[_literal(v) for v in value])
    raise TypeError(f"no SQL literal for {value!r}")


def substitute_variables(tree: exp.Expression, values: Mapping[str, object]) -> exp.Expression:
    """getvariable('name') -> the literal value (Spark has no session variables to read)."""

    def replace(node: exp.Expression) -> exp.Expression:
        if _call_name(node) == "getvariable":
            (name,) = node.expressions
            if not (isinstance(name, exp.Literal) and name.is_string and name.this in values):
                raise KeyError(f"{node.sql(READ)}: no such variable")
            return _literal(values[name.this])
        return node

    return tree.transform(replace)


# ---- transforms to Spark -------------------------------------------------------------------------


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _try_cast(value: exp.Expression, to: str | exp.DataType) -> exp.Expression:
    return exp.TryCast(this=value, to=exp.DataType.build(to, dialect=WRITE), safe=True)


def _string(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def _int_literal(node: exp.Expression) -> int | None:
    if isinstance(node, exp.Literal) and not node.is_string and re.fullmatch(r"\d+", node.this):
        return int(node.this)
    if isinstance(node, exp.Neg):
        inner = _int_literal(node.this)
        return None if inner is None else -inner
    return None


def _brackets(node: exp.Expression) -> exp.Expression:
    # DuckDB: MAP {k: v, ...}[key] is the value or NULL. sqlglot reads it as MAP applied to a
    # struct lookup and writes MAP STRUCT(...)[...], which is no Spark; and Spark's map[key]
    # fails under ANSI for a missing key, so: try_element_at(map(k1, v1, ...), key).
    if isinstance(node, exp.ToMap):
        inner = node.this
        struct, key = (
            (inner.this, inner.expressions) if isinstance(inner, exp.Bracket) else (inner, None)
        )
        if not isinstance(struct, exp.Struct):
            raise NotImplementedError(f"MAP over {struct.sql(READ)[:60]}")
        pairs: list[exp.Expression] = []
        for entry in struct.expressions:
            k = entry.this if isinstance(entry.this, exp.Literal) else _string(entry.this.name)
            pairs += [k.copy(), entry.expression.copy()]
        spark_map = _fn("map", *pairs)
        if key is None:
            return spark_map
        (key,) = key
        return _fn("try_element_at", spark_map, key.copy())
    if not isinstance(node, exp.Bracket):
        return node
    value, (index,) = node.this, node.expressions
    if isinstance(value, exp.Struct) and isinstance(node.parent, exp.ToMap):
        return node  # the key lookup of a MAP literal: translated with its ToMap parent
    if isinstance(value, _LIST_EXPRESSIONS):
        # DuckDB list[i] is 1-based, from the end when negative, NULL out of range or for 0;
        # Spark's arr[i] is 0-based and fails under ANSI out of range; try_element_at is 1-based,
        # NULL out of range, but fails for 0 - hence nullif(i, 0) unless i is a literal.
        if isinstance(index, exp.Slice):
            raise NotImplementedError(f"list slice {node.sql(READ)}")
        if _int_literal(index) == 0:
            return exp.Null()
        if _int_literal(index) is None:  # and an INT: Spark's element_at takes no BIGINT index
            if not (isinstance(index, exp.Nullif) and _int_literal(index.expression) == 0):
                index = exp.Nullif(this=index, expression=exp.Literal.number(0))
            index = exp.cast(index, exp.DataType.Type.INT)
        return _fn("try_element_at", value, index)
    if isinstance(value, _STRING_EXPRESSIONS):
        # DuckDB indexes and slices strings (1-based, slice bounds inclusive); Spark does not.
        if isinstance(index, exp.Slice):
            start, end = _int_literal(index.this), _int_literal(index.expression)
            if start is None or end is None or start < 1 or end < start:
                raise NotImplementedError(f"string slice {node.sql(READ)}")
            return exp.Substring(
                this=value,
                start=exp.Literal.number(start),
                length=exp.Literal.number(end - start + 1),
            )
        return exp.Substring(this=value, start=index, length=exp.Literal.number(1))
    raise NotImplementedError(
        f"{node.sql(READ)}: cannot tell whether {value.sql(READ)[:60]} is a string, list or map"
    )


def _list_functions(node: exp.Expression) -> exp.Expression:
    # DuckDB list_position is NULL when the element is absent; Spark's array_position returns 0
    # (sqlglot passes list_position through by name, which Spark does not know).
    if _call_name(node) in ("list_position", "list_indexof", "array_position", "array_indexof"):
        haystack, needle = node.expressions
        return exp.Nullif(
            this=_fn("array_position", haystack, needle), expression=exp.Literal.number(0)
        )
    return node


def _trim(node: exp.Expression) -> exp.Expression:
    # DuckDB trim(x) strips every Unicode space separator (U+00A0, U+3000, ...), Spark's only ' '.
    if isinstance(node, exp.Trim) and node.args.get("expression") is None:
        return exp.Trim(this=node.this, expression=_string(_DUCKDB_TRIM_CHARS), position="BOTH")
    return node


def _strptime(node: exp.Expression) -> exp.Expression:
    # try_strptime has no sqlglot mapping to Spark, and Spark's datetime patterns do not parse
    # like DuckDB's (1-4 digit %Y, 1-2 digit %m/%d, surrounding whitespace ignored). Match the
    # format as a regex, rebuild a canonical 'YYYY-MM-DD HH:MM:SS', let try_cast validate the date.
    if _call_name(node) not in ("try_strptime", "strptime"):
        return node
    if _call_name(node) == "strptime":
        raise NotImplementedError("strptime (raises on bad input in DuckDB); use try_strptime")
    text, fmt = node.expressions
    if not (isinstance(fmt, exp.Literal) and fmt.is_string):
        raise NotImplementedError("try_strptime with a format that is not a literal")
    pattern, canonical, group = [r"^\s*"], ["0000", "01", "01", "00", "00", "00"], 0
    for literal, spec in re.findall(r"([^%]*)(?:%(.)|$)", fmt.this):
        pattern.append(re.escape(literal))
        if not spec:
            continue
        if spec not in _STRPTIME_FIELDS:
            raise NotImplementedError(f"strptime specifier %{spec}")
        group += 1
        regex, slot = _STRPTIME_FIELDS[spec]
        pattern.append(regex)
        canonical[slot] = f"000${group}" if spec == "Y" else f"${group}"
    pattern.append(r"\s*\z")
    regex = _string("".join(pattern))
    stamp = "{}-{}-{} {}:{}:{}".format(*canonical)
    # Java regex syntax already, so not through _regexp. The year, padded with zeros, then cut
    # back to 4+ digits: Spark casts 4 to 6 digit years and fails on year 0, which is excluded.
    rebuilt = _fn(
        "regexp_replace",
        _fn("regexp_replace", text.copy(), regex.copy(), _string(stamp)),
        _string(r"^0*(\d{4,})"),
        _string("$1"),
    )
    return exp.Case(
        ifs=[
            exp.If(
                this=exp.RegexpLike(this=text.copy(), expression=regex),
                true=_try_cast(rebuilt, "TIMESTAMP_NTZ"),
            )
        ]
    )


def _regexp(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.RegexpFullMatch):
        # DuckDB's regexp_full_match (RE2 full match) has no Spark function; RLIKE finds a match
        # anywhere, so anchor it. \z, not $: Java's $ also matches before a final newline.
        pattern = node.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string) or node.args.get("options"):
            raise NotImplementedError(f"{node.sql(READ)}: only a literal pattern without options")
        return exp.RegexpLike(this=node.this, expression=_string(f"^(?:{pattern.this})\\z"))
    if isinstance(node, exp.RegexpReplace):
        # DuckDB replaces the first match unless the 'g' option is given; Spark replaces all.
        # sqlglot drops the option either way, so only 'g' is accepted; backreferences \1 -> $1.
        options = node.args.get("modifiers")
        flags = options.this if isinstance(options, exp.Literal) else None
        if flags is None or set(flags) - {"g", "i"} or "g" not in flags:
            raise NotImplementedError(f"{node.sql(READ)}: only regexp_replace(..., 'g'|'gi')")
        pattern, replacement = node.expression, node.args["replacement"]
        if not (isinstance(pattern, exp.Literal) and isinstance(replacement, exp.Literal)):
            raise NotImplementedError(f"{node.sql(READ)}: only literal pattern and replacement")
        java_replacement = re.sub(r"\\(\d)", r"$\1", replacement.this.replace("$", r"\$"))
        java_pattern = ("(?i)" if "i" in flags else "") + pattern.this
        return exp.RegexpReplace(
            this=node.this, expression=_string(java_pattern), replacement=_string(java_replacement)
        )
    return node


def _casts(node: exp.Expression) -> exp.Expression:
    if not isinstance(node, (exp.Cast, exp.TryCast)):
        return node
    to = node.to
    if to.this == exp.DataType.Type.INT128:
        # HUGEINT: Spark has no 128-bit integer; DECIMAL(38, 0) holds the same integers.
        node.set("to", exp.DataType.build("DECIMAL(38, 0)"))
        return node
    if isinstance(node, exp.TryCast) and to.this in _INTEGER_TYPES:
        # DuckDB casts text '12.5' to 13 and '1e3' to 1000; Spark's text-to-int cast gives NULL.
        # Its text-to-decimal cast accepts both and rounds half up like DuckDB.
        return _try_cast(_try_cast(node.this, "DECIMAL(38, 0)"), to.copy())
    if isinstance(node, exp.TryCast) and to.this in _TIMESTAMP_TYPES:
        # Text to timestamp: Spark also casts 'yyyy' and 'yyyy-mm' (to the 1st) and 'date hh',
        # DuckDB does not; DuckDB also takes 1-3 digit years and / \ or space between date parts,
        # Spark does not. Plain ISO text is cast as it is; other text only if DuckDB's grammar
        # takes it, rewritten to ISO first.
        text = node.this
        iso = exp.RegexpLike(this=text.copy(), expression=_string(_ISO_TIMESTAMP))
        duckdb_form = exp.RegexpLike(this=text.copy(), expression=_string(_DUCKDB_TIMESTAMP))
        rewritten = _fn(
            "regexp_replace",
            _fn("regexp_replace", text.copy(), _string(_DUCKDB_DATE_PART), _string("000$1-$2-$3 ")),
            _string(r"^0*(\d{4,})"),
            _string("$1"),
        )
        return exp.Case(
            ifs=[
                exp.If(this=iso, true=node),
                exp.If(this=duckdb_form, true=_try_cast(rewritten, to.copy())),
            ]
        )
    if isinstance(node, exp.TryCast) and to.this in _FLOAT_TYPES:
        # Spark parses text with Java's Double.parseDouble, which also accepts '1.5d' and hex
        # floats that DuckDB rejects.
        guard = exp.RegexpLike(this=node.this.copy(), expression=_string(_NOT_A_DUCKDB_DOUBLE))
        return exp.Case(ifs=[exp.If(this=exp.not_(guard), true=node)])
    return node


def _to_json(node: exp.Expression) -> exp.Expression:
    # DuckDB's to_json keeps null fields ("a":null), Spark's drops them unless told not to; and
    # DuckDB writes a timestamp as CAST(ts AS VARCHAR) does ('2026-01-05 10:00:00.12+00', the
    # fraction without trailing zeros), Spark in milliseconds: write microseconds, trim the zeros.
    if _call_name(node) == "to_json" and len(node.expressions) == 1:
        options = _fn(
            "map",
            *map(
                _string,
                (
                    "ignoreNullFields",
                    "false",
                    "timestampFormat",
                    "yyyy-MM-dd HH:mm:ss.SSSSSSx",
                    "timestampNTZFormat",
                    "yyyy-MM-dd HH:mm:ss.SSSSSS",
                ),
            ),
        )
        json = _fn("to_json", node.expressions[0], options)
        return _fn("regexp_replace", json, _string(_SPARK_JSON_TIMESTAMP), _string("$1$2$3"))
    return node


def _row_structs(tree: exp.Expression) -> exp.Expression:
    """DuckDB reads a bare table alias as the whole row as a struct (`b AS _bronze`); Spark
    spells that struct(b.*). (Only explicit aliases: DuckDB prefers a column of the same name,
    which cannot be told without schemas, and an alias is not a column name in these files.)"""
    for select in list(tree.find_all(exp.Select)):
        sources = [select.args.get("from_")] + list(select.args.get("joins") or [])
        aliases = {s.this.alias for s in sources if s is not None and s.this.alias}
        for column in list(select.find_all(exp.Column)):
            if (
                not column.table
                and column.name in aliases
                and column.find_ancestor(exp.Select) is select
            ):
                row = exp.Column(this=exp.Star(), table=exp.to_identifier(column.name))
                column.replace(exp.Struct(expressions=[row]))
    return tree


def _eliminate_qualify(tree: exp.Expression) -> exp.Expression:
    """Spark has no QUALIFY. SELECT cols FROM ... QUALIFY cond becomes
    SELECT * EXCEPT (_qualify) FROM (SELECT cols, cond AS _qualify FROM ...) WHERE _qualify.
    (sqlglot's own rewrite keeps its helper column in the output when the list is a star.)"""
    for select in list(tree.find_all(exp.Select)):
        qualify = select.args.get("qualify")
        if qualify is None:
            continue
        if any(select.args.get(k) for k in ("order", "limit", "offset", "distinct")):
            raise NotImplementedError("QUALIFY with ORDER BY/LIMIT/DISTINCT")
        select.set("qualify", None)
        select.select(exp.alias_(qualify.this, "_qualify"), copy=False)
        outer = sqlglot.parse_one(
            "SELECT * EXCLUDE (_qualify) FROM _inner WHERE _qualify", read=READ
        )
        inner_with = select.args.get("with_")
        select.set("with_", None)
        alias = exp.TableAlias(this=exp.to_identifier("_qualified"))
        outer.set("from_", exp.From(this=exp.Subquery(this=select.copy(), alias=alias)))
        if inner_with is not None:
            outer.set("with_", inner_with)
        if select is tree:
            tree = outer
        else:
            select.replace(outer)
    return tree


# Applied to every node after macros and variables are expanded, children before parents (so a
# node sees its operands already translated; brackets, for one, look at what they index). Each
# transform is one pass over the tree as the earlier passes left it; _casts runs before
# _strptime so that the casts _strptime writes (already Spark-exact) are not guarded again.
_NODE_TRANSFORMS: tuple[Callable[[exp.Expression], exp.Expression], ...] = (
    _trim,
    _casts,
    _strptime,
    _regexp,
    _to_json,
    _list_functions,
    _brackets,
)


def _bottom_up(
    tree: exp.Expression, transform: Callable[[exp.Expression], exp.Expression]
) -> exp.Expression:
    # Reversed pre-order visits every node after all of its descendants. The node's place is
    # taken before the transform runs: a transform may reuse the node inside its replacement,
    # which re-parents it.
    for node in reversed(list(tree.walk(bfs=False))):
        parent, arg_key, index = node.parent, node.arg_key, node.index
        new = transform(node)
        if new is not node:
            if node is tree:
                tree = new
            else:
                parent.set(arg_key, new, index)
    return tree


def to_spark(tree: exp.Expression, values: Mapping[str, object], catalog: Catalog = CATALOG) -> str:
    """One parsed DuckDB query (the catalog's macros not yet expanded) as Spark SQL."""
    tree = expand_macros(tree.copy(), macros(catalog))
    tree = substitute_variables(tree, values)
    tree = _row_structs(tree)
    for transform in _NODE_TRANSFORMS:
        tree = _bottom_up(tree, transform)
    tree = _eliminate_qualify(tree)
    # `//` -> DIV, list_filter/lambda -> filter/->, unnest(range) -> explode(sequence), EXCLUDE ->
    # EXCEPT, strftime -> date_format, null ordering made explicit: sqlglot's Spark generator.
    return tree.sql(dialect=WRITE)


def translate(sql: str, as_of: dt.date) -> list[str]:
    """Spark SQL for DuckDB queries written against the product's macros and variables."""
    return [to_spark(tree, variables(as_of)) for tree in sqlglot.parse(sql, read=READ) if tree]


def translate_file(name: str, as_of: dt.date, *, gold_table: str | None = None) -> list[Statement]:
    """The statements of sql/<name>.sql as Spark SQL (`translate_statements`)."""
    return translate_statements(CATALOG.sql(name), as_of, name=name, gold_table=gold_table)


def translate_statements(
    sql: str, as_of: dt.date, *, name: str, gold_table: str | None = None
) -> list[Statement]:
    """DuckDB statements as Spark SQL. A CREATE TEMP TABLE/VIEW becomes its query; a bare SELECT
    (a gold table's file) is named after `gold_table`."""
    values = variables(as_of)
    out: list[Statement] = []
    for statement in sqlglot.parse(sql, read=READ):
        if statement is None:
            continue
        if isinstance(statement, exp.Create):
            kind = {"TABLE": TABLE, "VIEW": VIEW}.get(statement.kind or "")
            if kind is None or not isinstance(statement.expression, exp.Query):
                raise NotImplementedError(f"{name}: CREATE {statement.kind} is not translated")
            out.append(Statement(statement.this.name, kind, to_spark(statement.expression, values)))
        elif isinstance(statement, exp.Query):
            if gold_table is None:
                raise ValueError(f"{name}: a bare query outside a gold table's file")
            out.append(Statement(gold_table, GOLD, to_spark(statement, values)))
        else:
            raise NotImplementedError(f"{name}: {type(statement).__name__} statement")
    return out


def spark_statements(as_of: dt.date) -> list[Statement]:
    """The whole silver + gold program as Spark SQL, in the order the product runs it: per silver
    table (parents first) its file and its latest versions, the quarantine, then per gold table
    its shared views (each once) and its query. Every statement is (name, kind, sql)."""
    program: list[Statement] = []
    for spec in CATALOG.silver:
        for i, statement in enumerate(silver_statements(spec)):
            program += translate_statements(statement, as_of, name=f"{spec.path}[{i}]")
    program += translate_statements(quarantine_union_sql(), as_of, name="silver/quarantine")
    views_done: set[str] = set()
    for spec in CATALOG.gold:
        for view in spec.views:
            if view not in views_done:
                program += translate_file(f"gold/views/{view}", as_of)
                views_done.add(view)
        program += translate_file(spec.path, as_of, gold_table=spec.name)
    return program


def output_tables() -> tuple[list[str], list[str]]:
    """(silver tables incl. quarantine, gold tables): what run_on_spark returns."""
    tables = CATALOG.pipeline_tables
    return list(tables["silver"]), list(tables["gold"])


# ---- running on Spark ----------------------------------------------------------------------------


def bronze_spark_schema(bronze_table: str):
    """The Spark schema of a bronze table, from the bronze contract (ingest.bronze_schema)."""
    import pyarrow as pa
    from pyspark.sql import types as T

    from petinsure_assets import contracts
    from petinsure_assets.ingest import bronze_schema

    entity = next(e for e in contracts.ENTITIES if e.bronze_table == bronze_table)

    def spark_type(t: pa.DataType):
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return T.StringType()
        if pa.types.is_int64(t):
            return T.LongType()
        if pa.types.is_timestamp(t):
            return T.TimestampType() if t.tz else T.TimestampNTZType()
        raise TypeError(f"bronze column type {t} has no Spark mapping here")

    return T.StructType(
        [T.StructField(f.name, spark_type(f.type), True) for f in bronze_schema(entity)]
    )


def register_bronze(spark: SparkSession, bronze_paths: Mapping[str, Sequence[str]]) -> None:
    """Each bronze table as a temp view over its Parquet data files (read with the contract's
    schema, so files written before a column existed read it as NULL)."""
    from petinsure_assets import contracts

    for entity in contracts.ENTITIES:
        name = entity.bronze_table
        schema = bronze_spark_schema(name)
        paths = list(bronze_paths.get(name, ()))
        frame = (
            spark.read.schema(schema).parquet(*paths)
            if paths
            else spark.createDataFrame([], schema)
        )
        frame.createOrReplaceTempView(name)


def run_on_spark(
    spark: SparkSession, bronze_paths: Mapping[str, Sequence[str]], as_of: dt.date
) -> dict[str, DataFrame]:
    """Run the silver + gold program in `spark` over bronze Parquet files ({"claims_raw": [uri,
    ...], ...}); returns the silver tables (with quarantine) and gold tables as DataFrames by name.

    DuckDB's temp tables, and the gold tables (later gold tables read earlier ones), are
    materialized in order as temp views over an eager local checkpoint: cached data with a leaf
    plan. (A plain cached view keeps the whole lineage back to bronze in every later plan, and
    Spark then spends more time analysing and matching those plans than running them.) The shared
    gold views stay views."""
    register_bronze(spark, bronze_paths)
    for statement in spark_statements(as_of):
        frame = spark.sql(statement.sql)
        if statement.kind in (TABLE, GOLD):
            frame = frame.localCheckpoint(eager=True)
        frame.createOrReplaceTempView(statement.name)
    silver, gold = output_tables()
    return {name: spark.table(name) for name in [*silver, *gold]}
