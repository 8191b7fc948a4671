"""Delivery: a real SMTP server on loopback (aiosmtpd) receives one message per unit with
its documents attached; delivery is recorded, so a second run sends nothing; units
without an address are listed; dry runs write .eml files; missing documents are named."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import email
import threading
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import BOOKS, built_state, free_port, write_csv
from sqlalchemy import Connection, insert, select

from chargeback import api
from chargeback.cli import main
from chargeback.core.errors import Refused
from chargeback.documents import delivery
from chargeback.store import db
from chargeback.store.schema import Delivery

aiosmtpd = pytest.importorskip("aiosmtpd.controller")


class Inbox:
    """An aiosmtpd handler that keeps what arrives; `bounce@...` addresses are refused."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.delay = 0.0  # seconds the server takes to accept a message

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> EmailMessage:
        [found] = [m for rcpt, m in self.messages if address in rcpt]
        return found


@pytest.fixture
def smtp() -> tuple[Inbox, str]:
    inbox = Inbox()
    port = free_port()
    controller = aiosmtpd.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, f"127.0.0.1:{port}"
    controller.stop()


def with_emails(mini_book: Path, emails: dict[str, str]) -> None:
    """The mini book's units with an email each (from `emails`, else blank) and ART's manager."""
    with open(BOOKS / "mini" / "units.csv", encoding="utf-8", newline="") as handle:
        header, *rows = csv.reader(handle)
    write_csv(
        mini_book / "units.csv",
        [*header, "email", "manager"],
        [row + [emails.get(row[0], ""), "Dr. Ada Byron" if row[0] == "ART" else ""] for row in rows],
    )


def documents_for(folder: Path, units: dict[str, str]) -> None:
    """Stand-ins for the statements and invoices until the documents writers produce them
    (their files, once written, are left as they are)."""
    for unit, kind in units.items():
        files = [folder / "invoices" / f"{unit}.html"]
        if kind == "internal":
            files.append(folder / "statements" / f"{unit}.xlsx")
        for path in files:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(f"{unit} {path.suffix} of {folder.name}".encode())


CONSUMERS = {"ART": "internal", "MATH": "internal", "FLEET": "internal", "EXT-1": "external"}


def close_march_with_addresses(url: str, book: Path, folder: Path) -> None:
    with_emails(
        book,
        {"ART": "art@uni.example", "MATH": "math@uni.example, dean@uni.example", "EXT-1": "billing@library.example"},
    )
    write_csv(book / "budgets.csv", ["fiscal_year", "unit", "amount"], [[2026, "ART", "1000"]])
    api.run(url, book, folder / "out", through="2026-03")
    documents_for(folder / "out" / "2026-03", CONSUMERS)


@pytest.fixture
def march(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> tuple[str, Path]:
    """March of the mini book closed, with addresses for ART, MATH and the library."""
    return built_state(request, db_url, "march_with_addresses", close_march_with_addresses), tmp_path / "out"


def deliveries(url: str) -> list[tuple[str, str, str]]:
    engine = db.connect(url)
    with engine.connect() as conn:
        rows = [
            tuple(r) for r in conn.execute(select(Delivery.period, Delivery.unit, Delivery.email).order_by(Delivery.id))
        ]
    engine.dispose()
    return rows


def subject(message: EmailMessage) -> str:
    """The subject as a mail client shows it (unfolded: Python's parser keeps the space that
    starts a folded header's next line)."""
    return " ".join(str(message["Subject"]).split())


def attachments(message: EmailMessage) -> list[tuple[str, str, bytes]]:
    return [
        (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        for part in message.iter_attachments()
    ]


def test_each_unit_gets_its_documents_once(march: tuple[str, Path], smtp: tuple[Inbox, str]) -> None:
    url, out = march
    inbox, server = smtp
    folder = out / "2026-03"
    result = api.deliver(url, "2026-03", out, server, "finance@uni.example")
    assert [s.unit for s in result.sent] == ["ART", "EXT-1", "MATH"]
    assert [r.unit for r in result.no_email] == ["FLEET"] and not result.failed
    assert len(inbox.messages) == 3  # one message per unit, to all its addresses
    assert inbox.messages[2][0] == ["math@uni.example", "dean@uni.example"]

    art = inbox.to("art@uni.example")
    assert subject(art) == "Mini College: statement and invoice of Art Department (ART) for March 2026"
    assert art["From"] == "finance@uni.example" and art["To"] == "art@uni.example"
    body = art.get_body(("plain",)).get_content()
    assert body.startswith("Dear Dr. Ada Byron,") and "Charges of the period: 185.00 USD" in body
    assert ("Budget for fiscal year 2026: 1000.00 USD; spent to date 185.00 USD (18.5%), remaining 815.00 USD") in body
    assert "Budget" not in inbox.to("math@uni.example").get_body(("plain",)).get_content()
    assert attachments(art) == [
        (
            "ART-2026-03-statement.xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            (folder / "statements" / "ART.xlsx").read_bytes(),
        ),
        ("ART-2026-03-invoice.html", "text/html", (folder / "invoices" / "ART.html").read_bytes()),
    ]
    library = inbox.to("billing@library.example")
    assert subject(library) == "Mini College: invoice of Town Library (EXT-1) for March 2026"
    assert "Amount due: 180.00 USD" in library.get_body(("plain",)).get_content()
    assert attachments(library) == [
        ("EXT-1-2026-03-invoice.html", "text/html", (folder / "invoices" / "EXT-1.html").read_bytes())
    ]
    assert deliveries(url) == [
        ("2026-03", "ART", "art@uni.example"),
        ("2026-03", "EXT-1", "billing@library.example"),
        ("2026-03", "MATH", "math@uni.example, dean@uni.example"),
    ]

    again = api.deliver(url, "2026-03", out, server, "finance@uni.example")
    assert again.sent == [] and again.sent_before == ["ART", "EXT-1", "MATH"]
    assert [r.unit for r in again.no_email] == ["FLEET"]
    assert len(inbox.messages) == 3


def test_two_delivers_at_once_send_each_unit_one_message(march: tuple[str, Path], smtp: tuple[Inbox, str]) -> None:
    """A scheduled `deliver` and one started by hand at the same moment: each unit still
    gets one message, recorded once, and each run counts what the other sent as sent
    before. Each message takes the server 0.3 s, so the two runs overlap (on SQLite the
    first run's sends hold the write lock, so the second mostly waits for them)."""
    url, out = march
    inbox, server = smtp
    inbox.delay = 0.3
    start = threading.Barrier(2)
    results: list[api.DeliverResult] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        start.wait()
        try:
            results.append(api.deliver(url, "2026-03", out, server, "finance@uni.example"))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    runs = [threading.Thread(target=deliver) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=120)
    assert errors == []
    assert sorted(rcpt[0] for rcpt, _ in inbox.messages) == [
        "art@uni.example",
        "billing@library.example",
        "math@uni.example",
    ]
    sent = [s.unit for result in results for s in result.sent]
    assert sorted(sent) == ["ART", "EXT-1", "MATH"]
    for result in results:
        assert sorted(result.sent_before + [s.unit for s in result.sent]) == ["ART", "EXT-1", "MATH"]
    assert sorted(unit for _, unit, _ in deliveries(url)) == ["ART", "EXT-1", "MATH"]


def test_a_unit_another_run_sent_meanwhile_is_not_sent_again(
    march: tuple[str, Path], smtp: tuple[Inbox, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run records ART between this run's plan and its sending: this run finds
    the record when it claims ART, sends only the others, and counts ART as sent before."""
    url, out = march
    inbox, server = smtp
    planned = delivery.plan

    def plan_while_another_run_sends_art(conn: Connection, period: str) -> delivery.Plan:
        todo = planned(conn, period)
        conn.execute(
            insert(Delivery).values(
                period=period,
                unit="ART",
                journal_hash=todo.journal_hash,
                email="art@uni.example",
                sent_at=dt.datetime(2026, 4, 1, 9),
                message_id="<other-run@uni.example>",
                attachments="",
            )
        )
        return todo

    monkeypatch.setattr(delivery, "plan", plan_while_another_run_sends_art)
    result = api.deliver(url, "2026-03", out, server, "finance@uni.example")
    assert [s.unit for s in result.sent] == ["EXT-1", "MATH"] and result.sent_before == ["ART"]
    assert sorted(rcpt[0] for rcpt, _ in inbox.messages) == ["billing@library.example", "math@uni.example"]
    assert sorted(unit for _, unit, _ in deliveries(url)) == ["ART", "EXT-1", "MATH"]


def test_a_refused_address_is_reported_and_sent_after_the_fix(
    march: tuple[str, Path], mini_book: Path, smtp: tuple[Inbox, str]
) -> None:
    url, out = march
    inbox, server = smtp
    with_emails(
        mini_book,
        {"ART": "bounce@uni.example", "MATH": "math@uni.example; bounce@math.example", "FLEET": "not an address"},
    )
    api.load(url, mini_book)
    runner = CliRunner()
    result = runner.invoke(main, ["--db", url, "deliver", "2026-03", "--out", str(out), "--smtp", server])
    assert result.exit_code == 1
    assert (
        "sent MATH to math@uni.example, bounce@math.example: statements/MATH.xlsx, invoices/MATH.html" in result.stdout
    )
    assert "warning: MATH: the mail server refused bounce@math.example: 550 5.1.1 no such mailbox" in result.stderr
    assert "delivered 2026-03: 1 sent, 0 sent before, 2 without an address, 1 refused by the server" in result.stdout
    assert "warning: EXT-1 not sent: it has no email in units.csv" in result.stderr
    assert "warning: FLEET not sent: its email 'not an address' is not an address" in result.stderr
    assert "not sent: ART to bounce@uni.example: bounce@uni.example: 550 5.1.1 no such mailbox" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("refused: the mail server refused 1 messages")
    with_emails(mini_book, {"ART": "art@uni.example", "MATH": "math@uni.example"})
    api.load(url, mini_book)
    result = runner.invoke(main, ["--db", url, "deliver", "2026-03", "--out", str(out), "--smtp", server])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "sent ART to art@uni.example: statements/ART.xlsx, invoices/ART.html",
        "sent before, not again: MATH",
        "delivered 2026-03: 1 sent, 1 sent before, 2 without an address, 0 refused by the server",
    ]
    assert [rcpt for rcpt, _ in inbox.messages] == [["math@uni.example"], ["art@uni.example"]]


def test_a_dry_run_writes_eml_files_and_records_nothing(march: tuple[str, Path], smtp: tuple[Inbox, str]) -> None:
    url, out = march
    inbox, server = smtp
    result = CliRunner().invoke(
        main, ["--db", url, "deliver", "2026-03", "--out", str(out), "--dry-run", "--from", "finance@uni.example"]
    )
    assert result.exit_code == 0, result.output
    outbox = out / "2026-03-outbox"
    assert f"dry run: 3 messages written to {outbox}; nothing sent or recorded" in result.stdout
    assert sorted(p.name for p in outbox.iterdir()) == ["ART.eml", "EXT-1.eml", "MATH.eml"]
    message = email.message_from_bytes((outbox / "ART.eml").read_bytes(), policy=default)
    assert message["To"] == "art@uni.example" and message["From"] == "finance@uni.example"
    assert [name for name, _, _ in attachments(message)] == ["ART-2026-03-statement.xlsx", "ART-2026-03-invoice.html"]
    assert deliveries(url) == [] and inbox.messages == []
    assert len(api.deliver(url, "2026-03", out, server).sent) == 3


def test_missing_documents_are_written_again_or_named(
    march: tuple[str, Path], smtp: tuple[Inbox, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, out = march
    inbox, server = smtp
    real_report = api.report
    calls: list[Path] = []

    def report_without_statements(url_, period, out_dir):
        """The period's documents written again, but no statement for ART (a writer that fails
        to produce one): deliver must name what is missing, for which unit, and send nothing."""
        calls.append(Path(out_dir))
        folder = real_report(url_, period, out_dir)
        documents_for(folder, CONSUMERS)
        (folder / "statements" / "ART.xlsx").unlink()
        (folder / "invoices" / "EXT-1.html").unlink()
        return folder

    monkeypatch.setattr(api, "report", report_without_statements)
    (out / "2026-03" / "statements" / "ART.xlsx").unlink()
    with pytest.raises(Refused) as refused:
        api.deliver(url, "2026-03", out, server)
    assert str(refused.value) == (
        f"cannot deliver 2026-03: documents missing from {out / '2026-03'}: ART: statements/ART.xlsx; "
        "EXT-1: invoices/EXT-1.html; nothing was sent"
    )
    assert calls == [out] and inbox.messages == [] and deliveries(url) == []

    # documents in another folder (or from an earlier close) are written again, then sent
    def report_with_documents(url_, period, out_dir):
        folder = real_report(url_, period, out_dir)
        documents_for(folder, CONSUMERS)
        return folder

    monkeypatch.setattr(api, "report", report_with_documents)
    elsewhere = tmp_path / "elsewhere"
    result = api.deliver(url, "2026-03", elsewhere, server)
    assert result.rewritten and (elsewhere / "2026-03" / "manifest.json").exists()
    assert len(result.sent) == 3 and len(inbox.messages) == 3


def test_without_documents_deliver_says_which_are_missing(
    loaded: str, mini_book: Path, tmp_path: Path, smtp: tuple[Inbox, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the statements exist at all, the refusal lists each unit's missing files."""
    _, server = smtp
    with_emails(mini_book, {"ART": "art@uni.example"})
    api.load(loaded, mini_book)
    api.run(loaded, mini_book, tmp_path / "out", through="2026-03")
    monkeypatch.setattr(api, "report", lambda url, period, out_dir: Path(out_dir) / period)
    for path in (tmp_path / "out" / "2026-03").rglob("*"):
        if path.is_file() and path.parent.name in ("statements", "invoices"):
            path.unlink()
    result = CliRunner().invoke(
        main, ["--db", loaded, "deliver", "2026-03", "--out", str(tmp_path / "out"), "--smtp", server]
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"refused: cannot deliver 2026-03: documents missing from {tmp_path / 'out' / '2026-03'}: "
        "ART: statements/ART.xlsx, invoices/ART.html; nothing was sent\n"
    )


def test_a_reclosed_period_is_sent_again_as_revised(march: tuple[str, Path], smtp: tuple[Inbox, str]) -> None:
    url, out = march
    inbox, server = smtp
    api.deliver(url, "2026-03", out, server)
    api.reopen(url, "2026-03", "missed ticket")
    api.adjust(url, "2026-03", "HELP", "ART", "-5.00", "Goodwill")
    api.close(url, "2026-03", out)
    documents_for(out / "2026-03", CONSUMERS)
    result = api.deliver(url, "2026-03", out, server)
    assert [s.unit for s in result.sent] == ["ART", "EXT-1", "MATH"]
    revised = inbox.messages[3][1]
    assert subject(revised).startswith("Revised: Mini College: statement and invoice of Art Department")
    assert "Charges of the period: 180.00 USD" in revised.get_body(("plain",)).get_content()
    assert len(deliveries(url)) == 6


def test_deliver_refusals(loaded: str, tmp_path: Path) -> None:
    with pytest.raises(Refused, match="period 2026-03 is not closed: deliver sends a closed period's documents"):
        api.deliver(loaded, "2026-03", tmp_path / "out")
    with pytest.raises(Refused, match="--from: 'finance' is not an email address"):
        api.deliver(loaded, "2026-03", tmp_path / "out", sender="finance")
    runner = CliRunner()
    result = runner.invoke(main, ["--db", loaded, "deliver", "2026-03", "--smtp", "mail.example.org"])
    assert result.exit_code == 2 and "is not HOST:PORT" in result.stderr


def test_an_unreachable_server_sends_and_records_nothing(march: tuple[str, Path]) -> None:
    url, out = march
    with pytest.raises(Refused, match=r"cannot reach the mail server 127\.0\.0\.1:\d+: .*; nothing was sent"):
        api.deliver(url, "2026-03", out, f"127.0.0.1:{free_port()}")
    assert deliveries(url) == []


def test_a_units_email_may_name_several_addresses_bare_or_with_a_name() -> None:
    assert delivery.addresses("head@art.example.edu") == ["head@art.example.edu"]
    assert delivery.addresses("Head of Art <head@art.example.edu>; office@art.example.edu") == [
        "head@art.example.edu",
        "office@art.example.edu",
    ]
    for nothing_to_send_to in ("", "  ", "the head of art", "head@art@example.edu", "Head <>"):
        assert delivery.addresses(nothing_to_send_to) is None
