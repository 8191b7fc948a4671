"""Seals and chained closes and reopens (issue 30, items 3 and 4).

Item 3: whoever can write the database can rewrite an entry and recompute every hash,
head, journal hash at close and total after it, and `verify` alone passes. The seals an
auditor kept outside the database (`seals --json`, manifests) catch it, and signed seals
cannot be made again without the private key. Item 4: a reopen done in SQL leaves a
period whose status does not follow from its chained closes and reopens."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import built_state
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from reliability import engine_for, plain_connection, sql
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import DBAPIError

from chargeback import api
from chargeback.cli import main
from chargeback.ledger import seals
from chargeback.ledger.entries import GENESIS, entry_hash
from chargeback.ledger.journal import ENTRY_COLUMNS
from chargeback.store import db
from chargeback.store.schema import (
    Entry,
    JournalHead,
    Period,
    PeriodEvent,
    PeriodEventHead,
    PeriodTotalRow,
)


def cli(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--db", url, *args])
    return result.exit_code, result.stdout, result.stderr


def close_with_an_adjustment(url: str, book: Path, folder: Path) -> None:
    api.load(url, book)
    api.adjust(url, "2026-03", "HELP", "ART", "10.00", "setup fee", reference="ADJ-1")
    api.run(url, book, folder / "out")
    assert api.verify(url).ok


@pytest.fixture
def closed(request: pytest.FixtureRequest, db_url: str) -> str:
    """The mini book's two months closed, with a manual adjustment in the first (an entry
    without usage lines, so changing its amount needs no change to `charge_lines`)."""
    return built_state(request, db_url, "closed_with_an_adjustment", close_with_an_adjustment)


def adjustment_entry(url: str) -> int:
    with plain_connection(url) as conn:
        found = conn.execute(select(Entry.id).where(Entry.kind == "adjustment")).scalar_one()
    return found


def events_writable(conn, writable: bool) -> None:
    """Get around the append-only triggers of `period_events`, as a database owner can."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ALTER TABLE period_events {'DISABLE' if writable else 'ENABLE'} TRIGGER USER"))
    elif writable:
        for action in ("update", "delete"):
            conn.execute(text(f"DROP TRIGGER period_events_no_{action}"))


def rechain_events(conn, new_hash: dict[str, str]) -> None:
    """Give every close's seal its rewritten journal hash and chain the events again."""
    previous = GENESIS
    for row in conn.execute(select(*seals.EVENT_COLUMNS).order_by(PeriodEvent.id)).all():
        values = list(row)[:-1]
        values[7] = new_hash.get(values[7], values[7])
        values[-1] = previous
        previous = seals.event_hash(values)
        conn.execute(
            update(PeriodEvent)
            .where(PeriodEvent.id == row.id)
            .values(journal_hash=values[7], prev_hash=values[-1], hash=previous)
        )
    conn.execute(update(PeriodEventHead).values(last_hash=previous))


def forge(url: str, entry_id: int, delta: int) -> None:
    """Issue 30 item 3, done with care: add `delta` to an entry, re-chain every entry,
    update the journal head, every journal hash recorded at close, the period's totals
    and the totals stored at its close, and the seals of the closes (chained again)."""
    engine = engine_for(url)
    with engine.begin() as conn:
        forged = conn.execute(
            select(Entry.period, Entry.consumer, Entry.service, Entry.kind).where(Entry.id == entry_id)
        ).one()
        conn.execute(update(Entry).where(Entry.id == entry_id).values(amount_minor=Entry.amount_minor + delta))
        new_hash, previous = {}, GENESIS
        for row in conn.execute(select(*ENTRY_COLUMNS).order_by(Entry.id)).all():
            values = list(row)[:-2]
            values[-1] = previous
            previous = entry_hash(values, row.lines_digest)
            new_hash[row.hash] = previous
            conn.execute(update(Entry).where(Entry.id == row.id).values(prev_hash=values[-1], hash=previous))
        conn.execute(update(JournalHead).values(last_hash=previous))
        for period, closed_hash in conn.execute(select(Period.period, Period.closed_hash)).all():
            conn.execute(
                update(Period).where(Period.period == period).values(closed_hash=new_hash.get(closed_hash, closed_hash))
            )
        conn.execute(
            update(Period)
            .where(Period.period == forged.period)
            .values(
                internal_revenue_minor=Period.internal_revenue_minor + delta,
                internal_spend_minor=Period.internal_spend_minor + delta,
            )
        )
        total = conn.execute(
            select(PeriodTotalRow.id).where(
                PeriodTotalRow.period == forged.period,
                PeriodTotalRow.consumer == forged.consumer,
                PeriodTotalRow.service == forged.service,
                PeriodTotalRow.kind == forged.kind,
            )
        ).scalar_one()
        conn.execute(
            update(PeriodTotalRow)
            .where(PeriodTotalRow.id == total)
            .values(amount_minor=PeriodTotalRow.amount_minor + delta)
        )
        events_writable(conn, True)
        rechain_events(conn, new_hash)
        events_writable(conn, False)
    engine.dispose()


def test_a_forged_history_passes_verify_but_not_the_seals_kept_before(closed: str, tmp_path: Path) -> None:
    code, listed, _ = cli(closed, "seals", "--json")
    assert code == 0
    kept = tmp_path / "seals.json"
    kept.write_text(listed)
    assert [s["period"] for s in json.loads(listed)] == ["2026-03", "2026-04"]
    assert cli(closed, "verify", "--seals", str(kept))[0] == 0

    forge(closed, adjustment_entry(closed), 100_000)  # 1,000.00 more

    code, out, err = cli(closed, "verify")
    assert (code, err) == (0, "")
    assert "hash chain intact" in out
    code, out, err = cli(closed, "verify", "--seals", str(kept))
    assert code == 1
    problems = err.splitlines()
    sealed = json.loads(listed)
    assert problems[:2] == [
        f"seal of {s['period']} (entry {s['entry']}, {s['hash'][:16]}...): the journal no longer holds it: "
        "history was rewritten after it was sealed"
        for s in sealed
    ]
    assert problems[-1].startswith("verify failed: seal of 2026-03 (entry ")


def test_a_manifest_kept_before_the_forgery_catches_it(closed: str, tmp_path: Path) -> None:
    manifests = [tmp_path / "out" / period / "manifest.json" for period in ("2026-03", "2026-04")]
    assert cli(closed, "verify", "--seals", str(manifests[0]), "--seals", str(manifests[1]))[0] == 0
    forge(closed, adjustment_entry(closed), 100_000)
    code, _, err = cli(closed, "verify", "--seals", str(manifests[0]), "--seals", str(manifests[1]))
    assert code == 1
    kept = [json.loads(m.read_text())["seal"] for m in manifests]  # the documents carry the seal
    assert err.splitlines()[:2] == [
        f"seal of {seal['period']} (entry {seal['entry']}, {seal['hash'][:16]}...): the journal no longer holds it: "
        "history was rewritten after it was sealed"
        for seal in kept
    ]


def test_a_manifest_s_seal_object_is_read(closed: str, tmp_path: Path) -> None:
    """The documents will carry `seals.seal_of`; a manifest with it is read by its seal."""
    engine = db.connect(closed)
    with engine.connect() as conn:
        seal = seals.seal_of(conn, "2026-04")
        assert seals.seal_of(conn, "2026-05") is None
    assert seal is not None and seal == api.seals(closed)[-1]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps({"period": "2026-04", "files": [], "journal_hash": seal.hash, "seal": seal.as_json()})
    )
    assert seals.read_seals([manifest]) == [seal]
    forged = dict(seal.as_json(), hash="f" * 64)
    manifest.write_text(json.dumps({"period": "2026-04", "files": [], "seal": forged}))
    assert api.verify(closed, manifest).problems == [
        f"seal of 2026-04 (entry {seal.entry}, ffffffffffffffff...): the journal no longer holds it: "
        "history was rewritten after it was sealed"
    ]


def test_a_seals_file_that_is_not_one_is_refused(closed: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"period": "2026-03", "entry": 1, "hash": "xyz"}]')
    code, _, err = cli(closed, "verify", "--seals", str(bad))
    assert code == 1
    assert err.strip() == f"refused: {bad}: item 1: a seal needs a period YYYY-MM and a hash of 64 lowercase hex digits"
    for seal, message in (
        ({"entry": 10**30}, "a seal's entry is the id of an entry, a whole number"),
        ({"signature": "zz"}, "a seal's signature is 128 lowercase hex digits and its key 64"),
        ({"closed_at": 5}, "closed_at 5 is not a UTC time YYYY-MM-DDTHH:MM:SSZ"),
    ):
        bad.write_text(json.dumps(dict({"period": "2026-03", "entry": 1, "hash": "a" * 64}, **seal)))
        assert cli(closed, "verify", "--seals", str(bad))[2].strip() == f"refused: {bad}: {message}"
    bad.write_text("{")
    assert cli(closed, "verify", "--seals", str(bad))[2].startswith(f"refused: {bad}: not JSON")


def _key_files(folder: Path, name: str) -> tuple[Ed25519PrivateKey, Path, Path]:
    key = Ed25519PrivateKey.generate()
    private = folder / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public = folder / f"{name}.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, private, public


def close_with_a_seal_key(url: str, book: Path, folder: Path) -> None:
    """`close_with_an_adjustment` with CHARGEBACK_SEAL_KEY set to folder/seal.pem."""
    _, private, _ = _key_files(folder, "seal")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHARGEBACK_SEAL_KEY", str(private))
        close_with_an_adjustment(url, book, folder)


@pytest.fixture
def signed(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> tuple[str, Path]:
    """The mini book closed with a seal key; returns the database and the public key's file."""
    return built_state(request, db_url, "signed", close_with_a_seal_key), tmp_path / "seal.pub.pem"


def test_signed_seals_verify_with_the_public_key(signed: tuple[str, Path], tmp_path: Path) -> None:
    url, public = signed
    found = api.seals(url)
    assert len(found) == 2 and all(s.signature and len(s.signature) == 128 for s in found)
    assert (
        found[0].text()
        == (
            f"chargeback seal v1 2026-03 {found[0].entry} {found[0].hash} {found[0].closed_at:%Y-%m-%dT%H:%M:%S}Z"
        ).encode()
    )
    code, out, err = cli(url, "verify", "--public-key", str(public))
    assert (code, err) == (0, "")
    assert out.strip().endswith("2 seals still held by the journal, 2 signatures valid")
    kept = tmp_path / "kept.json"
    kept.write_text(cli(url, "seals", "--json")[1])
    assert cli(url, "verify", "--seals", str(kept), "--public-key", str(public))[0] == 0
    code, out, _ = cli(url, "seals")
    assert out.splitlines()[0].startswith(
        f"2026-03  closed {found[0].as_json()['closed_at']}  entry {found[0].entry}  "
        f"{found[0].hash}  signed by key {found[0].key[:16]}..."
    )


def test_a_forged_seal_list_fails_the_signatures(signed: tuple[str, Path], tmp_path: Path) -> None:
    url, public = signed
    real = api.seals(url)[0]
    entries = engine_for(url)
    with entries.connect() as conn:
        other = conn.execute(select(Entry.id, Entry.hash).where(Entry.id == real.entry - 1)).one()
    entries.dispose()
    moved = dict(real.as_json(), entry=other.id, hash=other.hash)  # held by the journal, not signed so
    other_key, _, _ = _key_files(tmp_path, "other")
    resealed = seals.Seal(
        real.period, real.closed_at, real.entry, real.hash, other_key.sign(real.text()).hex(), real.key
    )
    by_other = dict(
        real.as_json(), signature=other_key.sign(real.text()).hex(), key=seals.fingerprint(other_key.public_key())
    )
    unsigned = dict(real.as_json(), signature=None, key=None)
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps([moved, resealed.as_json(), by_other, unsigned]))
    problems = api.verify(url, forged, public).problems
    name = real.name()
    assert problems == [
        f"seal of 2026-03 (entry {other.id}, {other.hash[:16]}...): its signature is not the key's: "
        "the seal was forged or changed",
        f"{name}: its signature is not the key's: the seal was forged or changed",
        f"{name}: signed by another key ({seals.fingerprint(other_key.public_key())[:16]}...), "
        "not the public key given",
        f"{name}: not signed: it cannot be told from a forged one",
    ]


def test_a_forger_without_the_key_cannot_seal_again(signed: tuple[str, Path]) -> None:
    """Even re-chaining the events with the rewritten journal hashes, the signatures in
    the database are of the history before: `verify --public-key` finds it."""
    url, public = signed
    forge(url, adjustment_entry(url), 100_000)
    assert api.verify(url).ok
    problems = api.verify(url, public_key=public).problems
    assert len(problems) == 2
    assert all(
        p.startswith("seal of 2026-0") and p.endswith("its signature is not the key's: the seal was forged or changed")
        for p in problems
    )


def test_an_unreadable_seal_key_refuses_the_close(loaded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api.adjust(loaded, "2026-03", "HELP", "ART", "10.00", "setup fee")
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("not a key")
    monkeypatch.setenv("CHARGEBACK_SEAL_KEY", str(not_a_key))
    code, _, err = cli(loaded, "close", "2026-03", "--out", str(tmp_path / "out"))
    assert code == 1
    assert err.strip() == f"refused: CHARGEBACK_SEAL_KEY: {not_a_key} is not an unencrypted PEM private key"
    assert api.reconcile(loaded, "2026-03").status == "open"
    assert api.seals(loaded) == []


def test_a_reopen_done_in_sql_is_found(closed: str, tmp_path: Path) -> None:
    """Item 4: `UPDATE periods SET status='open'`, then an adjustment and a close."""
    sql(closed, "UPDATE periods SET status = 'open' WHERE period = '2026-04'")
    assert api.verify(closed).problems == [
        "period 2026-04: its status (open) does not follow from its closes and reopens: "
        "it was changed behind the engine's back"
    ]
    api.adjust(closed, "2026-04", "HELP", "ART", "5.00", "slipped in")
    api.close(closed, "2026-04", tmp_path / "out2")
    problems = api.verify(closed).problems
    assert len(problems) == 1
    assert problems[0].startswith("period 2026-04: closed again at ")
    assert problems[0].endswith("its status was changed behind the engine's back (a reopen that left no trace)")
    code, _, err = cli(closed, "verify")
    assert code == 1 and err.splitlines()[-1].startswith("verify failed: period 2026-04: closed again at ")


def test_a_reopen_and_close_verify(closed: str, tmp_path: Path) -> None:
    api.reopen(closed, "2026-04", "late invoice")
    assert api.verify(closed).ok
    api.adjust(closed, "2026-04", "HELP", "ART", "5.00", "late invoice")
    api.close(closed, "2026-04", tmp_path / "out2")
    result = api.verify(closed)
    assert result.ok and result.period_events == 4
    assert [s.period for s in api.seals(closed)] == ["2026-03", "2026-04", "2026-04"]


def test_a_closed_period_s_row_changed_in_sql_is_found(closed: str) -> None:
    """Status closed with a last reopen, and a journal hash at close not its last seal's."""
    api.reopen(closed, "2026-04", "late invoice")
    sql(closed, "UPDATE periods SET status = 'closed' WHERE period = '2026-04'")
    assert api.verify(closed).problems == [
        "period 2026-04: its status (closed) does not follow from its closes and reopens: "
        "it was changed behind the engine's back"
    ]


def test_period_events_are_append_only(closed: str) -> None:
    engine = engine_for(closed)
    for statement in ("UPDATE period_events SET reason = 'x'", "DELETE FROM period_events"):
        with pytest.raises(DBAPIError, match="period events are append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    engine.dispose()


def test_a_changed_event_is_found(closed: str) -> None:
    engine = engine_for(closed)
    with engine.begin() as conn:
        events_writable(conn, True)
        conn.execute(update(PeriodEvent).where(PeriodEvent.id == 1).values(reason="nothing to see"))
        events_writable(conn, False)
    engine.dispose()
    assert api.verify(closed).problems == [
        "period event 1: its contents do not match its hash: the close of 2026-03 was altered"
    ]


def test_a_deleted_last_event_is_found(closed: str) -> None:
    engine = engine_for(closed)
    with engine.begin() as conn:
        events_writable(conn, True)
        conn.execute(PeriodEvent.__table__.delete().where(PeriodEvent.id == 2))
        events_writable(conn, False)
    engine.dispose()
    problems = api.verify(closed).problems
    assert problems[0] == (
        "period event head names event 2 but the events end at 1: closes or reopens "
        "were deleted or added behind the engine's back"
    )
    assert (
        "period 2026-04: its status (closed) does not follow from its closes and reopens: "
        "it was changed behind the engine's back" in problems
    )


def test_a_chained_reopen_without_its_audit_record_is_found(closed: str) -> None:
    """A forger who chains a reopen event properly still has to forge the audit log."""
    engine = engine_for(closed)
    with engine.begin() as conn:
        last = conn.execute(select(PeriodEventHead.last_event, PeriodEventHead.last_hash)).one()
        values = (
            last.last_event + 1,
            "2026-04",
            dt.datetime(2030, 1, 1),
            "reopen",
            "quietly",
            "dba",
            None,
            None,
            None,
            None,
            last.last_hash,
        )
        digest = seals.event_hash(values)
        conn.execute(insert(PeriodEvent).values(**dict(zip(seals.HASHED_FIELDS, values, strict=False)), hash=digest))
        conn.execute(update(PeriodEventHead).values(last_event=values[0], last_hash=digest))
        conn.execute(update(Period).where(Period.period == "2026-04").values(status="open"))
    engine.dispose()
    assert api.verify(closed).problems == [
        "period 2026-04: its closes and reopens (close, reopen) are not those the audit log records (close): "
        "one or the other was changed behind the engine's back"
    ]


def test_the_upgrade_chains_the_events_already_there(closed: str) -> None:
    """0012 on a journal closed before it: each closed period's last close gets the journal
    hash recorded at it as its seal, and `verify` passes; a downgrade keeps the seals."""
    from alembic import command

    before = api.seals(closed)
    engine = db.connect(closed)
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(conn), "0011")
        conn.execute(text("UPDATE period_events SET journal_entry = NULL, journal_hash = NULL"))
        conn.execute(
            text(
                'INSERT INTO period_events (period, at, action, reason, "user") '
                "SELECT period, closed_at, 'reopen', 'older code', 'u' FROM periods WHERE period = '2026-04'"
            )
        )
        conn.execute(
            text(
                'INSERT INTO period_events (period, at, action, reason, "user") '
                "SELECT period, closed_at, 'close', 'older code', 'u' FROM periods WHERE period = '2026-04'"
            )
        )
    db.upgrade(engine)
    after = api.seals(closed)
    assert [(s.period, s.entry, s.hash) for s in after] == [(s.period, s.entry, s.hash) for s in before]
    with engine.connect() as conn:
        assert conn.execute(
            select(PeriodEvent.action, PeriodEvent.journal_hash.is_not(None)).order_by(PeriodEvent.id)
        ).all() == [("close", True), ("close", False), ("reopen", False), ("close", True)]
    problems = api.verify(engine).problems
    assert problems == [  # the reopen and close of the older code were not done through the engine
        "period 2026-04: its closes and reopens (close, reopen, close) are not those the audit log records "
        "(close): one or the other was changed behind the engine's back"
    ]


def test_the_documents_carry_the_seal_in_full(db_url: str, mini_book: Path, tmp_path: Path) -> None:
    """The manifest, the reconciliation workbook's Summary and every invoice carry the
    close's seal at full length: what an auditor keeps outside the database."""
    import json

    import openpyxl

    api.run(db_url, mini_book, tmp_path / "out")
    [seal] = [s for s in api.seals(db_url) if s.period == "2026-03"]
    folder = tmp_path / "out" / "2026-03"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seal"] == seal.as_json() and manifest["seal"]["hash"] == manifest["journal_hash"]
    summary = openpyxl.load_workbook(folder / "reconciliation.xlsx")["Summary"]
    facts = {row[0]: row[1] for row in summary.iter_rows(max_col=2, values_only=True) if row[0]}
    assert facts["Journal hash at close"] == seal.hash and facts["Seal: last entry"] == seal.entry
    assert facts["Seal: signature"] == "not signed (no seal key configured)"
    for invoice in (folder / "invoices").glob("*.html"):
        assert f"seal: entry {seal.entry}, journal {seal.hash}" in invoice.read_text()
    assert api.verify(db_url, folder / "manifest.json").ok
