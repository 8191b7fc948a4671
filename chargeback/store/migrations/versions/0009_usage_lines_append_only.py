"""Usage lines become append-only, and PostgreSQL checks a statement's references with
one pass over its rows.

A usage line is the source document of the charge posted for it. The tool never changes
or deletes one, and a correction is an adjustment. Now the database refuses it too:
UPDATE and DELETE of a usage line, and emptying the table with TRUNCATE (PostgreSQL),
fail with a constraint error, as they already do on the audit log.

That makes PostgreSQL's check of `entries.usage_id` cheaper. Migration 0008 locked every
usage line a new entry names for key share, as a foreign key does, so that nobody could
delete it before the close committed. A usage line cannot be deleted at all now, so
finding it by its key is enough. The other references are still locked, as before.

The check also stops counting `count(DISTINCT ...)` per column, which sorted the
statement's rows once per column. One grouping pass now collects the distinct values of
every column at once, and each referred table is locked through that short list. The
errors are the same as before: PostgreSQL's `foreign_key_violation` under the foreign
key's name.

Measured with `pg_stat_statements` on a million-line close (21 statements of about
48,000 entries), two runs each, alternately: the checks of the entries took 15.6-17.0 s
(usage lines locked 7.6-9.0 s, the distinct counts 3.1-3.7 s, the other locks 3.7-4.2 s)
and take 3.6-3.8 s (usage lines found 2.2-2.4 s, the grouping 1.2 s, the locks 0.2 s). The
entries' COPY, checks included, went from 32.3 s to 18.9 s, and the close from 51.1-52.6 s
to 42.8-43.9 s. A usage line is looked up by `= ANY` of the statement's keys, one probe
of its primary key each: a join read the whole table for every statement (12.7 s).

SQLite keeps its foreign keys and gets two triggers that refuse UPDATE and DELETE.

Revision ID: 0009
Revises: 0008
"""

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

APPEND_ONLY = (
    "usage lines are append-only: a stored usage line cannot be changed or deleted "
    "(correct a charge with chargeback adjust)"
)


def _migration_0008() -> ModuleType:
    """0008, whose references and error this one keeps, and whose triggers a downgrade puts back."""
    path = next(Path(__file__).parent.glob("0008_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0008", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


M0008 = _migration_0008()
USAGE_LINE = "fk_entries_usage_id_usage"
#: 0008's references but the usage line's (found, not locked), each with its key's type
REFERENCES = tuple(
    (*reference, "bigint" if reference[3] == "id" else "text")
    for reference in M0008.REFERENCES
    if reference[4] != USAGE_LINE
)


def _missing(table: str, column: str, referred: str, name: str) -> str:
    return "  " + M0008.raise_violation(
        f'insert or update on table "{table}" violates foreign key constraint "{name}"',
        f"format('Key ({column})=(%s) is not present in table \"{referred}\".', missing)",
        name,
        table,
    )


def _new_rows_exist(table: str) -> str:
    """The function run after each INSERT or UPDATE statement on `table`: every value its
    new rows name exists and, but for usage lines, is locked for key share until the
    transaction ends."""
    references = [r for r in REFERENCES if r[0] == table]
    columns = ", ".join(column for _, column, _, _, _, _ in references)
    sets = ", ".join(f"({column})" for _, column, _, _, _, _ in references)
    lists = ", ".join(
        f"array_agg({column}) FILTER (WHERE {column} IS NOT NULL)" for _, column, _, _, _, _ in references
    )
    keys = ", ".join(f"keys_{column}" for _, column, _, _, _, _ in references)
    body = [f"SELECT {lists} INTO {keys} FROM (SELECT {columns} FROM new_rows GROUP BY GROUPING SETS ({sets})) k;"]
    for _, column, referred, key, name, _ in references:
        body += [
            f"PERFORM 1 FROM {referred} r WHERE r.{key} IN (SELECT unnest(keys_{column})) FOR KEY SHARE OF r;",
            "GET DIAGNOSTICS found = ROW_COUNT;",
            f"IF found < coalesce(cardinality(keys_{column}), 0) THEN",
            f"  SELECT k::text INTO missing FROM unnest(keys_{column}) k "
            f"WHERE NOT EXISTS (SELECT 1 FROM {referred} r WHERE r.{key} = k) LIMIT 1;",
            _missing(table, column, referred, name),
            "END IF;",
        ]
    if table == "entries":
        body += [
            "SELECT count(usage_id), array_agg(usage_id) INTO wanted, lines FROM new_rows;",
            "SELECT count(*) INTO found FROM usage r WHERE r.id = ANY(lines);",
            "IF found < wanted THEN",
            "  SELECT n.usage_id::text INTO missing FROM new_rows n WHERE n.usage_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM usage r WHERE r.id = n.usage_id) LIMIT 1;",
            _missing(table, "usage_id", "usage", USAGE_LINE),
            "END IF;",
        ]
    declare = " ".join(f"keys_{column} {kind}[];" for _, column, _, _, _, kind in references)
    return (
        f"CREATE OR REPLACE FUNCTION {table}_references_exist() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"DECLARE {declare} lines bigint[]; wanted bigint; found bigint; missing text;\nBEGIN\n  "
        + "\n  ".join(body)
        + "\n  RETURN NULL;\nEND $$"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER usage_no_{action.lower()} BEFORE {action} ON usage "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )
        return
    for action in ("delete", "update"):
        op.execute(f"DROP TRIGGER usage_still_named_on_{action} ON usage")
        op.execute(f"DROP FUNCTION usage_still_named_on_{action}()")
    op.execute("DROP TRIGGER usage_not_truncated ON usage")
    op.execute("DROP FUNCTION usage_not_truncated()")
    op.execute("DROP TRIGGER usage_references_on_update ON usage")
    op.execute(
        "CREATE FUNCTION usage_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'restrict_violation', "
        "TABLE = 'usage'; END $$"
    )
    op.execute(
        "CREATE TRIGGER usage_append_only BEFORE UPDATE OR DELETE ON usage "
        "FOR EACH ROW EXECUTE FUNCTION usage_append_only()"
    )
    op.execute(
        "CREATE TRIGGER usage_not_truncated BEFORE TRUNCATE ON usage "
        "FOR EACH STATEMENT EXECUTE FUNCTION usage_append_only()"
    )
    for table in ("usage", "entries"):
        op.execute(_new_rows_exist(table))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER usage_no_{action}")
        return
    op.execute("DROP TRIGGER usage_not_truncated ON usage")
    op.execute("DROP TRIGGER usage_append_only ON usage")
    op.execute("DROP FUNCTION usage_append_only()")
    for table in ("usage", "entries"):
        op.execute(f"DROP FUNCTION {table}_references_exist() CASCADE")
        op.execute(M0008.new_rows_exist(table))
        for event in ("insert", "update"):
            op.execute(
                f"CREATE TRIGGER {table}_references_on_{event} AFTER {event.upper()} ON {table} "
                "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                f"EXECUTE FUNCTION {table}_references_exist()"
            )
    for action in ("delete", "update"):
        op.execute(M0008.still_named("usage", action))
        tables = "OLD TABLE AS old_rows" + (" NEW TABLE AS new_rows" if action == "update" else "")
        op.execute(
            f"CREATE TRIGGER usage_still_named_on_{action} AFTER {action.upper()} ON usage "
            f"REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION usage_still_named_on_{action}()"
        )
    op.execute(M0008.not_truncated("usage"))
    op.execute(
        "CREATE TRIGGER usage_not_truncated BEFORE TRUNCATE ON usage "
        "FOR EACH STATEMENT EXECUTE FUNCTION usage_not_truncated()"
    )
