"""Reading the rows of input files (CSV or the first sheet of an XLSX workbook).

Every value comes out as a string (XLSX numbers through `str()`, dates as ISO text), so
one set of validators serves both formats. Header problems and unreadable content are
reported as `Problem`s with the file, line and column, never as a traceback.
"""

from __future__ import annotations

import csv
import datetime as dt
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chargeback.errors import Problem

csv.field_size_limit(1 << 20)


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
        yield from _csv_rows(path, columns, problems, name)


def _check_header(
    header: list[str], columns: Columns, problems: list[Problem], name: str
) -> list[str] | None:
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
            problems.append(
                Problem(name, 1, shown, f"unknown column; the columns are: {expected}")
            )
            ok = False
    for column in columns.required:
        if column not in seen:
            problems.append(Problem(name, 1, column, "required column is missing from the header"))
            ok = False
    return cleaned if ok else None


def _csv_rows(
    path: Path, columns: Columns, problems: list[Problem], name: str
) -> Iterator[tuple[int, dict[str, str]]]:
    line = 1
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            try:
                header = next(reader)
            except StopIteration:
                problems.append(Problem(name, 1, "-", "the file is empty; it needs a header row"))
                return
            if len(header) == 1 and ";" in header[0]:
                problems.append(
                    Problem(name, 1, "-", "the file is separated by ';': save it as comma-separated CSV")
                )
                return
            wanted = _check_header(header, columns, problems, name)
            if wanted is None:
                return
            width = len(wanted)
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
                yield start, dict(zip(wanted, record))
    except UnicodeDecodeError:
        problems.append(Problem(name, line + 1, "-", "not UTF-8 text: save the file as CSV UTF-8"))
    except csv.Error as exc:
        problems.append(Problem(name, line + 1, "-", f"not readable as CSV: {exc}"))
    except OSError as exc:
        problems.append(Problem(name, 0, "-", f"cannot read the file: {exc.strerror or exc}"))


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
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value).strip()


def _xlsx_rows(
    path: Path, columns: Columns, problems: list[Problem], name: str
) -> Iterator[tuple[int, dict[str, str]]]:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError, IndexError) as exc:
        problems.append(Problem(name, 0, "-", f"not a readable XLSX workbook ({type(exc).__name__})"))
        return
    except Exception as exc:  # openpyxl raises many kinds on broken XML
        problems.append(Problem(name, 0, "-", f"not a readable XLSX workbook ({type(exc).__name__})"))
        return
    try:
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header_cells = next(rows, None)
        if header_cells is None:
            problems.append(Problem(name, 1, "-", "the first sheet is empty; it needs a header row"))
            return
        header = [cell_text(v) for v in header_cells]
        while header and header[-1] == "":
            header.pop()
        wanted = _check_header(header, columns, problems, name)
        if wanted is None:
            return
        width = len(wanted)
        for number, cells in enumerate(rows, start=2):
            texts = [cell_text(v) for v in cells]
            if not any(texts):
                continue
            extra = [t for t in texts[width:] if t]
            if extra:
                problems.append(
                    Problem(name, number, "-", f"cells beyond the {width} columns of the header")
                )
                continue
            texts = texts[:width] + [""] * (width - len(texts[:width]))
            yield number, dict(zip(wanted, texts))
    except Exception as exc:
        problems.append(Problem(name, 0, "-", f"not a readable XLSX workbook ({type(exc).__name__})"))
    finally:
        workbook.close()


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes, recorded with each import."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

