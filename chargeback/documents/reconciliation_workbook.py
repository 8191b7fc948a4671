"""The auditors' workbook (`reconciliation.xlsx`).

`Summary` shows each net-zero figure twice: as the engine computed it and as a live
formula over the `Journal` sheet, with a check cell that is zero when they agree, so an
auditor can recompute the close without trusting the engine. `Matrix` crosses providers
with consumers, `Journal` holds every journal line of the period (the same lines as
`journal.csv`, with entry hashes) and `Exceptions` lists what deserves a second look.
The workbook is streamed row by row, so a period of any size fits in memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import Connection, String, cast, func, literal, or_, select
from xlsxwriter.worksheet import Worksheet

from chargeback.close.reconciliation import (
    EXTERNAL_REVENUE,
    INTERNAL_REVENUE,
    INTERNAL_SPEND,
    PeriodTotal,
    Reconciliation,
)
from chargeback.core import settings
from chargeback.core.safe import neutralize
from chargeback.documents.bills import DocumentContext
from chargeback.documents.workbooks import EXCEL_EPOCH, Workbook, cell, column_range, sum_formula
from chargeback.ledger import audit
from chargeback.ledger.export import JournalRow
from chargeback.ledger.service_levels import KIND as SLA_CREDIT
from chargeback.store.db import stored_date
from chargeback.store.schema import Adjustment, Entry, Import, PeriodEvent, Void

JOURNAL_TITLES = [
    "Entry",
    "Date",
    "Account",
    "GL account",
    "Unit",
    "Debit",
    "Credit",
    "Service",
    "Reference",
    "Memo",
    "Kind",
    "Entry hash",
]
ACCOUNT, DEBIT, CREDIT, KIND = 2, 5, 6, 10
#: Width of a consumer's column in the Matrix sheet: room for 99,999,999.99.
MATRIX_WIDTH = 13
#: About how many characters of column width an A4 landscape page holds at 70%: a wider
#: Matrix is printed on A3 (still fit to the page's width).
A4_LANDSCAPE_CHARACTERS = 190


class Matrix(NamedTuple):
    """The Matrix sheet's figures: each (provider, consumer) pair's net amount, and each
    consumer's class."""

    amounts: dict[tuple[str, str], int]
    classes: dict[str, str]


def matrix_of(totals: Iterable[PeriodTotal]) -> Matrix:
    """The Matrix sheet's figures from the period's totals, which the documents have read
    already (grouping a million entries again took 2.5 s)."""
    amounts: dict[tuple[str, str], int] = defaultdict(int)
    classes: dict[str, str] = {}
    for total in totals:
        amounts[(total.provider, total.consumer)] += total.amount_minor
        classes[total.consumer] = total.customer_class
    return Matrix(dict(amounts), classes)


def write_reconciliation_workbook(
    conn: Connection,
    ctx: DocumentContext,
    rec: Reconciliation,
    path: Path,
    matrix: Matrix,
    entries: Iterator[JournalRow],
) -> Path:
    """The workbook of `ctx.period`. `matrix`: `matrix_of` the period's totals; `entries`:
    the period's entries as `export.journal_chunks` reads them (`journal.csv` is written
    from the same read)."""
    wb = Workbook(path, ctx, f"Reconciliation {ctx.period}")
    summary = wb.sheet("Summary")
    matrix_sheet = wb.sheet("Matrix")
    parts = journal_parts(rec.entries)
    journals = [wb.sheet(name) for name, _ in parts]
    exceptions = wb.sheet("Exceptions")
    matrix_total = _matrix(wb, matrix_sheet, ctx, matrix)
    _summary(wb, summary, ctx, rec, parts, matrix_total)
    _journal(wb, journals, parts, entries, ctx)
    _exceptions(wb, exceptions, conn, ctx)
    summary.activate()
    wb.close()
    return path


def journal_parts(entries: int) -> list[tuple[str, int]]:
    """(sheet name, journal lines) of the Journal sheets: `Journal`, then `Journal (2)`,
    `Journal (3)`... when a period's lines pass one sheet's rows."""
    limit = settings.current().journal_lines_per_sheet
    per_sheet = limit - limit % 2  # even: an entry's debit and credit lines stay on one sheet
    lines, parts = entries * 2, list[tuple[str, int]]()
    while True:
        name = "Journal" if not parts else f"Journal ({len(parts) + 1})"
        parts.append((name, min(lines, per_sheet)))
        lines -= per_sheet
        if lines <= 0:
            return parts


def _over_journal(parts: list[tuple[str, int]], col: int) -> list[str]:
    """The column `col` of each Journal sheet's lines, as ranges."""
    return [column_range(1, max(lines, 1), col, name) for name, lines in parts]


def _journal_sum(account_prefix: str, add: int, subtract: int, parts: list[tuple[str, int]], digits: int) -> str:
    """SUMIFS of one side minus the other over the Journal lines whose account starts
    with `account_prefix`, over every Journal sheet, rounded to the currency (sums of
    many binary floats drift)."""
    accounts = _over_journal(parts, ACCOUNT)

    def side(col: int) -> str:
        return "+".join(
            f'SUMIFS({values},{where},"{account_prefix}*")'
            for values, where in zip(_over_journal(parts, col), accounts, strict=False)
        )

    return f"=ROUND({side(add)}-({side(subtract)}),{digits})"


def _sla_credits_sum(parts: list[tuple[str, int]], digits: int) -> str:
    """The SLA credits of the period from the Journal sheet: the consumers' side (expense
    and receivable accounts) of the lines of kind `sla_credit`, as a positive amount."""
    accounts = _over_journal(parts, ACCOUNT)
    kinds = _over_journal(parts, KIND)

    def side(col: int) -> str:
        return "+".join(
            f'SUMIFS({values},{where},"{prefix}*",{kind},"{SLA_CREDIT}")'
            for values, where, kind in zip(_over_journal(parts, col), accounts, kinds, strict=True)
            for prefix in ("expenses:", "assets:")
        )

    return f"=ROUND(-({side(DEBIT)}-({side(CREDIT)})),{digits})"


def _summary(
    wb: Workbook,
    sheet: Worksheet,
    ctx: DocumentContext,
    rec: Reconciliation,
    parts: list[tuple[str, int]],
    matrix_total: tuple[str, int],
) -> None:
    last_row = rec.entries * 2
    f = wb.formats
    digits = str(ctx.digits)
    sheet.write_string(0, 0, wb.title(f"{ctx.book}: reconciliation of {ctx.period}"), f.title)
    sheet.write_string(
        1,
        0,
        "Net zero: internal revenue credited to providers equals internal spend debited to internal consumers",
        f.subtitle,
    )
    row = (
        wb.facts(
            sheet,
            3,
            [
                ("Period", f"{ctx.period} ({ctx.period_label})"),
                ("Status", "draft (period open)" if ctx.draft else rec.status),
                ("Closed at (UTC)", None if ctx.draft else ctx.issued),
                ("Journal hash at close", ctx.journal_hash),
                ("Seal: last entry", ctx.seal.entry if ctx.seal else None),
                (
                    "Seal: signature",
                    (ctx.seal.signature or "not signed (no seal key configured)") if ctx.seal else None,
                ),
                ("Currency", ctx.currency),
                ("Entries", rec.entries),
                ("Journal lines", last_row),
            ],
        )
        + 1
    )
    wb.header(sheet, row, ["Figure", "Engine", "From the Journal sheet", "Check (engine - journal)"], numeric=(1, 2, 3))
    first = row + 1
    figures = [
        (
            "Internal revenue",
            rec.internal_revenue,
            _journal_sum(INTERNAL_REVENUE, CREDIT, DEBIT, parts, ctx.digits),
            rec.internal_revenue,
        ),
        (
            "Internal spend",
            rec.internal_spend,
            _journal_sum(INTERNAL_SPEND, DEBIT, CREDIT, parts, ctx.digits),
            rec.internal_spend,
        ),
        ("Difference", rec.difference, f"={cell(first, 2)}-{cell(first + 1, 2)}", rec.difference),
        (
            "External revenue",
            rec.external_revenue,
            _journal_sum(EXTERNAL_REVENUE, CREDIT, DEBIT, parts, ctx.digits),
            rec.external_revenue,
        ),
        ("Matrix: internal total", rec.internal_revenue, f"={matrix_total[0]}", matrix_total[1]),
    ]
    sla_total = sum(level.credit_minor for rows in ctx.service_levels.values() for level in rows)
    if sla_total:
        figures.append(("SLA credits given", sla_total, _sla_credits_sum(parts, ctx.digits), sla_total))
    checks = []
    for offset, (label, minor, formula, value) in enumerate(figures):
        r = first + offset
        sheet.write_string(r, 0, label)
        wb.money(sheet, r, 1, minor)
        wb.formula(sheet, r, 2, formula, value)
        wb.formula(sheet, r, 3, f"=ROUND({cell(r, 1)}-{cell(r, 2)},{digits})", minor - value)
        checks.append(cell(r, 3))
    r = first + len(figures)
    debits = ",".join(_over_journal(parts, DEBIT))
    credits = ",".join(_over_journal(parts, CREDIT))
    sheet.write_string(r, 0, "Journal debits - credits")
    wb.money(sheet, r, 1, 0)
    wb.formula(sheet, r, 2, f"=ROUND(SUM({debits})-SUM({credits}),{digits})", 0)
    wb.formula(sheet, r, 3, f"=ROUND({cell(r, 1)}-{cell(r, 2)},{digits})", 0)
    checks.append(cell(r, 3))
    r += 1
    sheet.write_string(r, 0, "Entries (journal lines / 2)")
    sheet.write_number(r, 1, rec.entries)
    sheet.write_formula(r, 2, f"=COUNT({','.join(_over_journal(parts, 0))})/2", None, rec.entries)
    sheet.write_formula(r, 3, f"={cell(r, 1)}-{cell(r, 2)}", None, 0)
    checks.append(cell(r, 3))
    r += 2
    sheet.write_string(r, 0, "All checks", f.total_label)
    condition = ",".join(f"{c}=0" for c in checks)
    ok = rec.balanced
    sheet.write_formula(
        r, 1, f'=IF(AND({condition},{cell(first + 2, 1)}=0),"OK","CHECK")', f.total_label, "OK" if ok else "CHECK"
    )
    wb.widths(sheet, [34, 22, 24, 24])


def _matrix(wb: Workbook, sheet: Worksheet, ctx: DocumentContext, matrix: Matrix) -> tuple[str, int]:
    """Providers as rows, consumers (internal, then external) as columns; returns the
    cell and value of the internal grand total."""
    f = wb.formats
    amounts, classes = matrix
    providers = sorted({p for p, _ in amounts})
    internal = sorted(c for c, k in classes.items() if k == "internal")
    external = sorted(c for c, k in classes.items() if k != "internal")
    sheet.write_string(0, 0, wb.title(f"{ctx.book}: charges by provider and consumer, {ctx.period}"), f.title)
    sheet.write_string(1, 0, "Rows: providers. Columns: consumers (internal, then external). Amounts net of credits.")
    head, names = 3, 4
    columns: list[tuple[str, str]] = [("unit", c) for c in internal] + [("internal", "")]
    columns += [("unit", c) for c in external] + [("external", ""), ("total", "")]
    titles = {"internal": "Internal total", "external": "External total", "total": "Total"}
    sheet.write_string(head, 0, "Provider \\ Consumer", f.header)
    for col, (what, code) in enumerate(columns, 1):
        wb.text(sheet, head, col, code if what == "unit" else titles[what], f.header_number)
    sheet.write_blank(names, 0, None, f.header)
    shown_names = []
    for col, (what, code) in enumerate(columns, 1):
        unit = ctx.units.get(code) if what == "unit" else None
        shown_names.append(unit.name if unit else "")
        wb.text(sheet, names, col, shown_names[-1], f.header_number)
    # the names wrap within their row, made as tall as the longest needs (up to six
    # lines: a longer name is cut at the cell's edge, its code above it), so that no
    # header runs over the first provider's amounts
    sheet.set_row(names, 15 * wb.header_lines(shown_names, MATRIX_WIDTH))
    sheet.freeze_panes(names + 1, 1)
    sheet.set_column(0, 0, 30)
    sheet.set_column(1, len(columns), MATRIX_WIDTH)
    # printed: landscape, as wide as one page (A3 when it holds many consumers), the
    # header rows and the provider column on every page
    if 30 + MATRIX_WIDTH * len(columns) > A4_LANDSCAPE_CHARACTERS:
        sheet.set_paper(8)
    sheet.repeat_rows(head, names)
    sheet.repeat_columns(0)
    first = names + 1
    internal_col = len(internal) + 1
    external_col = internal_col + len(external) + 1
    column_sums = [0] * (len(columns) + 1)
    for index, provider in enumerate(providers):
        r = first + index
        wb.text(sheet, r, 0, ctx.unit_label(provider))
        own = [amounts.get((provider, c), 0) for c in internal]
        out = [amounts.get((provider, c), 0) for c in external]
        values = own + [sum(own)] + out + [sum(out), sum(own) + sum(out)]
        for col, (what, code) in enumerate(columns, 1):
            minor = values[col - 1]
            column_sums[col] += minor
            if what == "unit":
                if (provider, code) in amounts:
                    wb.money(sheet, r, col, minor)
            elif what == "internal":
                wb.formula(
                    sheet, r, col, f"=SUM({cell(r, 1)}:{cell(r, internal_col - 1)})" if internal else "=0", minor
                )
            elif what == "external":
                wb.formula(
                    sheet,
                    r,
                    col,
                    f"=SUM({cell(r, internal_col + 1)}:{cell(r, external_col - 1)})" if external else "=0",
                    minor,
                )
            else:
                wb.formula(sheet, r, col, f"={cell(r, internal_col)}+{cell(r, external_col)}", minor)
    last = first + len(providers) - 1
    total_row = last + 1
    sheet.write_string(total_row, 0, "Total", f.total_label)
    for col in range(1, len(columns) + 1):
        wb.formula(sheet, total_row, col, sum_formula(first, last, col), column_sums[col], f.money_total)
    return f"Matrix!{cell(total_row, internal_col, True)}", column_sums[internal_col]


def _journal(
    wb: Workbook,
    sheets: list[Worksheet],
    parts: list[tuple[str, int]],
    entries: Iterator[JournalRow],
    ctx: DocumentContext,
) -> None:
    """Every journal line, two per entry (debit line, then credit line), as journal.csv,
    continued on the next Journal sheet when one is full."""
    date_style, money_style = wb.formats.date, wb.formats.money
    amount = ctx.amount
    serials: dict[object, int] = {}
    texts: dict[str, str] = {}

    def shown(value: str) -> str:
        """Text from input, neutralized once per distinct text (accounts, units and
        services repeat on most lines)."""
        found = texts.get(value)
        if found is None:
            if len(texts) >= 100_000:
                texts.clear()
            found = texts[value] = neutralize(value) or ""
        return found

    remaining = iter(entries)
    for sheet, (_, lines) in zip(sheets, parts, strict=False):
        wb.header(sheet, 0, JOURNAL_TITLES, numeric=(0, 5, 6))
        sheet.freeze_panes(1, 0)
        sheet.repeat_rows(0)  # printed: the titles on every page
        wb.widths(sheet, [9, 11, 30, 12, 12, 14, 14, 10, 16, 36, 11, 66])
        write_number, write_string = sheet.write_number, sheet.write_string
        row = 0
        for e in islice(remaining, lines // 2):
            serial = serials.get(e.date)
            if serial is None:
                serial = serials[e.date] = (stored_date(e.date) - EXCEL_EPOCH).days
            figure = amount(abs(e.amount_minor))
            debit, credit = (DEBIT, CREDIT) if e.amount_minor >= 0 else (CREDIT, DEBIT)
            for account, gl, unit, side in (
                (e.debit_account, e.debit_gl, e.consumer, debit),
                (e.credit_account, e.credit_gl, e.provider, credit),
            ):
                row += 1
                write_number(row, 0, e.entry)
                write_number(row, 1, serial, date_style)
                write_string(row, 2, shown(account))
                if gl:
                    write_string(row, 3, shown(gl))
                write_string(row, 4, shown(unit))
                write_number(row, side, figure, money_style)
                write_string(row, 7, shown(e.service))
                if e.reference:
                    write_string(row, 8, neutralize(e.reference))
                if e.memo:
                    write_string(row, 9, shown(e.memo))
                write_string(row, 10, e.kind)
                write_string(row, 11, e.hash)
        sheet.autofilter(0, 0, max(row, 1), len(JOURNAL_TITLES) - 1)


def _exceptions(wb: Workbook, sheet: Worksheet, conn: Connection, ctx: DocumentContext) -> None:
    """Late charges, credits and adjustments; imports with their skipped duplicates; the
    period's close and reopen history; the audit log of the period's commands up to its
    close (later records, the close's own included, would make `report` write other
    bytes: `chargeback audit` lists them all)."""
    f = wb.formats
    sheet.write_string(0, 0, wb.title(f"{ctx.book}: exceptions of {ctx.period}"), f.title)
    # the third column holds dates and, further down, times of day (`yyyy-mm-dd hh:mm:ss`)
    # the last one: the audit log's arguments and input files, wrapped (a long path and a
    # sha256 in one cell would otherwise widen the printed page until it is unreadable)
    wb.widths(sheet, [22, 9, 20, 11, 14, 14, 12, 16, 40, 14, 60])
    row = _section(
        wb,
        sheet,
        2,
        "Charges: late charges, credits, adjustments",
        [
            "Exception",
            "Entry",
            "Service date",
            "Posted on",
            "Consumer",
            "Provider",
            "Service",
            "Reference",
            "Memo / reason",
            "Amount",
        ],
        numeric=(1, 9),
    )
    first_day = ctx.first_day
    start = row + 1
    total = 0
    reasons = _adjustment_reasons(conn, ctx.period)
    for entry, service_date, date, kind, consumer, provider, service, reference, memo, minor, source in conn.execute(
        select(
            Entry.id,
            Entry.service_date,
            Entry.date,
            Entry.kind,
            Entry.consumer,
            Entry.provider,
            Entry.service,
            Entry.reference,
            Entry.memo,
            Entry.amount_minor,
            Entry.source,
        )
        .where(
            Entry.period == ctx.period,
            or_(
                Entry.service_date < first_day,
                Entry.amount_minor < 0,
                Entry.kind == "adjustment",
                Entry.kind == SLA_CREDIT,
            ),
        )
        .order_by(Entry.id)
    ):
        row += 1
        what = []
        if service_date < first_day:
            what.append("late charge")
        if minor < 0:
            what.append("credit")
        if kind == "adjustment":
            what.append("adjustment")
        if kind == SLA_CREDIT:
            what.append("SLA credit (service level missed)")
        sheet.write_string(row, 0, ", ".join(what))
        sheet.write_number(row, 1, entry)
        sheet.write_datetime(row, 2, service_date, f.date)
        sheet.write_datetime(row, 3, date, f.date)
        sheet.write_string(row, 4, consumer)
        sheet.write_string(row, 5, provider)
        sheet.write_string(row, 6, service)
        wb.text(sheet, row, 7, reference)
        reason = reasons.get(source or "")
        wb.text(sheet, row, 8, f"{memo}: {reason}" if reason and reason != memo else memo)
        wb.money(sheet, row, 9, minor)
        total += minor
    row = _none_if_empty(sheet, row, row < start)
    row += 1
    sheet.write_string(row, 8, "Total", f.total_label)
    wb.formula(sheet, row, 9, sum_formula(start, row - 1, 9), total, f.money_total)

    row = _section(
        wb,
        sheet,
        row + 3,
        "Imports: usage files and the duplicates they skipped",
        ["File", "Import", "Imported at (UTC)", "", "Lines read", "Imported", "Duplicates skipped", "SHA-256"],
        numeric=(1, 4, 5, 6),
        lines=2,
    )
    found = False
    for number, name, at, read, imported, duplicates, digest in conn.execute(
        select(
            Import.id, Import.file_name, Import.at, Import.lines_read, Import.imported, Import.duplicates, Import.sha256
        )
        .where(Import.period == ctx.period)
        .order_by(Import.id)
    ):
        row += 1
        found = True
        wb.text(sheet, row, 0, name)
        sheet.write_number(row, 1, number)
        sheet.write_datetime(row, 2, at, f.datetime)
        sheet.write_number(row, 4, read)
        sheet.write_number(row, 5, imported)
        sheet.write_number(row, 6, duplicates)
        sheet.write_string(row, 7, digest)
    row = _none_if_empty(sheet, row, not found)

    row = _voids(wb, sheet, conn, ctx.period, row + 3)

    row = _section(
        wb,
        sheet,
        row + 3,
        "Close and reopen history",
        ["Action", "Event", "At (UTC)", "", "User", "", "", "", "Reason"],
        numeric=(1,),
    )
    for number, at, action, reason, user in conn.execute(
        select(PeriodEvent.id, PeriodEvent.at, PeriodEvent.action, PeriodEvent.reason, PeriodEvent.user)
        .where(PeriodEvent.period == ctx.period)
        .order_by(PeriodEvent.id)
    ):
        row += 1
        sheet.write_string(row, 0, action)
        sheet.write_number(row, 1, number)
        sheet.write_datetime(row, 2, at, f.datetime)
        wb.text(sheet, row, 4, user)
        wb.text(sheet, row, 8, reason)

    row = _section(
        wb,
        sheet,
        row + 3,
        "Audit log: the commands of this period up to its close",
        ["Command", "Record", "At (UTC)", "", "User", "", "", "", "Outcome", "", "Arguments and input files"],
        numeric=(1,),
    )
    records = _audit_before_close(conn, ctx)
    for record in records:
        row += 1
        arguments = "; ".join(
            [" ".join(f"{k}={v}" for k, v in record.arguments.items() if v not in (None, ""))]
            + [f"{i['file']} sha256:{i['sha256'] or 'unreadable'}" for i in record.inputs]
        )
        sheet.set_row(row, 15 * wb.header_lines([arguments], 60, most=12))  # as tall as the wrapped text
        sheet.write_string(row, 0, record.command)
        sheet.write_number(row, 1, record.id)
        sheet.write_datetime(row, 2, record.at, f.datetime)
        wb.text(sheet, row, 4, record.user)
        wb.text(sheet, row, 8, record.outcome)
        wb.text(sheet, row, 10, arguments, f.wrap)
    _none_if_empty(sheet, row, not records)


def _section(
    wb: Workbook,
    sheet: Worksheet,
    row: int,
    subtitle: str,
    titles: list[str],
    numeric: tuple[int, ...] = (),
    lines: int = 1,
) -> int:
    """A section of the Exceptions sheet: its subtitle on `row` and its column titles on
    the next, which is returned (the section's rows follow it)."""
    sheet.write_string(row, 0, subtitle, wb.formats.subtitle)
    wb.header(sheet, row + 1, titles, numeric=numeric, lines=lines)
    return row + 1


def _none_if_empty(sheet: Worksheet, row: int, empty: bool) -> int:
    """Writes "none" under a section's titles when the section is `empty` (`row` is its
    last row); returns the section's last row."""
    if empty:
        row += 1
        sheet.write_string(row, 0, "none")
    return row


def _audit_before_close(conn: Connection, ctx: DocumentContext) -> list[audit.Record]:
    """The period's audit records before its latest close's own record: the same list
    when the close writes the documents and when `report` writes them again later."""
    records = audit.entries_for_period(conn, ctx.period)
    if ctx.draft:
        return records
    closes = (
        conn.execute(
            select(func.count())
            .select_from(PeriodEvent)
            .where(PeriodEvent.period == ctx.period, PeriodEvent.action == "close")
        ).scalar()
        or 0
    )
    done = [r for r in records if r.command == "close" and r.outcome.startswith("done")]
    if closes and len(done) >= closes:
        return [r for r in records if r.id < done[closes - 1].id]
    return records  # the close being written now has no record yet


def _adjustment_reasons(conn: Connection, period: str) -> dict[str, str]:
    """The internal reason of each adjustment of the period, by its entries' source."""
    source = literal("adjustment:") + cast(Adjustment.id, String)
    return dict(conn.execute(select(source, Adjustment.reason).where(Adjustment.period == period)).all())


def _voids(wb: Workbook, sheet: Worksheet, conn: Connection, period: str, row: int) -> int:
    """The period's voids (imports and adjustments taken back before a close): what, when,
    who, why. Returns the last row written."""
    f = wb.formats
    row = _section(
        wb,
        sheet,
        row,
        "Voids: imports and adjustments taken back before a close",
        ["Voided", "Void", "At (UTC)", "", "User", "Usage lines", "", "", "Reason", "Amount"],
        numeric=(1, 5, 9),
    )
    found = False
    for number, kind, target, at, user, lines, reason, minor in conn.execute(
        select(Void.id, Void.kind, Void.target, Void.at, Void.user, Void.lines, Void.reason, Void.amount_minor)
        .where(Void.period == period)
        .order_by(Void.id)
    ):
        row += 1
        found = True
        sheet.write_string(row, 0, f"{kind} {target}")
        sheet.write_number(row, 1, number)
        sheet.write_datetime(row, 2, at, f.datetime)
        wb.text(sheet, row, 4, user)
        sheet.write_number(row, 5, lines)
        wb.text(sheet, row, 8, reason)
        if minor is not None:
            wb.money(sheet, row, 9, minor)
    return _none_if_empty(sheet, row, not found)
