"""Model-based tests: hypothesis drives the engine through random sequences of load,
import (new, duplicate, conflicting and invalid files, CSV and XLSX), adjust, close,
reopen, report and verify, on SQLite and PostgreSQL, against a small reference model of
the books written apart from the engine (plain dicts, its own pricing).

After every step: each period nets to zero, its totals equal the model's to the cent,
`verify` passes, the journal only grew, closed periods are unchanged, and a refused
command changed nothing (the audit log, which records the refusal, aside).

The default run is short; `--hypothesis-profile=long` runs many more and longer ones.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import tempfile
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from conftest import PG_URL, USAGE_HEADER, reset_postgres
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from openpyxl import Workbook
from reliability import count, fingerprint, long_run
from sqlalchemy import select

from chargeback import api
from chargeback.core.errors import Refused
from chargeback.store import db
from chargeback.store.schema import Entry

PERIODS = ["2026-01", "2026-02", "2026-03"]
UNITS = {"P": "internal", "Q": "internal", "A": "internal", "B": "internal", "X": "external"}
PROVIDER = {"S1": "P", "S2": "Q"}
#: Two versions of rates.csv: (service, class) -> [(from, to, rate)]; `load` switches.
RATES = [
    {
        ("S1", "internal"): [("2025-01-01", "2026-02-14", "12.50"), ("2026-02-15", None, "13.125")],
        ("S1", "external"): [("2025-01-01", None, "20")],
        ("S2", "internal"): [("2025-01-01", None, "0.333333")],
        ("S2", "external"): [("2025-01-01", None, "0.5")],
    },
    {
        ("S1", "internal"): [("2025-01-01", None, "11.115")],
        ("S1", "external"): [("2025-01-01", "2026-01-31", "19.999"), ("2026-02-01", None, "21.005")],
        ("S2", "internal"): [("2025-01-01", None, "0.125")],
        ("S2", "external"): [("2025-01-01", None, "0.55")],
    },
]


def write_book(folder: Path, version: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "book.toml").write_text('name = "Model College"\ncurrency = "USD"\n')
    (folder / "units.csv").write_text("code,name,kind\n" + "".join(f"{c},Unit {c},{k}\n" for c, k in UNITS.items()))
    (folder / "services.csv").write_text("code,provider,name,unit_of_measure\nS1,P,Support,hour\nS2,Q,Storage,GB\n")
    lines = ["service,customer_class,effective_from,effective_to,rate"]
    for (service, klass), ranges in RATES[version].items():
        lines += [f"{service},{klass},{start},{end or ''},{rate}" for start, end, rate in ranges]
    (folder / "rates.csv").write_text("\n".join(lines) + "\n")
    return folder


def model_rate(version: int, service: str, klass: str, day: dt.date) -> Decimal:
    return Decimal(model_rate_row(version, service, klass, day)[2])


def model_rate_row(version: int, service: str, klass: str, day: dt.date) -> tuple[str, str | None, str]:
    for start, end, rate in RATES[version][(service, klass)]:
        if dt.date.fromisoformat(start) <= day and (end is None or day <= dt.date.fromisoformat(end)):
            return start, end, rate
    raise AssertionError("the model's book has a rate for every day used")


def cents(quantity: Decimal, rate: Decimal) -> int:
    """The model's own pricing: round once, half away from zero, to cents."""
    return int((quantity * rate).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100)


def first_day(period: str) -> dt.date:
    return dt.date(int(period[:4]), int(period[5:]), 1)


def last_day(period: str) -> dt.date:
    start = first_day(period)
    return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


quantities = st.one_of(
    st.integers(-2000, 15000).map(lambda c: Decimal(c).scaleb(-2)),  # hundredths: rounding ties
    st.integers(1, 3_000_000).map(lambda m: Decimal(m).scaleb(-6)),  # millionths
).filter(lambda q: q != 0)
lines_strategy = st.lists(
    st.tuples(st.sampled_from(["S1", "S2"]), st.sampled_from(list(UNITS)), quantities, st.integers(-40, 27)),
    min_size=1,
    max_size=5,
)


class Books(RuleBasedStateMachine):
    """The engine and the model, side by side."""

    url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="chargeback-model-"))
        if self.url.startswith("postgresql"):
            reset_postgres(self.url)
            url = self.url
        else:
            url = f"sqlite:///{self.folder / 'db.sqlite'}"
        self.engine = db.connect(url)
        self.out = self.folder / "out"
        self.version = 0
        self.status: dict[str, str] = {}  # period -> open/closed (rows that exist)
        self.activity: set[str] = set()
        self.stored: dict[tuple[str, str], tuple] = {}  # (service, reference) -> (date, consumer, qty, period)
        self.pending: dict[str, list[tuple]] = defaultdict(list)
        self.posted: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # revenue, spend, external, entries
        self.files: list[tuple[Path, str, int]] = []
        self.snapshots: dict[str, list[tuple[int, str]]] = {}
        self.journal: list[tuple[int, str]] = []
        self.serial = 0

    def teardown(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------

    def _file(self, rows: list[list[object]], xlsx: bool) -> Path:
        self.serial += 1
        path = self.folder / f"u{self.serial}.{'xlsx' if xlsx else 'csv'}"
        if xlsx:
            book = Workbook()
            book.active.append(USAGE_HEADER)
            for row in rows:
                book.active.append(row)
            book.save(path)
        else:
            with open(path, "w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows([USAGE_HEADER, *rows])
        return path

    def _refused(self, call, *args, match: str | None = None) -> None:
        before = self._fingerprint()
        with pytest.raises(Refused) as refused:
            call(self.engine, *args)
        if match is not None:
            assert match in str(refused.value), str(refused.value)
        assert self._fingerprint() == before, f"a refused {call.__name__} changed the books"
        assert self._last_audit().startswith("refused: ")
        count("model refusals")

    def _fingerprint(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return fingerprint(conn)

    def _last_audit(self) -> str:
        return api.audit_log(self.engine)[0][-1].outcome

    def _price(self, service: str, consumer: str, quantity: Decimal, day: dt.date) -> tuple[str, int]:
        klass = UNITS[consumer]
        return klass, cents(quantity, model_rate(self.version, service, klass, day))

    def _earlier_open_with_activity(self, period: str) -> bool:
        return any(p < period and self.status.get(p) == "open" and p in self.activity for p in self.status)

    # -- rules -----------------------------------------------------------------------

    @initialize()
    def load(self) -> None:
        api.load(self.engine, write_book(self.folder / "book", self.version))

    @rule(version=st.sampled_from([0, 1]))
    def reload(self, version: int) -> None:
        self.version = version
        api.load(self.engine, write_book(self.folder / "book", version))

    @rule(period=st.sampled_from(PERIODS), lines=lines_strategy, xlsx=st.booleans())
    def import_new(self, period: str, lines: list[tuple], xlsx: bool) -> None:
        rows, fresh = [], []
        for service, consumer, quantity, offset in lines:
            if consumer == PROVIDER[service]:
                consumer = "A"
            day = min(first_day(period) + dt.timedelta(days=offset), last_day(period))
            self.serial += 1
            reference = f"R-{self.serial}"
            rows.append([day.isoformat(), service, consumer, str(quantity), reference, "model line"])
            fresh.append((service, reference, day, consumer, quantity))
        path = self._file(rows, xlsx)
        if self.status.get(period) == "closed":
            return self._refused(api.import_file, path, period, match=f"period {period} is closed")
        result = api.import_file(self.engine, path, period)
        assert (result.imported, result.duplicates) == (len(fresh), 0)
        expected: dict[str, int] = defaultdict(int)
        for service, reference, day, consumer, quantity in fresh:
            self.stored[service, reference] = (day, consumer, quantity, period)
            self.pending[period].append((service, consumer, quantity, day))
            expected[PROVIDER[service]] += self._price(service, consumer, quantity, day)[1]
        assert {p: int(v * 100) for p, v in result.by_provider.items()} == dict(expected)
        self.status.setdefault(period, "open")
        self.activity.add(period)
        self.files.append((path, period, len(fresh)))

    @precondition(lambda self: self.files)
    @rule(pick=st.integers(0, 1000))
    def import_again(self, pick: int) -> None:
        path, period, lines = self.files[pick % len(self.files)]
        if self.status.get(period) == "closed":
            return self._refused(api.import_file, path, period, match=f"period {period} is closed")
        before = self._fingerprint()
        result = api.import_file(self.engine, path, period)
        assert (result.imported, result.duplicates) == (0, lines)
        after = self._fingerprint()
        assert {k: v for k, v in after.items() if k != "imports"} == {
            k: v for k, v in before.items() if k != "imports"
        }, "a duplicate import stored something"

    @precondition(lambda self: self.stored)
    @rule(pick=st.integers(0, 1000), delta=st.sampled_from(["1", "-0.5", "0.000001"]))
    def import_conflicting(self, pick: int, delta: str) -> None:
        (service, reference), (day, consumer, quantity, period) = sorted(self.stored.items())[pick % len(self.stored)]
        changed = quantity + Decimal(delta) or quantity + 2
        path = self._file([[day.isoformat(), service, consumer, str(changed), reference, "changed"]], xlsx=False)
        self._refused(api.import_file, path, period)

    @rule(period=st.sampled_from(PERIODS), flaw=st.sampled_from(["consumer", "zero", "after", "self", "date", "extra"]))
    def import_invalid(self, period: str, flaw: str) -> None:
        self.serial += 1
        good = [first_day(period).isoformat(), "S1", "A", "1", f"OK-{self.serial}", ""]
        bad = {
            "consumer": [good[0], "S1", "NOBODY", "1", f"B-{self.serial}", ""],
            "zero": [good[0], "S1", "A", "0", f"B-{self.serial}", ""],
            "after": [(last_day(period) + dt.timedelta(days=1)).isoformat(), "S1", "A", "1", f"B-{self.serial}", ""],
            "self": [good[0], "S1", "P", "1", f"B-{self.serial}", ""],
            "date": ["2026-02-30", "S1", "A", "1", f"B-{self.serial}", ""],
            "extra": [good[0], "S1", "A", "1", f"B-{self.serial}", "", "surplus"],
        }[flaw]
        self._refused(api.import_file, self._file([good, bad], xlsx=False), period)

    @rule(
        period=st.sampled_from(PERIODS),
        service=st.sampled_from(["S1", "S2"]),
        consumer=st.sampled_from(list(UNITS)),
        amount=st.integers(-50000, 50000).filter(bool).map(lambda c: Decimal(c).scaleb(-2)),
    )
    def adjust(self, period: str, service: str, consumer: str, amount: Decimal) -> None:
        if self.status.get(period) == "closed":
            return self._refused(api.adjust, period, service, consumer, str(amount), "model", match="is closed")
        if consumer == PROVIDER[service]:
            return self._refused(
                api.adjust, period, service, consumer, str(amount), "model", match="cannot charge itself"
            )
        api.adjust(self.engine, period, service, consumer, str(amount), "model adjustment")
        self.pending[period].append((service, consumer, amount, None))
        self.status.setdefault(period, "open")
        self.activity.add(period)

    @rule(period=st.sampled_from(PERIODS))
    def close(self, period: str) -> None:
        if self.status.get(period) == "closed":
            return self._refused(api.close, period, self.out, match="already closed")
        if self._earlier_open_with_activity(period):
            return self._refused(api.close, period, self.out, match="is still open and has activity")
        result = api.close(self.engine, period, self.out)
        totals = self.posted[period]
        charges = set()  # usage is posted one charge per consumer, service and rate row
        for service, consumer, quantity, day in self.pending.pop(period, []):
            if day is None:  # an adjustment: posted as entered, one entry each
                klass, amount = UNITS[consumer], int(quantity * 100)
                totals[3] += 1
                result.posted -= 1
            else:
                klass, amount = self._price(service, consumer, quantity, day)
                charges.add((service, consumer, model_rate_row(self.version, service, klass, day)[0]))
            if klass == "internal":
                totals[0] += amount
                totals[1] += amount
            else:
                totals[2] += amount
        totals[3] += len(charges)
        result.posted -= len(charges)
        assert result.posted == 0, "the close posted another number of entries than the model"
        self.status[period] = "closed"
        with self.engine.connect() as conn:
            self.snapshots[period] = [
                tuple(r)
                for r in conn.execute(select(Entry.id, Entry.hash).where(Entry.period == period).order_by(Entry.id))
            ]
        count("model closes")

    @rule(period=st.sampled_from(PERIODS))
    def reopen(self, period: str) -> None:
        if period not in self.status:
            return self._refused(api.reopen, period, "model", match="has no activity")
        if self.status[period] == "open":
            return self._refused(api.reopen, period, "model", match="is open already")
        api.reopen(self.engine, period, "model reopen")
        self.status[period] = "open"
        self.snapshots.pop(period)

    @rule(period=st.sampled_from(PERIODS))
    def report(self, period: str) -> None:
        if self.status.get(period) != "closed":
            return self._refused(api.report, period, self.out, match="is not closed")
        before = self._fingerprint()
        folder = api.report(self.engine, period, self.out)
        assert (folder / "manifest.json").is_file() and self._fingerprint() == before

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def books_match_the_model(self) -> None:
        count("model steps")
        for period in PERIODS:
            rec = api.reconcile(self.engine, period)
            assert rec.balanced, f"{period} does not net to zero"
            revenue, spend, external, entries = self.posted[period]
            assert (rec.internal_revenue, rec.internal_spend, rec.external_revenue, rec.entries) == (
                revenue,
                spend,
                external,
                entries,
            ), f"{period}: engine and model disagree"
            assert rec.status == self.status.get(period, "open")

    @invariant()
    def history_only_grows_and_closed_periods_stay_put(self) -> None:
        with self.engine.connect() as conn:
            journal = [tuple(r) for r in conn.execute(select(Entry.id, Entry.hash, Entry.period).order_by(Entry.id))]
            stored = conn.exec_driver_sql("SELECT count(*) FROM usage").scalar()
        assert [j[:2] for j in journal[: len(self.journal)]] == self.journal, "posted entries changed"
        self.journal = [j[:2] for j in journal]
        for period, snapshot in self.snapshots.items():
            assert [j[:2] for j in journal if j[2] == period] == snapshot, f"closed {period} changed"
        assert stored == len(self.stored)

    @invariant()
    def verify_passes(self) -> None:
        result = api.verify(self.engine)
        assert result.ok, result.problems


def _settings() -> settings:
    examples, steps = (settings.default.max_examples, 40) if long_run() else (8, 15)
    examples = int(os.environ.get("CHARGEBACK_MODEL_EXAMPLES", examples))
    return settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, suppress_health_check=list(HealthCheck)
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_engine_keeps_to_the_model(backend: str, tmp_path: Path) -> None:
    if backend == "postgresql" and not PG_URL:
        pytest.skip("no PostgreSQL server: set CHARGEBACK_TEST_PG")
    machine = type(f"Books_{backend}", (Books,), {"url": PG_URL if backend == "postgresql" else "sqlite"})
    run_state_machine_as_test(machine, settings=_settings())
