"""Seals: anchors of the journal kept outside the database, and the chained closes and
reopens they are recorded in.

Whoever can write the database can rewrite an entry and recompute every hash after it,
the journal head and the totals recorded at close: the database alone cannot prove that
it did not happen. So every close records a **seal**, the journal head after it (the id
of the last entry and its full hash), and the documents carry it (`manifest.json`, the
reconciliation workbook's Summary, the invoices). An auditor who kept the seals runs
`chargeback verify --seals FILE`: once the chain verifies, a seal's hash still being the
hash of the entry it names proves that everything up to that entry is unchanged.

A seal is signed when `CHARGEBACK_SEAL_KEY` names an ed25519 private key (a PEM file;
the key is never stored in the database, only its public key's fingerprint). The signed
message is the UTF-8 text `chargeback seal v1 PERIOD ENTRY HASH CLOSED_AT` (`Seal.text`),
so that with the public key (`verify --public-key`) even a database administrator cannot
forge a seal.

Closes and reopens are **period events**, append-only and hash-chained like the audit
log (`period_event_head` names the last one); a close's event holds its seal, so the
events are anchored to the journal. `check_events` proves each period's status follows
from its events and that the audit log records each of them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from sqlalchemy import Connection, insert, select, update

from chargeback.core.errors import Refused
from chargeback.core.fields import PERIOD_PATTERN
from chargeback.ledger.entries import GENESIS, entry_hash
from chargeback.store.schema import AuditRecord, Entry, JournalHead, Period, PeriodEvent, PeriodEventHead

if TYPE_CHECKING:  # cryptography is loaded only by the commands that sign or check (35 ms)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: The environment variable naming the PEM file of the ed25519 private key that signs seals.
SEAL_KEY = "CHARGEBACK_SEAL_KEY"
HASHED_FIELDS = (
    "id",
    "period",
    "at",
    "action",
    "reason",
    "user",
    "journal_entry",
    "journal_hash",
    "signature",
    "key",
    "prev_hash",
)
EVENT_COLUMNS = [getattr(PeriodEvent, name) for name in HASHED_FIELDS] + [PeriodEvent.hash]
#: A seals file larger than this is not a list of seals or a manifest.
MAX_SEALS_FILE = 64 * 1024 * 1024


def _hex(value: object, length: int) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == length and all(c in "0123456789abcdef" for c in value)


def _utc_text(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Seal:
    """The journal head after a close: `entry` (its id, 0 for an empty journal) and
    `hash` (its full hash). A manifest written before seals gives only the hash (`entry`
    None); `closed_at` is UTC."""

    period: str
    closed_at: dt.datetime | None
    entry: int | None
    hash: str
    signature: str | None = None
    key: str | None = None

    def text(self) -> bytes:
        """The signed message: `chargeback seal v1 PERIOD ENTRY HASH CLOSED_AT`, CLOSED_AT
        as `YYYY-MM-DDTHH:MM:SSZ`, in UTF-8, without a line end."""
        closed = _utc_text(self.closed_at) if self.closed_at else ""
        return f"chargeback seal v1 {self.period} {self.entry} {self.hash} {closed}".encode()

    def name(self) -> str:
        """How messages name it: `seal of 2026-03 (entry 10, 5f2a...)`."""
        where = f"entry {self.entry}, " if self.entry is not None else ""
        return f"seal of {self.period} ({where}{self.hash[:16]}...)"

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "closed_at": _utc_text(self.closed_at) if self.closed_at else None,
            "entry": self.entry,
            "hash": self.hash,
            "signature": self.signature,
            "key": self.key,
        }

    @classmethod
    def from_json(cls, value: object, where: str) -> Seal:
        """A seal as `seals --json` prints it; refuses anything else, naming `where`."""
        if not isinstance(value, dict):
            raise Refused(f"{where}: not a seal (an object with period, entry and hash)")
        period, entry, digest = value.get("period"), value.get("entry"), value.get("hash")
        if not isinstance(period, str) or not PERIOD_PATTERN.fullmatch(period) or not _hex(digest, 64):
            raise Refused(f"{where}: a seal needs a period YYYY-MM and a hash of 64 lowercase hex digits")
        if entry is not None and (not isinstance(entry, int) or isinstance(entry, bool) or not 0 <= entry < 2**63):
            raise Refused(f"{where}: a seal's entry is the id of an entry, a whole number")
        closed_at = value.get("closed_at")
        try:
            at = dt.datetime.fromisoformat(closed_at.removesuffix("Z")) if closed_at else None
        except (AttributeError, ValueError):
            raise Refused(f"{where}: closed_at {closed_at!r} is not a UTC time YYYY-MM-DDTHH:MM:SSZ") from None
        if at is not None and at.tzinfo is not None:
            at = at.astimezone(dt.UTC).replace(tzinfo=None)
        signature, key = value.get("signature"), value.get("key")
        if not (signature is None or _hex(signature, 128)) or not (key is None or _hex(key, 64)):
            raise Refused(f"{where}: a seal's signature is 128 lowercase hex digits and its key 64")
        return cls(period, at, entry, digest, signature, key)


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """sha256 of the raw public key, as lowercase hex: which key signed a seal."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Signer:
    """The seal key, read from the file `CHARGEBACK_SEAL_KEY` names."""

    private_key: Ed25519PrivateKey
    key: str

    def sign(self, seal: Seal) -> Seal:
        signature = self.private_key.sign(seal.text()).hex()
        return Seal(seal.period, seal.closed_at, seal.entry, seal.hash, signature, self.key)


def signer_from_environment() -> Signer | None:
    """The seal key when `CHARGEBACK_SEAL_KEY` is set; a refusal (so nothing is closed
    unsigned by mistake) when it cannot be read."""
    path = os.environ.get(SEAL_KEY)
    if not path:
        return None
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = _pem_key(
        path,
        lambda data: serialization.load_pem_private_key(data, password=None),
        SEAL_KEY,
        "an unencrypted PEM private key",
    )
    if not isinstance(key, Ed25519PrivateKey):
        raise Refused(f"{SEAL_KEY}: {path} is not an ed25519 key: seals are signed with ed25519")
    return Signer(key, fingerprint(key.public_key()))


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The ed25519 public key of a PEM file (`verify --public-key`)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = _pem_key(path, serialization.load_pem_public_key, "--public-key", "a PEM public key")
    if not isinstance(key, Ed25519PublicKey):
        raise Refused(f"--public-key: {path} is not an ed25519 public key")
    return key


def _pem_key(path: str | Path, parse: Callable[[bytes], object], source: str, form: str) -> object:
    """The key that `parse` reads from the PEM file at `path`; a refusal naming `source`
    (the option or variable that gave the path) when the file cannot be read or is not
    `form`."""
    try:
        return parse(Path(path).read_bytes())
    except OSError as exc:
        raise Refused(f"{source}: cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError):
        raise Refused(f"{source}: {path} is not {form}") from None


def event_hash(values: Sequence[object]) -> str:
    """sha256 of an event's values in HASHED_FIELDS order, as the journal hashes an entry."""
    return entry_hash(values)


def _append(
    conn: Connection, period: str, at: dt.datetime, action: str, reason: str, user: str, seal: Seal | None = None
) -> None:
    """Append one event under the event head's lock (taken after the journal head's and
    before the audit head's, the order every command locks them in)."""
    last = conn.execute(
        select(PeriodEventHead.last_event, PeriodEventHead.last_hash).where(PeriodEventHead.id == 1).with_for_update()
    ).one()
    values = (
        last.last_event + 1,
        period,
        at,
        action,
        reason,
        user[:100],
        seal.entry if seal else None,
        seal.hash if seal else None,
        seal.signature if seal else None,
        seal.key if seal else None,
        last.last_hash,
    )
    digest = event_hash(values)
    conn.execute(insert(PeriodEvent).values(**dict(zip(HASHED_FIELDS, values, strict=False)), hash=digest))
    conn.execute(update(PeriodEventHead).where(PeriodEventHead.id == 1).values(last_event=values[0], last_hash=digest))


def record_close(conn: Connection, period: str, at: dt.datetime, reason: str, user: str, signer: Signer | None) -> Seal:
    """The close's event with its seal (the journal head now, locked so that it cannot
    move before the commit), signed by `signer` if any."""
    entry, digest = conn.execute(
        select(JournalHead.last_entry, JournalHead.last_hash).where(JournalHead.id == 1).with_for_update()
    ).one()
    closed_at = at.replace(microsecond=0)
    seal = Seal(period, closed_at, entry, digest)
    if signer is not None:
        seal = signer.sign(seal)
    _append(conn, period, closed_at, "close", reason, user, seal)
    return seal


def record_reopen(conn: Connection, period: str, at: dt.datetime, reason: str, user: str) -> None:
    _append(conn, period, at.replace(microsecond=0), "reopen", reason, user)


def _seal(row: Any) -> Seal:
    return Seal(row.period, row.at, row.journal_entry, row.journal_hash, row.signature, row.key)


def seals(conn: Connection) -> list[Seal]:
    """Every close's seal, in the order of the closes (a close followed by a reopen
    included: what it sealed must still be there)."""
    rows = conn.execute(
        select(PeriodEvent.__table__)
        .where(PeriodEvent.action == "close", PeriodEvent.journal_hash.is_not(None))
        .order_by(PeriodEvent.id)
    )
    return [_seal(row) for row in rows]


def seal_of(conn: Connection, period: str) -> Seal | None:
    """The seal of the period's last close, for its documents; None while it is open.
    A preview's draft has none (its close is rolled back): do not print one on a draft."""
    if conn.execute(select(Period.status).where(Period.period == period)).scalar() != "closed":
        return None
    row = conn.execute(
        select(PeriodEvent.__table__)
        .where(PeriodEvent.period == period, PeriodEvent.action == "close")
        .order_by(PeriodEvent.id.desc())
        .limit(1)
    ).first()
    return _seal(row) if row is not None and row.journal_hash is not None else None


def read_seals(paths: Iterable[Path]) -> list[Seal]:
    """The seals of files an auditor kept: a JSON list as `seals --json` prints it, one
    seal, or `manifest.json` files (their `seal`, else their `journal_hash`)."""
    found: list[Seal] = []
    for path in paths:
        try:
            if Path(path).stat().st_size > MAX_SEALS_FILE:
                raise Refused(f"{path}: too large for a list of seals or a manifest")
            data = json.loads(Path(path).read_bytes())
        except OSError as exc:
            raise Refused(f"--seals: cannot read {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise Refused(f"{path}: not JSON ({exc})") from None
        items = data if isinstance(data, list) else [data]
        for number, item in enumerate(items, start=1):
            where = f"{path}: item {number}" if isinstance(data, list) else str(path)
            found.append(_seal_in(item, where))
    return found


def _seal_in(item: object, where: str) -> Seal:
    """A seal, or the seal of a manifest."""
    if isinstance(item, dict) and "files" in item and "period" in item:
        if isinstance(item.get("seal"), dict):
            return Seal.from_json(item["seal"], f"{where}: seal")
        if item.get("journal_hash"):
            return Seal.from_json(
                {"period": item["period"], "hash": item["journal_hash"], "closed_at": item.get("closed_at")}, where
            )
        raise Refused(f"{where}: a manifest without a seal or journal hash (a draft's?)")
    return Seal.from_json(item, where)


def _journal_hashes(conn: Connection, ids: Iterable[int]) -> dict[int, str]:
    """The hash of each named entry that exists (entry 0: the empty journal's)."""
    wanted = sorted({i for i in ids if i})
    found = {0: GENESIS}
    for start in range(0, len(wanted), 500):
        found.update(
            (entry, digest)
            for entry, digest in conn.execute(
                select(Entry.id, Entry.hash).where(Entry.id.in_(wanted[start : start + 500]))
            )
        )
    return found


def _entries_with_hash(conn: Connection, hashes: set[str]) -> set[str]:
    """Those of `hashes` some entry has (a manifest's bare hash: a scan, the hash is not indexed)."""
    if not hashes:
        return set()
    found = {h for h in hashes if h == GENESIS}
    wanted = sorted(hashes - found)
    for start in range(0, len(wanted), 500):
        found |= set(conn.execute(select(Entry.hash).where(Entry.hash.in_(wanted[start : start + 500]))).scalars())
    return found


def check_seals(conn: Connection, listed: Sequence[Seal], public_key: Ed25519PublicKey | None = None) -> list[str]:
    """Each seal still names an entry of the journal with its hash (after the chain
    verifies, everything up to it is unchanged) and, with `public_key`, is signed by it."""
    problems = []
    held = _journal_hashes(conn, (s.entry for s in listed if s.entry is not None))
    bare = _entries_with_hash(conn, {s.hash for s in listed if s.entry is None})
    for seal in listed:
        holds = held.get(seal.entry) == seal.hash if seal.entry is not None else seal.hash in bare
        if not holds:
            problems.append(f"{seal.name()}: the journal no longer holds it: history was rewritten after it was sealed")
        if public_key is not None:
            problems.extend(signature_problems(seal, public_key))
    return problems


def signature_problems(seal: Seal, public_key: Ed25519PublicKey) -> list[str]:
    """Why the seal is not one the key's holder signed (none when it is)."""
    from cryptography.exceptions import InvalidSignature

    if not seal.signature or seal.entry is None or seal.closed_at is None:
        return [f"{seal.name()}: not signed: it cannot be told from a forged one"]
    if seal.key is not None and seal.key != fingerprint(public_key):
        return [f"{seal.name()}: signed by another key ({seal.key[:16]}...), not the public key given"]
    try:
        public_key.verify(bytes.fromhex(seal.signature), seal.text())
    except (InvalidSignature, ValueError):
        return [f"{seal.name()}: its signature is not the key's: the seal was forged or changed"]
    return []


def check_events(conn: Connection) -> tuple[int, list[str]]:
    """(events checked, problems): the events' own chain and head; each close's seal
    still in the journal; each period's status (and journal hash at close) following
    from its closes and reopens; and each event matching a `done` record of the audit
    log, and each such record an event (events dated before the audit log's first
    record, from before it existed, are not matched)."""
    problems: list[str] = []
    rows = conn.execute(select(*EVENT_COLUMNS).order_by(PeriodEvent.id)).all()
    expected_prev, expected_id = GENESIS, 1
    for row in rows:
        values = tuple(row)
        if row.id != expected_id:
            problems.append(
                f"period event {row.id}: expected event {expected_id} here: "
                "closes or reopens were deleted, inserted or renumbered"
            )
        if row.prev_hash != expected_prev:
            problems.append(
                f"period event {row.id}: does not follow the event before it (hash chain "
                "broken): an event before it was changed, deleted or inserted"
            )
        if event_hash(values[:-1]) != row.hash:
            problems.append(
                f"period event {row.id}: its contents do not match its hash: the {row.action} "
                f"of {row.period} was altered"
            )
        expected_prev, expected_id = row.hash, row.id + 1
    last = conn.execute(select(PeriodEventHead.last_event, PeriodEventHead.last_hash)).one()
    if not problems and tuple(last) != (expected_id - 1, expected_prev):
        problems.append(
            f"period event head names event {last.last_event} but the events end at "
            f"{expected_id - 1}: closes or reopens were deleted or added behind the engine's back"
        )
    closes = [row for row in rows if row.action == "close" and row.journal_hash is not None]
    held = _journal_hashes(conn, (row.journal_entry for row in closes if row.journal_entry is not None))
    for row in closes:
        if held.get(row.journal_entry) != row.journal_hash:
            problems.append(
                f"period {row.period}: the seal of its close at {_utc_text(row.at)} (entry "
                f"{row.journal_entry}, {row.journal_hash[:16]}...) is no longer in the journal: "
                "entries were rewritten"
            )
    problems += _replay(conn, rows)
    problems += _match_audit(conn, rows)
    return len(rows), problems


def _replay(conn: Connection, rows: Sequence[Any]) -> list[str]:
    """Each period's status follows from its events, and a closed period's journal hash
    and time are those of its last close."""
    problems = []
    by_period: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_period[row.period].append(row)
    for period in conn.execute(select(Period.__table__).order_by(Period.period)):
        state, last_close = "open", None
        for event in by_period.get(period.period, []):
            if event.action == "close" and state == "closed" and last_close is not None:
                problems.append(
                    f"period {period.period}: closed again at {_utc_text(event.at)} without a "
                    f"reopen after its close at {_utc_text(last_close.at)}: its status was "
                    "changed behind the engine's back (a reopen that left no trace)"
                )
            elif event.action == "reopen" and state == "open":
                problems.append(
                    f"period {period.period}: reopened at {_utc_text(event.at)} though it was "
                    "not closed: its events were changed behind the engine's back"
                )
            state = "closed" if event.action == "close" else "open"
            last_close = event if event.action == "close" else last_close
        if period.status != state:
            problems.append(
                f"period {period.period}: its status ({period.status}) does not follow from its "
                "closes and reopens: it was changed behind the engine's back"
            )
        elif (
            state == "closed"
            and last_close is not None
            and last_close.journal_hash is not None
            and (period.closed_hash != last_close.journal_hash or period.closed_at != last_close.at)
        ):
            problems.append(
                f"period {period.period}: the journal hash and time recorded at its close are "
                f"not those of its last close's seal ({_utc_text(last_close.at)}): they were "
                "changed behind the engine's back"
            )
    return problems


def _match_audit(conn: Connection, rows: Sequence[Any]) -> list[str]:
    """The closes and reopens of each period, in order, are those the audit log records done."""
    first = conn.execute(select(AuditRecord.at).order_by(AuditRecord.id).limit(1)).scalar()
    events: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if first is not None and row.at >= first:
            events[row.period].append(row.action)
    audited: dict[str, list[str]] = defaultdict(list)
    for period, command in conn.execute(
        select(AuditRecord.period, AuditRecord.command)
        .where(AuditRecord.command.in_(("close", "reopen")), AuditRecord.outcome.like("done%"))
        .order_by(AuditRecord.id)
    ):
        if period is not None:  # a close or reopen always names its period
            audited[period].append(command)
    problems = []
    for period in sorted(set(events) | set(audited)):
        if events[period] != audited[period]:
            problems.append(
                f"period {period}: its closes and reopens ({', '.join(events[period]) or 'none'}) "
                f"are not those the audit log records ({', '.join(audited[period]) or 'none'}): "
                "one or the other was changed behind the engine's back"
            )
    return problems
