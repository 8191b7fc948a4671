"""A book: the reference data of one organization, read from a folder and loaded.

`read_book` validates every file of the folder (book.toml, units.csv, services.csv,
rates.csv, recurring.csv, the allocation files allocations.csv, costs.csv, drivers.csv,
provider_costs.csv, and budgets.csv) and collects every problem; `load_book` stores a
valid book, updating what was loaded before without touching anything already posted.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, Field, StrictInt, ValidationError, field_validator
from sqlalchemy import Connection, delete, func, insert, select, union_all, update

from chargeback.book.cloud import CloudConfig, Rule, check_cloud, read_rules, store_cloud
from chargeback.core.allocation import EQUAL, parse_driver, parse_targets
from chargeback.core.errors import InputRefused, Problem, Refused
from chargeback.core.fields import (
    Amount,
    Code,
    Date,
    FileRecord,
    OptionalCode,
    OptionalDate,
    OptionalInteger,
    OptionalPeriod,
    OptionalText,
    PeriodText,
    Quantity,
    RateValue,
    Text,
    UnitClass,
    Year,
    problems_of,
)
from chargeback.core.money import known_currency, minor_digits, quantize, to_micro, to_minor
from chargeback.core.pricing import RateRow, overlapping, without_base_tier
from chargeback.ingest.tabular import Columns, read_rows
from chargeback.store.schema import (
    Adjustment,
    Allocation,
    Book,
    Budget,
    CloudRule,
    Cost,
    Driver,
    Entry,
    ProviderCost,
    Rate,
    Recurring,
    Service,
    ServiceLevel,
    SlaCreditBand,
    SlaMeasurement,
    Unit,
    Usage,
)


class Settings(FileRecord):
    """`book.toml`."""

    name: str = Field(min_length=1, max_length=200)
    currency: str
    fiscal_year_start: StrictInt = Field(default=7, ge=1, le=12)
    payment_terms: str | None = None
    allocation_method: Literal["direct", "step", "reciprocal"] = "direct"
    variance_threshold: Decimal = Field(default=Decimal("0.25"), ge=0)
    invoice_line_limit: StrictInt = Field(default=300, ge=1, le=100_000)
    sla_missing: Literal["warn", "refuse"] = "warn"
    cloud: CloudConfig | None = None

    @field_validator("name", "payment_terms")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("holds a line break or another control character: write it on one line")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not known_currency(value):
            raise ValueError(f"{value!r} is not an ISO 4217 currency code (USD, EUR, JPY...)")
        return value

    @field_validator("variance_threshold", mode="before")
    @classmethod
    def _threshold(cls, value: object) -> object:
        if isinstance(value, float):
            return Decimal(str(value))
        return value


class UnitRow(FileRecord):
    code: Code
    name: Text
    kind: UnitClass = "internal"
    parent: OptionalCode = None
    manager: OptionalText = None
    email: OptionalText = None
    active_from: OptionalDate = None
    active_to: OptionalDate = None
    expense_account: OptionalText = None
    revenue_account: OptionalText = None


class ServiceRow(FileRecord):
    code: Code
    provider: Code
    name: Text
    unit_of_measure: Text
    description: OptionalText = None


class RateFileRow(FileRecord):
    service: Code
    customer_class: UnitClass = "internal"
    effective_from: Date
    effective_to: OptionalDate = None
    rate: RateValue
    tier_from: Quantity = Decimal(0)

    @field_validator("tier_from", mode="before")
    @classmethod
    def _tier(cls, value: object) -> object:
        return "0" if value in (None, "") or str(value).strip() == "" else value


class RecurringRow(FileRecord):
    service: Code
    consumer: Code
    quantity: Quantity
    from_period: PeriodText
    to_period: OptionalPeriod = None
    description: OptionalText = None


def _driver_text(value: str) -> str:
    return parse_driver(value).text


def _targets_text(value: str) -> str:
    return parse_targets(value).text


class AllocationRow(FileRecord):
    pool: Code
    provider: Code
    service: Code
    driver: Annotated[Text, AfterValidator(_driver_text)]
    targets: Annotated[Text, AfterValidator(_targets_text)]
    order: OptionalInteger = None


class CostRow(FileRecord):
    period: PeriodText
    pool: Code
    amount: Amount


class DriverRow(FileRecord):
    period: PeriodText
    driver: Code
    unit: Code
    value: Quantity


class ProviderCostRow(FileRecord):
    period: PeriodText
    provider: Code
    amount: Amount


class BudgetRow(FileRecord):
    """A unit's internal-spend budget for the fiscal year that ends in `fiscal_year`."""

    fiscal_year: Year
    unit: Code
    amount: Amount


class SlaRow(FileRecord):
    """An SLA: a service's target for a metric, for consumers of one class."""

    service: Code
    metric: Code
    unit: Literal["percent", "hours", "minutes", "count"]
    target: Quantity
    direction: Literal["min", "max"]
    customer_class: UnitClass = "internal"
    effective_from: Date
    effective_to: OptionalDate = None
    description: OptionalText = None

    @field_validator("unit", "direction", mode="before")
    @classmethod
    def _word(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


class SlaCreditRow(FileRecord):
    """A graduated credit: a miss beyond `breach_from` gives `credit_percent` of the charges."""

    service: Code
    metric: Code
    breach_from: Quantity
    credit_percent: Quantity


UNITS = Columns(
    ("code", "name"),
    ("kind", "parent", "manager", "email", "active_from", "active_to", "expense_account", "revenue_account"),
)
SERVICES = Columns(("code", "provider", "name", "unit_of_measure"), ("description",))
RATES = Columns(("service", "effective_from", "rate"), ("customer_class", "effective_to", "tier_from"))
RECURRING = Columns(("service", "consumer", "quantity", "from_period"), ("to_period", "description"))
ALLOCATIONS = Columns(("pool", "provider", "service", "driver", "targets"), ("order",))
COSTS = Columns(("period", "pool", "amount"))
DRIVERS = Columns(("period", "driver", "unit", "value"))
PROVIDER_COSTS = Columns(("period", "provider", "amount"))
BUDGETS = Columns(("fiscal_year", "unit", "amount"))
SLAS = Columns(
    ("service", "metric", "unit", "target", "direction", "effective_from"),
    ("customer_class", "effective_to", "description"),
)
SLA_CREDITS = Columns(("service", "metric", "breach_from", "credit_percent"))


@dataclass
class BookData:
    """A validated book, ready to load: every file's rows, checked against each other."""

    settings: Settings
    units: list[UnitRow]
    services: list[ServiceRow]
    rates: list[RateFileRow]
    recurring: list[RecurringRow]
    allocations: list[AllocationRow]
    costs: list[CostRow]
    drivers: list[DriverRow]
    provider_costs: list[ProviderCostRow]
    budgets: list[BudgetRow]
    slas: list[SlaRow]
    sla_credits: list[SlaCreditRow]
    cloud_rules: list[Rule]


#: The model of a book file's row (`UnitRow`, `RateFileRow`...).
Row = TypeVar("Row", bound=FileRecord)


def _read_file(
    folder: Path, name: str, columns: Columns, model: type[Row], problems: list[Problem], required: bool = True
) -> list[tuple[int, Row]]:
    path = folder / name
    if not path.exists():
        if required:
            problems.append(Problem(name, 0, "-", f"file is missing from the book folder {folder}"))
        return []
    rows = []
    for line, values in read_rows(path, columns, problems, name):
        try:
            rows.append((line, model.model_validate(values)))
        except ValidationError as exc:
            problems.extend(problems_of(exc, name, line))
    return rows


def _read_settings(folder: Path, problems: list[Problem]) -> Settings | None:
    path = folder / "book.toml"
    if not path.exists():
        problems.append(Problem("book.toml", 0, "-", f"file is missing from the book folder {folder}"))
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        where = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        problems.append(Problem("book.toml", int(where.group(1)) if where else 0, "-", f"not valid TOML: {exc}"))
        return None
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        for item in exc.errors():
            key = ".".join(str(part) for part in item["loc"]) if item["loc"] else "-"
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                keys = CloudConfig.model_fields if key.startswith("cloud.") else Settings.model_fields
                message = "unknown key; the keys are: " + ", ".join(keys)
            line = _toml_line(path, key.split(".")[-1])
            problems.append(Problem("book.toml", line, key, message))
        return None


def _toml_line(path: Path, key: str) -> int:
    for number, text in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if text.strip().startswith(key):
            return number
    return 0


def read_book(folder: Path) -> BookData:
    """Read and check a book folder; raises `InputRefused` listing every problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise Refused(f"{folder}: not a book folder")
    problems: list[Problem] = []
    settings = _read_settings(folder, problems)
    units = _read_file(folder, "units.csv", UNITS, UnitRow, problems)
    services = _read_file(folder, "services.csv", SERVICES, ServiceRow, problems)
    rates = _read_file(folder, "rates.csv", RATES, RateFileRow, problems)
    recurring = _read_file(folder, "recurring.csv", RECURRING, RecurringRow, problems, required=False)
    budgets = _read_file(folder, "budgets.csv", BUDGETS, BudgetRow, problems, required=False)
    _check_units(units, problems)
    unit_kind = {u.code: u.kind for _, u in units}
    _check_services(services, unit_kind, problems)
    service_provider = {s.code: s.provider for _, s in services}
    _check_rates(rates, service_provider, problems)
    _check_recurring(recurring, service_provider, unit_kind, problems)
    allocations = _read_file(folder, "allocations.csv", ALLOCATIONS, AllocationRow, problems, required=False)
    costs = _read_file(folder, "costs.csv", COSTS, CostRow, problems, required=False)
    drivers = _read_file(folder, "drivers.csv", DRIVERS, DriverRow, problems, required=False)
    provider_costs = _read_file(folder, "provider_costs.csv", PROVIDER_COSTS, ProviderCostRow, problems, required=False)
    digits = minor_digits(settings.currency) if settings else None
    driver_names = {d.driver for _, d in drivers}
    method = settings.allocation_method if settings else "direct"
    _check_allocations(allocations, method, service_provider, unit_kind, driver_names, problems)
    _check_costs(costs, {a.pool for _, a in allocations}, digits, problems)
    _check_drivers(drivers, unit_kind, problems)
    _check_provider_costs(provider_costs, unit_kind, digits, problems)
    _check_budgets(budgets, unit_kind, settings, problems)
    slas = _read_file(folder, "slas.csv", SLAS, SlaRow, problems, required=False)
    sla_credits = _read_file(folder, "sla_credits.csv", SLA_CREDITS, SlaCreditRow, problems, required=False)
    _check_slas(slas, sla_credits, service_provider, problems)
    cloud = settings.cloud if settings else None
    cloud_rules = read_rules(folder, cloud, problems)
    check_cloud(cloud, cloud_rules, unit_kind, service_provider, {a.pool for _, a in allocations}, problems)
    if problems or settings is None:
        raise InputRefused(sorted(set(problems)), what="load")
    return BookData(
        settings=settings,
        units=[u for _, u in units],
        services=[s for _, s in services],
        rates=[r for _, r in rates],
        recurring=[r for _, r in recurring],
        allocations=[a for _, a in allocations],
        costs=[c for _, c in costs],
        drivers=[d for _, d in drivers],
        provider_costs=[c for _, c in provider_costs],
        budgets=[b for _, b in budgets],
        slas=[r for _, r in slas],
        sla_credits=[r for _, r in sla_credits],
        cloud_rules=cloud_rules,
    )


def _check_units(rows: list[tuple[int, UnitRow]], problems: list[Problem]) -> None:
    name = "units.csv"
    first_line: dict[str, int] = {}
    for line, unit in rows:
        _check_first_use(name, line, "code", unit.code, first_line, problems)
        if unit.active_from and unit.active_to and unit.active_to < unit.active_from:
            problems.append(Problem(name, line, "active_to", "is before active_from"))
    parents = {u.code: u.parent for _, u in rows}
    for line, unit in rows:
        if unit.parent is None:
            continue
        if unit.parent not in parents:
            problems.append(Problem(name, line, "parent", f"{unit.parent!r} is not a unit code in units.csv"))
            continue
        seen: set[str] = {unit.code}
        cursor: str | None = unit.parent
        while cursor is not None:
            if cursor in seen:
                problems.append(
                    Problem(name, line, "parent", f"{unit.code!r} is its own ancestor (a cycle through {cursor!r})")
                )
                break
            seen.add(cursor)
            cursor = parents.get(cursor)


def _check_services(rows, unit_kind: Mapping[str, str], problems: list[Problem]) -> None:
    name = "services.csv"
    first_line: dict[str, int] = {}
    for line, service in rows:
        _check_first_use(name, line, "code", service.code, first_line, problems)
        _check_internal(
            name,
            line,
            "provider",
            service.provider,
            unit_kind,
            problems,
            external="an external unit; a provider must be internal",
        )


def _check_rates(rows, service_provider: dict[str, str], problems: list[Problem]) -> None:
    name = "rates.csv"
    lines: dict[RateRow, int] = {}
    for line, rate in rows:
        if rate.service not in service_provider:
            problems.append(Problem(name, line, "service", f"{rate.service!r} is not a service code in services.csv"))
        if rate.rate < 0:
            problems.append(Problem(name, line, "rate", "must not be negative"))
        if rate.tier_from < 0:
            problems.append(Problem(name, line, "tier_from", "must not be negative"))
        if rate.effective_to and rate.effective_to < rate.effective_from:
            problems.append(Problem(name, line, "effective_to", "is before effective_from"))
            continue
        lines[_rate_row(rate)] = line
    for earlier, later in overlapping(lines):
        problems.append(
            Problem(
                name,
                lines[later],
                "effective_from",
                f"overlaps the rate on line {lines[earlier]} for {later.service} {later.customer_class}"
                + (f" tier {later.tier_from}" if later.tier_from else "")
                + ": end the earlier range before this one starts",
            )
        )
    for row in without_base_tier(lines):
        problems.append(
            Problem(
                name,
                lines[row],
                "tier_from",
                f"tier {row.tier_from} of {row.service} {row.customer_class} is in force on days with "
                "no base tier (tier_from 0): graduated tiers need a tier 0 row over the same dates",
            )
        )


def _rate_row(rate: RateFileRow) -> RateRow:
    return RateRow(rate.service, rate.customer_class, rate.effective_from, rate.effective_to, rate.rate, rate.tier_from)


def _check_recurring(rows, service_provider, unit_kind, problems: list[Problem]) -> None:
    name = "recurring.csv"
    for line, fee in rows:
        provider = service_provider.get(fee.service)
        if provider is None:
            problems.append(Problem(name, line, "service", f"{fee.service!r} is not a service code in services.csv"))
        if fee.consumer not in unit_kind:
            problems.append(Problem(name, line, "consumer", f"{fee.consumer!r} is not a unit code in units.csv"))
        elif fee.consumer == provider:
            problems.append(
                Problem(name, line, "consumer", f"{fee.consumer!r} provides {fee.service}: a unit cannot charge itself")
            )
        if fee.quantity == 0:
            problems.append(Problem(name, line, "quantity", "must not be zero"))
        if fee.to_period and fee.to_period < fee.from_period:
            problems.append(Problem(name, line, "to_period", "is before from_period"))


def _check_allocations(
    rows,
    method: str,
    service_provider: dict[str, str],
    unit_kind: Mapping[str, str],
    driver_names: set[str],
    problems: list[Problem],
) -> None:
    name = "allocations.csv"
    first_line: dict[str, int] = {}
    orders: dict[int, str] = {}
    pools_of: dict[str, str] = {}
    for line, pool in rows:
        if not _check_first_use(name, line, "pool", pool.pool, first_line, problems):
            continue
        _check_internal(name, line, "provider", pool.provider, unit_kind, problems)
        owner = service_provider.get(pool.service)
        if owner is None:
            problems.append(Problem(name, line, "service", f"{pool.service!r} is not a service code in services.csv"))
        elif owner != pool.provider:
            problems.append(
                Problem(
                    name,
                    line,
                    "service",
                    f"pool {pool.pool}: {pool.service} is a service of {owner}, not of {pool.provider}",
                )
            )
        driver = parse_driver(pool.driver)
        if driver.kind in ("usage", "amount") and driver.name not in service_provider:
            problems.append(
                Problem(
                    name, line, "driver", f"pool {pool.pool}: {driver.name!r} is not a service code in services.csv"
                )
            )
        elif driver.kind == "named" and driver.name not in driver_names:
            problems.append(
                Problem(
                    name,
                    line,
                    "driver",
                    f"pool {pool.pool}: unknown driver {driver.name!r}: it has no rows in drivers.csv "
                    "(write a driver name used there, usage:SERVICE or equal)",
                )
            )
        targets = parse_targets(pool.targets)
        for code in targets.codes:
            if targets.kind == "parent":
                if code not in unit_kind:
                    problems.append(
                        Problem(name, line, "targets", f"pool {pool.pool}: {code!r} is not a unit code in units.csv")
                    )
            elif code == pool.provider:
                problems.append(
                    Problem(
                        name,
                        line,
                        "targets",
                        f"pool {pool.pool}: {code} is the pool's provider: a unit cannot charge itself",
                    )
                )
            else:
                _check_internal(name, line, "targets", code, unit_kind, problems, f"pool {pool.pool}: ")
        if method == "step":
            if pool.order is None:
                problems.append(
                    Problem(
                        name,
                        line,
                        "order",
                        f'pool {pool.pool} has no order: allocation_method = "step" needs one for every pool',
                    )
                )
            elif pool.order in orders:
                problems.append(
                    Problem(
                        name,
                        line,
                        "order",
                        f"pool {pool.pool}: order {pool.order} is also the order of pool {orders[pool.order]}",
                    )
                )
            else:
                orders[pool.order] = pool.pool
        if method in ("step", "reciprocal"):
            if pool.provider in pools_of:
                problems.append(
                    Problem(
                        name,
                        line,
                        "provider",
                        f"pool {pool.pool}: {pool.provider} also provides pool {pools_of[pool.provider]}; "
                        f'with allocation_method = "{method}" a provider owns at most one pool',
                    )
                )
            else:
                pools_of[pool.provider] = pool.pool


def _check_internal(
    name: str,
    line: int,
    column: str,
    code: str,
    unit_kind: Mapping[str, str],
    problems: list[Problem],
    prefix: str = "",
    external: str = "an external unit; it must be internal",
) -> None:
    """`code` must be a unit of units.csv and an internal one; `external` says why."""
    kind = unit_kind.get(code)
    if kind is None:
        problems.append(Problem(name, line, column, f"{prefix}{code!r} is not a unit code in units.csv"))
    elif kind != "internal":
        problems.append(Problem(name, line, column, f"{prefix}{code!r} is {external}"))


def _check_money(
    name: str, line: int, column: str, amount: Decimal, digits: int | None, problems: list[Problem]
) -> None:
    if amount < 0:
        problems.append(Problem(name, line, column, "must not be negative"))
    elif digits is not None and quantize(amount, digits) != amount:
        problems.append(Problem(name, line, column, f"{amount} has more decimal places than the currency's {digits}"))


def _check_first_use(
    name: str, line: int, column: str, code: str, first_line: dict[str, int], problems: list[Problem]
) -> bool:
    """Whether `line` is the first to use the code `code` in the file (`_check_unique`)."""
    return _check_unique(name, line, column, code, first_line, repr(code), problems, "used")


def _check_unique(
    name: str,
    line: int,
    column: str,
    key: object,
    seen: dict,
    what: str,
    problems: list[Problem],
    done: str = "given",
) -> bool:
    """Whether `line` is the first with `key` in the file (`seen` records it); a problem
    naming `what` and the earlier line when not."""
    if key in seen:
        problems.append(Problem(name, line, column, f"{what} is already {done} on line {seen[key]}"))
        return False
    seen[key] = line
    return True


def _check_costs(rows, pools: set[str], digits: int | None, problems: list[Problem]) -> None:
    name = "costs.csv"
    seen: dict[tuple[str, str], int] = {}
    for line, cost in rows:
        if cost.pool not in pools:
            problems.append(Problem(name, line, "pool", f"{cost.pool!r} is not a pool in allocations.csv"))
        _check_cost(
            name, line, "pool", (cost.period, cost.pool), f"pool {cost.pool}", cost.amount, digits, seen, problems
        )


def _check_cost(
    name: str,
    line: int,
    column: str,
    key: tuple[str, str],
    label: str,
    amount: Decimal,
    digits: int | None,
    seen: dict[tuple[str, str], int],
    problems: list[Problem],
) -> None:
    """A cost of one period (`key`: the period and the pool or provider named by `label`):
    an amount of the currency, given once a period."""
    _check_money(name, line, "amount", amount, digits, problems)
    _check_unique(name, line, column, key, seen, f"the cost of {label} in {key[0]}", problems)


def _check_drivers(rows, unit_kind: Mapping[str, str], problems: list[Problem]) -> None:
    name = "drivers.csv"
    seen: dict[tuple[str, str, str], int] = {}
    for line, row in rows:
        if row.driver == EQUAL:
            problems.append(
                Problem(name, line, "driver", f"{EQUAL!r} is reserved: it needs no rows; choose another name")
            )
        if row.unit not in unit_kind:
            problems.append(Problem(name, line, "unit", f"{row.unit!r} is not a unit code in units.csv"))
        if row.value < 0:
            problems.append(Problem(name, line, "value", "must not be negative"))
        _check_unique(
            name,
            line,
            "unit",
            (row.period, row.driver, row.unit),
            seen,
            f"the {row.driver} of {row.unit} in {row.period}",
            problems,
        )


def _check_provider_costs(
    rows,
    unit_kind: Mapping[str, str],
    digits: int | None,
    problems: list[Problem],
) -> None:
    name = "provider_costs.csv"
    seen: dict[tuple[str, str], int] = {}
    for line, row in rows:
        _check_internal(name, line, "provider", row.provider, unit_kind, problems)
        _check_cost(
            name, line, "provider", (row.period, row.provider), row.provider, row.amount, digits, seen, problems
        )


def _check_budgets(rows, unit_kind, settings: Settings | None, problems: list[Problem]) -> None:
    name = "budgets.csv"
    currency = settings.currency if settings else None
    digits = minor_digits(currency) if currency else None
    first_line: dict[tuple[int, str], int] = {}
    for line, budget in rows:
        _check_internal(
            name,
            line,
            "unit",
            budget.unit,
            unit_kind,
            problems,
            external="an external customer: budgets are for internal units' spend",
        )
        key = (budget.fiscal_year, budget.unit)
        if key in first_line:
            problems.append(
                Problem(
                    name,
                    line,
                    "unit",
                    f"{budget.unit!r} already has a budget for "
                    f"fiscal year {budget.fiscal_year} on line {first_line[key]}",
                )
            )
        else:
            first_line[key] = line
        if budget.amount < 0:
            problems.append(Problem(name, line, "amount", "must not be negative"))
        elif digits is not None and budget.amount != quantize(budget.amount, digits):
            problems.append(
                Problem(
                    name,
                    line,
                    "amount",
                    f"amount '{budget.amount}' has more than {digits} decimal places ({currency})",
                )
            )


def _check_slas(slas, credits, service_provider: dict[str, str], problems: list[Problem]) -> None:
    """One SLA per (service, metric, class) in force on a date; every band names an SLA's
    metric, gives 0-100 percent (more than 0) and is not given twice."""
    name = "slas.csv"
    spans: dict[tuple[str, str, str], list[tuple[int, SlaRow]]] = {}
    units: dict[tuple[str, str], tuple[str, str]] = {}
    for line, sla in slas:
        if sla.service not in service_provider:
            problems.append(Problem(name, line, "service", f"{sla.service!r} is not a service code in services.csv"))
        if sla.effective_to and sla.effective_to < sla.effective_from:
            problems.append(Problem(name, line, "effective_to", "is before effective_from"))
            continue
        if sla.unit == "percent" and not 0 <= sla.target <= 100:
            problems.append(Problem(name, line, "target", f"{sla.target} is not a percentage between 0 and 100"))
        key = (sla.service, sla.metric)
        if key in units and units[key] != (sla.unit, sla.direction):
            problems.append(
                Problem(
                    name,
                    line,
                    "unit",
                    f"{sla.service} {sla.metric} is measured in {units[key][0]} with direction {units[key][1]} "
                    "on another line: one metric has one unit and direction",
                )
            )
        units.setdefault(key, (sla.unit, sla.direction))
        for other_line, other in spans.get((sla.service, sla.metric, sla.customer_class), []):
            if sla.effective_from <= (other.effective_to or dt.date.max) and other.effective_from <= (
                sla.effective_to or dt.date.max
            ):
                problems.append(
                    Problem(
                        name,
                        line,
                        "effective_from",
                        f"{sla.service} {sla.metric} ({sla.customer_class}) is also in force on line {other_line} "
                        "on some of these dates: one SLA per service and metric on a date",
                    )
                )
        spans.setdefault((sla.service, sla.metric, sla.customer_class), []).append((line, sla))
    name = "sla_credits.csv"
    seen: dict[tuple[str, str, Decimal], int] = {}
    for line, band in credits:
        if (band.service, band.metric) not in units:
            problems.append(
                Problem(
                    name, line, "metric", f"{band.service} {band.metric} has no SLA in slas.csv: add it there first"
                )
            )
        if not 0 < band.credit_percent <= 100:
            problems.append(
                Problem(name, line, "credit_percent", f"{band.credit_percent} must be more than 0 and at most 100")
            )
        _check_unique(
            name,
            line,
            "breach_from",
            (band.service, band.metric, band.breach_from),
            seen,
            f"the band of {band.service} {band.metric} from {band.breach_from}",
            problems,
        )


@dataclass
class LoadResult:
    """What `load` did, for the command's summary: the book as stored, and which of its
    units were new."""

    book: BookData
    units_added: int
    units_updated: int

    @property
    def name(self) -> str:
        return self.book.settings.name


def load_book(conn: Connection, folder: Path, now: dt.datetime) -> LoadResult:
    """Validate the book in `folder` and store it, replacing the reference data loaded
    before. Units and services that disappeared are removed only when nothing refers
    to them; otherwise the load is refused."""
    book = read_book(folder)
    settings = book.settings
    digits = minor_digits(settings.currency)
    current = conn.execute(select(Book.currency)).scalar()
    if current is not None and current != settings.currency:
        posted = conn.execute(select(func.count()).select_from(Entry)).scalar()
        if posted:
            raise Refused(
                f"book.toml: currency: the book is kept in {current} and has posted entries; "
                f"it cannot change to {settings.currency}"
            )
    values = {
        "name": settings.name,
        "currency": settings.currency,
        "minor_digits": digits,
        "fiscal_year_start": settings.fiscal_year_start,
        "payment_terms": settings.payment_terms,
        "allocation_method": settings.allocation_method,
        "variance_threshold": str(settings.variance_threshold),
        "invoice_line_limit": settings.invoice_line_limit,
        "sla_missing": settings.sla_missing,
        "loaded_at": now,
    }
    if current is None:
        conn.execute(insert(Book).values(id=1, **values))
    else:
        conn.execute(update(Book).where(Book.id == 1).values(**values))

    _refuse_removing_used(conn, book)
    existing = set(conn.execute(select(Unit.code)).scalars())
    ordered = _parents_first(book.units)
    added = updated = 0
    for unit in ordered:
        row = unit.model_dump()
        if unit.code in existing:
            conn.execute(update(Unit).where(Unit.code == unit.code).values(**row))
            updated += 1
        else:
            conn.execute(insert(Unit).values(**row))
            added += 1
    service_codes = set(conn.execute(select(Service.code)).scalars())
    for service in book.services:
        row = service.model_dump()
        if service.code in service_codes:
            conn.execute(update(Service).where(Service.code == service.code).values(**row))
        else:
            conn.execute(insert(Service).values(**row))
    conn.execute(delete(Rate))
    conn.execute(delete(Recurring))
    conn.execute(delete(CloudRule))  # they name units, which may go next
    for table in (Cost, Allocation, Driver, ProviderCost):
        conn.execute(delete(table))
    conn.execute(delete(Budget))
    conn.execute(delete(ServiceLevel))
    conn.execute(delete(SlaCreditBand))
    kept_services = {s.code for s in book.services}
    conn.execute(delete(Service).where(Service.code.not_in(kept_services)))
    kept_units = {u.code for u in book.units}
    conn.execute(update(Unit).where(Unit.code.not_in(kept_units)).values(parent=None))
    conn.execute(delete(Unit).where(Unit.code.not_in(kept_units)))
    for table, rows in _reference_rows(book, digits):
        if rows:
            conn.execute(insert(table), rows)
    store_cloud(conn, settings.cloud, book.cloud_rules, [a.order for a in book.allocations if a.order is not None])
    return LoadResult(book, added, updated)


def _reference_rows(book: BookData, digits: int) -> list[tuple[type[Any], list[dict[str, Any]]]]:
    """Each table of the book's files with its rows, as `load_book` stores them after
    removing what was loaded before."""
    return [
        (Rate, [_stored(r, digits, micro=("rate", "tier_from")) for r in book.rates]),
        (Recurring, [_stored(r, digits, micro=("quantity",)) for r in book.recurring]),
        (Allocation, [_stored(a, digits, renamed={"order": "step_order"}) for a in book.allocations]),
        (Cost, [_stored(c, digits, minor=("amount",)) for c in book.costs]),
        (Driver, [_stored(d, digits, micro=("value",)) for d in book.drivers]),
        (ProviderCost, [_stored(c, digits, minor=("amount",)) for c in book.provider_costs]),
        (Budget, [_stored(b, digits, minor=("amount",)) for b in book.budgets]),
        (ServiceLevel, [_stored(r, digits, micro=("target",)) for r in book.slas]),
        (SlaCreditBand, [_stored(r, digits, micro=("breach_from", "credit_percent")) for r in book.sla_credits]),
    ]


def _stored(
    row: FileRecord,
    digits: int,
    micro: tuple[str, ...] = (),
    minor: tuple[str, ...] = (),
    renamed: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A book file's row as its table stores it: each field under its own name, but the
    quantities of `micro` as millionths in `NAME_micro`, the amounts of `minor` as minor
    units in `NAME_minor` and the fields of `renamed` under their new names."""
    values = row.model_dump()
    for name in micro:
        values[f"{name}_micro"] = to_micro(values.pop(name))
    for name in minor:
        values[f"{name}_minor"] = to_minor(values.pop(name), digits)
    for name, column in (renamed or {}).items():
        values[column] = values.pop(name)
    return values


def _parents_first(units: list[UnitRow]) -> list[UnitRow]:
    by_code = {u.code: u for u in units}
    done: set[str] = set()
    ordered: list[UnitRow] = []

    def visit(unit: UnitRow) -> None:
        if unit.code in done:
            return
        done.add(unit.code)
        if unit.parent in by_code:
            visit(by_code[unit.parent])
        ordered.append(unit)

    for unit in units:
        visit(unit)
    return ordered


def _refuse_removing_used(conn: Connection, book: BookData) -> None:
    units = {u.code for u in book.units}
    services = {s.code for s in book.services}
    used_units = union_all(
        select(Usage.consumer),
        select(Adjustment.consumer),
        select(Entry.consumer),
        select(Entry.provider),
    ).subquery()
    missing_units = (
        conn.execute(select(used_units.c[0]).where(used_units.c[0].not_in(units)).distinct()).scalars().all()
    )
    used_services = union_all(
        select(Usage.service), select(Adjustment.service), select(Entry.service), select(SlaMeasurement.service)
    ).subquery()
    missing_services = (
        conn.execute(select(used_services.c[0]).where(used_services.c[0].not_in(services)).distinct()).scalars().all()
    )
    problems = [
        Problem(
            "units.csv",
            0,
            "code",
            f"{code!r} has charges but is missing from units.csv: keep it and set active_to instead",
        )
        for code in sorted(missing_units)
    ]
    problems += [
        Problem("services.csv", 0, "code", f"{code!r} has charges but is missing from services.csv: keep it")
        for code in sorted(missing_services)
    ]
    if problems:
        raise InputRefused(problems, what="load")
