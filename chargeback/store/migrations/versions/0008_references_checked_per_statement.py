"""On PostgreSQL, the references of `usage` and `entries` (the two tables a big month
fills) are checked a statement at a time instead of a row at a time.

A foreign key on PostgreSQL checks each inserted row with a query of its own. Measured in
PostgreSQL itself on a million usage lines: inserting them took 47.4 s with the table's
four foreign keys and 6.1 s without; a million entries, 5.5 s without their five. The
triggers below check the same references for all the rows of a statement at once (the
usage lines 9.0 s, the entries 14.8 s), and lock the rows they name exactly as a
foreign key does (`FOR KEY SHARE`), so a unit, service, period, import or usage line named
by a new row cannot be deleted before it commits. On the other side, deleting a row that
a usage line or an entry names, or changing its key, is refused, as the foreign key's
`NO ACTION` did, and so is emptying its table with TRUNCATE while usage lines or entries
are there. The error is PostgreSQL's own `foreign_key_violation` (SQLSTATE 23503)
under the foreign key's name, so callers see what they saw before.

SQLite keeps its foreign keys: it checks them at no measurable cost (a million-line close
took 25.2-27.3 s with them off and 25.4 s with them on). The models keep them too, as the
description of the data; `schema.STATEMENT_CHECKED` names the ones PostgreSQL checks
this way.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: (table, column, referred table, referred column, foreign key's name)
REFERENCES = (
    ("usage", "period", "periods", "period", "fk_usage_period_periods"),
    ("usage", "import_id", "imports", "id", "fk_usage_import_id_imports"),
    ("usage", "service", "services", "code", "fk_usage_service_services"),
    ("usage", "consumer", "units", "code", "fk_usage_consumer_units"),
    ("entries", "period", "periods", "period", "fk_entries_period_periods"),
    ("entries", "usage_id", "usage", "id", "fk_entries_usage_id_usage"),
    ("entries", "service", "services", "code", "fk_entries_service_services"),
    ("entries", "provider", "units", "code", "fk_entries_provider_units"),
    ("entries", "consumer", "units", "code", "fk_entries_consumer_units"),
)
TABLES = ("usage", "entries")
REFERRED = tuple(dict.fromkeys(referred for _, _, referred, _, _ in REFERENCES))


def raise_violation(message: str, detail: str, name: str, table: str) -> str:
    return (
        f"RAISE EXCEPTION '{message}' USING ERRCODE = 'foreign_key_violation', "
        f"DETAIL = {detail}, CONSTRAINT = '{name}', TABLE = '{table}';"
    )


def new_rows_exist(table: str) -> str:
    """The function run after each INSERT or UPDATE statement on `table`: every value its
    new rows name exists, and is locked for key share until the transaction ends."""
    references = [r for r in REFERENCES if r[0] == table]
    wanted = ", ".join(f"count(DISTINCT {column})" for _, column, _, _, _ in references)
    names = ", ".join(f"wanted_{column}" for _, column, _, _, _ in references)
    body = [f"SELECT {wanted} INTO {names} FROM new_rows;"]
    for _, column, referred, key, name in references:
        body += [
            f"PERFORM 1 FROM {referred} r WHERE r.{key} IN (SELECT n.{column} FROM new_rows n) FOR KEY SHARE OF r;",
            "GET DIAGNOSTICS found = ROW_COUNT;",
            f"IF found < wanted_{column} THEN",
            f"  SELECT n.{column}::text INTO missing FROM new_rows n WHERE n.{column} IS NOT NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {referred} r WHERE r.{key} = n.{column}) LIMIT 1;",
            "  "
            + raise_violation(
                f'insert or update on table "{table}" violates foreign key constraint "{name}"',
                f"format('Key ({column})=(%s) is not present in table \"{referred}\".', missing)",
                name,
                table,
            ),
            "END IF;",
        ]
    declare = " ".join(f"wanted_{column} bigint;" for _, column, _, _, _ in references)
    return (
        f"CREATE FUNCTION {table}_references_exist() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"DECLARE {declare} found bigint; missing text;\nBEGIN\n  " + "\n  ".join(body) + "\n  RETURN NULL;\nEND $$"
    )


def still_named(referred: str, action: str) -> str:
    """The function run after each DELETE (or UPDATE) statement on `referred`: no usage
    line or entry names a key the statement removed (or changed)."""
    key = next(k for _, _, r, k, _ in REFERENCES if r == referred)
    gone = (
        "SELECT o.{key} FROM old_rows o"
        if action == "delete"
        else "SELECT o.{key} FROM old_rows o EXCEPT SELECT n.{key} FROM new_rows n"
    ).format(key=key)
    body = []
    for table, column, _, _, name in (r for r in REFERENCES if r[2] == referred):
        body += [
            f"WITH gone({key}) AS ({gone}) SELECT g.{key}::text INTO named FROM gone g "
            f"WHERE EXISTS (SELECT 1 FROM {table} c WHERE c.{column} = g.{key}) LIMIT 1;",
            "IF FOUND THEN",
            "  "
            + raise_violation(
                f'update or delete on table "{referred}" violates foreign key constraint "{name}" on table "{table}"',
                f"format('Key ({key})=(%s) is still referenced from table \"{table}\".', named)",
                name,
                referred,
            ),
            "END IF;",
        ]
    return (
        f"CREATE FUNCTION {referred}_still_named_on_{action}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "DECLARE named text;\nBEGIN\n  " + "\n  ".join(body) + "\n  RETURN NULL;\nEND $$"
    )


def not_truncated(referred: str) -> str:
    """The function run before TRUNCATE of `referred`: refused while a usage line or an
    entry may name it (a foreign key made PostgreSQL refuse it outright)."""
    tables = sorted({table for table, _, r, _, _ in REFERENCES if r == referred})
    checks = " OR ".join(f"EXISTS (SELECT 1 FROM {table})" for table in tables)
    return (
        f"CREATE FUNCTION {referred}_not_truncated() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f'BEGIN\n  IF {checks} THEN\n    RAISE EXCEPTION \'cannot truncate table "{referred}" while rows of '
        f"{' or '.join(tables)} may name it' USING ERRCODE = 'foreign_key_violation', "
        f"TABLE = '{referred}';\n  END IF;\n  RETURN NULL;\nEND $$"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, _, _, _, name in REFERENCES:
        op.drop_constraint(name, table, type_="foreignkey")
    for table in TABLES:
        op.execute(new_rows_exist(table))
        for event in ("insert", "update"):
            op.execute(
                f"CREATE TRIGGER {table}_references_on_{event} AFTER {event.upper()} ON {table} "
                "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
                f"EXECUTE FUNCTION {table}_references_exist()"
            )
    for referred in REFERRED:
        for action in ("delete", "update"):
            op.execute(still_named(referred, action))
            tables = "OLD TABLE AS old_rows" + (" NEW TABLE AS new_rows" if action == "update" else "")
            op.execute(
                f"CREATE TRIGGER {referred}_still_named_on_{action} AFTER {action.upper()} ON {referred} "
                f"REFERENCING {tables} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION {referred}_still_named_on_{action}()"
            )
        op.execute(not_truncated(referred))
        op.execute(
            f"CREATE TRIGGER {referred}_not_truncated BEFORE TRUNCATE ON {referred} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {referred}_not_truncated()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for referred in REFERRED:
        op.execute(f"DROP TRIGGER {referred}_not_truncated ON {referred}")
        op.execute(f"DROP FUNCTION {referred}_not_truncated()")
        for action in ("delete", "update"):
            op.execute(f"DROP TRIGGER {referred}_still_named_on_{action} ON {referred}")
            op.execute(f"DROP FUNCTION {referred}_still_named_on_{action}()")
    for table in TABLES:
        for event in ("insert", "update"):
            op.execute(f"DROP TRIGGER {table}_references_on_{event} ON {table}")
        op.execute(f"DROP FUNCTION {table}_references_exist()")
    for table, column, referred, key, name in REFERENCES:
        op.create_foreign_key(name, table, referred, [column], [key])
