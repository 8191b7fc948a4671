"""Cost allocation: spreading cost pools over units by drivers, exactly.

Pure functions over plain values (integer minor units, exact driver weights as
`Fraction`, unit codes), so every rule can be tested and property-tested without a
database. Nothing here is ever a float.

- **direct**: each pool spreads its own amount over its targets, leaving out every
  unit that provides one of the pools.
- **step**: pools in `order`; a pool spreads its own amount plus everything allocated
  to its provider by earlier pools, leaving out the providers of earlier pools and
  itself.
- **reciprocal**: each pool's total is its own amount plus its provider's driver share
  of every other pool's total; the equations are solved exactly (Gaussian elimination
  over fractions), then each pool spreads its total over all its targets.
- **rounding**: a pool's total is rounded half away from zero to the minor unit, then
  split by the largest remainder method (`split`), so the shares sum to it exactly.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from math import floor
from typing import Protocol

from chargeback.core.fields import CODE_PATTERN
from chargeback.core.money import round_fraction

METHODS = ("direct", "step", "reciprocal")
EQUAL = "equal"
USAGE_PREFIX = "usage:"
AMOUNT_PREFIX = "amount:"
PARENT_PREFIX = "parent:"


@dataclass(frozen=True)
class Driver:
    """An allocation driver: `equal`, `usage:SERVICE` (the quantity posted of a service),
    `amount:SERVICE` (the amount of its usage charges) or a name from drivers.csv."""

    kind: str  # "equal" | "usage" | "amount" | "named"
    name: str  # the service for "usage" and "amount", the driver name for "named"

    @property
    def text(self) -> str:
        prefixes = {"usage": USAGE_PREFIX, "amount": AMOUNT_PREFIX}
        return EQUAL if self.kind == "equal" else prefixes.get(self.kind, "") + self.name


def parse_driver(text: str) -> Driver:
    """Read the `driver` column; raises ValueError saying how to write it."""
    text = text.strip()
    if text == EQUAL:
        return Driver("equal", "")
    if text.startswith(USAGE_PREFIX):
        service = text[len(USAGE_PREFIX) :].strip()
        if not CODE_PATTERN.fullmatch(service):
            raise ValueError(f"{text!r}: write usage:SERVICE with a service code after the colon")
        return Driver("usage", service)
    if text.startswith(AMOUNT_PREFIX):
        service = text[len(AMOUNT_PREFIX) :].strip()
        if not CODE_PATTERN.fullmatch(service):
            raise ValueError(f"{text!r}: write amount:SERVICE with a service code after the colon")
        return Driver("amount", service)
    if not CODE_PATTERN.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a driver: write a name used in drivers.csv, usage:SERVICE, amount:SERVICE or equal"
        )
    return Driver("named", text)


@dataclass(frozen=True)
class Targets:
    """The `targets` column: every leaf unit (`*`), the leaves under a parent
    (`parent:CODE`), or a list of codes (`A|B|C`)."""

    kind: str  # "all" | "parent" | "list"
    codes: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        if self.kind == "all":
            return "*"
        if self.kind == "parent":
            return PARENT_PREFIX + self.codes[0]
        return "|".join(self.codes)


def parse_targets(text: str) -> Targets:
    """Read the `targets` column; raises ValueError saying how to write it."""
    text = text.strip()
    if text == "*":
        return Targets("all")
    if text.startswith(PARENT_PREFIX):
        code = text[len(PARENT_PREFIX) :].strip()
        if not CODE_PATTERN.fullmatch(code):
            raise ValueError(f"{text!r}: write parent:CODE with a unit code after the colon")
        return Targets("parent", (code,))
    codes = tuple(part.strip() for part in text.split("|"))
    bad = [c for c in codes if not CODE_PATTERN.fullmatch(c)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a unit code: write *, parent:CODE or codes separated by |")
    if len(set(codes)) != len(codes):
        raise ValueError("a unit is listed twice")
    return Targets("list", codes)


class UnitLike(Protocol):
    @property
    def code(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def active_from(self) -> dt.date | None: ...
    @property
    def active_to(self) -> dt.date | None: ...


def resolve_targets(
    targets: Targets, provider: str, units: Mapping[str, UnitLike], first_day: dt.date, last_day: dt.date
) -> list[str]:
    """The units a pool is spread over in a period: internal units active on some day
    of the period, other than the pool's provider; for `*` and `parent:CODE` only
    units with no children (`parent:CODE` takes those anywhere below CODE)."""
    with_children = {u.parent for u in units.values() if u.parent}

    def active(unit: UnitLike) -> bool:
        return (
            unit.kind == "internal"
            and unit.code != provider
            and (unit.active_from is None or unit.active_from <= last_day)
            and (unit.active_to is None or unit.active_to >= first_day)
        )

    def under(unit: UnitLike, ancestor: str) -> bool:
        seen: set[str] = set()
        cursor = unit.parent
        while cursor is not None and cursor not in seen:
            if cursor == ancestor:
                return True
            seen.add(cursor)
            cursor = units[cursor].parent if cursor in units else None
        return False

    if targets.kind == "list":
        chosen = [units[c] for c in targets.codes if c in units]
    else:
        chosen = [u for u in units.values() if u.code not in with_children]
        if targets.kind == "parent":
            chosen = [u for u in chosen if under(u, targets.codes[0])]
    return sorted(u.code for u in chosen if active(u))


class AllocationError(ValueError):
    """A pool cannot be allocated; `pool` names it."""

    def __init__(self, pool: str, message: str) -> None:
        super().__init__(message)
        self.pool = pool
        self.message = message


@dataclass(frozen=True)
class PoolSpec:
    """One pool of one period: its own cost and the driver value of each target.

    `weights` holds every target the pool's `targets` name (its own provider is
    ignored if present); which of them take part depends on the method."""

    code: str
    provider: str
    amount: int
    weights: Mapping[str, Fraction]
    order: int | None = None


@dataclass(frozen=True)
class Share:
    """What one target is charged by one pool: its driver value and its amount."""

    pool: str
    unit: str
    weight: Fraction
    amount: int


@dataclass(frozen=True)
class PoolResult:
    """One pool's allocation: the total spread (rounded), the exact total before
    rounding, the driver total over the targets that took part, and the shares."""

    code: str
    provider: str
    own: int
    total: int
    exact_total: Fraction
    weight_total: Fraction
    shares: tuple[Share, ...] = field(default_factory=tuple)


def split(total: int, weights: Mapping[str, Fraction]) -> dict[str, int]:
    """Split `total` minor units in proportion to `weights` by the largest remainder
    method: every share rounded down, then the units left over go one each to the
    largest remainders, ties to the lower unit code in plain character order.

    The shares sum to `total` exactly; with `total >= 0` and weights `>= 0`, no share
    is negative and a zero weight gets nothing."""
    weight_total = sum(weights.values(), Fraction(0))
    if weight_total <= 0:
        raise ValueError("the weights must have a positive total")
    exact = {unit: Fraction(total) * Fraction(w) / weight_total for unit, w in weights.items()}
    shares = {unit: floor(x) for unit, x in exact.items()}
    left = total - sum(shares.values())
    by_remainder = sorted(exact, key=lambda unit: (-(exact[unit] - shares[unit]), unit))
    for unit in by_remainder[:left]:
        shares[unit] += 1
    return shares


def allocate(pools: Sequence[PoolSpec], method: str) -> list[PoolResult]:
    """Allocate the pools of one period by `method` (direct, step or reciprocal).

    Returns one result per pool: by code for direct and reciprocal, in step order for
    step. Raises `AllocationError` naming the pool when it cannot be done."""
    codes = [p.code for p in pools]
    if len(set(codes)) != len(codes):
        raise AllocationError(_first_repeat(codes), "the pool code is used twice")
    for pool in pools:
        if pool.amount < 0:
            raise AllocationError(pool.code, "a pool's cost must not be negative")
        for unit, weight in pool.weights.items():
            if weight < 0:
                raise AllocationError(pool.code, f"the driver value of {unit} is negative")
    if method == "direct":
        return _direct(sorted(pools, key=lambda p: p.code))
    if method == "step":
        return _step(pools)
    if method == "reciprocal":
        return _reciprocal(sorted(pools, key=lambda p: p.code))
    raise ValueError(f"unknown allocation method {method!r}: use one of {', '.join(METHODS)}")


def _first_repeat(codes: list[str]) -> str:
    seen: set[str] = set()
    for code in codes:
        if code in seen:
            return code
        seen.add(code)
    return ""  # pragma: no cover


def _targets(pool: PoolSpec, leave_out: set[str]) -> dict[str, Fraction]:
    """The pool's weights without its own provider and the units left out."""
    weights = {u: Fraction(w) for u, w in pool.weights.items() if u != pool.provider and u not in leave_out}
    if sum(weights.values(), Fraction(0)) <= 0:
        named = ", ".join(sorted(leave_out)) if leave_out else ""
        hint = f" (leaving out {named})" if named else ""
        raise AllocationError(pool.code, f"its driver totals zero over its targets{hint}")
    return weights


def _spread(pool: PoolSpec, exact_total: Fraction, weights: dict[str, Fraction]) -> PoolResult:
    total = round_fraction(exact_total)
    amounts = split(total, weights)
    shares = tuple(Share(pool.code, unit, weights[unit], amounts[unit]) for unit in sorted(weights))
    return PoolResult(
        pool.code, pool.provider, pool.amount, total, exact_total, sum(weights.values(), Fraction(0)), shares
    )


def _direct(pools: list[PoolSpec]) -> list[PoolResult]:
    providers = {p.provider for p in pools}
    return [_spread(p, Fraction(p.amount), _targets(p, providers)) for p in pools]


def _step(pools: Sequence[PoolSpec]) -> list[PoolResult]:
    for pool in pools:
        if pool.order is None:
            raise AllocationError(pool.code, "the step method needs an order for every pool")
    _one_pool_per_provider(pools, "step")
    received: dict[str, int] = defaultdict(int)
    done: set[str] = set()
    results = []
    for pool in sorted(pools, key=lambda p: (p.order, p.code)):
        weights = _targets(pool, done)
        result = _spread(pool, Fraction(pool.amount + received[pool.provider]), weights)
        for share in result.shares:
            received[share.unit] += share.amount
        done.add(pool.provider)
        results.append(result)
    return results


def _one_pool_per_provider(pools: Sequence[PoolSpec], method: str) -> None:
    owner: dict[str, str] = {}
    for pool in sorted(pools, key=lambda p: p.code):
        if pool.provider in owner:
            raise AllocationError(
                pool.code,
                f"{pool.provider} also provides pool {owner[pool.provider]}: "
                f"under the {method} method a provider owns at most one pool",
            )
        owner[pool.provider] = pool.code


def _reciprocal(pools: list[PoolSpec]) -> list[PoolResult]:
    _one_pool_per_provider(pools, "reciprocal")
    weights = [_targets(p, set()) for p in pools]
    totals = [sum(w.values(), Fraction(0)) for w in weights]
    size = len(pools)
    # T_i - sum_j (w_j[provider_i] / W_j) T_j = A_i
    matrix = [[Fraction(int(i == j)) for j in range(size)] for i in range(size)]
    for i, pool in enumerate(pools):
        for j in range(size):
            if i != j:
                matrix[i][j] -= weights[j].get(pool.provider, Fraction(0)) / totals[j]
    try:
        exact = solve(matrix, [Fraction(p.amount) for p in pools])
    except ZeroDivisionError:
        raise AllocationError(
            ", ".join(p.code for p in pools),
            "the reciprocal equations have no single solution: these pools send all of "
            "their cost to each other; give units outside the pools a driver value",
        ) from None
    return [_spread(p, t, w) for p, t, w in zip(pools, exact, weights, strict=False)]


def solve(matrix: Sequence[Sequence[Fraction]], rhs: Sequence[Fraction]) -> list[Fraction]:
    """Solve `matrix @ x = rhs` exactly by Gaussian elimination over fractions.

    Raises ZeroDivisionError when the matrix is singular."""
    size = len(rhs)
    rows = [[Fraction(v) for v in row] + [Fraction(b)] for row, b in zip(matrix, rhs, strict=False)]
    for col in range(size):
        pivot = next((r for r in range(col, size) if rows[r][col] != 0), None)
        if pivot is None:
            raise ZeroDivisionError("singular matrix")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        lead = rows[col][col]
        rows[col] = [v / lead for v in rows[col]]
        for r in range(size):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=False)]
    return [rows[r][size] for r in range(size)]
