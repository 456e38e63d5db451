"""The ledger's integrity on PostgreSQL: postings checked per statement, ledger rows never deleted.

A foreign key checks each inserted row with a query and a row lock of its own; an ingest batch
posts hundreds of postings at once, and the two foreign keys of `ledger_postings` were 70 % of
that COPY (3.4 of 4.8 ms per 500 rows). On PostgreSQL they are replaced by one statement-level
trigger that checks all of a statement's new postings in one query, and by triggers that refuse
to delete ledger accounts and transactions or to change or delete postings — what the foreign
keys' row locks guarded against, now stated outright: the ledger is append-only (a correction is
a new transaction). SQLite keeps the foreign keys; they cost little there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import DDL, Table, event

# the foreign keys of ledger_postings that only SQLite creates (names from the naming convention)
SQLITE_ONLY_FKS = frozenset({"fk_ledger_postings_txn_id_ledger_transactions",
                             "fk_ledger_postings_ledger_account_id_ledger_accounts"})

STATEMENTS: tuple[str, ...] = (
    """CREATE OR REPLACE FUNCTION ledger_postings_refs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM new_postings AS n WHERE NOT EXISTS (
               SELECT 1 FROM ledger_accounts AS a WHERE a.id = n.ledger_account_id))
     OR EXISTS (SELECT 1 FROM new_postings AS n WHERE NOT EXISTS (
               SELECT 1 FROM ledger_transactions AS t WHERE t.id = n.txn_id)) THEN
    RAISE EXCEPTION 'a ledger posting refers to a ledger account or transaction that does not exist'
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN NULL;
END $$""",
    """CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'restrict_violation';
END $$""",
    "CREATE TRIGGER ledger_postings_refs AFTER INSERT ON ledger_postings REFERENCING NEW TABLE AS new_postings "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_postings_refs()",
    "CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings "
    "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()",
    "CREATE TRIGGER ledger_transactions_append_only BEFORE DELETE ON ledger_transactions "
    "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()",
    "CREATE TRIGGER ledger_accounts_append_only BEFORE DELETE ON ledger_accounts "
    "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()",
)
DROP = ("DROP FUNCTION IF EXISTS ledger_postings_refs() CASCADE",
        "DROP FUNCTION IF EXISTS ledger_append_only() CASCADE")


def install_on_create(postings: Table) -> None:
    """create_all installs the triggers on PostgreSQL right after `ledger_postings` (created after
    the tables it refers to)."""
    for sql in STATEMENTS:
        event.listen(postings, "after_create", DDL(sql.replace("%", "%%")).execute_if(dialect="postgresql"))


def include_object(dialect: str) -> Callable[..., bool]:
    """For alembic's comparisons: on PostgreSQL the postings' foreign keys are meant to be absent."""
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return not (dialect == "postgresql" and type_ == "foreign_key_constraint" and name in SQLITE_ONLY_FKS)
    return include
