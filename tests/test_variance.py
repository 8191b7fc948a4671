"""The variance review: the flag rule, drivers, callouts (pure), the same figures from
the database on SQLite and PostgreSQL, and `variance.xlsx`."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from conftest import usage_file

from chargeback import api
from chargeback.close.variance import Total, UnitVariance, compute, moved, report_lines, window_of

D = Decimal
Q = D("0.25")


@pytest.mark.parametrize(
    "change, base, flagged",
    [
        (2500, 10000, False),  # exactly 25%: not more than the threshold
        (2501, 10000, True),
        (-2501, 10000, True),  # a fall counts as much as a rise
        (40, 40, False),  # +100%, but 0.40 is less than one currency unit
        (100, 40, True),  # +250% and 1.00
        (100, 0, True),  # from nothing: one currency unit is enough
        (99, 0, False),
        (0, 0, False),
        (-3000, -10000, True),  # a credit line that grew
    ],
)
def test_the_flag_rule(change: int, base: int, flagged: bool) -> None:
    assert moved(change, base, Q, 2) is flagged


def test_the_floors_when_the_threshold_is_low() -> None:
    # threshold 0: any move of at least one currency unit and one hundredth of the base
    assert moved(100, 5000, D(0), 2) is True
    assert moved(100, 20000, D(0), 2) is False  # 1.00 on 200.00 is half a percent
    assert moved(99, 50, D(0), 2) is False
    # JPY has no minor digits: one currency unit is 1 yen
    assert moved(1, 2, Q, 0) is True and moved(1, 4, Q, 0) is False


def test_window_starts_at_the_first_posted_period() -> None:
    assert window_of("2026-03", "2025-01") == ("2026-02", "2026-01", "2025-12")
    assert window_of("2026-03", "2026-02") == ("2026-02",)
    assert window_of("2026-03", None) == ()
    assert window_of("2026-01", "2025-12") == ("2025-12",)


def t(
    period: str,
    consumer: str,
    service: str,
    amount: int,
    kind: str = "usage",
    provider: str = "IT",
    cls: str = "internal",
) -> Total:
    return Total(period, consumer, cls, provider, service, kind, amount)


def test_lines_drivers_and_callouts() -> None:
    totals = [
        # ART: 100 -> 160, driven by VAN (+80) more than HELP (-20)
        t("2026-01", "ART", "HELP", 10000),
        t("2026-02", "ART", "HELP", 10000),
        t("2026-03", "ART", "HELP", 8000),
        t("2026-03", "ART", "VAN", 8000, provider="FLEET"),
        # MATH: charged in January and February only: gone
        t("2026-01", "MATH", "HELP", 3000),
        t("2026-02", "MATH", "HELP", 3000),
        # BIO: new this month (an outside customer)
        t("2026-03", "BIO", "HELP", 500, cls="external"),
        # PRINT had usage in January only: silent this month; a recurring fee is not usage
        t("2026-01", "ART", "PRINT", 700, provider="PRESS"),
        t("2026-03", "MATH", "DESK", 100, kind="recurring", provider="FAC"),
    ]
    review = compute("2026-03", totals, ("2026-02", "2026-01", "2025-12"), threshold=Q, digits=2, currency="USD")
    art = review.consumer("ART")
    assert (art.current, art.previous, art.change, art.percent) == (16000, 10000, 6000, D("0.6"))
    # the average of the window counts December (no charges) as zero: (0 + 10700 + 10000) / 3
    assert art.average == 6900 and art.flagged
    assert [(d.service, d.change) for d in art.drivers] == [("VAN", 8000), ("HELP", -2000)]
    math = review.consumer("MATH")
    assert (math.current, math.previous, math.flagged) == (100, 3000, True)
    assert review.consumer("BIO").kind == "external"
    assert review.new_consumers == ("BIO",)
    assert review.gone_consumers == ()  # MATH still has its recurring fee
    assert [(s.service, s.provider, s.last_period, s.last_amount) for s in review.silent_services] == [
        ("PRINT", "PRESS", "2026-01", 700)
    ]
    it = next(line for line in review.providers if line.unit == "IT")
    assert (it.kind, it.current, it.previous) == ("provider", 8500, 13000)
    assert [line.unit for line in review.providers] == ["FAC", "FLEET", "IT"]  # PRESS: not in March nor February


def test_a_consumer_that_disappears_is_called_out() -> None:
    review = compute(
        "2026-03", [t("2026-02", "MATH", "HELP", 3000)], ("2026-02",), threshold=Q, digits=2, currency="USD"
    )
    assert review.gone_consumers == ("MATH",)
    assert review.consumer("MATH") == UnitVariance(
        "MATH", "internal", 0, 3000, 3000, True, review.consumer("MATH").drivers
    )
    text = "\n".join(report_lines(review))
    assert "consumer gone: MATH (charged 30.00 in 2026-02, nothing in 2026-03)" in text
    assert "no usage of HELP (IT) in 2026-03: 30.00 in 2026-02" in text


def test_nothing_is_compared_or_flagged_without_an_earlier_period() -> None:
    review = compute("2026-03", [t("2026-03", "ART", "HELP", 100000)], (), threshold=Q, digits=2, currency="USD")
    line = review.consumer("ART")
    assert (line.previous, line.change, line.average, line.flagged) == (None, None, None, False)
    assert review.new_consumers == () and review.flagged == []
    assert report_lines(review)[0] == "variance review of 2026-03: no earlier period to compare with"


def months(url: str, tmp_path: Path) -> None:
    """January to March for the mini book: ART's help desk use doubles in March, MATH
    leaves, the van is not used in March, the library buys help desk time."""
    rows = {
        "2026-01": [
            ["2026-01-05", "HELP", "ART", "1", "J-1", ""],
            ["2026-01-06", "HELP", "MATH", "1", "J-2", ""],
            ["2026-01-07", "VAN", "ART", "1", "J-3", ""],
        ],
        "2026-02": [
            ["2026-02-05", "HELP", "ART", "1", "F-1", ""],
            ["2026-02-06", "HELP", "MATH", "0.5", "F-2", ""],
            ["2026-02-07", "VAN", "ART", "1", "F-3", ""],
        ],
        "2026-03": [["2026-03-05", "HELP", "ART", "3", "M-1", ""], ["2026-03-06", "HELP", "EXT-1", "1", "M-2", ""]],
    }
    for period, lines in rows.items():
        api.import_file(url, usage_file(tmp_path, f"{period}.csv", lines), period)
        if period != "2026-03":
            api.close(url, period, tmp_path / "out")


def test_the_review_from_the_journal(loaded: str, tmp_path: Path) -> None:
    months(loaded, tmp_path)
    review = api.close(loaded, "2026-03", tmp_path / "out").review
    assert review is not None and review.window == ("2026-02", "2026-01")
    art = review.consumer("ART")
    # March 180.00; February 60.00 + 45.13; average of (105.13, 105.13)
    assert (art.current, art.previous, art.average, art.flagged) == (18000, 10513, 10513, True)
    assert [(d.service, d.change) for d in art.drivers] == [("HELP", 12000), ("VAN", -4513)]
    assert review.new_consumers == ("EXT-1",) and review.gone_consumers == ("MATH",)
    assert [s.service for s in review.silent_services] == ["VAN"]
    fleet = next(line for line in review.providers if line.unit == "FLEET")
    assert (fleet.current, fleet.previous, fleet.flagged) == (0, 4513, True)


def test_variance_workbook(loaded: str, tmp_path: Path) -> None:
    months(loaded, tmp_path)
    api.preview(loaded, "2026-03", tmp_path / "out")
    draft = openpyxl.load_workbook(tmp_path / "out" / "2026-03-draft" / "variance.xlsx")
    assert draft.sheetnames == ["Consumers", "Providers", "Callouts"]
    assert draft.properties.title.startswith("DRAFT - ")
    for sheet in draft.worksheets:
        assert sheet["A1"].value.startswith("DRAFT - Variance review 2026-03")
        assert sheet.oddHeader.center.text == "DRAFT"
    api.close(loaded, "2026-03", tmp_path / "out")
    path = tmp_path / "out" / "2026-03" / "variance.xlsx"
    book = openpyxl.load_workbook(path)
    sheet = book["Consumers"]
    assert sheet["A1"].value == "Variance review 2026-03: consumers" and not sheet.oddHeader.center.text
    rows = {row[0].value: row for row in sheet.iter_rows(min_row=6)}
    art = rows["ART"]
    assert [c.value for c in art[:4]] == ["ART", "Art Department", "internal", D("180")] or [
        c.value for c in art[:4]
    ] == ["ART", "Art Department", "internal", 180]
    assert art[4].value == pytest.approx(105.13) and art[4].number_format == '"$"#,##0.00;[Red]-"$"#,##0.00'
    assert art[6].number_format.startswith("0.0%") and art[6].value == pytest.approx(7487 / 10513)
    assert art[10].value == "yes" and art[11].value == "HELP +120.00, VAN -45.13"
    callouts = [[c.value for c in row[:2]] for row in book["Callouts"].iter_rows(min_row=6)]
    assert callouts == [["new consumer", "EXT-1"], ["consumer gone", "MATH"], ["no usage", "VAN"]]
    # `report` writes the same bytes again: the workbook carries the close's time, not the clock's
    before = path.read_bytes()
    again = api.report(loaded, "2026-03", tmp_path / "again")
    assert (again / "variance.xlsx").read_bytes() == before
