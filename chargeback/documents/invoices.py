"""Invoices (`invoices/<UNIT>.html`): one self-contained, print-ready page per consumer.

External customers get an invoice to pay; internal units get an internal charge notice,
settled by journal transfer. It lists the consumer's charges and, under each usage charge,
its usage lines, up to the book's `invoice_line_limit` lines in all; past it, it says where
every line is (the statement's `Detail` sheet, or `detail/<UNIT>.csv` written here for an
external customer), so a consumer of a million lines gets a readable page. The Jinja2
template (`templates/invoice.html.j2`) is compiled once per process, with autoescaping on,
so text from input files is shown, never run. The tables of services and lines are written
with autoescaping off, their texts escaped here once per distinct text (`html`): a big
invoice has hundreds of services and thousands of lines, and escaping in the template took
about half its work.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from itertools import groupby
from pathlib import Path
from typing import NamedTuple

import jinja2
import polars as pl
from markupsafe import Markup, escape

from chargeback.bundled import bundled
from chargeback.core.money import format_grouped, grouped_micro
from chargeback.core.safe import file_in
from chargeback.documents.bills import Bill, DocumentContext, Line, decimal_text, neutralized
from chargeback.ledger.cloud import AMOUNT_PRICE

TEMPLATE = "invoice.html.j2"
NET_DAYS = re.compile(r"\bnet\s*(\d{1,3})\b", re.IGNORECASE)


#: The note of an SLA credit (`bills.Line.notes`); the invoice tags it with its rate source.
SLA_NOTE = "service level missed"


@lru_cache(maxsize=1)
def template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(bundled("templates"))),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(TEMPLATE)


def invoice_number(ctx: DocumentContext, code: str, external: bool, revision: int | None = None) -> str:
    """Stable for a period, a unit and a version of the period's documents:
    `INV-202603-EXT-1`, `ICN-202603-ART`, then `ICN-202603-ART-R2` once revised."""
    return f"{'INV' if external else 'ICN'}-{ctx.period.replace('-', '')}-{code}{ctx.revision.suffix(revision)}"


def due_date(terms: str | None, issued: dt.date) -> dt.date | None:
    """The due date of "Net 30"-style payment terms, if the terms say so."""
    found = NET_DAYS.search(terms or "")
    return issued + dt.timedelta(days=int(found.group(1))) if found else None


def money(ctx: DocumentContext, minor: int) -> str:
    return format_grouped(minor, ctx.digits)


class Shown(NamedTuple):
    """A line as the invoice shows it, worked out in Python once (a big consumer's
    invoice has thousands of lines): its texts HTML-escaped, its figures formatted. The
    template unpacks it and only places the values."""

    entry: int
    date: str
    memo: str
    notes: list[tuple[Markup, Markup]]  # (tag, text)
    reference: str
    quantity: str
    rate: str
    amount: str
    credit: bool
    adjustment: bool
    usage: list[UsageShown]  # its usage lines shown under it


class UsageShown(NamedTuple):
    """A usage line under its charge: date, reference, description, quantity, rate (none
    when priced over several tiers) and amount, HTML-escaped and formatted."""

    date: str
    reference: str
    description: str
    quantity: str
    rate: str
    amount: str


class ServiceGroup(NamedTuple):
    """A service's lines on an invoice; `label` and `unit_of_measure` HTML-escaped."""

    code: Markup
    label: Markup
    unit_of_measure: Markup
    lines: list[Shown]
    charges: int  # how many
    total: str  # the sum of the lines' amounts, as the invoice shows it


class ProviderGroup(NamedTuple):
    """A provider's services on an invoice; `code` and `label` HTML-escaped."""

    code: Markup
    label: Markup
    services: list[ServiceGroup]
    total: str  # the sum of its services' totals, as the invoice shows it


_SPECIAL = re.compile("[&<>\"']")


@lru_cache(maxsize=100_000)
def html(text: str) -> Markup:
    """`text` HTML-escaped, worked out once per distinct text: codes, labels and memos
    repeat across invoices (references mostly do not: `html_once`). A Markup, which the
    template's autoescaping, where it is on, leaves as it is."""
    return escape(text)


def html_once(text: str) -> str:
    """`html` for a text seen once (a reference), not remembered."""
    return str(escape(text)) if _SPECIAL.search(text) else text


def _usage_shown(ctx: DocumentContext, usage: pl.DataFrame) -> dict[int, list[UsageShown]]:
    """The usage lines an invoice shows (the first `ctx.invoice_line_limit` of the
    consumer's, in charge order) by charge."""
    shown: dict[int, list[UsageShown]] = {}
    digits = ctx.digits
    for entry, date, reference, description, quantity, rate, amount, tiers in (
        usage.head(ctx.invoice_line_limit)
        .select("entry", "date", "reference", "description", "quantity_micro", "rate_micro", "amount_minor", "tiers")
        .iter_rows()
    ):
        shown.setdefault(entry, []).append(
            UsageShown(
                date.isoformat(),
                html_once(reference) if reference else "",
                html(description) if description else "",
                grouped_micro(quantity),
                grouped_micro(rate, digits) if rate is not None else ("tiers" if tiers else AT_COST),
                money(ctx, amount),
            )
        )
    return shown


#: The rate shown for a line priced by its amount (a cloud bill's: cost basis with markup).
AT_COST = "at cost"
#: A linked credit's rate source names the charge it corrects (`charges.adjustment_source`).
AGAINST = "manual adjustment against "


def _groups(
    ctx: DocumentContext,
    lines: list[Line],
    usage: dict[int, list[UsageShown]] | None = None,
    charges_of: dict[tuple[str, str], int] | None = None,
    consumer: str = "",
) -> list[ProviderGroup]:
    """Charges by provider, then service (they arrive in that order), each with the usage
    lines shown under it; `charges_of`: the charge (entry) of each (service, reference)
    of the `consumer`'s usage lines, which a linked credit names, with the period and
    amount of the charge it corrects (`DocumentContext.linked`)."""
    charges_of = charges_of or {}
    first_day = ctx.first_day
    dates: dict[dt.date, str] = {}
    quantities: dict[int, str] = {}
    rates: dict[int | None, str] = {None: ""}
    under = usage or {}

    def shown(line: Line) -> Shown:
        date = dates.get(line.service_date)
        if date is None:
            date = dates[line.service_date] = line.service_date.isoformat()
        quantity = quantities.get(line.quantity_micro)
        if quantity is None:
            quantity = quantities[line.quantity_micro] = grouped_micro(line.quantity_micro)
        micro = line.rate_micro
        rate = rates.get(micro)
        if rate is None:
            rate = rates[micro] = "" if micro is None else grouped_micro(micro, ctx.digits)
        if line.rate_micro is None and line.kind == "usage":
            rate = AT_COST if (line.rate_source or "").startswith(AMOUNT_PRICE) else "tiers"
        notes = [(html(note.split(" ")[0]), html(note)) for note in line.notes(first_day) if note != SLA_NOTE]
        source = line.rate_source or ""
        if line.kind == "adjustment" and source.startswith(AGAINST):
            target = source[len(AGAINST) :]
            service, _, reference = target.partition(":")
            charge = charges_of.get((service, reference))
            original = ctx.linked.get((service, reference, consumer))
            where = f", charged in {', '.join(original[0])}: {money(ctx, original[1])}" if original else ""
            notes.append(
                (html("adjustment"), html(f"corrects {target}{where}" + (f" (charge {charge})" if charge else "")))
            )
        if line.kind == "sla_credit":
            notes.append((html("sla"), html(f"{SLA_NOTE}: {source}")))
            quantity = ""
        return Shown(
            line.entry,
            date,
            html(line.memo) if line.memo else "",
            notes,
            html_once(line.reference) if line.reference else "",
            quantity,
            rate,
            money(ctx, line.amount_minor),
            line.amount_minor < 0,
            line.kind == "adjustment",
            under.get(line.entry, []),
        )

    groups = []
    for provider, by_provider in groupby(lines, key=lambda line: line.provider):
        services = []
        provider_total = 0
        for service, by_service in groupby(by_provider, key=lambda line: line.service):
            items = list(by_service)
            total = sum(line.amount_minor for line in items)
            provider_total += total
            services.append(
                ServiceGroup(
                    html(service),
                    html(ctx.service_label(service)),
                    html(ctx.unit_of_measure(service)),
                    [shown(line) for line in items],
                    len(items),
                    money(ctx, total),
                )
            )
        groups.append(
            ProviderGroup(html(provider), html(ctx.unit_label(provider)), services, money(ctx, provider_total))
        )
    return groups


def detail_name(code: str, external: bool) -> str:
    """Where every usage line of a consumer is, past its invoice's limit: for an external
    customer `detail/<UNIT>.csv`, for an internal unit its statement's Detail sheet."""
    if external:
        return f"detail/{file_in(Path('detail'), code, '.csv').name}"
    return f"statements/{file_in(Path('statements'), code, '.xlsx').name} (sheet Detail)"


def render_invoice(ctx: DocumentContext, bill: Bill) -> str:
    unit = bill.unit
    external = unit.kind == "external"
    issued = ctx.issued.date()
    linked = [
        (line.rate_source or "")[len(AGAINST) :].split(":", 1)
        for line in bill.lines
        if line.kind == "adjustment" and (line.rate_source or "").startswith(AGAINST)
    ]
    charges_of: dict[tuple[str, str], int] = {}
    if linked:
        for service, reference, entry in (
            bill.usage.filter(
                pl.struct("service", "reference").is_in([{"service": s, "reference": r} for s, r in linked])
            )
            .select("service", "reference", "entry")
            .iter_rows()
        ):
            charges_of[(service, reference)] = entry
    groups = _groups(ctx, bill.lines, _usage_shown(ctx, bill.usage), charges_of, unit.code)
    lines_total = bill.usage.height
    lines_shown = min(lines_total, ctx.invoice_line_limit)
    marks = {"late": 0, "credit": 0, "adjustment": 0, "sla": 0}
    first_day = ctx.first_day
    for line in bill.lines:
        marks["late"] += line.service_date < first_day
        marks["credit"] += line.amount_minor < 0
        marks["adjustment"] += line.kind == "adjustment"
        marks["sla"] += line.kind == "sla_credit"
    return template().render(
        ctx=ctx,
        unit=unit,
        external=external,
        groups=groups,
        marks=marks,
        number=invoice_number(ctx, unit.code, external),
        replaces=invoice_number(ctx, unit.code, external, ctx.revision.replaces) if ctx.revision.replaces else None,
        changes=ctx.revision.changes.get(unit.code),
        issued=issued,
        due=due_date(ctx.payment_terms, issued) if external else None,
        total_minor=bill.total_minor,
        lines_total=lines_total,
        lines_shown=lines_shown,
        detail=detail_name(unit.code, external),
        money=lambda minor: money(ctx, minor),
        debit_account=f"expenses:internal:{unit.code}",
    )


def invoice_path(folder: Path, code: str) -> Path:
    return file_in(folder / "invoices", code, ".html")


def write_invoice(folder: Path, ctx: DocumentContext, bill: Bill) -> Path:
    """`invoices/<UNIT>.html` of one consumer, and, for an external customer with more
    usage lines than an invoice lists, `detail/<UNIT>.csv` of every one of them."""
    path = invoice_path(folder, bill.unit.code)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_invoice(ctx, bill), encoding="utf-8", newline="\n")
    if bill.unit.kind == "external" and bill.usage.height > ctx.invoice_line_limit:
        write_detail_csv(folder, ctx, bill)
    return path


#: `detail/<UNIT>.csv`'s columns, in order.
DETAIL_HEADER = ["entry", "usage_id", "date", "service", "reference", "description", "quantity", "rate", "amount"]


def write_detail_csv(folder: Path, ctx: DocumentContext, bill: Bill) -> Path:
    """`detail/<UNIT>.csv`: every usage line of an external customer's invoice, with its
    charge (`entry`), in the invoice's order; text from input neutralized."""
    path = file_in(folder / "detail", bill.unit.code, ".csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    bill.usage.select(
        "entry",
        "usage_id",
        pl.col("date").dt.to_string("%Y-%m-%d"),
        "service",
        neutralized("reference"),
        neutralized("description"),
        decimal_text("quantity_micro", 6, trim=True).alias("quantity"),
        decimal_text("rate_micro", 6, trim=True).alias("rate"),
        decimal_text("amount_minor", ctx.digits).alias("amount"),
    ).write_csv(path, line_terminator="\n", null_value="", quote_style="necessary")
    return path
