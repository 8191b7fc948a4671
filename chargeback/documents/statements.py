"""Department statements (`statements/<UNIT>.xlsx`): what an internal unit was charged.

`Summary` shows the unit's charges by service and by provider against the previous period
and the fiscal year to date, with a bar chart (of the `chart_services` (settings) largest services, in
a small table of their own, when there are more); `Detail` lists every usage line with its
charge's entry, then the unit's other charges, ready to filter and sort. A parent unit also
gets a roll-up of its whole subtree (`statements/rollup/<UNIT>.xlsx`), with a column per
child and a row per unit. Totals are live formulas whose stored values are the engine's
figures.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl
from xlsxwriter.worksheet import Worksheet

from chargeback.book.snapshot import UnitInfo
from chargeback.core import settings
from chargeback.core.money import format_amount, from_micro
from chargeback.core.pricing import plain
from chargeback.core.safe import file_in, neutralize
from chargeback.documents.bills import (
    Bill,
    ByService,
    DocumentContext,
    LevelRow,
    ServiceTotal,
    Totals,
    sorted_totals,
)
from chargeback.documents.workbooks import EXCEL_EPOCH, Workbook, cell, sum_formula

ROLLUP_FOLDER = "rollup"


def statement_path(folder: Path, code: str) -> Path:
    return file_in(folder / "statements", code, ".xlsx")


def rollup_path(folder: Path, code: str) -> Path:
    return file_in(folder / "statements" / ROLLUP_FOLDER, code, ".xlsx")


#: From this many lines (or services of a roll-up) on, a statement is written as a big
#: workbook, its sheets streamed (`workbooks`).
BIG_STATEMENT = 20_000


def _begin(
    path: Path,
    ctx: DocumentContext,
    kind: str,
    unit: UnitInfo,
    subtitle: str,
    facts: list[tuple[str, object]],
    size: int,
) -> tuple[Workbook, Worksheet, int]:
    """A statement workbook of `size` rows or so, with its Summary sheet headed; returns
    the next free row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook(path, ctx, f"{kind[0].upper()}{kind[1:]} of {unit.code} for {ctx.period}", big=size >= BIG_STATEMENT)
    sheet = wb.sheet("Summary")
    sheet.write_string(0, 0, wb.title(f"{ctx.book}: {kind} of internal charges"), wb.formats.title)
    wb.text(sheet, 1, 0, subtitle, wb.formats.subtitle)
    top = wb.facts(
        sheet,
        3,
        [("Unit", f"{unit.name} ({unit.code})"), ("Manager", unit.manager)]
        + facts
        + [
            ("Period", f"{ctx.period} ({ctx.period_label})"),
            ("Previous period", ctx.previous_period),
            ("Fiscal year to date", f"{ctx.year_start} to {ctx.period}"),
            ("Issued", ctx.issued),
            ("Currency", ctx.currency),
        ],
    )
    return wb, sheet, top + 1


def _service_table(
    wb: Workbook, sheet: Worksheet, top: int, rows: list[ServiceTotal], split: list[tuple[str, list[int]]] | None = None
) -> tuple[int, int, int]:
    """The table by service from row `top`: provider, service, unit, quantity, [one
    column per part of `split`,] this period, previous, change, year to date, and a
    total row. Returns (first data row, last data row, column of "This period")."""
    ctx = wb.ctx
    f = wb.formats
    parts = split or []
    titles = ["Provider", "Service", "Unit of measure", "Quantity"]
    titles += [name for name, _ in parts]
    titles += [
        "This period",
        f"Previous period ({ctx.previous_period})",
        "Change",
        f"Year to date (from {ctx.year_start})",
    ]
    wb.header(sheet, top, titles, numeric=tuple(range(3, len(titles))), lines=2)
    now = 4 + len(parts)
    first = top + 1
    _service_rows(wb, sheet, first, rows, parts, now)
    last = first + len(rows) - 1
    total_row = last + 1
    sheet.write_string(total_row, 0, "Total", f.total_label)
    for col in range(1, 4):
        sheet.write_blank(total_row, col, None, f.total_label)
    sums = [sum(amounts) for _, amounts in parts] + [
        sum(t.amount_minor for t in rows),
        sum(t.previous_minor for t in rows),
        sum(t.amount_minor - t.previous_minor for t in rows),
        sum(t.year_to_date_minor for t in rows),
    ]
    for col, minor in enumerate(sums, 4):
        wb.formula(sheet, total_row, col, sum_formula(first, last, col), minor, f.money_total)
    return first, last, now


def _service_rows(
    wb: Workbook, sheet: Worksheet, first: int, rows: list[ServiceTotal], parts: list[tuple[str, list[int]]], now: int
) -> None:
    """The service table's rows: this period's figure is the sum of the parts' columns
    when there are parts (a formula with the engine's value); the change is a number,
    the engine's difference, and the table's total row sums each column by formula.
    (A formula per row cost some 35 us each through XlsxWriter's public call: a
    million-line month's 2,000 statements held 740,000 of them.)"""
    ctx = wb.ctx
    amount = ctx.amount
    money, quantity = wb.formats.money, wb.formats.quantity
    for index, total in enumerate(rows):
        row = first + index
        wb.text(sheet, row, 0, ctx.unit_label(total.provider))
        wb.text(sheet, row, 1, ctx.service_label(total.service))
        wb.text(sheet, row, 2, ctx.unit_of_measure(total.service))
        sheet.write_number(row, 3, from_micro(total.quantity_micro), quantity)
        for offset, (_, amounts) in enumerate(parts):
            sheet.write_number(row, 4 + offset, amount(amounts[index]), money)
        now_minor = total.amount_minor
        if parts:
            sheet.write_formula(row, now, f"=SUM({cell(row, 4)}:{cell(row, now - 1)})", money, amount(now_minor))
        else:
            sheet.write_number(row, now, amount(now_minor), money)
        sheet.write_number(row, now + 1, amount(total.previous_minor), money)
        sheet.write_number(row, now + 2, amount(now_minor - total.previous_minor), money)
        sheet.write_number(row, now + 3, amount(total.year_to_date_minor), money)


def _provider_table(wb: Workbook, sheet: Worksheet, top: int, rows: list[ServiceTotal], first: int, now: int) -> int:
    """Totals by provider, each a SUM over that provider's block of the service table;
    returns the next free row."""
    f = wb.formats
    ctx = wb.ctx
    sheet.write_string(top, 0, "By provider", f.subtitle)
    _side_header(wb, sheet, top + 1, ["Provider"], now, ["This period", "Previous period", "Change", "Year to date"])
    blocks: dict[str, list[int]] = defaultdict(list)
    for index, total in enumerate(rows):
        blocks[total.provider].append(index)
    row = top + 2
    for provider, indexes in blocks.items():
        wb.text(sheet, row, 0, ctx.unit_label(provider))
        picked = [rows[i] for i in indexes]
        figures = [
            sum(t.amount_minor for t in picked),
            sum(t.previous_minor for t in picked),
            sum(t.amount_minor - t.previous_minor for t in picked),
            sum(t.year_to_date_minor for t in picked),
        ]
        start, end = first + indexes[0], first + indexes[-1]
        for col, minor in enumerate(figures, now):
            wb.formula(sheet, row, col, sum_formula(start, end, col), minor)
        row += 1
    return row


def _side_header(wb: Workbook, sheet: Worksheet, row: int, labels: list[str], now: int, amounts: list[str]) -> None:
    """A header over a block laid out in the service table's columns: `labels` from the
    first column, `amounts` from its "This period" column, the cells between blank."""
    wb.header(sheet, row, labels, first_col=0)
    for col in range(len(labels), now):
        sheet.write_blank(row, col, None, wb.formats.header)
    wb.header(sheet, row, amounts, numeric=tuple(range(len(amounts))), first_col=now)


def _chart(
    wb: Workbook, sheet: Worksheet, name: str, first: int, now: int, at_row: int, rows: list[ServiceTotal]
) -> None:
    """A bar chart of this period's (and the previous period's) spend by service, from
    the service table; with more than `chart_services` (settings) services, from a table of the
    largest ones placed first (each figure a formula on the service table). Its cached
    figures (what a viewer that never recalculates shows) are given here: a sheet
    written in `constant_memory` mode cannot be read back."""
    if not rows:
        return
    ctx = wb.ctx
    title = "Spend by service"
    if len(rows) > settings.current().chart_services:
        at_row, first, rows = _largest(wb, sheet, at_row, rows, first, now)
        title = f"Spend on the {len(rows)} largest services"
    last = first + len(rows) - 1
    labels = [neutralize(ctx.service_label(t.service)) for t in rows]
    chart = wb.book.add_chart({"type": "bar"})
    for col, colour, figures in (
        (now, "#2F5597", [ctx.amount(t.amount_minor) for t in rows]),
        (now + 1, "#A5A5A5", [ctx.amount(t.previous_minor) for t in rows]),
    ):
        chart.add_series(
            {
                "name": [name, first - 1, col],
                "categories": [name, first, 1, last, 1],
                "values": [name, first, col, last, col],
                "categories_data": labels,
                "values_data": figures,
                "fill": {"color": colour},
            }
        )
    chart.set_title({"name": title})
    chart.set_x_axis({"num_format": wb.formats.money.num_format})
    chart.set_y_axis({"reverse": True})
    chart.set_legend({"position": "bottom"})
    chart.set_size({"width": 640, "height": max(260, 60 + 36 * len(rows))})
    sheet.insert_chart(at_row, 0, chart)


def _largest(
    wb: Workbook, sheet: Worksheet, top: int, rows: list[ServiceTotal], first: int, now: int
) -> tuple[int, int, list[ServiceTotal]]:
    """The `chart_services` (settings) services with the most spend this period, in the service
    table's columns, each figure a formula on its row there. Returns the row for the
    chart below it, the table's first data row and its services."""
    ctx, f = wb.ctx, wb.formats
    ranked = sorted(range(len(rows)), key=lambda i: (-rows[i].amount_minor, i))[: settings.current().chart_services]
    sheet.write_string(top, 0, f"The {len(ranked)} largest services this period", f.subtitle)
    _side_header(wb, sheet, top + 1, ["Provider", "Service"], now, ["This period", "Previous period"])
    for row, index in enumerate(ranked, top + 2):
        total = rows[index]
        wb.text(sheet, row, 0, ctx.unit_label(total.provider))
        wb.text(sheet, row, 1, ctx.service_label(total.service))
        wb.formula(sheet, row, now, f"={cell(first + index, now)}", total.amount_minor)
        wb.formula(sheet, row, now + 1, f"={cell(first + index, now + 1)}", total.previous_minor)
    return top + 2 + len(ranked) + 1, top + 2, [rows[i] for i in ranked]


def _summary_widths(wb: Workbook, sheet: Worksheet, amount_columns: int) -> None:
    wb.widths(sheet, [34, 34, 16, 12] + [16] * amount_columns)


def write_statement(folder: Path, ctx: DocumentContext, bill: Bill) -> Path:
    """`statements/<UNIT>.xlsx` of an internal unit."""
    unit = bill.unit
    path = statement_path(folder, unit.code)
    wb, summary, top = _begin(
        path,
        ctx,
        "statement",
        unit,
        f"{unit.name} ({unit.code})",
        [("Email", unit.email)] + _budget_facts(ctx, unit.code),
        len(bill.lines) + bill.usage.height + len(bill.totals),
    )
    summary.write_string(top, 0, "By service", wb.formats.subtitle)
    rows = bill.totals
    first, last, now = _service_table(wb, summary, top + 1, rows)
    after = _provider_table(wb, summary, last + 3, rows, first, now)
    _chart(wb, summary, "Summary", first, now, after + 2, rows)
    _summary_widths(wb, summary, 4)
    _detail(wb, bill)
    if ctx.service_levels.get(unit.code):
        _service_levels(wb, ctx.service_levels[unit.code])
    wb.close()
    return path


SERVICE_LEVEL_TITLES = ["Service", "Metric", "Unit", "Target", "Measured", "Result", "Credit %", "Credit"]


def _service_levels(wb: Workbook, rows: tuple[LevelRow, ...]) -> None:
    """`Service levels`: each service the unit used that has an SLA, its targets, the
    values measured, met or missed, and the credit posted."""
    ctx, f = wb.ctx, wb.formats
    sheet = wb.sheet("Service levels")
    sheet.write_string(0, 0, f"Service levels of {ctx.period_label}", f.subtitle)
    wb.header(sheet, 2, SERVICE_LEVEL_TITLES, numeric=(3, 4, 6, 7))
    wb.widths(sheet, [14, 18, 10, 16, 12, 14, 10, 14])
    for r, level in enumerate(rows, 3):
        wb.text(sheet, r, 0, level.service)
        wb.text(sheet, r, 1, level.metric)
        wb.text(sheet, r, 2, level.unit)
        wb.text(sheet, r, 3, f"{'at least' if level.direction == 'min' else 'at most'} {plain(level.target)}")
        wb.number(sheet, r, 4, level.value)
        wb.text(sheet, r, 5, level.result)
        wb.number(sheet, r, 6, level.percent)
        wb.money(sheet, r, 7, level.credit_minor)
    total_row = 3 + len(rows)
    sheet.write_string(total_row, 6, "Total", f.total_label)
    wb.formula(
        sheet,
        total_row,
        7,
        sum_formula(3, total_row - 1, 7),
        sum(level.credit_minor for level in rows),
        f.money_total,
    )


def _budget_facts(ctx: DocumentContext, code: str) -> list[tuple[str, object]]:
    """Budget, spend to date, remaining and share used, for a unit with a budget."""
    status = ctx.budgets.get(code)
    if status is None or status.budget is None:
        return []
    year = f"fiscal year {status.fiscal_year}"
    facts: list[tuple[str, object]] = [
        (f"Budget, {year}", ("money", status.budget)),
        (f"Spent, {year} to date", ("money", status.spent)),
        ("Remaining", ("money", status.remaining)),
        ("Budget used", ("percent", status.used) if status.used is not None else None),
    ]
    if status.over:
        facts.append(("Budget warning", "over budget"))
    elif status.on_course_to_exceed:
        facts.append(
            (
                "Budget warning",
                "on course to exceed the budget by the year's end "
                f"(projected {format_amount(status.projected or 0, ctx.digits)})",
            )
        )
    return facts


DETAIL_TITLES = [
    "Date",
    "Provider",
    "Service",
    "Description",
    "Reference",
    "Quantity",
    "Unit of measure",
    "Rate",
    "Amount",
    "Note",
    "Entry",
    "Priced by",
]
DETAIL_HEADER = 1


def _detail(wb: Workbook, bill: Bill) -> None:
    """Every internal usage line (with its charge's entry) and every other internal
    charge (recurring fees, adjustments, allocations) under a frozen header with filters;
    the total of the visible rows sits above the header, so it stays in view and follows
    the filters."""
    ctx = wb.ctx
    f = wb.formats
    sheet = wb.sheet("Detail")
    charges = [line for line in bill.lines if line.customer_class == "internal" and line.kind != "usage"]
    usage = bill.usage.filter(pl.col("customer_class") == "internal")
    count = usage.height + len(charges)
    first, last = DETAIL_HEADER + 1, DETAIL_HEADER + max(count, 1)
    sheet.write_string(0, 7, "Total", f.total_label)
    total = int(usage["amount_minor"].sum() or 0) + sum(line.amount_minor for line in charges)
    wb.formula(sheet, 0, 8, f"=SUBTOTAL(9,{cell(first, 8)}:{cell(last, 8)})", total, f.money_total)
    sheet.write_string(0, 9, "(of the lines shown)")
    wb.header(sheet, DETAIL_HEADER, DETAIL_TITLES, numeric=(5, 7, 8, 10))
    sheet.freeze_panes(DETAIL_HEADER + 1, 0)
    sheet.repeat_rows(DETAIL_HEADER)  # printed: the titles on every page
    sheet.autofilter(DETAIL_HEADER, 0, last, len(DETAIL_TITLES) - 1)
    wb.widths(sheet, [11, 28, 28, 40, 16, 10, 14, 12, 14, 30, 9, 40])
    date, money, quantity, rate = f.date, f.money, f.quantity, f.rate
    first_day, amount = ctx.first_day, ctx.amount
    providers = {code: neutralize(ctx.unit_label(code)) for code in {line.provider for line in bill.lines}}
    services = {
        code: (neutralize(ctx.service_label(code)), neutralize(ctx.unit_of_measure(code)))
        for code in {line.service for line in bill.lines}
    }
    serials: dict[dt.date, int] = {}
    decimals: dict[int, Decimal] = {}
    texts: dict[str, str] = {}
    write_number, write_string = sheet.write_number, sheet.write_string

    def decimal(micro: int) -> Decimal:
        found = decimals.get(micro)
        if found is None:
            found = decimals[micro] = from_micro(micro)
        return found

    def shown(text: str) -> str:
        found = texts.get(text)
        if found is None:
            found = texts[text] = neutralize(text) or ""
        return found

    def row_of(
        row: int,
        day: dt.date,
        provider: str,
        service_code: str,
        memo: str | None,
        reference: str | None,
        quantity_micro: int | None,
        rate_micro: int | None,
        minor: int,
        notes: list[str],
        entry: int,
        rate_source: str | None,
    ) -> None:
        serial = serials.get(day)
        if serial is None:
            serial = serials[day] = (day - EXCEL_EPOCH).days
        service, unit_of_measure = services.get(service_code) or services.setdefault(
            service_code,
            (neutralize(ctx.service_label(service_code)) or "", neutralize(ctx.unit_of_measure(service_code)) or ""),
        )
        write_number(row, 0, serial, date)
        write_string(
            row,
            1,
            providers.get(provider) or providers.setdefault(provider, neutralize(ctx.unit_label(provider)) or ""),
        )
        write_string(row, 2, service)
        if memo:
            write_string(row, 3, shown(memo))
        if reference:
            write_string(row, 4, neutralize(reference) or "")
        if quantity_micro is not None:
            write_number(row, 5, decimal(quantity_micro), quantity)
            if unit_of_measure:
                write_string(row, 6, unit_of_measure)
        if rate_micro is not None:
            write_number(row, 7, decimal(rate_micro), rate)
        write_number(row, 8, amount(minor), money)
        if notes:
            write_string(row, 9, shown("; ".join(notes)))
        write_number(row, 10, entry)
        if rate_source:
            write_string(row, 11, shown(rate_source))

    row = first
    for (
        entry,
        day,
        provider,
        service,
        reference,
        description,
        quantity_micro,
        rate_micro,
        minor,
        rate_source,
        tiers,
    ) in usage.select(
        "entry",
        "date",
        "provider",
        "service",
        "reference",
        "description",
        "quantity_micro",
        "rate_micro",
        "amount_minor",
        "rate_source",
        "tiers",
    ).iter_rows():
        notes = []
        if day < first_day:
            notes.append(f"late charge (service on {day.isoformat()})")
        if minor < 0:
            notes.append("credit")
        if rate_micro is None:
            notes.append(f"tiers: {tiers}" if tiers else "priced over several tiers")
        row_of(
            row,
            day,
            provider,
            service,
            description,
            reference,
            quantity_micro,
            rate_micro,
            minor,
            notes,
            entry,
            rate_source,
        )
        row += 1
    for line in charges:
        row_of(
            row,
            line.service_date,
            line.provider,
            line.service,
            line.memo,
            line.reference,
            None if line.kind in ("adjustment", "sla_credit") else line.quantity_micro,
            line.rate_micro,
            line.amount_minor,
            line.notes(first_day),
            line.entry,
            line.rate_source,
        )
        row += 1


# roll-ups --------------------------------------------------------------------------


@dataclass
class Rollup:
    """A parent unit with its internal subtree, summed for its statement: (unit, depth)
    in tree order, the subtree's totals by service in service order (`rows`), this
    period's amount of each row in the parent's own charges and in each direct child's
    subtree (`parts`, a column each), and each member's own figures (this period,
    previous, year to date, whether it has charges). Sums, not every member's totals: a
    roll-up goes to a worker process, and the top of a big tree holds every unit's
    totals (11 roll-ups of a million-line period pickled to 101 MB in 5 s)."""

    unit: UnitInfo
    members: list[tuple[UnitInfo, int]]
    rows: list[ServiceTotal]
    parts: list[tuple[str, list[int]]]
    figures: dict[str, tuple[int, int, int, bool]]


def rollups(ctx: DocumentContext, totals: Totals) -> Iterator[Rollup]:
    """Every internal parent unit whose subtree has internal charges in the period. A
    subtree's totals are summed once, from its children's, for all the roll-ups above it."""
    children: dict[str, list[str]] = defaultdict(list)
    for unit in ctx.units.values():
        if unit.parent and unit.kind == "internal":
            children[unit.parent].append(unit.code)
    summed: dict[str, ByService] = {}

    def subtree_of(code: str) -> ByService:  # the units file has no cycles (`book`)
        found = summed.get(code)
        if found is None:
            own = totals.get(code, {})
            if code not in children:
                return own
            found = summed[code] = {}
            for part in (own, *(subtree_of(child) for child in children[code])):
                for key, total in part.items():
                    found.setdefault(key, ServiceTotal(*key)).add(total)
        return found

    for code in sorted(children):
        parent = ctx.units.get(code)
        if parent is None or parent.kind != "internal":
            continue
        subtree = subtree_of(code)
        if not any(t.lines for t in subtree.values()):
            continue
        members: list[tuple[UnitInfo, int]] = []
        stack = [(code, 0)]
        seen: set[str] = set()
        while stack:
            current, depth = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            members.append((ctx.units[current], depth))
            stack.extend((child, depth + 1) for child in sorted(children.get(current, []), reverse=True))
        figures = {}
        for member, _ in members:
            own = totals.get(member.code)
            if own:
                figures[member.code] = (
                    sum(t.amount_minor for t in own.values()),
                    sum(t.previous_minor for t in own.values()),
                    sum(t.year_to_date_minor for t in own.values()),
                    any(t.lines for t in own.values()),
                )
        rows = sorted_totals(subtree)
        parts = [(f"{code} (own)", _amounts(totals.get(code, {}), rows))]
        parts += [(f"{child} and below", _amounts(subtree_of(child), rows)) for child in sorted(children[code])]
        yield Rollup(parent, members, rows, parts, figures)


def write_rollup(folder: Path, ctx: DocumentContext, rollup: Rollup) -> Path:
    """`statements/rollup/<UNIT>.xlsx`: a parent unit's whole subtree."""
    unit = rollup.unit
    path = rollup_path(folder, unit.code)
    wb, summary, top = _begin(
        path,
        ctx,
        "roll-up statement",
        unit,
        f"{unit.name} ({unit.code}) and the {len(rollup.members) - 1} units under it",
        [("Units in the roll-up", len(rollup.members))],
        len(rollup.rows) + len(rollup.members),
    )
    summary.write_string(top, 0, "By service: the unit's own charges and each child's subtree", wb.formats.subtitle)
    rows = rollup.rows
    first, last, now = _service_table(wb, summary, top + 1, rows, rollup.parts)
    _chart(wb, summary, "Summary", first, now, last + 3, rows)
    _summary_widths(wb, summary, len(rollup.parts) + 4)
    _units_sheet(wb, folder, rollup)
    wb.close()
    return path


def _amounts(totals: ByService, rows: list[ServiceTotal]) -> list[int]:
    """This period's amount in `totals` of each of `rows`' services (0 where none)."""
    found = [totals.get((row.provider, row.service)) for row in rows]
    return [total.amount_minor if total else 0 for total in found]


def _units_sheet(wb: Workbook, folder: Path, rollup: Rollup) -> None:
    f = wb.formats
    sheet = wb.sheet("Units")
    titles = [
        "Code",
        "Name",
        "Parent",
        "Manager",
        "This period",
        "Previous period",
        "Change",
        "Year to date",
        "Statement",
    ]
    wb.header(sheet, 0, titles, numeric=(4, 5, 6, 7))
    sheet.freeze_panes(1, 0)
    sheet.repeat_rows(0)
    wb.widths(sheet, [14, 40, 14, 24, 16, 16, 16, 16, 24])
    indents: dict[int, object] = {}
    statements = folder / "statements"
    sums = [0, 0, 0, 0]
    for row, (member, depth) in enumerate(rollup.members, 1):
        this, previous, to_date, charged = rollup.figures.get(member.code, (0, 0, 0, False))
        figures = [this, previous, this - previous, to_date]
        indent = indents.get(depth) or indents.setdefault(depth, wb.book.add_format({"indent": depth}))
        wb.text(sheet, row, 0, member.code, indent)
        wb.text(sheet, row, 1, member.name)
        wb.text(sheet, row, 2, member.parent if depth else None)
        wb.text(sheet, row, 3, member.manager)
        for col, minor in enumerate(figures, 4):
            if col == 6:
                wb.formula(sheet, row, col, f"={cell(row, 4)}-{cell(row, 5)}", minor)
            else:
                wb.money(sheet, row, col, minor)
            sums[col - 4] += minor
        if charged:
            sheet.write_string(row, 8, statement_path(folder, member.code).relative_to(statements.resolve()).as_posix())
    last = len(rollup.members)
    sheet.autofilter(0, 0, last, len(titles) - 1)
    sheet.write_string(last + 2, 0, "Total", f.total_label)
    for col, minor in enumerate(sums, 4):
        wb.formula(sheet, last + 2, col, sum_formula(1, last, col), minor, f.money_total)
