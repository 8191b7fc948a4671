"""Journal entries as values: a charge ready to post (`Draft`), its accounts, and the
hash that chains entries (`entry_hash`, from `GENESIS`). Pure: the journal (`journal`)
posts drafts, `verify`, `seals` and the audit log recompute hashes, the reconciliation
tallies drafts, and none of them needs the others for it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import NamedTuple

import orjson

GENESIS = "0" * 64


def accounts(customer_class: str, consumer: str, provider: str) -> tuple[str, str]:
    """(debit, credit) accounts of a charge, as the contract names them."""
    if customer_class == "internal":
        return f"expenses:internal:{consumer}", f"revenue:internal:{provider}"
    return f"assets:receivable:{consumer}", f"revenue:external:{provider}"


class Draft(NamedTuple):
    """A charge ready to post: everything an entry holds but its place in the chain.

    `lines_digest` (usage charges) is the sha256 of the charge's lines
    (`charges.lines_digests`); the entry's hash covers it after `prev_hash`."""

    period: str
    date: dt.date
    service_date: dt.date
    kind: str
    usage_id: int | None
    source: str | None
    service: str
    provider: str
    consumer: str
    customer_class: str
    quantity_micro: int
    rate_micro: int | None
    amount_minor: int
    debit_account: str
    credit_account: str
    debit_gl: str | None
    credit_gl: str | None
    reference: str | None
    memo: str | None
    rate_source: str | None
    lines_digest: str | None = None


DRAFT_FIELDS = Draft._fields[:-1]
HASHED_FIELDS = ("id", "posted_at") + DRAFT_FIELDS + ("prev_hash",)


def hashed_json(values: list[object]) -> bytes:
    """The bytes an entry's hash is taken over: its values as compact JSON in UTF-8, text
    unescaped but for what JSON requires, dates and timestamps as ISO text. This is
    `json.dumps(values, ensure_ascii=False, separators=(",", ":"))` with dates as
    `isoformat()`, the form the chain was defined with; orjson writes the same bytes
    (tests/test_journal.py checks it against the standard library for any text) about
    ten times faster. A value of another type is refused (TypeError)."""
    return orjson.dumps(values)


def entry_hash(values: Sequence[object], lines_digest: str | None = None) -> str:
    """sha256 of an entry's values in HASHED_FIELDS order (JSON, so it is unambiguous),
    followed by its lines digest when it has one."""
    hashed = list(values) if lines_digest is None else [*values, lines_digest]
    return hashlib.sha256(hashed_json(hashed)).hexdigest()
