"""The audit log: every command that writes, who ran it, on which files, and how it ended.

One record per command: when (UTC), the operating-system user, the command and its
arguments (never the database URL), the sha256 of each input file (hashed when the
command starts), the period it concerns and the outcome (`done: ...`, `refused: ...` or
`failed: ...`).

Where records are written:

- A command that succeeds appends its record *inside its own transaction*, just before
  it commits: the record and the change it describes are committed together or not at
  all (a command killed before its commit leaves neither).
- A command that is refused (or fails) has its transaction rolled back, so nothing it
  did remains; its record is then appended in a separate small transaction. This is
  the one exception to "a refused command changes nothing": the audit log keeps the
  attempt, because an auditor wants to see refused and failed attempts too. Failures
  of the database itself (connection lost, server stopped) are not recorded: the
  database cannot be trusted to take the record at that moment.

The log is append-only twice over: database triggers refuse UPDATE and DELETE on
`audit_log`, and the records are hash-chained like the journal (each record's hash
covers its fields and the hash of the record before it; `audit_head` names the last
one), so `chargeback verify` finds a record changed, deleted, inserted or reordered by
whoever gets around the triggers. It is a chain of its own, not mixed into the
journal's: refused attempts are recorded without touching the journal.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from chargeback.core.digests import sha256_of
from chargeback.core.errors import InputRefused, Refused
from chargeback.core.fields import PERIOD_PATTERN
from chargeback.ledger.entries import GENESIS, entry_hash
from chargeback.store import db
from chargeback.store.schema import AuditHead, AuditRecord

HASHED_FIELDS = ("id", "at", "os_user", "command", "arguments", "inputs", "period", "outcome", "prev_hash")
COLUMNS = [getattr(AuditRecord, name) for name in HASHED_FIELDS] + [AuditRecord.hash]
MAX_OUTCOME = 2000
BOOK_SUFFIXES = (".toml", ".csv")


@dataclass(frozen=True)
class Record:
    """One audit record, as read back."""

    id: int
    at: dt.datetime
    user: str
    command: str
    arguments: dict[str, Any]
    inputs: list[dict[str, Any]]
    period: str | None
    outcome: str
    hash: str

    def line(self) -> str:
        """The record on one line, as `chargeback audit` prints it."""
        args = " ".join(f"{k}={v}" for k, v in self.arguments.items() if v not in (None, ""))
        files = "; ".join(f"{i['file']} sha256:{i['sha256'] or 'unreadable'}" for i in self.inputs)
        parts = [f"{self.id:>5}", self.at.isoformat(sep=" ") + "Z", self.user, self.command]
        if args:
            parts.append(args)
        if files:
            parts.append(f"[{files}]")
        return " ".join(parts) + f" -> {self.outcome}"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat() + "Z",
            "user": self.user,
            "command": self.command,
            "arguments": self.arguments,
            "inputs": self.inputs,
            "period": self.period,
            "outcome": self.outcome,
            "hash": self.hash,
        }


def _text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def digests(paths: Iterable[Path]) -> list[dict[str, str | None]]:
    """The sha256 of each file (None when it cannot be read), by its absolute path: a
    relative one (`../county/...`) says nothing once the command's folder is forgotten."""
    found = []
    for path in paths:
        try:  # a device or a pipe is never read: /dev/zero would never end
            digest: str | None = sha256_of(Path(path)) if Path(path).is_file() else None
        except OSError:
            digest = None
        found.append({"file": str(Path(path).absolute()), "sha256": digest})
    return found


def book_files(folder: Path) -> list[Path]:
    """The files a `load` reads: the book folder's .toml and .csv files."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in BOOK_SUFFIXES)


def os_user() -> str:
    """The login name running the command, recorded with each audit record and seal."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 no login name in some containers
        return "unknown"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def append(
    conn: Connection,
    command: str,
    arguments: dict[str, Any],
    inputs: list[dict[str, Any]],
    period: str | None,
    outcome: str,
    at: dt.datetime | None = None,
) -> int:
    """Append one record in the current transaction, under the audit head's lock; returns its id."""
    head = conn.execute(
        select(AuditHead.last_record, AuditHead.last_hash).where(AuditHead.id == 1).with_for_update()
    ).one()
    if period is not None and not PERIOD_PATTERN.fullmatch(period):
        period = None
    record: int = head.last_record + 1
    values = (
        record,
        (at or _now()).replace(microsecond=0),
        os_user()[:100],
        command[:20],
        _text(arguments),
        _text(inputs),
        period,
        outcome[:MAX_OUTCOME],
        head.last_hash,
    )
    digest = entry_hash(values)
    conn.execute(insert(AuditRecord).values(**dict(zip(HASHED_FIELDS, values, strict=False)), hash=digest))
    conn.execute(update(AuditHead).where(AuditHead.id == 1).values(last_record=values[0], last_hash=digest))
    return record


def _record(row: Any) -> Record:
    return Record(
        row.id,
        row.at,
        row.os_user,
        row.command,
        json.loads(row.arguments),
        json.loads(row.inputs),
        row.period,
        row.outcome,
        row.hash,
    )


def records(conn: Connection, period: str | None = None) -> list[Record]:
    """Every record in order, or those of one period."""
    query = select(AuditRecord.__table__).order_by(AuditRecord.id)
    if period is not None:
        query = query.where(AuditRecord.period == period)
    return [_record(row) for row in conn.execute(query)]


def entries_for_period(conn: Connection, period: str) -> list[Record]:
    """The audit records of one period (imports, adjustments, closes, reopens, reports,
    refused attempts included), in order: what the reconciliation workbook lists."""
    return records(conn, period)


def head(conn: Connection) -> tuple[int, str]:
    row = conn.execute(select(AuditHead.last_record, AuditHead.last_hash)).one()
    return row.last_record, row.last_hash


def verify_chain(conn: Connection) -> tuple[int, list[str]]:
    """(records checked, problems): every hash recomputed, the chain and the head checked."""
    problems: list[str] = []
    expected_prev, expected_id, count = GENESIS, 1, 0
    for row in conn.execute(select(*COLUMNS).order_by(AuditRecord.id)):
        values = tuple(row)
        record_id, stored = values[0], values[-1]
        count += 1
        if record_id != expected_id:
            problems.append(
                f"audit record {record_id}: expected record {expected_id} here: "
                "audit records were deleted, inserted or renumbered"
            )
        if row.prev_hash != expected_prev:
            problems.append(
                f"audit record {record_id}: does not follow the record before it "
                "(hash chain broken): a record before it was changed, deleted or inserted"
            )
        if entry_hash(values[:-1]) != stored:
            problems.append(f"audit record {record_id}: its contents do not match its hash: the record was altered")
        expected_prev, expected_id = stored, record_id + 1
        if len(problems) > 20:
            return count, problems
    last_id, last_hash = head(conn)
    if not problems and (last_id, last_hash) != (expected_id - 1, expected_prev):
        problems.append(
            f"audit head names record {last_id} but the audit log ends at record "
            f"{expected_id - 1}: records were deleted or added behind the engine's back"
        )
    return count, problems


def reason(exc: BaseException) -> str:
    """A refusal as its audit outcome: the message, and the first problem of a file."""
    text = f"refused: {exc}"
    if isinstance(exc, InputRefused) and exc.problems:
        more = len(exc.problems) - 1
        text += f" ({exc.problems[0]}" + (f"; and {more} more" if more else "") + ")"
    return text


@dataclass
class Command:
    """One command being audited: `done` appends its record in the command's transaction."""

    engine: Engine
    name: str
    arguments: dict[str, Any]
    inputs: list[dict[str, Any]] = field(default_factory=list)
    period: str | None = None

    def done(self, conn: Connection, outcome: str) -> None:
        append(conn, self.name, self.arguments, self.inputs, self.period, f"done: {outcome}")

    def record_apart(self, outcome: str) -> None:
        """Append a record in a transaction of its own (after the command's was rolled
        back); never raises: the command's own error is what the user must see."""
        try:
            with self.engine.begin() as conn:
                if db.schema_is_current(conn):
                    append(conn, self.name, self.arguments, self.inputs, self.period, outcome)
        except Exception:  # noqa: BLE001 - best effort, see the module's docstring
            pass


@contextmanager
def command(
    engine: Engine, name: str, arguments: dict[str, Any], inputs: Iterable[Path] = (), period: str | None = None
) -> Iterator[Command]:
    """Audit one command: the body calls `done(conn, outcome)` inside its transaction; a
    refusal or failure is recorded apart after the rollback, then raised again."""
    log = Command(engine, name, arguments, digests(inputs), period)
    try:
        yield log
    except Refused as exc:
        log.record_apart(reason(exc))
        raise
    except IntegrityError:
        log.record_apart("refused: another command changed the same data at the same time")
        raise
    except SQLAlchemyError:
        raise
    except Exception as exc:
        log.record_apart(f"failed: {type(exc).__name__}")
        raise
