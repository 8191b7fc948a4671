"""What every workbook of a period shares: how it is opened, its cell formats, and how
text and numbers go into cells.

XlsxWriter writes the files: it streams big sheets (`constant_memory`), stores each
formula's value beside it (so viewers that never recalculate still show the right
figure), and, given a fixed creation date, writes the same bytes every time. Amounts
are written as exact `Decimal` numbers with the currency's format; text from input
files always goes in as a string cell, neutralized, so it never runs as a formula.

Only XlsxWriter's public API is used. A big workbook is written in its
`constant_memory` mode (each sheet's rows go to a temporary file as they are written,
so a big sheet never sits in memory); a small one in its `in_memory` mode, which makes
no temporary files (creating and removing them took a fifth of a 2,000-statement
period's time). Sheets are written top to bottom, as `constant_memory` requires.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.utility import xl_rowcol_to_cell
from xlsxwriter.worksheet import Worksheet

from chargeback.core.money import currency_format
from chargeback.core.safe import neutralize
from chargeback.documents.bills import DocumentContext


@dataclass
class Formats:
    title: Format
    subtitle: Format
    label: Format
    header: Format
    header_number: Format
    money: Format
    money_total: Format
    total_label: Format
    date: Format
    datetime: Format
    quantity: Format
    rate: Format
    wrap: Format
    percent: Format


class Workbook:
    """An XlsxWriter workbook with the period's formats and safe cell writers."""

    def __init__(self, path: Path, ctx: DocumentContext, title: str, *, big: bool = True) -> None:
        self.ctx = ctx
        self.book = xlsxwriter.Workbook(
            str(path),
            {
                "constant_memory" if big else "in_memory": True,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )
        self.book.set_properties(
            {
                "title": self.title(title),
                "company": ctx.book,
                "created": ctx.issued,
                "comments": "written by chargeback",
            }
        )
        add = self.book.add_format
        money = currency_format(ctx.currency, ctx.digits)
        self.formats = Formats(
            title=add({"bold": True, "font_size": 14}),
            subtitle=add({"bold": True, "font_size": 11}),
            label=add({"bold": True, "font_color": "#444444"}),
            header=add({"bold": True, "bg_color": "#DDE4EE", "bottom": 1, "text_wrap": True, "valign": "top"}),
            header_number=add(
                {"bold": True, "bg_color": "#DDE4EE", "bottom": 1, "text_wrap": True, "align": "right", "valign": "top"}
            ),
            money=add({"num_format": money}),
            money_total=add({"num_format": money, "bold": True, "top": 1}),
            total_label=add({"bold": True, "top": 1}),
            date=add({"num_format": "yyyy-mm-dd", "align": "left"}),
            datetime=add({"num_format": "yyyy-mm-dd hh:mm:ss", "align": "left"}),
            quantity=add({"num_format": "General"}),
            rate=add({"num_format": "#,##0.00####"}),
            wrap=add({"text_wrap": True, "valign": "top"}),
            percent=add({"num_format": "0.0%"}),
        )

    def title(self, text: str) -> str:
        return f"DRAFT - {text}" if self.ctx.draft else text

    def sheet(self, name: str) -> Worksheet:
        sheet = self.book.add_worksheet(name)
        sheet.set_paper(9)
        sheet.fit_to_pages(1, 0)
        sheet.set_landscape()
        return sheet

    def close(self) -> None:
        self.book.close()

    # cell writers -------------------------------------------------------------------

    def text(self, sheet: Worksheet, row: int, col: int, value: str | None, fmt: Format | None = None) -> None:
        """Text from anywhere: a string cell, neutralized, never a formula."""
        if value is None or value == "":
            if fmt is not None:
                sheet.write_blank(row, col, None, fmt)
            return
        sheet.write_string(row, col, neutralize(value) or "", fmt)

    def money(self, sheet: Worksheet, row: int, col: int, minor: int | None, fmt: Format | None = None) -> None:
        if minor is not None:
            sheet.write_number(row, col, self.ctx.amount(minor), fmt or self.formats.money)

    def number(
        self, sheet: Worksheet, row: int, col: int, value: Decimal | int | None, fmt: Format | None = None
    ) -> None:
        if value is not None:
            sheet.write_number(row, col, value, fmt)

    def formula(
        self, sheet: Worksheet, row: int, col: int, formula: str, minor: int, fmt: Format | None = None
    ) -> None:
        """A formula whose value, the engine's figure in minor units, is stored with it."""
        sheet.write_formula(row, col, formula, fmt or self.formats.money, self.ctx.amount(minor))

    def header(
        self,
        sheet: Worksheet,
        row: int,
        titles: list[str],
        numeric: tuple[int, ...] = (),
        first_col: int = 0,
        lines: int = 1,
    ) -> None:
        """A header row; `lines` makes room for titles that wrap."""
        if lines > 1:
            sheet.set_row(row, 15 * lines)
        for col, title in enumerate(titles, first_col):
            fmt = self.formats.header_number if col - first_col in numeric else self.formats.header
            if title:
                sheet.write_string(row, col, title, fmt)
            else:
                sheet.write_blank(row, col, None, fmt)

    def header_lines(self, texts: list[str], width: float, most: int = 6) -> int:
        """How many lines the longest of `texts` takes wrapped in a column `width`
        characters wide (at most `most`), so that a header row can be made that tall."""
        per_line = max(int(width) - 2, 4)
        return max([1] + [min(most, -(-len(text) // per_line)) for text in texts])

    def widths(self, sheet: Worksheet, widths: Sequence[float], first_col: int = 0) -> None:
        for col, width in enumerate(widths, first_col):
            sheet.set_column(col, col, width)

    def facts(self, sheet: Worksheet, row: int, facts: list[tuple[str, object]]) -> int:
        """Label/value rows (values: text, date, datetime, amount in minor units as
        ("money", minor), or a share as ("percent", Decimal), written as a number with a
        percent format); returns the next free row."""
        for label, value in facts:
            sheet.write_string(row, 0, label, self.formats.label)
            if isinstance(value, dt.datetime):
                sheet.write_datetime(row, 1, value, self.formats.datetime)
            elif isinstance(value, dt.date):
                sheet.write_datetime(row, 1, value, self.formats.date)
            elif isinstance(value, tuple) and value[0] == "percent":
                sheet.write_number(row, 1, value[1], self.formats.percent)
            elif isinstance(value, tuple):
                self.money(sheet, row, 1, value[1])
            elif isinstance(value, int):
                sheet.write_number(row, 1, value)
            else:
                self.text(sheet, row, 1, None if value is None else str(value))
            row += 1
        return row


def cell(row: int, col: int, absolute: bool = False) -> str:
    return xl_rowcol_to_cell(row, col, row_abs=absolute, col_abs=absolute)


def column_range(first_row: int, last_row: int, col: int, sheet: str | None = None) -> str:
    """`A2:A9` (or `'Sheet'!$A$2:$A$9` when a sheet is named)."""
    if sheet is None:
        return f"{cell(first_row, col)}:{cell(last_row, col)}"
    return f"'{sheet}'!{cell(first_row, col, True)}:{cell(last_row, col, True)}"


def sum_formula(first_row: int, last_row: int, col: int) -> str:
    """`=SUM(...)` over a column block; `=0` over no rows."""
    if last_row < first_row:
        return "=0"
    return f"=SUM({column_range(first_row, last_row, col)})"


EXCEL_EPOCH = dt.date(1899, 12, 30)


@contextmanager
def report_workbook(path: Path, prefix: str) -> Iterator[xlsxwriter.Workbook]:
    """A small report's workbook (in memory; text is never a formula, link or number),
    written to a temporary file beside `path` and moved into place once closed, so no
    half-written file is ever left at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{prefix}-", suffix=".xlsx", dir=path.parent)
    os.close(handle)
    book = xlsxwriter.Workbook(
        temporary,
        {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False},
    )
    try:
        yield book
        book.close()
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
