"""What every workbook of a period shares: how it is opened, its cell formats, and how
text and numbers go into cells.

XlsxWriter writes the files: it streams big sheets (`constant_memory`), stores each
formula's value beside it (so viewers that never recalculate still show the right
figure), and, given a fixed creation date, writes the same bytes every time. Amounts
are written as exact `Decimal` numbers with the currency's format; text from input
files always goes in as a string cell, neutralized, so it never runs as a formula.

The long lists (a statement's charge lines, the auditors' journal) are hundreds of
thousands of cells: XlsxWriter's per-cell calls cost about ten microseconds each, so
those rows are built as XML text here (`RowSheet.raw_rows`), ten times faster.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import xlsxwriter
import xlsxwriter.workbook
from xlsxwriter.format import Format
from xlsxwriter.utility import xl_rowcol_to_cell
from xlsxwriter.worksheet import Worksheet

from chargeback.bills import DocumentContext
from chargeback.money import currency_format
from chargeback.safe import FORMULA_STARTS, neutralize
from chargeback.zipfiles import FastZip


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


class Workbook:
    """An XlsxWriter workbook with the period's formats and safe cell writers."""

    def __init__(self, path: Path, ctx: DocumentContext, title: str, *,
                 streaming: bool = False) -> None:
        self.ctx = ctx
        self.streaming = streaming
        options = {"constant_memory": True} if streaming else {"in_memory": True}
        self.book = xlsxwriter.Workbook(str(path), {
            **options, "strings_to_formulas": False, "strings_to_urls": False,
            "strings_to_numbers": False})
        self.book.set_properties({"title": self.title(title), "company": ctx.book,
                                  "created": ctx.issued, "comments": "written by chargeback"})
        add = self.book.add_format
        money = currency_format(ctx.currency, ctx.digits)
        self.formats = Formats(
            title=add({"bold": True, "font_size": 14}),
            subtitle=add({"bold": True, "font_size": 11}),
            label=add({"bold": True, "font_color": "#444444"}),
            header=add({"bold": True, "bg_color": "#DDE4EE", "bottom": 1, "text_wrap": True,
                        "valign": "top"}),
            header_number=add({"bold": True, "bg_color": "#DDE4EE", "bottom": 1,
                               "text_wrap": True, "align": "right", "valign": "top"}),
            money=add({"num_format": money}),
            money_total=add({"num_format": money, "bold": True, "top": 1}),
            total_label=add({"bold": True, "top": 1}),
            date=add({"num_format": "yyyy-mm-dd", "align": "left"}),
            datetime=add({"num_format": "yyyy-mm-dd hh:mm:ss", "align": "left"}),
            quantity=add({"num_format": "General"}),
            rate=add({"num_format": "#,##0.00####"}),
            wrap=add({"text_wrap": True, "valign": "top"}),
        )

    def title(self, text: str) -> str:
        return f"DRAFT - {text}" if self.ctx.draft else text

    def sheet(self, name: str) -> RowSheet:
        sheet = self.book.add_worksheet(name, worksheet_class=RowSheet)
        sheet.set_paper(9)
        sheet.fit_to_pages(1, 0)
        sheet.set_landscape()
        return sheet

    def close(self) -> None:
        """Zip the workbook with `FastZip`: XlsxWriter has no setting for it, so its
        ZipFile is swapped while it closes; the documents are written one at a time in a
        process, so nothing else zips meanwhile."""
        zip_file = xlsxwriter.workbook.ZipFile
        xlsxwriter.workbook.ZipFile = FastZip  # type: ignore[misc]
        try:
            self.book.close()
        finally:
            xlsxwriter.workbook.ZipFile = zip_file  # type: ignore[misc]

    # cell writers -------------------------------------------------------------------

    def text(self, sheet: Worksheet, row: int, col: int, value: str | None,
             fmt: Format | None = None) -> None:
        """Text from anywhere: a string cell, neutralized, never a formula."""
        if value is None or value == "":
            if fmt is not None:
                sheet.write_blank(row, col, None, fmt)
            return
        sheet.write_string(row, col, neutralize(value) or "", fmt)

    def money(self, sheet: Worksheet, row: int, col: int, minor: int | None,
              fmt: Format | None = None) -> None:
        if minor is not None:
            sheet.write_number(row, col, self.ctx.amount(minor), fmt or self.formats.money)

    def number(self, sheet: Worksheet, row: int, col: int, value: Decimal | int | None,
               fmt: Format | None = None) -> None:
        if value is not None:
            sheet.write_number(row, col, value, fmt)

    def formula(self, sheet: Worksheet, row: int, col: int, formula: str, minor: int,
                fmt: Format | None = None) -> None:
        """A formula whose value, the engine's figure in minor units, is stored with it."""
        sheet.write_formula(row, col, formula, fmt or self.formats.money, self.ctx.amount(minor))

    def header(self, sheet: Worksheet, row: int, titles: list[str],
               numeric: tuple[int, ...] = (), first_col: int = 0, lines: int = 1) -> None:
        """A header row; `lines` makes room for titles that wrap."""
        if lines > 1:
            sheet.set_row(row, 15 * lines)
        for col, title in enumerate(titles, first_col):
            fmt = self.formats.header_number if col - first_col in numeric else self.formats.header
            if title:
                sheet.write_string(row, col, title, fmt)
            else:
                sheet.write_blank(row, col, None, fmt)

    def widths(self, sheet: Worksheet, widths: list[float], first_col: int = 0) -> None:
        for col, width in enumerate(widths, first_col):
            sheet.set_column(col, col, width)

    def facts(self, sheet: Worksheet, row: int, facts: list[tuple[str, object]]) -> int:
        """Label/value rows (values: text, date, datetime or amount in minor units as
        ("money", minor)); returns the next free row."""
        for label, value in facts:
            sheet.write_string(row, 0, label, self.formats.label)
            if isinstance(value, dt.datetime):
                sheet.write_datetime(row, 1, value, self.formats.datetime)
            elif isinstance(value, dt.date):
                sheet.write_datetime(row, 1, value, self.formats.date)
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


class RowSheet(Worksheet):
    """A worksheet that also takes blocks of rows as ready `<row>` XML.

    In streaming (`constant_memory`) mode the rows go straight to the sheet's temporary
    file after the rows written before them; otherwise each block is kept and written in
    its place among the other rows at close, and no cell may be written inside it."""

    def __init__(self) -> None:
        super().__init__()
        self._raw_blocks: dict[int, tuple[int, list[str]]] = {}  # first row: (last row, XML)

    def raw_rows(self, first_row: int, last_col: int, rows: Iterable[str]) -> int:
        """Add `rows` (from `RowXml`) from `first_row` on; returns the next free row."""
        if self.constant_memory:
            self._write_single_row(first_row)
            write = self.fh.write
        else:
            block: list[str] = []
            write = block.append
        row = first_row
        for xml in rows:
            write(xml)
            row += 1
        if row > first_row:
            self._check_dimensions(first_row, 0)
            self._check_dimensions(row - 1, last_col)
        if self.constant_memory:
            self.previous_row = row
        elif row > first_row:
            self._raw_blocks[first_row] = (row - 1, block)
        return row

    def _write_optimized_sheet_data(self) -> None:
        """Streaming: the rows' temporary file goes into the sheet's XML as bytes.
        XlsxWriter reads it back as text, 64 KB at a time, decoding and encoding again
        what it wrote: the auditors' Journal sheets of a million entries are a gigabyte."""
        out = getattr(self.fh, "buffer", None)
        if self.dim_rowmin is None or out is None:
            super()._write_optimized_sheet_data()
            return
        self._xml_start_tag("sheetData")
        self.row_data_fh.close()
        self.fh.flush()
        with open(self.row_data_filename, "rb") as rows:
            shutil.copyfileobj(rows, out, 1 << 20)
        os.unlink(self.row_data_filename)
        self._xml_end_tag("sheetData")

    def _prepare_formula(self, formula: str, expand_future_functions: bool = False) -> str:
        """Our formulas use only classic functions (SUM, SUBTOTAL, SUMIFS, ROUND, IF),
        which need no `_xlfn.` prefix: skip XlsxWriter's thirty regex passes each."""
        return formula[1:] if formula.startswith("=") else formula

    def _write_rows(self) -> None:
        """XlsxWriter's rows around each raw block, the block in its place."""
        blocks = sorted(self._raw_blocks.items())
        if not blocks:
            super()._write_rows()
            return
        for first, (last, _) in blocks:
            if any(self.table[r] for r in list(self.table) if first <= r <= last):
                raise ValueError(f"{self.name}: cells were written among the raw rows {first + 1}-{last + 1}")
        low, high = self.dim_rowmin, self.dim_rowmax
        try:
            start = low
            for first, (last, xml) in blocks:
                if start < first:
                    self.dim_rowmin, self.dim_rowmax = start, first - 1
                    super()._write_rows()
                self.fh.write("".join(xml))
                start = last + 1
            if start <= high:
                self.dim_rowmin, self.dim_rowmax = start, high
                super()._write_rows()
        finally:
            self.dim_rowmin, self.dim_rowmax = low, high


EXCEL_EPOCH = dt.date(1899, 12, 30)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|_x(?=[0-9A-Fa-f]{4}_)")


def _escape_control(match: re.Match[str]) -> str:
    found = match.group()
    return "_x005F_x" if found == "_x" else f"_x{ord(found):04X}_"


def xml_text(value: str) -> str:
    """Text for a `<t>` element: XML-escaped, CR kept (XML readers turn a bare CR into
    LF), other control characters as Excel's `_xHHHH_`."""
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = value.replace("\r", "&#13;")
    return _CONTROL.sub(_escape_control, value) if _CONTROL.search(value) else value


_INLINE: dict[str, str] = {}
#: Distinct texts remembered at a time: accounts, units, services and memos repeat on
#: most lines; references mostly do not, so the memory is emptied when it is full.
INLINE_MEMORY = 100_000


def inline(value: str) -> str:
    """The `<is>` element of a text cell: neutralized, XML-escaped, worked out once per
    distinct text (a million-line journal holds a few thousand)."""
    found = _INLINE.get(value)
    if found is None:
        found = inline_once(value)
        if len(_INLINE) >= INLINE_MEMORY:
            _INLINE.clear()
        _INLINE[value] = found
    return found


#: Text that needs no work at all: no formula start (`safe.FORMULA_STARTS`, after the
#: spaces `neutralize` skips), no space at either end, nothing to escape, no `_x` (most
#: references and descriptions). Checked in one match.
_PLAIN = re.compile(f"[^ \u00a0{re.escape(''.join(FORMULA_STARTS))}&<>\x00-\x1f\ufffe\uffff]"
                    "[^&<>\x00-\x1f\ufffe\uffff]*")


def inline_once(value: str) -> str:
    """`inline` for a text seen once (a reference), not remembered."""
    if _PLAIN.fullmatch(value) and value[-1] != " " and "_x" not in value:
        return f"<is><t>{value}</t></is>"
    return escaped_inline(value)


def escaped_inline(value: str) -> str:
    """`inline_once` the long way, for any text."""
    text = neutralize(value) or ""
    space = ' xml:space="preserve"' if text[0] in " \t\n" or text[-1] in " \t\n" else ""
    return f"<is><t{space}>{xml_text(text)}</t></is>"


class SharedText:
    """Text cells for `RowSheet.raw_rows` that point into the workbook's shared strings
    table, for texts that repeat down a big sheet (accounts, units, services, memos):
    a cell of a few bytes in place of the text, a quarter less XML to build and zip for
    the auditors' Journal sheets. A cell is the rest of a `<c r="..."` element:
    `cells.get(text) or first(text)`, two calls a reader can afford a million times.

    A text is neutralized like any other; one XlsxWriter would write wrong (a bare CR,
    which readers turn into LF, or one that looks like its rich text, `<r>...</r>`), or
    any new one once `limit` distinct texts are shared, is written inline instead. The
    caller tells how many cells it wrote (`written`): the table counts its references."""

    def __init__(self, book: xlsxwriter.Workbook, limit: int = 50_000) -> None:
        self.table = book.str_table
        self.limit = limit
        self.cells: dict[str, str] = {}
        self.inline = 0  # cells `first` gave inline since the last `written`

    def first(self, value: str) -> str:
        """The cell of a text not in `cells`: shared from now on, or this once inline."""
        text = neutralize(value) or ""
        if len(self.cells) >= self.limit or "\r" in text or (text.startswith("<r>") and text.endswith("</r>")):
            self.inline += 1
            return f'" t="inlineStr">{inline(value)}</c>'
        strings = self.table.string_table  # XlsxWriter's own: its cells share the table
        index = strings.get(text)
        if index is None:
            index = strings[text] = self.table.unique_count
            self.table.unique_count += 1
        found = self.cells[value] = f'" t="s"><v>{index}</v></c>'
        return found

    def written(self, cells: int) -> None:
        """`cells` cells from `cells` and `first` are in the sheet: those shared count
        as references to the table."""
        self.table.count += cells - self.inline
        self.inline = 0


class RowXml:
    """Builds `<row>` XML for `RowSheet.raw_rows`, cell by cell, for one row at a time."""

    def __init__(self, styles: dict[str, Format]) -> None:
        self.style = {name: fmt._get_xf_index() for name, fmt in styles.items()}
        self.cells: list[str] = []
        self.row = 0

    def start(self, row: int) -> None:
        self.row = row + 1
        self.cells = []

    def text(self, col: str, value: str | None) -> None:
        """Text from input: neutralized, then written as an inline string."""
        if value:
            self.cells.append(f'<c r="{col}{self.row}" t="inlineStr">{inline(value)}</c>')

    def number(self, col: str, value: Decimal | int | None, style: str | None = None) -> None:
        if value is not None:
            s = f' s="{self.style[style]}"' if style else ""
            self.cells.append(f'<c r="{col}{self.row}"{s}><v>{value}</v></c>')

    def formula(self, col: str, formula: str, value: Decimal | int, style: str = "money") -> None:
        """A formula (cell references and classic functions, no leading `=`) with its
        value stored beside it, as `Workbook.formula` writes one."""
        self.cells.append(f'<c r="{col}{self.row}" s="{self.style[style]}"><f>{formula}</f>'
                          f"<v>{value}</v></c>")

    def date(self, col: str, value: dt.date, style: str = "date") -> None:
        self.cells.append(f'<c r="{col}{self.row}" s="{self.style[style]}">'
                          f"<v>{(value - EXCEL_EPOCH).days}</v></c>")

    def end(self) -> str:
        return f'<row r="{self.row}">{"".join(self.cells)}</row>'
