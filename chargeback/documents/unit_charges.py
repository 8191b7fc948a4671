"""`charges --xlsx FILE`: one unit's posted charges as a workbook: numbers as numbers
(quantity, rate, amount in the currency's format), dates as dates, a total by formula
with its value stored, the header repeated on every printed page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from chargeback.book.snapshot import Reference
from chargeback.documents.bills import DocumentContext
from chargeback.documents.workbooks import Workbook, sum_formula
from chargeback.ledger.unit_charges import UnitCharges

TITLES = ["Period", "Entry", "Posted on", "Kind", "Service", "Provider", "Reference", "Memo"]
TITLES += ["Quantity", "Unit", "Rate", "Amount"]


def write_unit_charges(result: UnitCharges, ref: Reference, path: Path, when: dt.datetime) -> Path:
    """The workbook of `result` at `path` (one sheet, `Charges`)."""
    ctx = DocumentContext(
        ref.name,
        ref.currency,
        ref.digits,
        result.periods[-1],
        when,
        ref.payment_terms,
        ref.fiscal_year_start,
        None,
        ref.units,
        ref.services,
    )
    wb = Workbook(path, ctx, f"{result.name} ({result.unit}): charges", big=False)
    f = wb.formats
    sheet = wb.sheet("Charges")
    span = result.periods[0] if len(result.periods) == 1 else f"{result.periods[0]} to {result.periods[-1]}"
    sheet.write_string(0, 0, wb.title(f"{ref.name}: charges to {result.name} ({result.unit}), {span}"), f.title)
    wb.widths(sheet, [9, 8, 11, 11, 10, 10, 14, 36, 10, 8, 12, 14])
    wb.header(sheet, 2, TITLES, numeric=(1, 8, 10, 11))
    sheet.repeat_rows(2)
    sheet.freeze_panes(3, 0)
    row = 2
    for c in result.charges:
        row += 1
        sheet.write_string(row, 0, c.period)
        sheet.write_number(row, 1, c.entry)
        sheet.write_datetime(row, 2, c.date, f.date)
        sheet.write_string(row, 3, c.kind)
        sheet.write_string(row, 4, c.service)
        sheet.write_string(row, 5, c.provider)
        wb.text(sheet, row, 6, c.reference)
        wb.text(sheet, row, 7, c.memo)
        wb.number(sheet, row, 8, c.quantity, f.quantity)
        wb.text(sheet, row, 9, c.unit_of_measure)
        wb.number(sheet, row, 10, c.rate, f.rate)
        wb.money(sheet, row, 11, c.amount_minor)
    row += 1
    sheet.write_string(row, 10, "Total", f.total_label)
    wb.formula(sheet, row, 11, sum_formula(3, row - 1, 11), result.total_minor, f.money_total)
    wb.close()
    return path
