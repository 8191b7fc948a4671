"""The documents of a closed period, written to `DIR/YYYY-MM/` all at once.

Documents are written into a hidden staging folder beside the target and moved into
place only when every file is complete, so a failed or killed command never leaves a
half-written folder that looks finished. Everything written comes from the database
(timestamps included), so `report` writes the same bytes again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, select

from chargeback import variance
from chargeback.export import write_csv
from chargeback.reconciliation import reconcile
from chargeback.schema import Book, Period

#: Writers of further documents (invoices, statements, workbooks); each gets the
#: connection, the period and the staging folder, and writes its own files.
DocumentWriter = Callable[[Connection, str, Path], None]
EXTRA_WRITERS: list[DocumentWriter] = []


@dataclass(frozen=True)
class Written:
    folder: Path
    files: int


def write_documents(conn: Connection, period: str, folder: Path, *, draft: bool = False,
                    issued: dt.datetime | None = None,
                    review: variance.Review | None = None) -> int:
    """Write every document of `period` into `folder`; returns the number of files.
    `draft` writes an open period's documents as drafts (a preview's), dated `issued`;
    a closed period's are dated by its close, so `report` writes the same bytes again.
    `review`: the period's variance review when the caller has computed it already."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "journal.csv", "w", encoding="utf-8", newline="") as handle:
        write_csv(conn, period, handle)
    for writer in EXTRA_WRITERS:
        writer(conn, period, folder)
    write_variance(conn, period, folder, draft=draft, issued=issued, review=review)
    return write_manifest(conn, period, folder, draft=draft)


def write_variance(conn: Connection, period: str, folder: Path, *, draft: bool,
                   issued: dt.datetime | None, review: variance.Review | None = None) -> None:
    """`variance.xlsx`: the variance review of the period (see `variance`)."""
    book = conn.execute(select(Book.name)).scalar()
    closed_at = conn.execute(select(Period.closed_at).where(Period.period == period)).scalar()
    when = issued if draft or closed_at is None else closed_at
    if when is None:
        raise ValueError(f"period {period} is not closed: give the draft's issue date")
    variance.write_workbook(review or variance.review(conn, period), folder / "variance.xlsx",
                            book=book, draft=draft, when=when)


def write_manifest(conn: Connection, period: str, folder: Path, *, draft: bool = False) -> int:
    """`manifest.json`: every file with its sha256 and size, and the period's totals."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative == "manifest.json":
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files.append({"path": relative, "sha256": digest, "bytes": path.stat().st_size})
    book = conn.execute(select(Book.name)).scalar()
    record = None if draft else conn.execute(select(Period.__table__).where(Period.period == period)).first()
    totals = reconcile(conn, period).as_json()
    status = totals.pop("status")
    manifest = {
        "book": book,
        "period": period,
        "draft": draft,  # a preview's: the period stays open, nothing was posted
        "status": "open" if draft else status,
        "closed_at": record.closed_at.isoformat() if record and record.closed_at else None,
        "journal_hash": record.closed_hash if record else None,
        "totals": totals,
        "files": files,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return len(files) + 1


@contextmanager
def staged(out_dir: Path, name: str) -> Iterator[tuple[Path, Callable[[], None]]]:
    """Yield a staging folder and a `publish` function that moves it to `out_dir/name`.

    Without `publish` (or on an error) the staging folder is removed and an existing
    `out_dir/name` is left as it was."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    staging = out_dir / f".{name}.partial-{os.getpid()}"
    old = out_dir / f".{name}.old-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()

    def publish() -> None:
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    try:
        yield staging, publish
    finally:
        shutil.rmtree(staging, ignore_errors=True)
