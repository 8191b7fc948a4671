"""Documents as people print them: page setup and cell types read back with openpyxl, and
every kind of document rendered to a PNG (LibreOffice to PDF, then poppler's pdftoppm;
Chromium's screenshot for invoices) that is checked not to be blank."""

from __future__ import annotations

import datetime as dt
import math
import shutil
import subprocess
from pathlib import Path

import openpyxl
import pytest
from browser import run_chromium
from conftest import documents_book_copy
from libreoffice import soffice_convert

from chargeback import api


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory, documents_book_state: Path) -> tuple[str, Path]:
    """The documents book's months closed (`documents_book.build`), a copy for this module."""
    return documents_book_copy(documents_book_state, tmp_path_factory.mktemp("printing"))


def test_the_matrix_is_printed_landscape_one_page_wide_with_its_headers_on_every_page(out: tuple[str, Path]) -> None:
    _, folder = out
    book = openpyxl.load_workbook(folder / "2026-03" / "reconciliation.xlsx")
    matrix = book["Matrix"]
    assert matrix.page_setup.orientation == "landscape"
    assert matrix.sheet_properties.pageSetUpPr.fitToPage
    # one page wide (1 is the file format's default, which a writer may leave out), as many tall as needed
    assert (matrix.page_setup.fitToWidth or 1, matrix.page_setup.fitToHeight) == (1, 0)
    assert matrix.print_title_rows == "$4:$5" and matrix.print_title_cols == "$A:$A"
    codes = [c.value for c in matrix[4][1:] if c.value]
    names = [c.value for c in matrix[5][1:] if c.value]
    assert "Art Department" in names and "ART" in codes
    # the names' row is tall enough for the longest name wrapped in its column, so it
    # never runs over the first provider's amounts
    width = matrix.column_dimensions["B"].width
    longest = max(len(name) for name in names)
    assert matrix[5][1].alignment.wrap_text
    assert matrix.row_dimensions[5].height >= 15 * math.ceil(longest / (width - 2))
    # a sensible width: an amount fits, 18 consumers do not shrink below legibility on A3
    assert 11 <= width <= 16


def test_long_sheets_repeat_their_header_row_on_each_printed_page(out: tuple[str, Path]) -> None:
    _, folder = out
    reconciliation = openpyxl.load_workbook(folder / "2026-03" / "reconciliation.xlsx")
    journal = reconciliation["Journal"]
    assert journal.print_title_rows == "$1:$1"
    assert journal["A1"].value == "Entry"
    statement = openpyxl.load_workbook(folder / "2026-03" / "statements" / "ART.xlsx")
    detail = statement["Detail"]
    assert detail.print_title_rows == "$2:$2" and detail["A2"].value == "Date"
    variance = openpyxl.load_workbook(folder / "2026-04" / "variance.xlsx")
    frozen = [sheet for sheet in variance.worksheets if sheet.freeze_panes]
    assert frozen
    for sheet in frozen:
        rows = sheet[sheet.freeze_panes].row - 1
        assert sheet.print_title_rows == f"$1:${rows}", sheet.title


def test_exceptions_times_are_datetimes_in_a_column_wide_enough(out: tuple[str, Path]) -> None:
    _, folder = out
    sheet = openpyxl.load_workbook(folder / "2026-03" / "reconciliation.xlsx")["Exceptions"]
    times = [
        row[2]
        for row in sheet.iter_rows()
        if isinstance(row[2].value, dt.datetime) and row[2].number_format == "yyyy-mm-dd hh:mm:ss"
    ]
    assert len(times) >= 3  # the imports, the closes and reopen, the audit log
    # "2026-04-02 09:30:00" is 19 characters: a narrower column prints ###
    assert sheet.column_dimensions["C"].width >= len("yyyy-mm-dd hh:mm:ss") + 1


def test_a_linked_credit_on_the_invoice_names_the_charge_it_corrects(imported: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    api.close(imported, "2026-03", out)
    api.adjust(imported, "2026-04", None, None, "-30.00", "Ticket T-1 billed twice", against="HELP:T-1")
    api.close(imported, "2026-04", out)
    html = (out / "2026-04" / "invoices" / "ART.html").read_text(encoding="utf-8")
    # the charge it corrects: T-1 of March, 1.5 h at 60.00
    assert '<span class="tag adjustment">corrects HELP:T-1, charged in 2026-03: 90.00</span>' in html


# Rendered pages -----------------------------------------------------------------------


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed")
    return found


def _first_page_png(pdf: Path, png_prefix: Path) -> Path:
    """The PDF's first page as a PNG (to look at), and checked not blank via a grey map."""
    pdftoppm = _tool("pdftoppm")
    subprocess.run(
        [pdftoppm, "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(png_prefix)], check=True
    )
    subprocess.run(
        [pdftoppm, "-gray", "-r", "30", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(png_prefix)], check=True
    )
    png = png_prefix.with_suffix(".png")
    assert png.read_bytes().startswith(b"\x89PNG")
    assert _inked(png_prefix.with_suffix(".pgm")) > 0.005
    return png


def _inked(pgm: Path) -> float:
    """The share of a binary PGM's pixels that are not white."""
    data = pgm.read_bytes()
    fields: list[bytes] = []
    position = 0
    while len(fields) < 4:  # P5, width, height, maxval: separated by whitespace
        while data[position : position + 1].isspace():
            position += 1
        end = position
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[position:end])
        position = end
    pixels = data[position + 1 :]
    assert fields[0] == b"P5" and len(pixels) == int(fields[1]) * int(fields[2])
    return sum(1 for value in pixels if value < 200) / len(pixels)


def _soffice_pdf(files: list[Path], folder: Path) -> list[Path]:
    soffice_convert(files, "pdf", folder)
    return [folder / f"{path.stem}.pdf" for path in files]


@pytest.mark.slow
def test_every_workbook_renders_to_a_page_that_is_not_blank(out: tuple[str, Path], tmp_path: Path) -> None:
    _, folder = out
    files = [
        folder / "2026-03" / "reconciliation.xlsx",
        folder / "2026-03" / "statements" / "CHEM.xlsx",
        folder / "2026-04" / "variance.xlsx",
    ]
    for pdf in _soffice_pdf(files, tmp_path):
        assert pdf.read_bytes().startswith(b"%PDF-")
        _first_page_png(pdf, tmp_path / pdf.stem)


@pytest.mark.slow
def test_the_matrix_renders_on_a_landscape_page(out: tuple[str, Path], tmp_path: Path) -> None:
    """The Matrix sheet alone, as LibreOffice prints it: a page wider than it is tall."""
    _, folder = out
    book = openpyxl.load_workbook(folder / "2026-03" / "reconciliation.xlsx")
    for name in book.sheetnames:
        if name != "Matrix":
            del book[name]
    book.save(tmp_path / "matrix.xlsx")
    [pdf] = _soffice_pdf([tmp_path / "matrix.xlsx"], tmp_path)
    png = _first_page_png(pdf, tmp_path / "matrix")
    width, height = int.from_bytes(png.read_bytes()[16:20], "big"), int.from_bytes(png.read_bytes()[20:24], "big")
    assert width > height


@pytest.mark.slow
def test_an_invoice_renders_in_chromium_to_a_page_that_is_not_blank(out: tuple[str, Path], tmp_path: Path) -> None:
    _, folder = out
    for unit in ("CHEM", "EXT-1"):
        png = tmp_path / f"invoice-{unit}.png"
        page = (folder / "2026-03" / "invoices" / f"{unit}.html").as_uri()
        run_chromium(tmp_path / "profile", "--window-size=1000,1400", "--hide-scrollbars", f"--screenshot={png}", page)
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000  # text on a white page compresses less
        # not blank: printed to PDF by the same browser, its first page has ink
        pdf = tmp_path / f"invoice-{unit}.pdf"
        run_chromium(tmp_path / "profile", "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page)
        _first_page_png(pdf, tmp_path / f"invoice-{unit}-printed")


def test_the_audit_logs_long_arguments_wrap_in_a_column_of_their_own(out: tuple[str, Path]) -> None:
    """A path and a sha256 in one cell would widen the printed page until nothing is legible."""
    _, folder = out
    sheet = openpyxl.load_workbook(folder / "2026-03" / "reconciliation.xlsx")["Exceptions"]
    cells = [row[10] for row in sheet.iter_rows() if len(row) > 10 and row[10].value and "sha256:" in row[10].value]
    assert cells
    width = sheet.column_dimensions["K"].width
    assert width <= 80
    for cell in cells:
        assert cell.alignment.wrap_text
        assert sheet.row_dimensions[cell.row].height >= 15 * math.ceil(len(cell.value) / (width - 2))
