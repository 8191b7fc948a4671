"""The journal of a period, or of several closed periods in order (`export --from
--through`, `--fiscal-year`), for a general ledger (CSV) or a plain-text accounting tool
(hledger, beancount). Rows are streamed from the database in entry order, period by
period; one file has one header (CSV) and opens each account once (beancount)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, TextIO

from sqlalchemy import Connection, select

from chargeback.core.errors import Refused
from chargeback.core.money import format_amount
from chargeback.core.safe import neutralize, one_line
from chargeback.store.db import dates_as_stored, plain_rows, stored_date
from chargeback.store.schema import Book, Entry

#: The contract's columns, in its order; columns of our own come after them.
CONTRACT_HEADER = [
    "entry",
    "date",
    "period",
    "account",
    "gl_account",
    "unit",
    "debit",
    "credit",
    "service",
    "reference",
    "memo",
]
#: `rate_source`: which rate row priced the charge (`SERVICE/class/effective_from[/tier]`),
#: which pool and driver allocated it, or `manual adjustment`.
CSV_HEADER = CONTRACT_HEADER + ["rate_source"]
FORMATS = ("csv", "hledger", "beancount")


class JournalRow(NamedTuple):
    """An entry as every writer of the journal (the CSV, hledger's and beancount's text
    and the auditors' Journal sheet) reads it (`journal_chunks`), the dates as the
    database stores them (`db.dates_as_stored`, read with `db.stored_date`); `entry` is
    the entry's id."""

    entry: int
    date: Any
    service_date: Any
    period: str
    kind: str
    service: str
    provider: str
    consumer: str
    amount_minor: int
    debit_account: str
    credit_account: str
    debit_gl: str | None
    credit_gl: str | None
    reference: str | None
    memo: str | None
    rate_source: str | None
    hash: str


#: The entries' columns read for `JournalRow`, in its order: one read serves every writer.
JOURNAL_COLUMNS = tuple(Entry.__table__.c["id" if name == "entry" else name] for name in JournalRow._fields)


def journal_chunks(conn: Connection, period: str) -> Iterator[Sequence[JournalRow]]:
    """The period's entries in entry order (`db.plain_rows`), in lists of 20,000."""
    make = tuple.__new__
    for rows in plain_rows(
        conn, select(*dates_as_stored(JOURNAL_COLUMNS)).where(Entry.period == period).order_by(Entry.id)
    ):
        yield [make(JournalRow, row) for row in rows]


def _currency(conn: Connection) -> tuple[str, int]:
    row = conn.execute(select(Book.currency, Book.minor_digits)).first()
    if row is None:
        raise Refused("no book is loaded: run `chargeback load BOOK` first")
    return row.currency, row.minor_digits


def csv_field(text: str) -> str:
    """One field as `csv.writer` (minimal quoting, `\n` line ends) writes it."""
    if "," in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _periods(periods: str | Sequence[str]) -> list[str]:
    return [periods] if isinstance(periods, str) else list(periods)


def write_csv(conn: Connection, periods: str | Sequence[str], out: TextIO) -> None:
    """journal.csv: two lines per entry (the debit line, then the credit line) in
    `CSV_HEADER`'s columns, text from input neutralized; one header for all `periods`."""
    _, digits = _currency(conn)
    listed = _periods(periods)
    journal = CsvJournal(out, listed[0] if listed else "", digits)
    for period in listed:
        journal.shown_period = csv_field(period)
        for chunk in journal_chunks(conn, period):
            journal.write(chunk)


class CsvJournal:
    """Writes journal.csv from the entries handed to it, chunk by chunk. The bytes
    `csv.writer` would write (a test checks them), formatted here with each distinct text
    quoted once: a big organisation's month is two million lines."""

    def __init__(self, out: TextIO, period: str, digits: int) -> None:
        self.out, self.digits = out, digits
        self.shown_period = csv_field(period)
        self.known: dict[str | None, str] = {None: ""}
        self.codes: dict[str, str] = {}
        self.dates: dict[object, str] = {}
        out.write(",".join(csv_field(title) for title in CSV_HEADER) + "\n")

    def passing(self, chunks: Iterable[Sequence[JournalRow]]) -> Iterator[JournalRow]:
        """The entries of `chunks` one by one, each chunk written here first: the Journal
        sheet of the auditors' workbook reads them as they pass."""
        for chunk in chunks:
            self.write(chunk)
            yield from chunk

    def write(self, chunk: Iterable[JournalRow]) -> None:
        known, codes, dates, digits = self.known, self.codes, self.dates, self.digits

        def shown(text: str | None) -> str:
            """Text from input (GL accounts, memos, rate sources): neutralized."""
            found = known.get(text)
            if found is None:
                found = known[text] = csv_field(neutralize(text) or "")
            return found

        def code(text: str) -> str:
            """Codes and accounts the engine made, as they are."""
            found = codes.get(text)
            if found is None:
                found = codes[text] = csv_field(text)
            return found

        lines: list[str] = []
        for row in chunk:
            minor = row.amount_minor
            amount = format_amount(abs(minor), digits)
            debit, credit = (f"{amount},", f",{amount}") if minor >= 0 else (f",{amount}", f"{amount},")
            date = dates.get(row.date)
            if date is None:
                date = dates[row.date] = stored_date(row.date).isoformat()
            head = f"{row.entry},{date},{self.shown_period},"
            reference = csv_field(neutralize(row.reference) or "")
            tail = f",{code(row.service)},{reference},{shown(row.memo)},{shown(row.rate_source)}\n"
            lines.append(
                f"{head}{code(row.debit_account)},{shown(row.debit_gl)},{code(row.consumer)},{debit}{tail}"
                f"{head}{code(row.credit_account)},{shown(row.credit_gl)},{code(row.provider)},{credit}{tail}"
            )
        self.out.write("".join(lines))
        if len(known) > 100_000:
            known.clear()
            known[None] = ""


def _title(periods: list[str]) -> str:
    if len(periods) == 1:
        return f"period {periods[0]}"
    return f"periods {periods[0]} to {periods[-1]} ({len(periods)} closed periods)" if periods else "no periods"


def _all_entries(conn: Connection, periods: list[str]) -> Iterator[JournalRow]:
    for period in periods:
        for chunk in journal_chunks(conn, period):
            yield from chunk


def write_hledger(conn: Connection, periods: str | Sequence[str], out: TextIO) -> None:
    currency, digits = _currency(conn)
    listed = _periods(periods)
    out.write(f"; chargeback journal, {_title(listed)}\n\n")
    for e in _all_entries(conn, listed):
        amount = format_amount(e.amount_minor, digits)
        negated = format_amount(-e.amount_minor, digits)
        title = one_line(f"{e.service} {e.reference or ''} | {e.memo or e.kind}").replace(";", ",")
        out.write(f"{stored_date(e.date).isoformat()} ({e.entry}) {title}\n")
        rate = f", rate-source:{one_line(e.rate_source).replace(',', ' ')}" if e.rate_source else ""
        out.write(
            f"    ; period:{e.period}, kind:{e.kind}, service-date:{stored_date(e.service_date).isoformat()}{rate}\n"
        )
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
    return '"' + one_line(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_beancount(conn: Connection, periods: str | Sequence[str], out: TextIO) -> None:
    """Every account is opened once, on the first entry's date, before the entries of
    all `periods`: monthly files cannot be joined (bean-check: duplicate open directive),
    a multi-period export can."""
    currency, digits = _currency(conn)
    listed = _periods(periods)
    entries = list(_all_entries(conn, listed))
    names: dict[str, str] = {}
    for e in entries:
        for account in (e.debit_account, e.credit_account):
            mapped = beancount_account(account)
            if names.setdefault(mapped, account) != account:
                raise Refused(f"accounts {names[mapped]} and {account} both become {mapped} in beancount")
    out.write(f'; chargeback journal, {_title(listed)}\noption "operating_currency" "{currency}"\n\n')
    opened = min((stored_date(e.date) for e in entries), default=None)
    for mapped in sorted(names):
        out.write(f"{opened.isoformat() if opened else listed[0] + '-01'} open {mapped} {currency}\n")
    out.write("\n")
    for e in entries:
        payee = _quote(f"{e.service} {e.reference or ''}")
        out.write(f"{stored_date(e.date).isoformat()} * {payee} {_quote(e.memo or e.kind)}\n")
        out.write(f'  entry: "{e.entry}"\n  period: "{e.period}"\n')
        if e.rate_source:
            out.write(f"  rate_source: {_quote(e.rate_source)}\n")
        out.write(f"  {beancount_account(e.debit_account)}  {format_amount(e.amount_minor, digits)} {currency}\n")
        out.write(f"  {beancount_account(e.credit_account)}  {format_amount(-e.amount_minor, digits)} {currency}\n\n")


WRITERS = {"csv": write_csv, "hledger": write_hledger, "beancount": write_beancount}


def export(conn: Connection, periods: str | Sequence[str], fmt: str, out: TextIO) -> None:
    """Write the journal of the period (or of the `periods`, in the order given) in `fmt`
    (csv, hledger or beancount) to `out`."""
    if fmt not in WRITERS:
        raise Refused(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    WRITERS[fmt](conn, periods, out)
