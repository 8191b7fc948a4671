"""Reading the rows of input files (CSV or the first sheet of an XLSX workbook).

Every value comes out as a string (XLSX numbers through `str()`, dates as ISO text), so
one set of validators serves both formats. Header problems and unreadable content are
reported as `Problem`s with the file, line and column, never as a traceback.

`read_rows` gives a row at a time (book files); `read_pieces` a file as Polars frames of
text columns a piece at a time (usage files), read by Polars itself for a CSV. Only
public APIs of other packages are used: openpyxl's read-only workbook, the sheet's XML
through zipfile and defusedxml for what openpyxl's values do not show.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import posixpath
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import TypeVar
from xml.etree.ElementTree import Element

import polars as pl

from chargeback.core import settings
from chargeback.core.errors import Problem

csv.field_size_limit(1 << 20)


@dataclass
class FileImport:
    """What reading one file into a period did: how many of its lines were read and how
    many stored (each kind of file adds what else it counts)."""

    file: str
    period: str
    lines_read: int = 0
    imported: int = 0


@dataclass(frozen=True)
class Columns:
    """The header a file must have: required and optional column names."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return self.required + self.optional


def read_rows(
    path: Path, columns: Columns, problems: list[Problem], name: str | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, {column: text}) for each data row; the header is line 1.

    Problems with the header or the bytes of the file are appended to `problems`; a
    problem that makes the rest unreadable ends the iteration.
    """
    name = name or path.name
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        yield from _xlsx_rows(path, columns, problems, name)
    else:
        yield from _csv_rows(path, columns, problems, name)  # type: ignore[misc]  # unordered: the rows are dicts


def read_records(
    path: Path, columns: Columns, problems: list[Problem], name: str | None = None
) -> Iterator[tuple[int, tuple[str, ...]]]:
    """`read_rows` with each row's cells as a tuple in `columns.all` order, blank for an
    optional column the file does not have: for a big usage file, taken from the CSV
    reader's list in a fraction of the time a dict a row costs (0.2 against 2 us)."""
    name = name or path.name
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        for line, values in _xlsx_rows(path, columns, problems, name):
            yield line, tuple(values.get(column, "") for column in columns.all)
    else:
        yield from _csv_rows(path, columns, problems, name, ordered=True)  # type: ignore[misc]  # ordered: tuples


def _in_order(wanted: list[str], columns: Columns) -> Callable[[list[str]], tuple[str, ...]]:
    """A record's cells in `columns.all` order, given the header's order (`wanted`)."""
    places = [wanted.index(column) if column in wanted else None for column in columns.all]
    if None not in places and len(places) > 1:
        return itemgetter(*places)
    return lambda record: tuple("" if place is None else record[place] for place in places)


def _check_header(header: list[str], columns: Columns, problems: list[Problem], name: str) -> list[str] | None:
    cleaned = [h.strip() for h in header]
    ok = True
    seen: set[str] = set()
    for column in cleaned:
        if column in seen:
            problems.append(Problem(name, 1, column, "column appears twice in the header"))
            ok = False
        seen.add(column)
        if column not in columns.all:
            shown = column or "(blank)"
            expected = ", ".join(columns.all)
            problems.append(Problem(name, 1, shown, f"unknown column; the columns are: {expected}"))
            ok = False
    for column in columns.required:
        if column not in seen:
            problems.append(Problem(name, 1, column, "required column is missing from the header"))
            ok = False
    return cleaned if ok else None


#: Signatures of files that are not CSV text, whatever their name says.
ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
#: A header that is one cell holding one of these was written with another separator.
SEPARATORS = {";": "';'", "\t": "tabs", "|": "'|'"}


def _separated_otherwise(header: Sequence[str], name: str, problems: list[Problem]) -> bool:
    """Whether the header is one cell holding another separator than the comma (a file
    saved with semicolons, tabs or bars), the problem added to `problems`."""
    if len(header) == 1:
        for separator, said in SEPARATORS.items():
            if separator in header[0]:
                problems.append(
                    Problem(name, 1, "-", f"the file is separated by {said}: save it as comma-separated CSV")
                )
                return True
    return False


def _head(path: Path, size: int = 8) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def _contains(path: Path, needle: bytes) -> bool:
    """True when the file's bytes contain `needle` (a fast scan, before parsing)."""
    with open(path, "rb") as handle:
        tail = b""
        for block in iter(lambda: handle.read(1 << 20), b""):
            if needle in tail + block:
                return True
            tail = block[-len(needle) :]
    return False


def _not_csv(head: bytes) -> str | None:
    if head.startswith(ZIP_MAGIC):
        return "is a workbook (XLSX), not CSV text: name it .xlsx, or save it as CSV UTF-8"
    if head.startswith(OLE2_MAGIC):
        return "is an old .xls or a password-protected workbook, not CSV text: save it as CSV UTF-8"
    if head.startswith(UTF16_BOMS):
        return 'is UTF-16 text (Excel\'s "Unicode Text"): save the file as CSV UTF-8'
    return None


def _csv_rows(
    path: Path, columns: Columns, problems: list[Problem], name: str, ordered: bool = False
) -> Iterator[tuple[int, dict[str, str] | tuple[str, ...]]]:
    """The rows as {column: text}, or as tuples in `columns.all` order when `ordered`."""
    line = 1
    wanted: list[str] | None = None
    try:
        wrong = _not_csv(_head(path))
        if wrong:
            problems.append(Problem(name, 1, "-", wrong))
            return
        nul = _contains(path, b"\x00")
        with open(path, encoding="utf-8-sig", newline="") as handle:
            # strict: a quote never closed, or text after a closing quote, is an error
            # rather than a cell that silently swallows the rest of the file
            reader = csv.reader(handle, strict=True)
            try:
                header = next(reader)
            except StopIteration:
                problems.append(Problem(name, 1, "-", "the file is empty; it needs a header row"))
                return
            if _separated_otherwise(header, name, problems):
                return
            if nul and "\x00" in "".join(header):
                problems.append(
                    Problem(name, 1, "-", "contains a NUL byte: the file is not plain CSV text; save it as CSV UTF-8")
                )
                return
            wanted = _check_header(header, columns, problems, name)
            if wanted is None:
                return
            width = len(wanted)
            in_order = _in_order(wanted, columns) if ordered else None
            line = reader.line_num
            for record in reader:
                start, line = line + 1, reader.line_num
                if not any(map(str.strip, record)):
                    continue
                if len(record) > width:
                    problems.append(
                        Problem(name, start, "-", f"{len(record)} cells but the header has {width} columns")
                    )
                    continue
                if len(record) < width:
                    record = record + [""] * (width - len(record))
                if nul and any("\x00" in cell for cell in record):
                    column = next(c for c, cell in zip(wanted, record, strict=False) if "\x00" in cell)
                    problems.append(
                        Problem(
                            name,
                            start,
                            column,
                            "contains a NUL byte: the file is not plain CSV text; save it as CSV UTF-8",
                        )
                    )
                    continue
                yield start, dict(zip(wanted, record, strict=False)) if in_order is None else in_order(record)
    except UnicodeDecodeError:
        bad_line, column = _first_bad_utf8(path, wanted)
        problems.append(Problem(name, bad_line, column, "not UTF-8 text: save the file as CSV UTF-8"))
    except csv.Error as exc:
        message = str(exc)
        if message == "unexpected end of data":
            message = "a quoted cell is never closed (a '\"' is missing)"
        elif message.startswith("field larger than field limit"):
            message = f"a cell is longer than {csv.field_size_limit()} characters"
        problems.append(Problem(name, line + 1, "-", f"not readable as CSV: {message}"))
    except OSError as exc:
        problems.append(Problem(name, 0, "-", f"cannot read the file: {exc.strerror or exc}"))


LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def _first_bad_utf8(path: Path, header: list[str] | None) -> tuple[int, str]:
    """(line, column) of the first byte that is not UTF-8 (the decoder reads ahead, so the
    line the CSV reader had reached is not the one). Line ends are counted as the CSV
    reader counts them: CR LF, CR or LF."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
        return 1, "-"
    except UnicodeDecodeError as exc:
        start = exc.start
    breaks = [m.end() for m in LINE_BREAK.finditer(data, 0, start)]
    line = len(breaks) + 1
    if line == 1:
        return 1, "-"
    if header is None:
        first = LINE_BREAK.split(data, 1)[0].decode("utf-8-sig", "replace")
        header = [h.strip() for h in _cells(first)]
    end = LINE_BREAK.search(data, start)
    text = data[breaks[-1] : end.start() if end else len(data)].decode("utf-8", "replace")
    column = next((c for c, cell in zip(header, _cells(text), strict=False) if "\ufffd" in cell), "-")
    return line, column


def _cells(text: str) -> list[str]:
    try:
        return next(csv.reader([text]), [])
    except csv.Error:
        return []


def cell_text(value: object) -> str:
    """An XLSX cell value as the text a CSV would have held."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        # the shortest text that reads back as the same float, without an exponent,
        # so that 1e30 is judged by its size and 1e-7 by its decimal places
        return format(Decimal(repr(value)), "f")
    return str(value).strip()


#: Limits that keep a hostile workbook (a "zip bomb") from filling memory or time.
MAX_UNPACKED = 1 << 30
BOMB_RATIO = 100
BOMB_FLOOR = 10 << 20
MAX_HEADER_CELLS = 256


def _xlsx_refusal(path: Path) -> str | None:
    """Why a file cannot be read as a workbook, judged before any XML is parsed."""
    head = _head(path)
    if head.startswith(OLE2_MAGIC):
        return (
            "is password-protected (encrypted) or an old .xls workbook: remove the password, "
            "or save it as .xlsx, and import it again"
        )
    if not head.startswith(ZIP_MAGIC):
        return "is not an XLSX workbook: save it as .xlsx (or as CSV UTF-8 with a .csv name)"
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except Exception:  # noqa: BLE001 BadZipFile, NotImplementedError (an unknown zip version), struct errors...
        return "is damaged (not a complete XLSX archive): save it again from the spreadsheet program"
    total = 0
    for member in members:
        total += member.file_size
        if member.file_size > BOMB_FLOOR and member.file_size > BOMB_RATIO * max(member.compress_size, 1):
            return (
                f"{member.filename} expands more than {BOMB_RATIO}-fold (to {member.file_size >> 20} MB): "
                "refused as a zip bomb"
            )
    if total > MAX_UNPACKED:
        return f"expands to {total >> 20} MB: too big to read safely; save it as CSV UTF-8"
    return None


def _column_letter(column: int) -> str:
    from openpyxl.utils import get_column_letter

    try:
        return get_column_letter(column)
    except ValueError:
        return str(column)


def _xlsx_rows(
    path: Path, columns: Columns, problems: list[Problem], name: str
) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of the first sheet through openpyxl's public read-only API. What its
    values cannot show (a formula without a saved value reads as a blank, merged cells,
    rows out of order it skips) is found in the sheet's XML (`_SheetMarks`) and reported
    rather than read as blanks; error cells are reported too."""
    import openpyxl.xml
    from defusedxml import DefusedXmlException
    from openpyxl import load_workbook

    try:
        refusal = _xlsx_refusal(path)
    except OSError as exc:
        refusal = f"cannot read the file: {exc.strerror or exc}"
    if refusal is None and not openpyxl.xml.DEFUSEDXML:
        refusal = "cannot be read safely: install defusedxml (openpyxl uses it against XML attacks)"
    if refusal:
        problems.append(Problem(name, 0, "-", refusal))
        return

    def unreadable(exc: Exception, line: int) -> Problem:
        """The problem of a workbook openpyxl could not read: unsafe XML, or broken."""
        if _caused_by(exc, DefusedXmlException):
            return Problem(
                name,
                0,
                "-",
                "declares XML entities or a DTD, which spreadsheet programs never write: refused as unsafe",
            )
        return Problem(
            name,
            line,
            "-",
            f"is not a readable XLSX workbook ({type(exc).__name__}): "
            "open it in a spreadsheet program and save it again",
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            workbook = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 openpyxl raises many kinds on broken XML
            problems.append(unreadable(exc, 0))
            return
        where = [0]  # the row being read, for an error in the middle of the sheet
        try:
            if not workbook.worksheets:
                problems.append(Problem(name, 0, "-", "has no worksheet: put the usage on the first sheet"))
                return
            sheet = workbook.worksheets[0]
            marks = _SheetMarks.of(path, sheet.title)
            yield from _sheet_rows(sheet, marks, columns, problems, name, where)
        except Exception as exc:  # noqa: BLE001 a broken sheet fails in the middle in many ways: refused, not a crash
            problems.append(unreadable(exc, where[0]))
        finally:
            workbook.close()


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """True when `exc` or an exception it was raised from is a `kind` (openpyxl wraps
    what its XML parser raised in a ValueError)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, kind):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


#: In a sheet's XML: a row, its number, a formula, a merged range.
ROW_TAG = re.compile(rb"<(?:[\w.-]+:)?row\b")
ROW_NUMBER = re.compile(rb'<(?:[\w.-]+:)?row\b[^>]*?\sr="(\d+)"')
FORMULA_OR_MERGE = re.compile(rb"<(?:[\w.-]+:)?(?:f[\s/>]|mergeCell\b)")
#: Rows further apart than this are read as separate runs (`_SheetMarks.runs`).
ROW_GAP = 1_000


@dataclass
class _SheetMarks:
    """What openpyxl's values do not show, read from the first sheet's XML: the cells
    (row, column) holding a formula without a saved value, the merged ranges, the first
    row whose number is not above the one before it, and the runs (first and last row)
    of rows with no more than `ROW_GAP` between them, so that openpyxl is never asked
    for the million empty rows between row 2 and row 1048576 (None when a row has no
    number)."""

    formulas: set[tuple[int, int]]
    merged: list[str]
    out_of_order: int | None
    runs: list[tuple[int, int]] | None

    @classmethod
    def of(cls, path: Path, title: str) -> _SheetMarks:
        """One scan of the sheet's bytes for row numbers, formulas and merges; the XML
        is parsed (with defusedxml) only when it has a formula or a merge."""
        marks = cls(set(), [], None, None)
        with zipfile.ZipFile(path) as archive:
            member = _sheet_member(archive, title)
            if member is None:
                return marks
            found = False
            runs: list[tuple[int, int]] = []
            tags = numbered = 0
            last, tail = 0, b""
            with archive.open(member) as source:
                for block in iter(lambda: source.read(1 << 22), b""):
                    text = tail + block
                    cut = text.rfind(b"<")
                    text, tail = (text[:cut], text[cut:]) if cut >= 0 else (text, b"")
                    found = found or FORMULA_OR_MERGE.search(text) is not None
                    tags += len(ROW_TAG.findall(text))
                    for number in map(int, ROW_NUMBER.findall(text)):
                        numbered += 1
                        if number <= last and marks.out_of_order is None:
                            marks.out_of_order = number
                        if runs and number - runs[-1][1] <= ROW_GAP:
                            runs[-1] = (runs[-1][0], number)
                        else:
                            runs.append((number, number))
                        last = number
            found = found or FORMULA_OR_MERGE.search(tail) is not None
            if tags == numbered:
                marks.runs = runs
            if found:
                marks._parse(archive, member)
        return marks

    def _parse(self, archive: zipfile.ZipFile, member: str) -> None:
        from defusedxml.ElementTree import iterparse
        from openpyxl.utils.cell import column_index_from_string, coordinate_from_string

        with archive.open(member) as source:
            for _, element in iterparse(source, events=("end",)):
                tag = element.tag.rpartition("}")[2]
                if tag == "c":
                    parts = {child.tag.rpartition("}")[2]: child for child in element}
                    value = parts.get("v")
                    if "f" in parts and (value is None or value.text is None) and element.get("r"):
                        letters, row = coordinate_from_string(element.get("r"))
                        self.formulas.add((row, column_index_from_string(letters)))
                    element.clear()
                elif tag == "row":
                    element.clear()
                elif tag == "mergeCell" and element.get("ref"):
                    self.merged.append(element.get("ref"))


def _sheet_member(archive: zipfile.ZipFile, title: str) -> str | None:
    """The archive member of the sheet named `title`, found as openpyxl finds it: the
    package's workbook part, its sheet of that name, and the relationship it names."""
    from defusedxml.ElementTree import fromstring

    def local(tag: str) -> str:
        return tag.rpartition("}")[2]

    def attribute(element, name: str) -> str | None:
        return next((v for k, v in element.attrib.items() if local(k) == name), None)

    def target(rels_member: str, folder: str, wanted: Callable[[Element], bool]) -> str | None:
        for rel in fromstring(archive.read(rels_member)):
            if wanted(rel):
                found = rel.get("Target", "")
                return found.lstrip("/") if found.startswith("/") else posixpath.normpath(posixpath.join(folder, found))
        return None

    book = target("_rels/.rels", "", lambda rel: rel.get("Type", "").endswith("/officeDocument"))
    if book is None:
        return None
    folder, _, file = book.rpartition("/")
    sheet = next(
        (e for e in fromstring(archive.read(book)).iter() if local(e.tag) == "sheet" and e.get("name") == title), None
    )
    if sheet is None:
        return None
    rel_id = attribute(sheet, "id")
    return target(posixpath.join(folder, "_rels", f"{file}.rels"), folder, lambda rel: rel.get("Id") == rel_id)


def _numbered_rows(sheet, runs: list[tuple[int, int]] | None) -> Iterator[tuple[int, tuple]]:
    """(row number, cells) of the sheet from row 1, a run of rows at a time (openpyxl
    reads the sheet again from its start for each, skipping the rows before it)."""
    for first, last in runs if runs is not None else [(1, None)]:
        yield from enumerate(sheet.iter_rows(min_row=first, max_row=last, min_col=1), first)


def _sheet_rows(
    sheet,
    marks: _SheetMarks,
    columns: Columns,
    problems: list[Problem],
    name: str,
    where: list[int],
) -> Iterator[tuple[int, dict[str, str]]]:
    from openpyxl.worksheet.cell_range import CellRange

    sheet.reset_dimensions()  # the declared size may be A1:XFD1048576: only the cells that are there
    rows = _numbered_rows(sheet, marks.runs)
    where[0] = 1
    number, first = next(rows, (0, ()))
    if number != 1 or not first:
        problems.append(Problem(name, 1, "-", "the first sheet has no header on row 1; it needs a header row"))
        return
    if len(first) > MAX_HEADER_CELLS:
        problems.append(
            Problem(
                name,
                1,
                "-",
                f"the header row has cells beyond column "
                f"{_column_letter(MAX_HEADER_CELLS)}: only the header's names belong there",
            )
        )
        return
    header = [cell_text(cell.value) for cell in first]
    while header and header[-1] == "":
        header.pop()
    wanted = _check_header(header, columns, problems, name)
    if wanted is None:
        return
    if marks.out_of_order is not None:
        problems.append(
            Problem(
                name,
                marks.out_of_order,
                "-",
                "the sheet's rows are out of order: save the file again from a spreadsheet program",
            )
        )
        return
    width = len(wanted)
    formulas = marks.formulas
    for number, cells in rows:
        where[0] = number
        if not cells:
            continue
        texts = [""] * width
        extra = bad = False
        for column, cell in enumerate(cells, 1):
            label = wanted[column - 1] if column <= width else _column_letter(column)
            if formulas and (number, column) in formulas:
                problems.append(
                    Problem(
                        name,
                        number,
                        label,
                        "is a formula with no saved value: open the file in a spreadsheet program, "
                        "let it calculate and save it (or paste the values)",
                    )
                )
                bad = True
                continue
            if cell.data_type == "e":
                problems.append(Problem(name, number, label, f"is a spreadsheet error ({cell.value}): fix the formula"))
                bad = True
                continue
            text = cell_text(cell.value)
            if column > width:
                extra = extra or bool(text)
            else:
                texts[column - 1] = text
        if bad:
            continue
        if extra:
            problems.append(Problem(name, number, "-", f"cells beyond the {width} columns of the header"))
            continue
        if any(texts):
            yield number, dict(zip(wanted, texts, strict=False))
    for ref in marks.merged:
        try:
            min_col, min_row, _, _ = CellRange(ref).bounds
        except (ValueError, TypeError):
            problems.append(Problem(name, 0, "-", f"merged cells {ref}: unmerge them and fill in every cell"))
            continue
        label = wanted[min_col - 1] if min_col <= width else _column_letter(min_col)
        problems.append(Problem(name, min_row, label, f"merged cells {ref}: unmerge them and fill in every cell"))


#: The characters Python's `str.strip` takes off, for Polars' `strip_chars` to take
#: off the same: a cell is judged as the row-by-row readers judged it.
WHITESPACE = "".join(c for c in map(chr, range(0x3000 + 1)) if c.isspace())


#: A cell of nothing but whitespace (`WHITESPACE`).
BLANK = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE) + "]*$"


#: A cell that starts or ends with whitespace (`WHITESPACE`).
PADDED = "^[" + BLANK[2:-3] + "]|[" + BLANK[2:-3] + "]$"


def stripped(table: pl.DataFrame, columns: tuple[str, ...]) -> list[pl.Expr]:
    """The cells of `columns` without surrounding whitespace, as `str.strip` leaves them;
    a column without such a cell is taken as it is (no copy of a million texts)."""
    return [
        pl.col(c).str.strip_chars(WHITESPACE)
        if table.select(pl.col(c).str.contains(PADDED).any()).item()
        else pl.col(c)
        for c in columns
    ]


T = TypeVar("T")


class _ByTheCsvModule(Exception):
    """Polars cannot read the file as it is: the csv module must (see `read_pieces`)."""


def read_pieces(
    path: Path,
    columns: Columns,
    problems: list[Problem],
    name: str | None,
    each: Callable[[pl.DataFrame], T],
) -> list[T]:
    """`each` of the pieces of a file's data rows, in the file's order. A piece is a
    frame: `line` (the header is line 1) and each of `columns.all` as text, blank for an
    optional column the file does not have; blank rows left out. Problems with the
    header or the bytes go to `problems`, as `read_rows` reports them, and the rows they
    concern are left out.

    A CSV file is read by Polars a piece at a time (the settings' `usage_piece_bytes`),
    cut at a line end outside any quoted cell, so that only one piece's text is in memory; one it cannot read as RFC
    4180 UTF-8 text (a quote never closed, a row of too many cells, NUL bytes, lone CR
    line ends within LF ones...) is read by the csv module (`read_records`), which says
    exactly where it breaks: what `each` gave for the pieces before is dropped and the
    whole file is one piece. A workbook is read through openpyxl, a row at a time, as one
    piece."""
    name = name or path.name
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        done: list[T] = []
        try:
            for piece in _csv_pieces(path, columns, problems, name, settings.current().usage_piece_bytes):
                done.append(each(piece))
                del piece  # not kept while the next piece is read
        except (_ByTheCsvModule, OSError):  # the csv module also says why a file cannot be read
            pass
        else:
            return done
        del done
    lines: list[int] = []
    records: list[tuple[str, ...]] = []
    for line, values in read_records(path, columns, problems, name):
        lines.append(line)
        records.append(values)
    frame = pl.DataFrame(records, schema=[(c, pl.String) for c in columns.all], orient="row")
    del records
    return [each(frame.select(pl.Series("line", lines, dtype=pl.Int64), *columns.all))]


def byte_pieces(path: Path, size: int) -> Iterator[bytes]:
    """The file's bytes about `size` at a time, each piece ending at a line end outside
    any quoted cell (an even number of quotes before it: an escaped quote is two), the
    last one where the file ends."""
    with open(path, "rb") as source:
        tail = b""
        for block in iter(lambda: source.read(size), b""):
            data = tail + block
            cut = data.rfind(b"\n")
            quotes = data.count(b'"', 0, cut) if cut >= 0 else 0
            while cut >= 0 and quotes % 2:
                before = data.rfind(b"\n", 0, cut)
                quotes -= data.count(b'"', max(before, 0), cut)
                cut = before
            if cut < 0:
                tail = data
                continue
            yield data[: cut + 1]
            tail = data[cut + 1 :]
        if tail:
            yield tail


def _csv_pieces(path: Path, columns: Columns, problems: list[Problem], name: str, size: int) -> Iterator[pl.DataFrame]:
    """The CSV file read by Polars a piece at a time, every cell as text; raises
    `_ByTheCsvModule` when the csv module must read it (see `read_pieces`)."""
    wanted: list[str] | None = None
    line = 1  # the file's line where the piece starts
    for number, data in enumerate(byte_pieces(path, size)):
        if (number == 0 and _not_csv(data[:8])) or b"\x00" in data:
            raise _ByTheCsvModule
        starts_at, line = line, line + data.count(b"\n")
        if b"\r" in data:
            if b"\n" not in data and number == 0:
                data = data.replace(b"\r", b"\n")  # CR line ends (old Mac files), as the csv module reads them
            elif data.count(b"\r") != data.count(b"\r\n"):
                raise _ByTheCsvModule
        quoted = b'"' in data
        try:
            table = pl.read_csv(
                data, has_header=False, infer_schema=False, separator=",", quote_char='"', encoding="utf8"
            )
        except Exception as exc:  # Polars says no in many ways; the csv module says why
            raise _ByTheCsvModule from exc
        del data  # the piece's bytes are not kept while its rows are checked
        if (
            table.height == 0
            or table.select(pl.max_horizontal(pl.all().str.len_bytes()).max()).item() > csv.field_size_limit()
        ):
            raise _ByTheCsvModule
        if wanted is None:
            header_row = table.row(0)
            header = [] if header_row == (None,) else ["" if cell is None else cell for cell in header_row]
            if _separated_otherwise(header, name, problems):
                yield _empty(columns)
                return
            wanted = _check_header(header, columns, problems, name)
            if wanted is None:
                yield _empty(columns)
                return
            cells = table.columns
        elif table.width > len(cells):
            raise _ByTheCsvModule  # a row of more cells than the header: Polars refused it in one piece
        table = _piece_frame(table, wanted, cells, columns, starts_at, quoted, number == 0)
        yield table
        del table  # not kept while the next piece is read
    if wanted is None:  # an empty file
        raise _ByTheCsvModule


def _piece_frame(
    table: pl.DataFrame, wanted: list[str], cells: list[str], columns: Columns, line: int, quoted: bool, header: bool
) -> pl.DataFrame:
    """A piece of a CSV file as Polars read it (the header its first row when `header`),
    as `read_pieces` gives it: the lines numbered from `line`, the cells named."""
    table = table.rename(dict(zip(table.columns, cells, strict=False))).with_columns(
        pl.lit(None, dtype=pl.String).alias(c) for c in cells[table.width :]
    )  # a piece whose rows are all shorter than the header's has fewer cells
    if quoted:  # a quoted cell may hold line breaks: a row's line counts those before it
        breaks = pl.sum_horizontal(pl.col(cells).str.count_matches("\n", literal=True).fill_null(0))
        number = line + pl.int_range(pl.len(), dtype=pl.Int64) + breaks.cum_sum().shift(1, fill_value=0).cast(pl.Int64)
    else:
        number = line + pl.int_range(pl.len(), dtype=pl.Int64)
    table = table.with_columns(number.alias("line")).rename(dict(zip(cells, wanted, strict=False)))
    if header:
        table = table.slice(1)
    table = table.select(
        "line",
        *[
            (pl.col(c).fill_null("") if table[c].null_count() else pl.col(c)) if c in wanted else pl.lit("").alias(c)
            for c in columns.all
        ],
    )
    maybe = table.filter(pl.col(columns.all[0]).str.contains(BLANK))  # few rows, if any, to look at whole
    if maybe.height:
        blank = maybe.filter(pl.all_horizontal([pl.col(c).str.contains(BLANK) for c in columns.all]))["line"]
        table = table.filter(~pl.col("line").is_in(blank.implode()))
    return table


def _empty(columns: Columns) -> pl.DataFrame:
    return pl.DataFrame(schema={"line": pl.Int64, **dict.fromkeys(columns.all, pl.String)})
