"""Revised documents: every version of a period's documents is kept.

The latest version is `DIR/YYYY-MM/`; each earlier one is kept whole under
`DIR/YYYY-MM/revisions/N/` (N its revision number, 1 the first close). The documents' revision number is
the number of the period's closes: a close after a reopen writes revision 2, 3... A version
written into the folder that differs from the one there moves that one to `revisions/`;
`report` of the same close writes the same bytes again and keeps nothing twice.

A revised invoice has its own number (`ICN-202603-ART-R2`), names the one it replaces
and lists what changed since it: computed from the journal, the period's entries up to
the previous close's seal against its entries now.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, select

from chargeback.store.schema import Entry, PeriodEvent

#: Where the earlier versions of a period's documents are kept, inside its folder.
REVISIONS = "revisions"


@dataclass(frozen=True)
class ServiceChange:
    """A service whose amount on a consumer's invoice differs from the previous version."""

    service: str
    before_minor: int
    after_minor: int


@dataclass(frozen=True)
class AddedCharge:
    """A charge (journal entry) posted since the previous version."""

    entry: int
    service: str
    memo: str
    amount_minor: int


@dataclass(frozen=True)
class UnitChanges:
    """What changed on one consumer's invoice since the previous version."""

    before_minor: int
    after_minor: int
    services: list[ServiceChange] = field(default_factory=list)
    added: list[AddedCharge] = field(default_factory=list)


@dataclass(frozen=True)
class Revision:
    """The version a set of documents is: its number and, for a revision, the version it
    replaces (its number, when it was issued, and the changes of each consumer)."""

    number: int = 1
    replaces: int | None = None
    replaces_issued: str | None = None
    changes: dict[str, UnitChanges] = field(default_factory=dict)

    def suffix(self, number: int | None = None) -> str:
        """`-R2` for revision 2; nothing for the first version."""
        n = self.number if number is None else number
        return "" if n <= 1 else f"-R{n}"

    def as_json(self) -> dict[str, object]:
        return {
            "number": self.number,
            "replaces": self.replaces,
            "replaces_folder": f"{REVISIONS}/{self.replaces}" if self.replaces else None,
            "replaces_issued": self.replaces_issued,
        }


def read_manifest(folder: Path) -> dict[str, object] | None:
    """The manifest of the final documents in `folder`, or None (no folder, a draft's, or
    one that cannot be read)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("draft"):
        return None
    return manifest


def revision_number(manifest: dict[str, object] | None) -> int:
    """The revision number a manifest records (documents written before revisions: 1)."""
    if manifest is None:
        return 0
    revision = manifest.get("revision")
    number = revision.get("number") if isinstance(revision, dict) else None
    return number if isinstance(number, int) and number >= 1 else 1


def same_files(a: dict[str, object] | None, b: dict[str, object] | None) -> bool:
    """True when two manifests list the same files with the same contents."""

    def files(manifest: dict[str, object] | None) -> set[tuple[str, str]] | None:
        listed = manifest.get("files") if manifest else None
        if not isinstance(listed, list):
            return None
        return {(str(f.get("path")), str(f.get("sha256"))) for f in listed if isinstance(f, dict)}

    return files(a) is not None and files(a) == files(b)


def revision_of(conn: Connection, period: str) -> Revision:
    """The version of a closed period's documents, from its closes: the Nth close's are
    revision N, and list what changed since the close before (the period's entries up to
    that close's seal against all of them now). The same in whatever folder they are
    written, so `report` writes the same bytes again."""
    closes = conn.execute(
        select(PeriodEvent.at, PeriodEvent.journal_entry)
        .where(PeriodEvent.period == period, PeriodEvent.action == "close")
        .order_by(PeriodEvent.id)
    ).all()
    if len(closes) < 2:
        return Revision()
    before_at, before_entry = closes[-2]
    return Revision(len(closes), len(closes) - 1, before_at.isoformat(), changes_since(conn, period, before_entry or 0))


def changes_since(conn: Connection, period: str, last_entry: int) -> dict[str, UnitChanges]:
    """Each consumer's changes since the period's entries up to `last_entry`. Entries are
    never edited or deleted, so a change is new entries: the charges added, and the
    services whose amount they changed."""
    totals: dict[str, dict[str, list[int]]] = {}  # consumer -> service -> [before, after]
    added: dict[str, list[AddedCharge]] = {}
    for entry, consumer, service, memo, minor in conn.execute(
        select(Entry.id, Entry.consumer, Entry.service, Entry.memo, Entry.amount_minor)
        .where(Entry.period == period)
        .order_by(Entry.id)
    ):
        amounts = totals.setdefault(consumer, {}).setdefault(service, [0, 0])
        amounts[1] += minor
        if entry <= last_entry:
            amounts[0] += minor
        else:
            added.setdefault(consumer, []).append(AddedCharge(entry, service, memo or "", minor))
    changes = {}
    for consumer, by_service in totals.items():
        services = [ServiceChange(s, b, a) for s, (b, a) in sorted(by_service.items()) if a != b]
        if services or consumer in added:
            changes[consumer] = UnitChanges(
                sum(b for b, _ in by_service.values()),
                sum(a for _, a in by_service.values()),
                services,
                added.get(consumer, []),
            )
    return changes


def archive_name(target: Path, manifest: dict[str, object]) -> str:
    """Where the version in `target` is kept once replaced: `revisions/N/` (N its revision
    number), or `N.2`, `N.3`... when a version of that number is kept already (documents
    of the same close written differently, or of another database)."""
    number = revision_number(manifest)
    name, again = str(number), 1
    while (target / REVISIONS / name).exists():
        again += 1
        name = f"{number}.{again}"
    return name


def keep_earlier(target: Path, staging: Path, archive: str | None) -> None:
    """Carry the earlier versions into the staging folder before it is published: the
    `revisions/` already kept, and, when `archive` is given, the version now in `target`
    as `revisions/ARCHIVE/`. Files are hard-linked where the file system allows it (a
    published version's files are replaced, never changed in place)."""
    kept = target / REVISIONS
    into = staging / REVISIONS
    if kept.is_dir() and not kept.is_symlink():
        shutil.copytree(kept, into, symlinks=True, copy_function=_link_or_copy, dirs_exist_ok=True)
    if archive is not None and not target.is_symlink():
        version = into / archive
        shutil.rmtree(version, ignore_errors=True)
        shutil.copytree(
            target,
            version,
            symlinks=True,  # a link put in the folder is kept as a link, never followed
            copy_function=_link_or_copy,
            ignore=lambda folder, names: [REVISIONS] if Path(folder) == target else [],
        )


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
