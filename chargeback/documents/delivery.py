"""Delivering a closed period's documents: one message per unit, to its `email`.

Every unit charged in the period gets its documents from `DIR/YYYY-MM/`: an internal
unit its statement (`statements/<UNIT>.xlsx`) and invoice (`invoices/<UNIT>.html`), an
outside customer its invoice. Messages are built with the standard library's `email`
package and sent with `smtplib` (STARTTLS when the server offers it; a login only over
it, with CHARGEBACK_SMTP_USER / CHARGEBACK_SMTP_PASSWORD), or written as `.eml` files
by a dry run.

Each message is recorded (unit, address, files with their sha256, message id, and the
journal hash of the close the documents come from): the record is written before the
message goes and committed once the server accepts it (`Claim`), so running `deliver`
again sends only what was not sent, and a second run at the same time waits on the
record's unique key and then skips the unit, instead of sending it twice. After a
reopen and a new close that posted something, the journal hash differs and the new
documents go again, marked "Revised".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import smtplib
import ssl
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path

from sqlalchemy import Connection, func, select

from chargeback.close.budgets import BudgetStatus, statuses_for
from chargeback.core.calendar import month_name
from chargeback.core.errors import Refused
from chargeback.core.money import format_amount, format_percent
from chargeback.core.safe import file_in, one_line
from chargeback.store.schema import Book, Delivery, Entry, Period, Unit

ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")
STATEMENT = ("statements", ".xlsx", "statement")
INVOICE = ("invoices", ".html", "invoice")
MIME_TYPES = {
    ".xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ".html": ("text", "html"),
}


def parse_server(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:25` for an IPv6 address) as (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT, e.g. smtp.example.org:587")
    return host, int(port)


def addresses(email: str | None) -> list[str] | None:
    """The addresses of a unit's `email` (several may be separated by `,` or `;`, each
    bare or as `Name <address>`), read by `email.utils.getaddresses`, or None when it
    holds no valid address."""
    parts = [part for part in re.split(r"[,;]", email or "") if part.strip()]
    found = [address for _, address in getaddresses(parts)]
    if not found or len(found) != len(parts) or not all(ADDRESS.fullmatch(address) for address in found):
        return None
    return found


@dataclass(frozen=True)
class Recipient:
    """A unit charged in the period, what it is sent and where."""

    unit: str
    name: str
    kind: str
    manager: str | None
    email: str | None
    total: int  # its charges in the period, minor units
    budget: BudgetStatus | None = None

    @property
    def documents(self) -> tuple[tuple[str, str, str], ...]:
        """(folder, suffix, what) of each document it is sent, in the order attached."""
        if self.kind == "internal":
            return (STATEMENT, INVOICE)
        return (INVOICE,)

    def files(self, folder: Path) -> list[Path]:
        return [file_in(folder / sub, self.unit, suffix) for sub, suffix, _ in self.documents]


@dataclass
class Plan:
    """What a delivery of `period` is to do, read in one transaction."""

    period: str
    book: str
    currency: str
    digits: int
    payment_terms: str | None
    journal_hash: str
    pending: list[Recipient] = field(default_factory=list)  # to send, with a valid address
    delivered: list[str] = field(default_factory=list)  # sent before: not again
    no_email: list[Recipient] = field(default_factory=list)  # no (valid) address
    revised: set[str] = field(default_factory=set)  # sent before, from an earlier close

    @property
    def label(self) -> str:
        return month_name(self.period)

    def money(self, minor: int | None) -> str:
        return "" if minor is None else f"{format_amount(minor, self.digits)} {self.currency}"

    def missing(self, folder: Path) -> dict[str, list[str]]:
        """Documents of the pending units that are not in `folder`, by unit."""
        found: dict[str, list[str]] = {}
        for recipient in self.pending:
            absent = [p.relative_to(folder.resolve()).as_posix() for p in recipient.files(folder) if not p.is_file()]
            if absent:
                found[recipient.unit] = absent
        return found

    def current(self, folder: Path) -> bool:
        """True when `folder` holds the documents of this close (its manifest says so)."""
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return manifest.get("journal_hash") == self.journal_hash and not manifest.get("draft")


def plan(conn: Connection, period: str) -> Plan:
    """Who gets what for the closed `period`; refuses an open one."""
    record = conn.execute(select(Period.status, Period.closed_hash).where(Period.period == period)).first()
    if record is None or record.status != "closed":
        raise Refused(f"period {period} is not closed: deliver sends a closed period's documents; close it first")
    book = conn.execute(select(Book.name, Book.currency, Book.minor_digits, Book.payment_terms)).one()
    result = Plan(period, book.name, book.currency, book.minor_digits, book.payment_terms, record.closed_hash)
    sent = {
        (unit, journal_hash)
        for unit, journal_hash in conn.execute(
            select(Delivery.unit, Delivery.journal_hash).where(Delivery.period == period)
        )
    }
    budgets = statuses_for(conn, period)
    units_sent = {unit for unit, _ in sent}
    rows = conn.execute(
        select(Unit.code, Unit.name, Unit.kind, Unit.manager, Unit.email, func.sum(Entry.amount_minor))
        .join(Entry, Entry.consumer == Unit.code)
        .where(Entry.period == period)
        .group_by(Unit.code, Unit.name, Unit.kind, Unit.manager, Unit.email)
    ).all()
    for code, name, kind, manager, email, total in sorted(rows):  # codes in plain character order
        if (code, record.closed_hash) in sent:
            result.delivered.append(code)
            continue
        recipient = Recipient(code, name, kind, manager, email, int(total), budgets.get(code))
        if addresses(email) is None:
            result.no_email.append(recipient)
            continue
        result.pending.append(recipient)
        if code in units_sent:
            result.revised.add(code)
    return result


def message(
    plan: Plan, recipient: Recipient, folder: Path, sender: str, when: dt.datetime
) -> tuple[EmailMessage, list[tuple[str, str]]]:
    """The message to `recipient`, and (path, sha256) of each file attached."""
    r, p = recipient, plan
    what = "statement and invoice" if r.kind == "internal" else "invoice"
    subject = f"{one_line(p.book)}: {what} of {one_line(r.name)} ({r.unit}) for {p.label}"
    msg = EmailMessage()
    msg["Subject"] = f"Revised: {subject}" if r.unit in p.revised else subject
    msg["From"] = sender
    msg["To"] = ", ".join(addresses(r.email) or ())
    msg["Date"] = format_datetime(when.replace(tzinfo=dt.UTC))
    msg["Message-ID"] = make_msgid("chargeback", domain=sender.rpartition("@")[2] or None)
    lines = [
        f"Dear {one_line(r.manager or r.name)},",
        "",
        f"attached {'are' if r.kind == 'internal' else 'is'} the {what} of {one_line(r.name)} "
        f"({r.unit}) for {p.label}, from {one_line(p.book)}.",
    ]
    if r.unit in p.revised:
        lines.append("The period was reopened and closed again: these documents replace the ones sent before.")
    lines += ["", f"{'Charges of the period' if r.kind == 'internal' else 'Amount due'}: {p.money(r.total)}"]
    if r.kind == "external" and p.payment_terms:
        lines.append(f"Payment terms: {one_line(p.payment_terms)}")
    if r.budget is not None:
        b = r.budget
        lines.append(
            f"Budget for fiscal year {b.fiscal_year}: {p.money(b.budget)}; spent to date "
            f"{p.money(b.spent)} ({format_percent(b.used) or 'n/a'}), remaining {p.money(b.remaining)}"
        )
    lines += ["", "-- ", "sent by chargeback"]
    msg.set_content("\n".join(lines) + "\n")
    attached = []
    for path, (sub, suffix, kind) in zip(r.files(folder), r.documents, strict=False):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise Refused(f"cannot read {path}: {exc.strerror or exc}") from exc
        maintype, subtype = MIME_TYPES[suffix]
        params = {"charset": "utf-8"} if maintype == "text" else None
        name = f"{r.unit}-{p.period}-{kind}{suffix}"
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name, params=params)
        attached.append((f"{sub}/{path.name}", hashlib.sha256(data).hexdigest()))
    return msg, attached


@dataclass
class Sent:
    unit: str
    to: str
    message_id: str
    files: list[tuple[str, str]]
    refused: str = ""  # addresses the server refused while it accepted the others


@dataclass
class Failed:
    unit: str
    to: str
    reason: str


Message = tuple[Recipient, EmailMessage, list[tuple[str, str]]]


#: Claims a message's record before it is sent (`send`): a context in which the record is
#: written and not yet committed; True when it is this run's to send, False when another
#: run recorded it first. Leaving the context with an error takes the record back.
Claim = Callable[[Sent], AbstractContextManager[bool]]


class _NotAccepted(Exception):
    """The server refused a message: its claimed record is taken back."""


def send(
    server: tuple[str, int], messages: Iterable[Message], claim: Claim
) -> tuple[list[Sent], list[Failed], list[str]]:
    """Send each message on one connection, each inside its claimed record (`Claim`), so
    two runs at once never send a unit the same documents twice; (sent, refused, units
    another run sent first). A recipient the server refuses is reported and the others
    still go; losing the server stops, with what was sent already recorded."""
    host, port = server
    sent: list[Sent] = []
    failed: list[Failed] = []
    elsewhere: list[str] = []
    try:
        smtp = smtplib.SMTP(host, port, timeout=60)
    except OSError as exc:
        raise Refused(f"cannot reach the mail server {host}:{port}: {exc}; nothing was sent") from exc
    try:
        _secure(smtp, host, port)
        for recipient, msg, files in messages:
            done = Sent(recipient.unit, msg["To"], msg["Message-ID"], files)
            try:
                with claim(done) as ours:
                    if not ours:
                        elsewhere.append(recipient.unit)
                        continue
                    try:
                        refused = smtp.send_message(msg)
                    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPNotSupportedError) as exc:
                        failed.append(Failed(recipient.unit, msg["To"], _reason(exc)))
                        raise _NotAccepted from exc
            except _NotAccepted:
                continue
            if refused:
                done.refused = _reason(smtplib.SMTPRecipientsRefused(refused))
            sent.append(done)
    except (smtplib.SMTPException, OSError) as exc:
        raise Refused(
            f"the mail server {host}:{port} failed: {_reason(exc)}; {len(sent)} messages "
            "were sent and recorded before; run deliver again to send the rest"
        ) from exc
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
    return sent, failed, elsewhere


def _secure(smtp: smtplib.SMTP, host: str, port: int) -> None:
    """STARTTLS when offered; a login (from the environment) only over it."""
    smtp.ehlo()
    if smtp.has_extn("starttls"):
        smtp.starttls(context=ssl.create_default_context())
        smtp.ehlo()
    user = os.environ.get("CHARGEBACK_SMTP_USER")
    if not user:
        return
    if not isinstance(smtp.sock, ssl.SSLSocket):
        raise Refused(
            f"the mail server {host}:{port} does not offer STARTTLS: the password of "
            "CHARGEBACK_SMTP_USER is not sent in clear; nothing was sent"
        )
    smtp.login(user, os.environ.get("CHARGEBACK_SMTP_PASSWORD", ""))


def _reason(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"{to}: {code} {text.decode(errors='replace')}" for to, (code, text) in exc.recipients.items())
    if isinstance(exc, smtplib.SMTPResponseException):
        said = exc.smtp_error
        return f"{exc.smtp_code} {said.decode(errors='replace') if isinstance(said, bytes) else said}"
    return str(exc) or type(exc).__name__


def attachments_text(files: list[tuple[str, str]]) -> str:
    """How a delivery's files are recorded: `path sha256`, one a line."""
    return "\n".join(f"{path} {digest}" for path, digest in files)
