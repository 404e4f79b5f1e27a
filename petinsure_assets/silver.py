"""Silver: typed, cleaned, validated and deduplicated tables plus the quarantine, rebuilt from all
of bronze in one DuckDB session (parents before children, so foreign keys are checked against the
parents' silver keys). The rules are the SQL files in sql/silver/ (docs/rules.md, "Silver").

Every silver commit records its inputs (the bronze versions read and a hash of the SQL); a run
whose inputs equal those of the last commit of every silver table writes nothing and reports the
tables unchanged (resources.py, "inputs fingerprints")."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from petinsure_assets import contracts
from petinsure_assets.bronze import OWNER
from petinsure_assets.lake import DeltaSource, TableWrite
from petinsure_assets.queries import prepare_session, sql_text
from petinsure_assets.resources import (
    LakeResource,
    Unchanged,
    inputs_commit_metadata,
    unchanged_version,
)

# silver table -> (its bronze entity, whose SQL file stages `<entity>_staged`; the silver tables
# its foreign keys point to)
SILVER_TABLES: dict[str, tuple[contracts.Entity, tuple[str, ...]]] = {
    "dim_customers": (contracts.CUSTOMERS, ()),
    "dim_providers": (contracts.PROVIDERS, ()),
    "dim_pets": (contracts.PETS, ("dim_customers",)),
    "dim_policies": (contracts.POLICIES, ("dim_customers", "dim_pets")),
    "fact_claims": (
        contracts.CLAIMS,
        ("dim_customers", "dim_policies", "dim_pets", "dim_providers"),
    ),
}

DESCRIPTIONS = {
    "dim_customers": "Customers, typed and cleaned (email, phone, state), latest version per customer_id.",
    "dim_providers": "Vet providers, typed and cleaned, latest version per provider_id.",
    "dim_pets": "Pets of known customers, typed and cleaned, latest version per pet_id.",
    "dim_policies": "Policies of known customers and pets with valid dates and an accepted status, latest version per policy_id.",
    "fact_claims": "Claims with a valid service date, amount and status whose customer, policy, pet and provider exist, latest version per claim_id.",
    "quarantine": "Every bronze record that failed a hard rule, with entity, key, reason code, detail, source file and line.",
}


@dg.multi_asset(
    ins={e.bronze_table: dg.AssetIn(key=["bronze", e.bronze_table]) for e in contracts.ENTITIES},
    outs={
        name: dg.AssetOut(
            key=["silver", name],
            group_name="silver",
            kinds={"delta", "duckdb"},
            owners=[OWNER],
            description=DESCRIPTIONS[name],
        )
        for name in [*SILVER_TABLES, "quarantine"]
    },
    internal_asset_deps={
        **{
            name: {dg.AssetKey(["bronze", entity.bronze_table])}
            | {dg.AssetKey(["silver", p]) for p in parents}
            for name, (entity, parents) in SILVER_TABLES.items()
        },
        "quarantine": {dg.AssetKey(["bronze", e.bronze_table]) for e in contracts.ENTITIES},
    },
)
def silver(
    context: dg.AssetExecutionContext,
    duckdb: DuckDBResource,
    lake: LakeResource,
    **bronze: DeltaSource,
):
    outputs = [*SILVER_TABLES, "quarantine"]
    inputs = inputs_commit_metadata(bronze, [f"silver/{name}" for name in outputs])
    the_lake = lake.lake()
    unchanged = {
        name: unchanged_version(the_lake, the_lake.table_uri("silver", name), inputs)
        for name in outputs
    }
    if all(v is not None for v in unchanged.values()):
        context.log.info(
            "silver: bronze and the silver SQL are as at the last write; nothing to do"
        )
        for name, version in unchanged.items():
            # An output (not none) so that gold still runs: it may have a new as-of date.
            yield dg.Output(Unchanged(version), output_name=name)
        return
    with duckdb.get_connection() as con:
        prepare_session(con)
        for name, source in bronze.items():
            source.register(con, name)
        summary: dict[str, dict[str, int]] = {}
        for name, (entity, _) in SILVER_TABLES.items():
            con.execute(sql_text(f"silver/{name}"))
            staged = f"{entity.name}_staged"
            ((bronze_rows, valid, rejected),) = con.sql(
                f"SELECT count(*), count(*) FILTER (WHERE _reject_reason IS NULL), "
                f"count(*) FILTER (WHERE _reject_reason IS NOT NULL) FROM {staged}"
            ).fetchall()
            summary[name] = {
                "bronze_rows": bronze_rows,
                "valid_before_dedup": valid,
                "quarantined": rejected,
            }
            context.log.info(
                f"{name}: {bronze_rows} bronze rows -> {valid} valid, {rejected} quarantined"
            )
        for name in SILVER_TABLES:
            ((rows, mean),) = con.sql(
                f"SELECT count(*), coalesce(avg(_quality_score), 0) FROM {name}"
            ).fetchall()
            quality = con.sql(
                f"SELECT _quality_score // 10 * 10, count(*) FROM {name} GROUP BY 1 ORDER BY 1"
            ).fetchall()
            counts = summary[name]
            yield dg.Output(
                TableWrite(
                    con.sql(f"SELECT * FROM {name}").to_arrow_reader(), commit_metadata=inputs
                ),
                output_name=name,
                metadata={
                    **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
                    "duplicates_removed": dg.MetadataValue.int(counts["valid_before_dedup"] - rows),
                    "quality_score_mean": dg.MetadataValue.float(round(float(mean), 2)),
                    "quality_score_distribution": dg.MetadataValue.json(
                        {f"{band}-{min(band + 9, 100)}": n for band, n in quality}
                    ),
                },
            )
        con.execute(sql_text("silver/quarantine"))
        by_reason = con.sql(
            "SELECT entity, reason, count(*) FROM quarantine GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        yield dg.Output(
            TableWrite(
                con.sql("SELECT * FROM quarantine").to_arrow_reader(), commit_metadata=inputs
            ),
            output_name="quarantine",
            metadata={
                "quarantined_by_reason": dg.MetadataValue.json(
                    {f"{e}.{r}": n for e, r, n in by_reason}
                ),
                **{
                    f"quarantined_{reason}": dg.MetadataValue.int(n)
                    for reason, n in _sum_by_reason(by_reason).items()
                },
            },
        )


def _sum_by_reason(rows: list[tuple[str, str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, reason, n in rows:
        out[reason] = out.get(reason, 0) + n
    return out
