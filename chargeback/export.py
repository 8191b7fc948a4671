"""The journal of a period for a general ledger (CSV) or a plain-text accounting tool
(hledger, beancount). Rows are streamed from the database in entry order."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import TextIO

from sqlalchemy import Connection, select

from chargeback.errors import Refused
from chargeback.money import format_amount, plain_amount
from chargeback.safe import neutralize
from chargeback.schema import Book, Entry

#: The contract's columns, in its order; columns of our own come after them.
CONTRACT_HEADER = ["entry", "date", "period", "account", "gl_account", "unit", "debit", "credit",
                   "service", "reference", "memo"]
#: `rate_source`: which rate row priced the charge (`SERVICE/class/effective_from[/tier]`),
#: which pool and driver allocated it, or `manual adjustment`.
CSV_HEADER = CONTRACT_HEADER + ["rate_source"]
FORMATS = ("csv", "hledger", "beancount")


def _entries(conn: Connection, period: str) -> Iterator:  # type: ignore[type-arg]
    # yield_per on the statement, not the connection: Connection.execution_options changes
    # the connection in place, and every later statement would use a server-side cursor
    return conn.execute(
        select(Entry.id, Entry.date, Entry.service_date, Entry.period, Entry.kind, Entry.service,
               Entry.provider, Entry.consumer, Entry.amount_minor, Entry.debit_account,
               Entry.credit_account, Entry.debit_gl, Entry.credit_gl, Entry.reference, Entry.memo,
               Entry.rate_source)
        .where(Entry.period == period).order_by(Entry.id).execution_options(yield_per=20_000))


def _currency(conn: Connection) -> tuple[str, int]:
    row = conn.execute(select(Book.currency, Book.minor_digits)).first()
    if row is None:
        raise Refused("no book is loaded: run `chargeback load BOOK` first")
    return row.currency, row.minor_digits


def journal_lines(conn: Connection, period: str) -> Iterator[list[str]]:
    """The CSV export's rows (two per entry: the debit line, then the credit line)."""
    _, digits = _currency(conn)
    safe: dict[str | None, str] = {None: ""}
    dates: dict[object, str] = {}

    def neutral(text: str | None) -> str:
        found = safe.get(text)
        if found is None:
            found = safe[text] = neutralize(text) or ""
        return found

    for (entry, day, _, period_, _, service, provider, consumer, minor, debit_account,
         credit_account, debit_gl, credit_gl, reference, memo, rate_source) in _entries(conn, period):
        amount = plain_amount(abs(minor), digits)
        debit_side, credit_side = (amount, ""), ("", amount)
        if minor < 0:
            debit_side, credit_side = credit_side, debit_side
        date = dates.get(day) or dates.setdefault(day, day.isoformat())
        number = str(entry)
        tail = (service, neutralize(reference) or "", neutral(memo), neutral(rate_source))
        yield [number, date, period_, debit_account, neutral(debit_gl), consumer, *debit_side, *tail]
        yield [number, date, period_, credit_account, neutral(credit_gl), provider, *credit_side, *tail]
        if len(safe) > 100_000:
            safe.clear()
            safe[None] = ""


def write_csv(conn: Connection, period: str, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(journal_lines(conn, period))


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def write_hledger(conn: Connection, period: str, out: TextIO) -> None:
    currency, digits = _currency(conn)
    out.write(f"; chargeback journal, period {period}\n\n")
    for e in _entries(conn, period):
        amount = format_amount(e.amount_minor, digits)
        negated = format_amount(-e.amount_minor, digits)
        title = _one_line(f"{e.service} {e.reference or ''} | {e.memo or e.kind}").replace(";", ",")
        out.write(f"{e.date.isoformat()} ({e.id}) {title}\n")
        rate = f", rate-source:{_one_line(e.rate_source).replace(',', ' ')}" if e.rate_source else ""
        out.write(f"    ; period:{e.period}, kind:{e.kind}, service-date:{e.service_date.isoformat()}{rate}\n")
        out.write(f"    {e.debit_account}  {amount} {currency}\n")
        out.write(f"    {e.credit_account}  {negated} {currency}\n\n")


BEANCOUNT_ROOTS = {"expenses": "Expenses", "revenue": "Income", "assets": "Assets"}


def beancount_account(account: str) -> str:
    """`expenses:internal:eng.civil` as a beancount account: `Expenses:Internal:ENG-CIVIL`."""
    root, middle, code = account.split(":", 2)
    component = code.upper().replace(".", "-").replace("_", "-")
    if not component[0].isalnum():
        component = "X" + component
    return f"{BEANCOUNT_ROOTS[root]}:{middle.capitalize()}:{component}"


def _quote(text: str) -> str:
    return '"' + _one_line(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_beancount(conn: Connection, period: str, out: TextIO) -> None:
    currency, digits = _currency(conn)
    entries = list(_entries(conn, period))
    names: dict[str, str] = {}
    for e in entries:
        for account in (e.debit_account, e.credit_account):
            mapped = beancount_account(account)
            if names.setdefault(mapped, account) != account:
                raise Refused(f"accounts {names[mapped]} and {account} both become {mapped} in beancount")
    out.write(f'; chargeback journal, period {period}\noption "operating_currency" "{currency}"\n\n')
    opened = min((e.date for e in entries), default=None)
    for mapped in sorted(names):
        out.write(f"{opened.isoformat() if opened else period + '-01'} open {mapped} {currency}\n")
    out.write("\n")
    for e in entries:
        payee = _quote(f"{e.service} {e.reference or ''}")
        out.write(f"{e.date.isoformat()} * {payee} {_quote(e.memo or e.kind)}\n")
        out.write(f'  entry: "{e.id}"\n  period: "{e.period}"\n')
        if e.rate_source:
            out.write(f"  rate_source: {_quote(e.rate_source)}\n")
        out.write(f"  {beancount_account(e.debit_account)}  {format_amount(e.amount_minor, digits)} {currency}\n")
        out.write(f"  {beancount_account(e.credit_account)}  {format_amount(-e.amount_minor, digits)} {currency}\n\n")


WRITERS = {"csv": write_csv, "hledger": write_hledger, "beancount": write_beancount}


def export(conn: Connection, period: str, fmt: str, out: TextIO) -> None:
    """Write the period's journal in `fmt` (csv, hledger or beancount) to `out`."""
    if fmt not in WRITERS:
        raise Refused(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    WRITERS[fmt](conn, period, out)


def export_text(conn: Connection, period: str, fmt: str) -> str:
    buffer = io.StringIO()
    export(conn, period, fmt, buffer)
    return buffer.getvalue()
