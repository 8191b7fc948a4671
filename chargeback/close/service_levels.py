"""The service levels of a fiscal year (`chargeback sla report --fiscal-year YYYY`).

Per SLA (service, metric, customer class) and month: the target in force and the value
measured (the value for all consumers; when there is none, the worst value measured for
one), met or missed; and every SLA credit posted in the year's periods. Written to
`sla-FYYYYY.xlsx` with XlsxWriter: sheets `Attainment` (numbers, green when met and red
when missed by conditional formats, the targets month by month below), `Trend` (a line
chart per SLA of the measured values against the target) and `Credits`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import xlsxwriter
from sqlalchemy import Connection, select

from chargeback.book.snapshot import load_reference
from chargeback.core.calendar import fiscal_periods, period_bounds
from chargeback.core.money import InCurrency, from_minor
from chargeback.core.safe import neutralize
from chargeback.core.service_levels import Level, in_force
from chargeback.documents.workbooks import report_workbook
from chargeback.ledger.service_levels import KIND, levels, measurements
from chargeback.store.schema import Entry


@dataclass
class Attainment:
    """One SLA over the fiscal year: its target and measured value per month."""

    service: str
    metric: str
    customer_class: str
    unit: str
    direction: str
    targets: dict[str, Decimal] = field(default_factory=dict)
    values: dict[str, Decimal] = field(default_factory=dict)

    def met(self, period: str) -> bool | None:
        value, target = self.values.get(period), self.targets.get(period)
        if value is None or target is None:
            return None
        return value >= target if self.direction == "min" else value <= target

    @property
    def misses(self) -> list[str]:
        return [p for p in self.targets if self.met(p) is False]


@dataclass(frozen=True)
class CreditLine:
    period: str
    service: str
    metric: str
    consumer: str
    amount_minor: int
    customer_class: str = "internal"


@dataclass
class SlaReport(InCurrency):
    fiscal_year: int
    periods: tuple[str, ...]
    currency: str
    digits: int
    rows: list[Attainment] = field(default_factory=list)
    credits: list[CreditLine] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What the command prints: each SLA's months met, its misses and its credits."""
        out = [f"service levels FY{self.fiscal_year} ({self.periods[0]} to {self.periods[-1]}), {self.currency}"]
        if not self.rows:
            out.append("  no SLA is in force in this fiscal year")
        credited: dict[tuple[str, str, str], int] = defaultdict(int)
        for c in self.credits:
            credited[(c.service, c.metric, c.customer_class)] += c.amount_minor
        for row in self.rows:
            measured = [p for p in row.targets if row.met(p) is not None]
            met = sum(1 for p in measured if row.met(p))
            misses = ", ".join(row.misses) or "none"
            given = -credited[(row.service, row.metric, row.customer_class)]
            out.append(
                f"  {row.service:<10} {row.metric:<18} {row.customer_class:<8} met {met} of {len(measured)} "
                f"months measured; missed: {misses}; credits {self.money(given)}"
            )
        return out


def _worst(values: dict[str | None, Decimal], direction: str) -> Decimal | None:
    if None in values:
        return values[None]
    if not values:
        return None
    return min(values.values()) if direction == "min" else max(values.values())


def sla_report(conn: Connection, fiscal_year: int) -> SlaReport:
    """The service levels and SLA credits of a fiscal year."""
    ref = load_reference(conn)
    periods = fiscal_periods(fiscal_year, ref.fiscal_year_start)
    report = SlaReport(fiscal_year, periods, ref.currency, ref.digits)
    book_levels: list[Level] = levels(conn)
    rows: dict[tuple[str, str, str], Attainment] = {}
    for period in periods:
        first, last = period_bounds(period)
        measured = measurements(conn, period)
        for key, level in sorted(in_force(book_levels, first, last).items()):
            row = rows.setdefault(key, Attainment(*key, level.unit, level.direction))
            row.targets[period] = level.target
            value = _worst(measured.get((level.service, level.metric), {}), level.direction)
            if value is not None:
                row.values[period] = value
    report.rows = [rows[key] for key in sorted(rows)]
    report.credits = [
        CreditLine(period, service, (source or "::").split(":")[2], consumer, int(amount), customer_class)
        for period, service, consumer, source, amount, customer_class in conn.execute(
            select(Entry.period, Entry.service, Entry.consumer, Entry.source, Entry.amount_minor, Entry.customer_class)
            .where(Entry.period.in_(periods), Entry.kind == KIND)
            .order_by(Entry.id)
        )
    ]
    return report


def write_workbook(report: SlaReport, path: Path) -> None:
    """`sla-FYYYYY.xlsx`, written to a temporary file and moved into place."""
    with report_workbook(path, "sla") as book:
        _sla_sheets(book, report)


def _sla_sheets(book: xlsxwriter.Workbook, report: SlaReport) -> None:
    bold = book.add_format({"bold": True})
    number = book.add_format({"num_format": "0.######"})
    met = book.add_format({"bg_color": "#C6EFCE", "font_color": "#006100"})
    missed = book.add_format({"bg_color": "#FFC7CE", "font_color": "#9C0006"})
    money = book.add_format(
        {"num_format": (f"#,##0.{'0' * report.digits}" if report.digits else "#,##0") + f' "{report.currency}"'}
    )
    first_month = 5
    header = ["Service", "Metric", "Class", "Unit", "Direction", *report.periods]
    sheet = book.add_worksheet("Attainment")
    sheet.write_string(0, 0, f"Service levels FY{report.fiscal_year}: measured values (green met, red missed)", bold)
    for col, text in enumerate(header):
        sheet.write_string(2, col, text, bold)
    sheet.set_column(0, 4, 14)
    sheet.set_column(first_month, first_month + len(report.periods) - 1, 11)
    targets_top = 3 + len(report.rows) + 2
    sheet.write_string(targets_top - 1, 0, "Targets in force", bold)
    last_col = first_month + len(report.periods) - 1
    for i, row in enumerate(report.rows):
        value_row, target_row = 3 + i, targets_top + i
        for r in (value_row, target_row):
            for col, text in enumerate((row.service, row.metric, row.customer_class, row.unit, row.direction)):
                sheet.write_string(r, col, neutralize(text))
        for j, period in enumerate(report.periods):
            if period in row.values:
                sheet.write_number(value_row, first_month + j, row.values[period], number)
            if period in row.targets:
                sheet.write_number(target_row, first_month + j, row.targets[period], number)
        top_left = xlsxwriter.utility.xl_rowcol_to_cell(value_row, first_month)
        target = xlsxwriter.utility.xl_rowcol_to_cell(target_row, first_month, row_abs=True)
        worse, better = ("<", ">=") if row.direction == "min" else (">", "<=")
        for sign, fmt in ((worse, missed), (better, met)):
            sheet.conditional_format(
                value_row,
                first_month,
                value_row,
                last_col,
                {
                    "type": "formula",
                    "criteria": f"=AND(ISNUMBER({top_left}),ISNUMBER({target}),{top_left}{sign}{target})",
                    "format": fmt,
                },
            )
    trend = book.add_worksheet("Trend")
    trend.write_string(0, 0, f"Service levels FY{report.fiscal_year}: measured against target", bold)
    for i, row in enumerate(report.rows):
        chart = book.add_chart({"type": "line"})
        for name, r, style in (
            ("measured", 3 + i, {"color": "#1F4E79", "width": 2.25}),
            ("target", targets_top + i, {"color": "#C00000", "dash_type": "dash"}),
        ):
            chart.add_series(
                {
                    "name": name,
                    "categories": ["Attainment", 2, first_month, 2, last_col],
                    "values": ["Attainment", r, first_month, r, last_col],
                    "line": style,
                    "marker": {"type": "circle"} if name == "measured" else {"type": "none"},
                }
            )
        chart.set_title({"name": f"{row.service} {row.metric} ({row.customer_class}, {row.unit})"})
        chart.set_legend({"position": "bottom"})
        chart.show_blanks_as("gap")
        trend.insert_chart(2 + 16 * i, 0, chart)
    credits = book.add_worksheet("Credits")
    for col, text in enumerate(["Period", "Service", "Metric", "Consumer", "Credit"]):
        credits.write_string(0, col, text, bold)
    credits.set_column(0, 4, 14)
    for r, c in enumerate(report.credits, 1):
        for col, text in enumerate((c.period, c.service, c.metric, c.consumer)):
            credits.write_string(r, col, neutralize(text))
        credits.write_number(r, 4, from_minor(-c.amount_minor, report.digits), money)
    total_row = len(report.credits) + 1
    credits.write_string(total_row, 3, "Total", bold)
    credits.write_number(total_row, 4, from_minor(-sum(c.amount_minor for c in report.credits), report.digits), money)
