"""Small workbooks (the variance review, the budget table): titles that say DRAFT when
they are drafts, amounts as numeric cells with the currency's format, text that never
runs as a formula, and files written byte for byte the same from the same data.

Written by XlsxWriter, like every other workbook (`workbooks`); openpyxl only reads.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from chargeback.core.money import currency_format, from_minor
from chargeback.core.safe import neutralize

PERCENT = "0.0%;[Red]-0.0%"


@dataclass
class _Cell:
    value: object
    fmt: str | None = None


class Sheets:
    """A workbook whose every sheet is titled, marked DRAFT when it is one, and written
    with the currency's format. Cells are kept until `save`, which writes the file with
    a fixed creation time (XlsxWriter names a workbook's path when it opens it)."""

    def __init__(self, title: str, *, book: str, currency: str, digits: int, draft: bool) -> None:
        self.draft = draft
        self.digits = digits
        self.book = book
        self.money_format = currency_format(currency, digits)
        self.workbook_title = self.title(title)
        self.sheets: list[_Sheet] = []

    def title(self, text: str) -> str:
        return f"DRAFT - {text}" if self.draft else text

    def sheet(self, name: str, title: str, notes: Sequence[str] = ()) -> tuple[_Sheet, int]:
        """A new sheet with its title and notes at the top; returns it and its next row
        (rows and columns count from 1, as in a spreadsheet)."""
        sheet = _Sheet(name)
        sheet.cells[(1, 1)] = _Cell(neutralize(self.title(title)), "title")
        for row, note in enumerate(notes, start=2):
            sheet.cells[(row, 1)] = _Cell(neutralize(note))
        self.sheets.append(sheet)
        return sheet, len(notes) + 3

    def header(self, sheet: _Sheet, row: int, titles: Sequence[str], widths: Sequence[float] = ()) -> None:
        for col, title in enumerate(titles, start=1):
            sheet.cells[(row, col)] = _Cell(title, "header")
        sheet.widths = list(widths)
        sheet.frozen = row

    def row(self, sheet: _Sheet, row: int, values: Sequence[object]) -> None:
        """Write a row: `str` as text (neutralized), `Money` as an amount, `Percent` as a
        percentage, None as a blank cell."""
        for col, value in enumerate(values, start=1):
            if value is None:
                continue
            if isinstance(value, Money):
                sheet.cells[(row, col)] = _Cell(from_minor(value.minor, self.digits), "money")
            elif isinstance(value, Percent):
                sheet.cells[(row, col)] = _Cell(value.share, "percent")
            elif isinstance(value, str):
                sheet.cells[(row, col)] = _Cell(neutralize(value))
            else:
                sheet.cells[(row, col)] = _Cell(value)

    def save(self, path: Path, when: dt.datetime) -> None:
        """Write the file with `when` as its creation time, so the same data always gives
        the same bytes (`report` writes a period's files again); written beside `path`
        and moved into place, so no half-written file is left."""
        when = when.replace(tzinfo=None, microsecond=0)
        partial = path.with_name(f".{path.name}.partial")
        try:
            book = xlsxwriter.Workbook(
                str(partial), {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
            )
            book.set_properties(
                {"title": self.workbook_title, "author": "chargeback", "subject": self.book, "created": when}
            )
            formats: dict[str, Format] = {
                "title": book.add_format({"bold": True, "font_size": 14}),
                "header": book.add_format({"bold": True, "bg_color": "#DDE4EE", "text_wrap": True, "valign": "top"}),
                "money": book.add_format({"num_format": self.money_format}),
                "percent": book.add_format({"num_format": PERCENT}),
            }
            for sheet in self.sheets:
                sheet.write(book.add_worksheet(sheet.name), formats, self.draft)
            book.close()
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)


class _Sheet:
    """A sheet's cells, by (row, column) from 1, until the workbook is saved."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cells: dict[tuple[int, int], _Cell] = {}
        self.widths: list[float] = []
        self.frozen: int | None = None

    def write(self, sheet: Worksheet, formats: dict[str, Format], draft: bool) -> None:
        if draft:
            sheet.set_header('&C&"Arial,Bold"DRAFT')
        sheet.set_footer("&C&A - page &P of &N")
        sheet.set_landscape()
        sheet.fit_to_pages(1, 0)
        for col, width in enumerate(self.widths):
            sheet.set_column(col, col, width)
        if self.frozen is not None:
            sheet.freeze_panes(self.frozen, 0)
            if self.frozen > 0:
                sheet.repeat_rows(0, self.frozen - 1)  # printed: the frozen titles on every page
        for (row, col), cell in sorted(self.cells.items()):
            fmt = formats[cell.fmt] if cell.fmt else None
            value: Any = cell.value
            if isinstance(value, str):
                sheet.write_string(row - 1, col - 1, value, fmt)
            elif isinstance(value, bool):
                sheet.write_boolean(row - 1, col - 1, value, fmt)
            elif isinstance(value, (int, Decimal, float)):
                sheet.write_number(row - 1, col - 1, value, fmt)
            elif isinstance(value, (dt.date, dt.datetime)):
                sheet.write_datetime(row - 1, col - 1, value, fmt)
            else:
                sheet.write_string(row - 1, col - 1, str(value), fmt)


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units, for `Sheets.row`."""

    minor: int


@dataclass(frozen=True, slots=True)
class Percent:
    """A share (0.25 is 25%), for `Sheets.row`."""

    share: Decimal


def money(minor: int | None) -> Money | None:
    """An amount for `Sheets.row`, or a blank cell for None."""
    return None if minor is None else Money(minor)


def percent(share: Decimal | None) -> Percent | None:
    """A share for `Sheets.row`, or a blank cell for None."""
    return None if share is None else Percent(share)
