"""A usage file is read and checked a piece at a time (`tabular.read_pieces`): with
pieces of a few hundred bytes, every line of a small file crosses a piece's edge, and
the import must be the one a single piece gives: the same lines stored, the same line
numbers, every problem of every piece listed, duplicates found across pieces."""

import csv
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import USAGE_HEADER, usage_file
from reliability import plain_connection
from sqlalchemy import select
from test_usage_import import refused, stored

from chargeback import api
from chargeback.core.errors import Problem
from chargeback.core.settings import Settings
from chargeback.ingest.tabular import byte_pieces, read_pieces
from chargeback.ingest.usage_checks import USAGE
from chargeback.store.schema import Usage


@pytest.fixture
def small_pieces(tuned: Callable[..., Settings]) -> int:
    """Pieces of 200 bytes: three or four usage lines each."""
    tuned(usage_piece_bytes=200)
    return 200


def described(n: int) -> str:
    """Descriptions that make the cut hard: quoted line breaks, commas, escaped quotes."""
    return ["plain", 'two\nlines, "quoted"', "three\r\nlines\nhere", "", 'a "quote"\n'][n % 5]


def rows_of(count: int) -> list[list[object]]:
    return [["2026-03-02", "HELP", "MATH", str(n % 7 + 1), f"P-{n}", described(n)] for n in range(count)]


def lines_by_the_csv_module(path: Path) -> list[tuple[int, str, str]]:
    """(the file's line where each row starts, reference, description), as the csv module reads them."""
    found = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        start = reader.line_num + 1
        for row in reader:
            found.append((start, row[4], row[5]))
            start = reader.line_num + 1
    return found


def test_the_pieces_are_the_file_cut_at_line_ends_outside_quotes(tmp_path: Path, small_pieces: int) -> None:
    path = usage_file(tmp_path, "cut.csv", rows_of(60))
    pieces = list(byte_pieces(path, small_pieces))
    assert len(pieces) > 10
    assert b"".join(pieces) == path.read_bytes()
    for piece in pieces:
        assert piece.endswith(b"\n")
        assert piece.count(b'"') % 2 == 0  # no quoted cell open at a piece's end


def test_the_settings_piece_size_is_what_a_usage_file_is_read_by(tmp_path: Path, small_pieces: int) -> None:
    path = usage_file(tmp_path, "cut.csv", rows_of(60))
    problems: list[Problem] = []
    heights = read_pieces(path, USAGE, problems, None, lambda piece: piece.height)
    assert problems == []
    assert len(heights) == len(list(byte_pieces(path, small_pieces))) > 10
    assert sum(heights) == 60


def test_a_file_read_in_small_pieces_is_stored_as_written(loaded: str, tmp_path: Path, small_pieces: int) -> None:
    path = usage_file(tmp_path, "pieces.csv", rows_of(60))
    result = api.import_file(loaded, path, "2026-03")
    assert (result.lines_read, result.imported, result.duplicates) == (60, 60, 0)
    with plain_connection(loaded) as conn:
        kept = conn.execute(select(Usage.line, Usage.reference, Usage.description).order_by(Usage.line)).all()
    expected = [
        (line, reference, description.strip() or None) for line, reference, description in lines_by_the_csv_module(path)
    ]
    assert [tuple(row) for row in kept] == expected
    assert expected[-1][0] > 100  # the quoted line breaks count: 60 rows over more than 100 lines
    # HELP is 60.00 a unit for MATH: quantities 1..7 over 60 lines
    assert result.by_provider == {"IT": sum(n % 7 + 1 for n in range(60)) * 60}


def test_every_piece_s_problems_are_listed_with_their_lines(loaded: str, tmp_path: Path, small_pieces: int) -> None:
    rows = rows_of(40)
    rows[2][1] = "NOPE"
    rows[25][3] = "1,5"
    rows[39][2] = "IT"  # IT provides HELP
    rows.append(["2026-03-09", "HELP", "MATH", "1", "P-3", "P-3 again, other values, in a later piece"])
    rows.append(list(rows[5]))  # P-5 again, the same: a duplicate
    path = usage_file(tmp_path, "problems.csv", rows)
    line = [number for number, _, _ in lines_by_the_csv_module(path)]  # of each row
    assert refused(loaded, path, "2026-03") == [
        f"problems.csv:{line[2]}: service: 'NOPE' is not a service of the book",
        f"problems.csv:{line[25]}: quantity: quantity '1,5' is not a plain decimal number "
        "(digits with '.' as the separator)",
        f"problems.csv:{line[39]}: consumer: 'IT' provides HELP: a unit cannot charge itself",
        f"problems.csv:{line[40]}: reference: 'P-3' of HELP is also on line {line[3]} with other values",
    ]
    assert stored(loaded) == 0


def test_duplicates_across_pieces_are_counted_once(loaded: str, tmp_path: Path, small_pieces: int) -> None:
    rows = rows_of(30)
    path = usage_file(tmp_path, "twice.csv", rows + rows[:10])
    result = api.import_file(loaded, path, "2026-03")
    assert (result.lines_read, result.imported, result.duplicates) == (40, 30, 10)
    again = api.import_file(loaded, path, "2026-03")
    assert (again.lines_read, again.imported, again.duplicates) == (40, 0, 40)
    assert stored(loaded) == 30


def test_a_row_polars_refuses_in_a_later_piece_is_read_by_the_csv_module(
    loaded: str, tmp_path: Path, tuned: Callable[..., Settings]
) -> None:
    """A row of too many cells far down the file: the pieces before it were read by
    Polars, then the whole file by the csv module, which names the row; as in one piece."""
    path = tmp_path / "wide.csv"
    body = "".join(f"2026-03-02,HELP,MATH,1,W-{n},\n" for n in range(50))
    path.write_text(f"{','.join(USAGE_HEADER)}\n{body}2026-03-02,HELP,MATH,1,W-50,,extra\n", newline="")
    in_one = refused(loaded, path, "2026-03")
    tuned(usage_piece_bytes=200)
    assert refused(loaded, path, "2026-03") == in_one
    assert len(in_one) == 1
    assert in_one[0].startswith("wide.csv:52: ")
    assert stored(loaded) == 0
