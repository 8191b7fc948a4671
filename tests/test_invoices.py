"""Invoices: every line and total there and adding up, text escaped, print-ready."""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import run_chromium
from conftest import documents_book_copy
from sqlalchemy import select

from chargeback.store import db
from chargeback.store.schema import Entry


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory, documents_book_state: Path) -> tuple[str, Path]:
    """The documents book's months closed (`documents_book.build`), a copy for this module."""
    return documents_book_copy(documents_book_state, tmp_path_factory.mktemp("invoices"))


class Invoice(HTMLParser):
    """Reads an invoice back: line amounts by provider, subtotals, total, texts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.lines: dict[str, list[tuple[int, Decimal, str]]] = {}
        #: the usage lines under the charges: (charge's entry, amount, description)
        self.usage: list[tuple[int, Decimal, str]] = []
        self.subtotals: dict[str, Decimal] = {}
        self.total: Decimal | None = None
        self.scripts = 0
        self.ids: dict[str, str] = {}
        self._provider = ""
        self._row: dict[str, str] | None = None
        self._cells: list[list[str]] = []
        self._id: str | None = None
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "table" and a.get("data-provider"):
            self._provider = a["data-provider"] or ""
            self.lines[self._provider] = []
        if tag == "tr":
            self._row = {k: v or "" for k, v in a.items()}
            self._cells = []
        if tag in ("td", "th") and self._row is not None:
            self._cells.append([])
        if a.get("id"):
            self._id = a["id"]
            self.ids[self._id] = ""

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._row is not None and self._cells:
            self._cells[-1].append(data)
        if self._id:
            self.ids[self._id] += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "span", "th", "div") and self._id and tag != "span":
            self._id = None
        if tag != "tr" or self._row is None:
            return
        cells = ["".join(c).strip() for c in self._cells]
        classes = self._row.get("class", "").split()
        if "line" in classes:
            self.lines[self._provider].append((int(self._row["data-entry"]), _amount(cells[-1]), cells[1]))
        elif "usage-line" in classes:
            self.usage.append((int(self._row["data-charge"]), _amount(cells[-1]), cells[1]))
        elif "subtotal" in classes:
            self.subtotals[self._provider] = _amount(cells[-1])
        self._row = None


def _amount(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def _consumer_entries(url: str, period: str, consumer: str) -> dict[int, int]:
    with db.transaction(db.connect(url)) as conn:
        return dict(
            conn.execute(
                select(Entry.id, Entry.amount_minor).where(Entry.period == period, Entry.consumer == consumer)
            ).all()
        )


@pytest.mark.parametrize("period", ["2026-03", "2026-04"])
def test_every_line_and_the_total_add_up_to_the_cent(out: tuple[str, Path], period: str) -> None:
    url, folder = out
    invoices = sorted((folder / period / "invoices").glob("*.html"))
    assert invoices
    for path in invoices:
        invoice = Invoice(path.read_text(encoding="utf-8"))
        expected = _consumer_entries(url, period, path.stem)
        lines = [line for group in invoice.lines.values() for line in group]
        assert {entry: amount * 100 for entry, amount, _ in lines} == expected, path.name
        for provider, group in invoice.lines.items():
            assert sum(amount for _, amount, _ in group) == invoice.subtotals[provider]
        total = _amount(invoice.ids["total"])
        assert total == sum(invoice.subtotals.values()) == Decimal(sum(expected.values())) / 100


def test_every_consumer_with_charges_has_one(out: tuple[str, Path]) -> None:
    url, folder = out
    with db.transaction(db.connect(url)) as conn:
        consumers = set(conn.execute(select(Entry.consumer).where(Entry.period == "2026-04")).scalars())
    assert {p.stem for p in (folder / "2026-04" / "invoices").glob("*.html")} == consumers


def test_external_invoice_and_internal_notice(out: tuple[str, Path]) -> None:
    _, folder = out
    external = Invoice((folder / "2026-03" / "invoices" / "EXT-1.html").read_text())
    text = " ".join(external.text)
    assert "Bill to" in text and "Amount due" in text and "Net 30" in text
    # March was closed twice (reopened for a late ticket): its documents are revision 2
    assert external.ids["number"] == "INV-202603-EXT-1-R2"
    assert external.ids["replaces"].startswith("INV-202603-EXT-1, issued ")
    assert external.ids["due"] > external.ids["issued"]
    internal = Invoice((folder / "2026-03" / "invoices" / "ART.html").read_text())
    text = " ".join(internal.text)
    assert "journal transfer" in text and "not to be paid" in text and "Amount due" not in text
    assert internal.ids["number"] == "ICN-202603-ART-R2"
    assert internal.ids["consumer"] == "ART"
    april = Invoice((folder / "2026-04" / "invoices" / "ART.html").read_text())
    assert april.ids["number"] == "ICN-202604-ART" and "replaces" not in april.ids


def test_late_charges_credits_and_adjustments_are_marked(out: tuple[str, Path]) -> None:
    _, folder = out
    html = (folder / "2026-04" / "invoices" / "MATH.html").read_text()
    assert "late charge (service on 2026-03-30)" in html
    html = (folder / "2026-04" / "invoices" / "ART.html").read_text()
    assert 'class="tag credit"' in html and 'class="tag adjustment"' in html
    march = (folder / "2026-03" / "invoices" / "MATH.html").read_text()
    assert "Goodwill &lt;credit&gt; &amp; thanks" in march


def test_text_from_input_is_escaped(out: tuple[str, Path]) -> None:
    _, folder = out
    raw = (folder / "2026-03" / "invoices" / "CHEM.html").read_text()
    assert "<script>" not in raw and "&lt;script&gt;" in raw
    invoice = Invoice(raw)
    assert invoice.scripts == 0
    descriptions = [d for _, _, d in invoice.usage]
    assert any("<script>alert('x')</script> & Sons" in d for d in descriptions)
    assert "Chemistry & <Labs>" in invoice.ids["consumer-name"]
    assert "Mini College &amp; Co" in raw


def test_every_text_of_a_line_row_is_escaped() -> None:
    """The tables of services and lines are written with autoescaping off (for speed):
    each text from input in them (description, reference, unit of measure, service and
    provider names) must still come out as text."""
    import datetime as dt

    from chargeback.book.snapshot import ServiceInfo, UnitInfo
    from chargeback.documents.bills import Bill, DocumentContext, Line
    from chargeback.documents.invoices import render_invoice

    hostile = "<script>x</script> & <b>"
    unit = UnitInfo("ART", "Art", "internal", None, None, None, None, None, None, None)
    provider = UnitInfo("IT", f"IT {hostile}", "internal", None, None, None, None, None, None, None)
    ctx = DocumentContext(
        "Book",
        "USD",
        2,
        "2026-03",
        dt.datetime(2026, 4, 1),
        None,
        1,
        None,
        {"ART": unit, "IT": provider},
        {"S": ServiceInfo("S", "IT", f"Svc {hostile}", f"GB {hostile}", None)},
    )
    late = Line(
        7,
        dt.date(2026, 3, 1),
        dt.date(2026, 2, 27),
        "usage",
        "IT",
        "S",
        "internal",
        1_500_000,
        2_000_000,
        -300,
        f"R {hostile}",
        f"memo {hostile}",
        None,
    )
    raw = render_invoice(ctx, Bill(unit, [late]))
    assert "<script>" not in raw and "<b>" not in raw
    invoice = Invoice(raw)
    assert invoice.scripts == 0
    [(entry, amount, description)] = invoice.lines["IT"]
    assert (entry, amount) == (7, Decimal("-3.00"))
    assert description.startswith(f"memo {hostile}")
    assert "late charge (service on 2026-02-27)" in description
    row = raw[raw.index('<tr class="line credit" data-entry="7">') :]
    row = row[: row.index("</tr>")]
    assert "&lt;script&gt;x&lt;/script&gt; &amp; &lt;b&gt;" in row
    assert row.count("&lt;script&gt;") == 3  # description, reference, unit of measure
    escaped = "&lt;script&gt;x&lt;/script&gt; &amp; &lt;b&gt;"
    assert f'<tr class="service" data-service="S"><th colspan="7">Svc {escaped} (S)</th></tr>' in raw
    assert f"<td>IT {escaped} (IT)</td><td>Svc {escaped} (S)</td>" in raw  # the summary's row
    assert f"<caption>IT {escaped} (IT)</caption>" in raw
    assert f"Subtotal IT {escaped} (IT)</th>" in raw


def test_report_keeps_the_invoice_number_and_issue_date(out: tuple[str, Path], tmp_path: Path) -> None:
    from chargeback import api

    url, folder = out
    again = api.report(url, "2026-03", tmp_path)
    for path in (folder / "2026-03" / "invoices").glob("*.html"):
        assert (again / "invoices" / path.name).read_bytes() == path.read_bytes()


def _pages(pdf: Path) -> int:
    if shutil.which("pdfinfo"):
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
        return int(re.search(r"Pages:\s+(\d+)", info.stdout).group(1))
    data = pdf.read_bytes()
    return len(re.findall(rb"/Type\s*/Page(?![a-z])", data))


@pytest.mark.slow
@pytest.mark.parametrize("paper", ["Letter", "A4"])
def test_chromium_prints_an_invoice(out: tuple[str, Path], tmp_path: Path, paper: str) -> None:
    _, folder = out
    html = (folder / "2026-03" / "invoices" / "CHEM.html").read_text()
    page = tmp_path / "invoice.html"
    page.write_text(html.replace("<style>", f"<style>@page {{ size: {paper}; }}", 1))
    pdf = tmp_path / "invoice.pdf"
    run_chromium(tmp_path / "profile", "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri())
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert pdf.stat().st_size > 5_000
    assert _pages(pdf) >= 1


def _bill(url: str, period: str, code: str):
    from chargeback.documents.bills import bills, document_context, service_totals

    with db.transaction(db.connect(url)) as conn:
        ctx = document_context(conn, period)
        return ctx, next(b for b in bills(conn, ctx, service_totals(conn, ctx)) if b.unit.code == code)


def test_an_invoice_lists_each_charge_with_its_usage_lines_under_it(out: tuple[str, Path]) -> None:
    """Under each usage charge, its lines: date, description, reference, quantity, rate
    and amount, adding up to the charge's amount."""
    url, folder = out
    html = (folder / "2026-03" / "invoices" / "CHEM.html").read_text(encoding="utf-8")
    charges = dict(re.findall(r'<tr class="line[^"]*" data-entry="(\d+)">.*?<td class="num amount">([^<]*)</td>', html))
    under: dict[str, Decimal] = {}
    for entry, amount in re.findall(
        r'<tr class="usage-line" data-charge="(\d+)">(?:<td[^>]*>[^<]*</td>){6}'
        r'<td class="num">([^<]*)</td>',
        html,
    ):
        under[entry] = under.get(entry, Decimal(0)) + Decimal(amount.replace(",", ""))
    assert under and set(under) <= set(charges)
    for entry, total in under.items():
        assert total == Decimal(charges[entry].replace(",", ""))
    assert 'id="line-limit"' not in html  # a handful of lines: all of them shown


def test_past_the_limit_an_external_invoice_points_to_a_detail_csv_of_every_line(
    out: tuple[str, Path], tmp_path: Path
) -> None:
    import csv
    import dataclasses

    from chargeback.documents.invoices import write_invoice

    url, _ = out
    ctx, bill = _bill(url, "2026-03", "CHEM")
    assert bill.usage.height >= 4
    ctx = dataclasses.replace(ctx, invoice_line_limit=2)
    bill.unit = dataclasses.replace(bill.unit, kind="external")
    path = write_invoice(tmp_path, ctx, bill)
    html = path.read_text(encoding="utf-8")
    assert html.count('class="usage-line"') == 2
    note = re.search(r'<div class="note" id="line-limit">(.*?)</div>', html, re.S).group(1)
    assert f"the first 2 of its {bill.usage.height} usage lines" in note and "detail/CHEM.csv" in note
    with open(tmp_path / "detail" / "CHEM.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["usage_id"]) for r in rows] == bill.usage["usage_id"].to_list()
    assert sum(Decimal(r["amount"]) for r in rows) * 100 == sum(bill.usage["amount_minor"].to_list())
    assert all(not r["description"].startswith(("=", "+", "-", "@")) for r in rows)

    internal = dataclasses.replace(bill.unit, kind="internal")
    bill.unit = internal
    html = write_invoice(tmp_path / "internal", ctx, bill).read_text(encoding="utf-8")
    assert "statements/CHEM.xlsx (sheet Detail)" in html
    assert not (tmp_path / "internal" / "detail").exists()


def test_a_linked_credit_says_which_charge_it_corrects(out: tuple[str, Path]) -> None:
    from chargeback.documents.invoices import render_invoice

    url, _ = out
    ctx, bill = _bill(url, "2026-03", "ART")
    t1 = bill.usage.filter(bill.usage["reference"] == "T-1")["entry"].to_list()
    charge = next(line for line in bill.lines if line.entry == t1[0])
    credit = charge._replace(
        entry=charge.entry + 1000,
        kind="adjustment",
        amount_minor=-1000,
        reference="ADJ-9",
        memo="part of T-1 back",
        rate_source="manual adjustment against HELP:T-1",
    )
    bill.lines = [*bill.lines, credit]
    html = render_invoice(ctx, bill)
    row = re.search(rf'data-entry="{credit.entry}">(.*?)</tr>', html, re.S).group(1)
    assert f"corrects HELP:T-1 (charge {t1[0]})" in row
