"""Cost recovery: does each service center's billing break even over the fiscal year?

For fiscal year YYYY (it ends in YYYY and starts in the book's `fiscal_year_start`
month), per provider and period: the full cost (`provider_costs.csv`), internal and
external revenue (from the posted journal), the surplus or deficit, the balance carried
forward over the year (the sum of the surpluses of the periods with a cost) and the
recovery ratio (revenue / cost); per service, the
break-even rate (the service's share of the provider's cost, by revenue, divided by the
quantity billed) beside the rate in force at the end of the year and the average rate
billed (revenue / quantity). A provider more than
5% over or under break even over the year is flagged.

All arithmetic is exact (integers and fractions); the only rounding is the currency's,
half away from zero, and six places for rates.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from sqlalchemy import Connection, func, select

from chargeback.book.snapshot import load_reference
from chargeback.close.reconciliation import EXTERNAL_REVENUE, INTERNAL_REVENUE
from chargeback.core.calendar import fiscal_periods, period_bounds
from chargeback.core.errors import Refused
from chargeback.core.money import InCurrency, from_micro, from_minor, round_fraction
from chargeback.core.safe import neutralize
from chargeback.documents.workbooks import report_workbook
from chargeback.store.schema import Entry, Period, ProviderCost

#: A provider whose revenue is more than this share over or under its cost is flagged.
TOLERANCE = Fraction(5, 100)
RATE_PLACES = 6


class _Figures:
    """Revenue, surplus and recovery ratio from a cost and the two revenues."""

    cost: int | None
    internal: int
    external: int

    @property
    def revenue(self) -> int:
        return self.internal + self.external

    @property
    def surplus(self) -> int | None:
        return None if self.cost is None else self.revenue - self.cost

    @property
    def ratio(self) -> Fraction | None:
        return Fraction(self.revenue, self.cost) if self.cost else None


@dataclass
class PeriodLine(_Figures):
    """One provider in one period."""

    provider: str
    period: str
    status: str
    cost: int | None
    internal: int
    external: int
    balance: int | None = None


@dataclass
class ProviderLine(_Figures):
    """One provider over the fiscal year. When the provider has costs, the totals cover
    the periods that have a cost row (`months_costed`); revenue of other periods is
    reported apart (`uncosted_revenue`) and left out of the surplus and the ratio."""

    provider: str
    name: str
    cost: int | None
    internal: int
    external: int
    months_costed: int = 0
    uncosted_revenue: int = 0
    #: The service credits the provider gave for missed SLAs over the year (a positive
    #: amount); its revenue is already net of them.
    sla_credits: int = 0

    @property
    def flag(self) -> str:
        if self.cost is None:
            return "no cost data"
        if self.cost == 0:
            return "no cost" if self.revenue == 0 else "over-recovery"
        assert self.ratio is not None
        if self.ratio > 1 + TOLERANCE:
            return "over-recovery"
        if self.ratio < 1 - TOLERANCE:
            return "under-recovery"
        return ""


@dataclass
class ServiceLine:
    """One service over the fiscal year: its share of the cost and its break-even rate."""

    provider: str
    service: str
    name: str
    unit_of_measure: str
    revenue: int
    quantity_micro: int
    cost_share: int | None
    break_even_rate: Decimal | None
    current_rate: Decimal | None
    #: revenue / quantity billed: what was charged per unit on average (external sales
    #: and rate changes make it differ from the current internal rate).
    average_rate: Decimal | None = None


@dataclass
class Recovery(InCurrency):
    fiscal_year: int
    periods_of_year: list[str]
    currency: str
    digits: int
    periods: list[PeriodLine] = field(default_factory=list)
    providers: list[ProviderLine] = field(default_factory=list)
    services: list[ServiceLine] = field(default_factory=list)


def _decimal(value: Fraction, places: int) -> Decimal:
    """An exact fraction rounded half away from zero to `places` decimals."""
    return Decimal(round_fraction(value * 10**places)).scaleb(-places)


def percent(ratio: Fraction) -> str:
    """A ratio as a percentage with one decimal: `103.5%`."""
    return f"{_decimal(ratio * 100, 1)}%"


def recovery(conn: Connection, fiscal_year: int) -> Recovery:
    """The cost-recovery figures of a fiscal year, from provider costs and the journal."""
    if not 1000 <= fiscal_year <= 9999:
        raise Refused(f"--fiscal-year: {fiscal_year} is not a year (YYYY)")
    ref = load_reference(conn)
    periods = list(fiscal_periods(fiscal_year, ref.fiscal_year_start))
    result = Recovery(fiscal_year, periods, ref.currency, ref.digits)
    in_year = Entry.period.in_(periods)
    costs = {
        (p, period): int(amount)
        for p, period, amount in conn.execute(
            select(ProviderCost.provider, ProviderCost.period, ProviderCost.amount_minor).where(
                ProviderCost.period.in_(periods)
            )
        )
    }
    revenue: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for account, period, amount in conn.execute(
        select(Entry.credit_account, Entry.period, func.sum(Entry.amount_minor))
        .where(in_year)
        .group_by(Entry.credit_account, Entry.period)
    ):
        for prefix, slot in ((INTERNAL_REVENUE, 0), (EXTERNAL_REVENUE, 1)):
            if account.startswith(prefix):
                revenue[(account[len(prefix) :], period)][slot] += int(amount)
    credited = {
        provider: -int(amount)
        for provider, amount in conn.execute(
            select(Entry.provider, func.sum(Entry.amount_minor))
            .where(in_year, Entry.kind == "sla_credit")
            .group_by(Entry.provider)
        )
    }
    status = dict(conn.execute(select(Period.period, Period.status).where(Period.period.in_(periods))).all())
    providers = sorted({p for p, _ in costs} | {p for p, _ in revenue})
    for provider in providers:
        costed = any(p == provider for p, _ in costs)
        balance: int | None = None
        total = ProviderLine(
            provider, ref.units[provider].name if provider in ref.units else provider, 0 if costed else None, 0, 0
        )
        total.sla_credits = credited.get(provider, 0)
        for period in periods:
            cost = costs.get((provider, period))
            internal, external = revenue.get((provider, period), (0, 0))
            if cost is None and not internal and not external:
                continue
            line = PeriodLine(provider, period, status.get(period, "open"), cost, internal, external)
            if cost is not None:
                balance = (balance or 0) + line.revenue - cost
            line.balance = balance
            result.periods.append(line)
            if costed and cost is None:
                total.uncosted_revenue += line.revenue
                continue
            total.internal += internal
            total.external += external
            if cost is not None:
                total.cost = (total.cost or 0) + cost
                total.months_costed += 1
        result.providers.append(total)
    result.services = _services(conn, ref, periods, {p.provider: p for p in result.providers})
    return result


def _services(
    conn: Connection,
    ref,
    periods: list[str],
    providers: dict[str, ProviderLine],
) -> list[ServiceLine]:
    in_year = Entry.period.in_(periods)
    revenue = {
        s: int(a)
        for s, a in conn.execute(
            select(Entry.service, func.sum(Entry.amount_minor)).where(in_year).group_by(Entry.service)
        )
    }
    quantity = {
        s: int(q)
        for s, q in conn.execute(
            select(Entry.service, func.sum(Entry.quantity_micro))
            .where(in_year, Entry.kind.in_(("usage", "recurring")))
            .group_by(Entry.service)
        )
    }
    _, year_end = period_bounds(periods[-1])
    lines = []
    for code in sorted(ref.services):
        service = ref.services[code]
        owner = providers.get(service.provider)
        if owner is None or (code not in revenue and code not in quantity):
            continue
        earned = revenue.get(code, 0)
        billed = quantity.get(code, 0)
        share: Fraction | None = None
        if owner.cost is not None and owner.revenue > 0:
            share = Fraction(owner.cost) * earned / owner.revenue
        break_even = average = None
        if billed > 0:
            per_unit = Fraction(10**6, billed) / 10**ref.digits
            average = _decimal(earned * per_unit, RATE_PLACES)
            if share is not None:
                break_even = _decimal(share * per_unit, RATE_PLACES)
        rate = ref.rates.latest(code, "internal", year_end)
        lines.append(
            ServiceLine(
                service.provider,
                code,
                service.name,
                service.unit_of_measure,
                earned,
                billed,
                None if share is None else round_fraction(share),
                break_even,
                rate.rate if rate else None,
                average,
            )
        )
    return sorted(lines, key=lambda s: (s.provider, s.service))


def write_workbook(rec: Recovery, path: Path) -> None:
    """`recovery.xlsx`: sheets Summary (per provider over the year), Periods (per provider
    and period, with the balance carried forward) and Services (break-even rates).
    Written to a temporary file and moved into place, so no half-written file is left."""
    money_format = (f"#,##0.{'0' * rec.digits}" if rec.digits else "#,##0") + f' "{rec.currency}"'
    with report_workbook(path, "recovery") as book:
        _recovery_sheets(book, rec, money_format)


def _recovery_sheets(book, rec: Recovery, money_format: str) -> None:
    bold = book.add_format({"bold": True})
    styles: dict[str, object] = {}

    def style(fmt: str) -> object:
        return styles.get(fmt) or styles.setdefault(fmt, book.add_format({"num_format": fmt}))

    def sheet(
        title: str,
        header: list[str],
        rows: list[list[object]],
        formats: dict[int, str],
        first_width: float | None = None,
    ) -> None:
        """`formats`: a number format by column, counted from 1."""
        ws = book.add_worksheet(title)
        for col, title_text in enumerate(header):
            ws.write_string(0, col, title_text, bold)
            ws.set_column(col, col, max(12, len(title_text) + 2))
        if first_width:
            ws.set_column(0, 0, first_width)
        for row, values in enumerate(rows, 1):
            for col, value in enumerate(values):
                fmt = style(formats[col + 1]) if col + 1 in formats else None
                if value is None:
                    continue
                if isinstance(value, str):
                    ws.write_string(row, col, neutralize(value) or "", fmt)
                else:
                    ws.write_number(row, col, value, fmt)
        ws.freeze_panes(1, 0)
        ws.repeat_rows(0)

    def money(minor: int | None) -> Decimal | None:
        return None if minor is None else from_minor(minor, rec.digits)

    def ratio(value: Fraction | None) -> Decimal | None:
        return None if value is None else _decimal(value, 4)

    fy = f"FY{rec.fiscal_year} ({rec.periods_of_year[0]} to {rec.periods_of_year[-1]})"
    sheet(
        "Summary",
        [
            f"Provider ({fy})",
            "Name",
            "Full cost",
            "Internal revenue",
            "External revenue",
            "Surplus (deficit)",
            "Recovery ratio",
            "Flag",
            "Months with cost",
            "Revenue of months without cost",
            "SLA credits given (revenue is net of them)",
        ],
        [
            [
                p.provider,
                p.name,
                money(p.cost),
                money(p.internal),
                money(p.external),
                money(p.surplus),
                ratio(p.ratio),
                p.flag,
                p.months_costed,
                money(p.uncosted_revenue),
                money(p.sla_credits),
            ]
            for p in rec.providers
        ],
        {
            3: money_format,
            4: money_format,
            5: money_format,
            6: money_format,
            7: "0.00%",
            10: money_format,
            11: money_format,
        },
        first_width=30,
    )
    sheet(
        "Periods",
        [
            "Provider",
            "Period",
            "Status",
            "Full cost",
            "Internal revenue",
            "External revenue",
            "Surplus (deficit)",
            "Balance carried forward",
            "Recovery ratio",
        ],
        [
            [
                p.provider,
                p.period,
                p.status,
                money(p.cost),
                money(p.internal),
                money(p.external),
                money(p.surplus),
                money(p.balance),
                ratio(p.ratio),
            ]
            for p in rec.periods
        ],
        {4: money_format, 5: money_format, 6: money_format, 7: money_format, 8: money_format, 9: "0.00%"},
    )
    sheet(
        "Services",
        [
            "Provider",
            "Service",
            "Name",
            "Unit",
            "Revenue",
            "Cost share",
            "Quantity billed",
            "Break-even rate",
            "Current rate",
            "Average billed rate",
        ],
        [
            [
                s.provider,
                s.service,
                s.name,
                s.unit_of_measure,
                money(s.revenue),
                money(s.cost_share),
                from_micro(s.quantity_micro),
                s.break_even_rate,
                s.current_rate,
                s.average_rate,
            ]
            for s in rec.services
        ],
        {5: money_format, 6: money_format, 7: "#,##0.######", 8: "#,##0.00####", 9: "#,##0.00####", 10: "#,##0.00####"},
    )
