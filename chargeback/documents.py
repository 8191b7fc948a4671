"""The documents of a closed period, written to `DIR/YYYY-MM/` all at once.

Documents are written into a hidden staging folder beside the target and moved into
place only when every file is complete, so a failed or killed command never leaves a
half-written folder that looks finished. Everything written comes from the database
(timestamps included), so `report` writes the same bytes again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, select

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


def write_documents(conn: Connection, period: str, folder: Path) -> int:
    """Write every document of `period` into `folder`; returns the number of files."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "journal.csv", "w", encoding="utf-8", newline="") as handle:
        write_csv(conn, period, handle)
    for writer in EXTRA_WRITERS:
        writer(conn, period, folder)
    return write_manifest(conn, period, folder)


def write_manifest(conn: Connection, period: str, folder: Path) -> int:
    """`manifest.json`: every file with its sha256 and size, and the period's totals."""
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative == "manifest.json":
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files.append({"path": relative, "sha256": digest, "bytes": path.stat().st_size})
    book = conn.execute(select(Book.name)).scalar()
    record = conn.execute(select(Period.__table__).where(Period.period == period)).first()
    totals = reconcile(conn, period).as_json()
    manifest = {
        "book": book,
        "period": period,
        "status": totals.pop("status"),
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
    recover(out_dir, name)
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but belongs to someone else
        return True
    return True


def recover(out_dir: Path, name: str) -> None:
    """Tidy up after a command killed while writing `out_dir/name`: a staging folder is
    removed; a previous version moved aside just before the new one was moved in is put
    back when nothing replaced it (so the folder is the old one or the new one, never
    missing for good). Only leftovers of processes that are gone are touched."""
    for path in sorted(out_dir.glob(f".{name}.*-*")):
        kind, _, pid = path.name[len(name) + 2:].rpartition("-")
        if kind not in ("partial", "old") or not pid.isdigit() or _alive(int(pid)):
            continue
        if kind == "old" and not (out_dir / name).exists():
            path.rename(out_dir / name)
        else:
            shutil.rmtree(path, ignore_errors=True)
