"""Small openpyxl workbooks (the variance review, the budget table): titles that say
DRAFT when they are drafts, amounts as numeric cells with the currency's format, text
that never runs as a formula, and files saved byte for byte the same from the same data.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from chargeback.money import currency_format, from_minor
from chargeback.safe import neutralize
from chargeback.zipfiles import FastZip

PERCENT = "0.0%;[Red]-0.0%"
BOLD = Font(bold=True)
TITLE = Font(bold=True, size=14)
HEADER_FILL = PatternFill("solid", fgColor="DDE4EE")


class Sheets:
    """A workbook whose every sheet is titled, marked DRAFT when it is one, and written
    with the currency's format."""

    def __init__(self, title: str, *, book: str, currency: str, digits: int, draft: bool) -> None:
        self.workbook = Workbook()
        self.workbook.remove(self.workbook.active)
        self.draft = draft
        self.digits = digits
        self.money_format = currency_format(currency, digits)
        self.workbook.properties.title = self.title(title)
        self.workbook.properties.creator = "chargeback"
        self.workbook.properties.subject = book

    def title(self, text: str) -> str:
        return f"DRAFT - {text}" if self.draft else text

    def sheet(self, name: str, title: str, notes: Sequence[str] = ()) -> tuple[Worksheet, int]:
        """A new sheet with its title and notes at the top; returns it and its next row."""
        sheet = self.workbook.create_sheet(name)
        sheet["A1"] = neutralize(self.title(title))
        sheet["A1"].font = TITLE
        for row, note in enumerate(notes, start=2):
            sheet.cell(row, 1, neutralize(note))
        if self.draft:
            sheet.oddHeader.center.text = "DRAFT"
            sheet.oddHeader.center.font = "Arial,Bold"
        sheet.oddFooter.center.text = "&A - page &P of &N"
        sheet.page_setup.orientation = "landscape"
        sheet.page_setup.fitToWidth = 1
        sheet.page_setup.fitToHeight = 0
        sheet.sheet_properties.pageSetUpPr.fitToPage = True
        return sheet, len(notes) + 3

    def header(self, sheet: Worksheet, row: int, titles: Sequence[str],
               widths: Sequence[float] = ()) -> None:
        for col, title in enumerate(titles, start=1):
            cell = sheet.cell(row, col, title)
            cell.font = BOLD
            cell.fill = HEADER_FILL
            cell.alignment = Alignment(wrap_text=True, vertical="top")
        for col, width in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(col)].width = width
        sheet.freeze_panes = sheet.cell(row + 1, 1)

    def row(self, sheet: Worksheet, row: int, values: Sequence[object]) -> None:
        """Write a row: `str` as text (neutralized), `Money` as an amount, `Percent` as a
        percentage, None as a blank cell."""
        for col, value in enumerate(values, start=1):
            if value is None:
                continue
            if isinstance(value, Money):
                cell = sheet.cell(row, col, from_minor(value.minor, self.digits))
                cell.number_format = self.money_format
            elif isinstance(value, Percent):
                cell = sheet.cell(row, col, value.share)
                cell.number_format = PERCENT
            elif isinstance(value, str):
                sheet.cell(row, col, neutralize(value))
            else:
                sheet.cell(row, col, value)

    def save(self, path: Path, when: dt.datetime) -> None:
        """Save with `when` as the creation time and as every zip entry's time, so the same
        data always gives the same bytes (`report` writes a period's files again)."""
        when = when.replace(tzinfo=None, microsecond=0)
        self.workbook.properties.created = when
        buffer = io.BytesIO()
        archive = _FixedTimeZip(buffer, when)
        writer = ExcelWriter(self.workbook, archive)
        self.workbook.properties.modified = when
        writer.save()
        partial = path.with_name(f".{path.name}.partial")
        try:
            partial.write_bytes(buffer.getvalue())
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)


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


class _FixedTimeZip(FastZip):
    """A zip archive whose entries all carry one timestamp instead of the clock's."""

    def __init__(self, file: io.BytesIO, when: dt.datetime) -> None:
        super().__init__(file, "w", zipfile.ZIP_DEFLATED, allowZip64=True)
        self._stamp = max(when, dt.datetime(1980, 1, 1)).timetuple()[:6]

    def writestr(self, zinfo_or_arcname, data, compress_type=None, compresslevel=None):  # type: ignore[no-untyped-def, override]
        if isinstance(zinfo_or_arcname, str):
            zinfo_or_arcname = zipfile.ZipInfo(zinfo_or_arcname, date_time=self._stamp)
            zinfo_or_arcname.compress_type = zipfile.ZIP_DEFLATED
        super().writestr(zinfo_or_arcname, data, compress_type, compresslevel)

    def write(self, filename, arcname=None, compress_type=None, compresslevel=None):  # type: ignore[no-untyped-def, override]
        """openpyxl writes worksheets from temporary files: their time would be the clock's."""
        with open(filename, "rb") as handle:
            self.writestr(str(arcname or Path(filename).name), handle.read())
