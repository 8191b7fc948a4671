"""Linked credits: `adjust --against SERVICE:REFERENCE`."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import usage_file
from sqlalchemy import select

from chargeback import api
from chargeback.cli import main
from chargeback.core.errors import Refused
from chargeback.store import db
from chargeback.store.schema import Adjustment, Entry


@pytest.fixture
def closed_march(imported: str, tmp_path: Path) -> str:
    """The mini book with March closed: T-1 (1.5 h of HELP for ART, 90.00) among others."""
    api.close(imported, "2026-03", tmp_path / "out")
    return imported


def test_a_credit_against_a_charge_of_a_closed_period(closed_march: str, tmp_path: Path) -> None:
    url = closed_march
    first = api.adjust(url, "2026-04", None, None, "-30.00", "half the setup was a warranty job", against="HELP:T-1")
    assert (first.service, first.consumer, first.against) == ("HELP", "ART", "HELP:T-1")
    second = api.adjust(url, "2026-04", "HELP", "ART", "-60.00", "the rest too", against="HELP:T-1")
    assert second.against == "HELP:T-1"
    with pytest.raises(Refused) as refused:
        api.adjust(url, "2026-04", None, None, "-0.01", "one cent more", against="HELP:T-1")
    assert str(refused.value) == (
        "--amount: a credit of 0.01 USD against HELP:T-1 is larger than the original charge: "
        "90.00 charged to ART in 2026-03, -90.00 already linked to it, 0.00 left"
    )
    # A linked charge (positive) is not limited, and makes room for a later credit.
    api.adjust(url, "2026-04", None, None, "10.00", "re-billed", against="HELP:T-1")
    api.adjust(url, "2026-04", None, None, "-10.00", "and credited", against="HELP:T-1")
    result = api.close(url, "2026-04", tmp_path / "out")
    assert result.reconciliation.balanced
    with db.connect(url).connect() as conn:
        entries = conn.execute(
            select(Entry.source, Entry.amount_minor, Entry.rate_source, Entry.memo)
            .where(Entry.period == "2026-04")
            .order_by(Entry.id)
        ).all()
        links = conn.execute(select(Adjustment.against_service, Adjustment.against_reference)).all()
    assert [e.amount_minor for e in entries] == [-3000, -6000, 1000, -1000]
    assert {e.rate_source for e in entries} == {"manual adjustment against HELP:T-1"}
    assert entries[0].memo == "Adjustment"  # no --memo: the reason stays internal
    assert set(links) == {("HELP", "T-1")}
    # Still limited after the close, counting the posted credits.
    with pytest.raises(Refused, match="larger than the original charge"):
        api.adjust(url, "2026-05", None, None, "-0.01", "again", against="HELP:T-1")


def test_a_credit_larger_than_the_original_is_refused_at_once(closed_march: str) -> None:
    with pytest.raises(Refused) as refused:
        api.adjust(closed_march, "2026-04", None, None, "-90.01", "too much", against="HELP:T-1")
    assert str(refused.value) == (
        "--amount: a credit of 90.01 USD against HELP:T-1 is larger than the original charge: "
        "90.00 charged to ART in 2026-03, 0.00 already linked to it, 90.00 left"
    )
    with db.connect(closed_march).connect() as conn:
        assert conn.execute(select(Adjustment.id)).first() is None


def test_against_names_a_posted_charge_of_the_right_consumer(closed_march: str, tmp_path: Path) -> None:
    url = closed_march
    with pytest.raises(Refused, match=r"^--against: no posted charge HELP:NOPE was found$"):
        api.adjust(url, "2026-04", None, None, "-1", "x", against="HELP:NOPE")
    with pytest.raises(Refused, match=r"^--against: HELP:T-1 was charged to ART, not to MATH$"):
        api.adjust(url, "2026-04", None, "MATH", "-1", "x", against="HELP:T-1")
    with pytest.raises(Refused, match=r"^--service: VAN differs from the service of --against HELP:T-1$"):
        api.adjust(url, "2026-04", "VAN", None, "-1", "x", against="HELP:T-1")
    with pytest.raises(Refused, match=r"write SERVICE:REFERENCE"):
        api.adjust(url, "2026-04", None, None, "-1", "x", against="T-1")
    april = usage_file(tmp_path, "april.csv", [["2026-04-01", "HELP", "ART", "1", "T-99", "open"]])
    api.import_file(url, april, "2026-04")
    with pytest.raises(Refused, match=r"^--against: HELP:T-99 is not posted yet: close period 2026-04 first"):
        api.adjust(url, "2026-04", None, None, "-1", "x", against="HELP:T-99")


def adjust(url: str, arguments: str) -> Result:
    """`chargeback --db URL adjust ARGUMENTS`, the arguments as typed in a shell."""
    return CliRunner().invoke(main, ["--db", url, "adjust", *shlex.split(arguments)])


def test_cli_adjust_against(closed_march: str) -> None:
    out = adjust(closed_march, "2026-04 --amount -15.00 --reason goodwill --against HELP:T-1")
    assert out.exit_code == 0, out.output
    assert "HELP -> ART -15.00 USD against HELP:T-1" in out.output
    out = adjust(closed_march, "2026-04 --amount -100 --reason 'too much' --against HELP:T-1")
    assert out.exit_code == 1
    assert "refused: --amount: a credit of 100.00 USD against HELP:T-1 is larger than" in out.output
    out = adjust(closed_march, "2026-04 --amount -1 --reason x")
    assert out.exit_code == 2
    assert "--service and --consumer are required unless --against is given" in out.output
