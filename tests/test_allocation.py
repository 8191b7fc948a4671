"""Allocation math, without a database: the textbook example to the cent, the largest
remainder rule, exact reciprocal solving, refusals, and properties over random pools."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
import textbook as tb
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeback.core.allocation import (
    AllocationError,
    PoolSpec,
    Targets,
    allocate,
    parse_driver,
    parse_targets,
    resolve_targets,
    solve,
    split,
)
from chargeback.core.money import round_fraction


def shares_of(method: str) -> dict[str, dict[str, int]]:
    return {r.code: {s.unit: s.amount for s in r.shares if s.amount} for r in allocate(tb.pool_specs(), method)}


def operating_totals(method: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for shares in shares_of(method).values():
        for unit, amount in shares.items():
            if unit in tb.OPERATING:
                totals[unit] = totals.get(unit, 0) + amount
    return totals


@pytest.mark.parametrize("method", ["direct", "step", "reciprocal"])
def test_textbook_example_to_the_cent(method: str) -> None:
    assert shares_of(method) == tb.EXPECTED[method]
    assert operating_totals(method) == tb.OPERATING_TOTALS[method]


def test_direct_and_step_allocate_all_cost_to_operating_departments() -> None:
    everything = sum(tb.COSTS.values())  # 222,450.25
    assert sum(operating_totals("direct").values()) == everything
    assert sum(operating_totals("step").values()) == everything
    assert sum(operating_totals("reciprocal").values()) == everything


def test_step_pools_carry_what_earlier_pools_gave_their_provider() -> None:
    results = {r.code: r for r in allocate(tb.pool_specs(), "step")}
    assert {code: r.total for code, r in results.items()} == tb.STEP_TOTALS
    # HR spreads its 82,820.00 plus the 7,773.03 FAC gave it; IT its own plus FAC's and HR's.
    assert results["P-HR"].total == 8_282_000 + tb.STEP["P-FAC"]["HR"]
    assert results["P-IT"].total == 6_190_000 + tb.STEP["P-FAC"]["IT"] + tb.STEP["P-HR"]["IT"]
    assert [r.code for r in allocate(tb.pool_specs(), "step")] == ["P-FAC", "P-HR", "P-IT"]


def test_reciprocal_totals_solve_the_equations_exactly() -> None:
    results = {r.code: r for r in allocate(tb.pool_specs(), "reciprocal")}
    exact = {code: r.exact_total / 100 for code, r in results.items()}
    assert exact == tb.RECIPROCAL_EXACT
    t_fac, t_hr, t_it = exact["P-FAC"], exact["P-HR"], exact["P-IT"]
    # The textbook's equations, checked by substitution.
    assert t_fac == Fraction("77730.25") + Fraction(15, 100) * t_hr + Fraction(20, 100) * t_it
    assert t_hr == Fraction("82820.00") + Fraction(10, 100) * t_fac + Fraction(20, 100) * t_it
    assert t_it == Fraction("61900.00") + Fraction(10, 100) * t_fac + Fraction(10, 100) * t_hr
    assert {code: r.total for code, r in results.items()} == tb.RECIPROCAL_TOTALS


def _float_solve(matrix: list[list[float]], rhs: list[float]) -> list[float]:
    """Gaussian elimination in binary floating point, as a float program would do it."""
    size = len(rhs)
    rows = [list(row) + [b] for row, b in zip(matrix, rhs, strict=False)]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(rows[r][col]))
        rows[col], rows[pivot] = rows[pivot], rows[col]
        lead = rows[col][col]
        rows[col] = [v / lead for v in rows[col]]
        for r in range(size):
            if r != col:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=False)]
    return [rows[r][size] for r in range(size)]


def test_floats_get_the_reciprocal_system_wrong_by_a_cent() -> None:
    # IT's total is exactly 84,091.625: half a cent, which rounds up to 84,091.63.
    matrix = [[1.0, -0.15, -0.20], [-0.10, 1.0, -0.20], [-0.10, -0.10, 1.0]]
    floats = _float_solve(matrix, [77730.25, 82820.00, 61900.00])
    assert floats[2] != 84091.625 and floats[2] < 84091.625  # 84091.62499999999
    rounded = Decimal(repr(floats[2])).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert rounded == Decimal("84091.62")
    exact = {r.code: r.total for r in allocate(tb.pool_specs(), "reciprocal")}
    assert exact["P-IT"] == 8_409_163  # 84,091.63
    # Python's round() on the float is wrong the same way.
    assert round(floats[2], 2) == 84091.62


def test_pools_that_need_the_largest_remainder_rule() -> None:
    def naive(total: int, weights: dict[str, int]) -> dict[str, int]:
        whole = sum(weights.values())
        return {u: round_fraction(Fraction(total * w, whole)) for u, w in weights.items()}

    # Direct, FAC: 77,730.25 over 3,000 / 2,500 / 2,500 sq ft. Rounding each share
    # half-up gives 29,148.84 + 24,290.70 + 24,290.70 = 77,730.24, a cent short; the
    # cent left over goes to the largest remainder (MACH, 0.375 of a cent).
    fac = {"MACH": 3000, "ASSY": 2500, "PACK": 2500}
    assert sum(naive(7_773_025, fac).values()) == 7_773_024
    assert split(7_773_025, {u: Fraction(w) for u, w in fac.items()}) == tb.DIRECT["P-FAC"]
    # Direct, HR: 82,820.00 over 25 / 40 / 10 heads: each share is x.666.. cents, so
    # rounding each gives a cent too many; two cents are left over after rounding down,
    # the three remainders tie, and the tie goes to the lower codes: ASSY, then MACH.
    hr = {"MACH": 25, "ASSY": 40, "PACK": 10}
    assert sum(naive(8_282_000, hr).values()) == 8_282_001
    assert split(8_282_000, {u: Fraction(w) for u, w in hr.items()}) == tb.DIRECT["P-HR"]
    # Reciprocal, FAC: 111,161.75 over 10/10/30/25/25 %: three cents left over; ASSY and
    # PACK (0.75) take one each, then HR, IT and MACH tie at 0.5 and HR (lowest) wins.
    assert tb.RECIPROCAL["P-FAC"]["HR"] == tb.RECIPROCAL["P-FAC"]["IT"] + 1


def test_split_ties_go_to_the_lower_code_in_plain_character_order() -> None:
    # "B" < "a" in plain character order (code points), whatever the locale says.
    assert split(2, {"a": Fraction(1), "B": Fraction(1), "c": Fraction(1)}) == {"B": 1, "a": 1, "c": 0}
    assert split(1, {"MATH-2": Fraction(1), "MATH.1": Fraction(1)}) == {"MATH-2": 1, "MATH.1": 0}
    assert split(0, {"A": Fraction(1)}) == {"A": 0}
    assert split(5, {"A": Fraction(0), "B": Fraction(3)}) == {"A": 0, "B": 5}


def test_solve_is_exact_and_detects_singular_systems() -> None:
    third = Fraction(1, 3)
    assert solve([[1, -third], [-third, 1]], [Fraction(8), Fraction(8)]) == [Fraction(12), Fraction(12)]
    with pytest.raises(ZeroDivisionError):
        solve([[1, -1], [-1, 1]], [Fraction(1), Fraction(1)])


def _pool(code: str, provider: str, amount: int, order: int | None = None, **weights: int) -> PoolSpec:
    return PoolSpec(code, provider, amount, {u: Fraction(w) for u, w in weights.items()}, order)


def test_refusals_name_the_pool() -> None:
    with pytest.raises(AllocationError, match="totals zero") as info:
        allocate([_pool("P1", "S1", 100, S1=5, OPS=0)], "direct")
    assert info.value.pool == "P1"
    with pytest.raises(AllocationError, match="needs an order") as info:
        allocate([_pool("P1", "S1", 100, 1, OPS=1), _pool("P2", "S2", 100, None, OPS=1)], "step")
    assert info.value.pool == "P2"
    for method in ("step", "reciprocal"):
        with pytest.raises(AllocationError, match="at most one pool") as info:
            allocate([_pool("P1", "S1", 100, 1, OPS=1), _pool("P2", "S1", 100, 2, OPS=1)], method)
        assert info.value.pool == "P2"
    # Under step, a pool whose only targets are earlier providers has nothing left.
    with pytest.raises(AllocationError, match="totals zero") as info:
        allocate([_pool("P1", "S1", 100, 1, S2=1, OPS=1), _pool("P2", "S2", 100, 2, S1=1)], "step")
    assert info.value.pool == "P2"
    with pytest.raises(AllocationError, match="no single solution"):
        allocate([_pool("P1", "S1", 100, S2=1), _pool("P2", "S2", 100, S1=1)], "reciprocal")


def test_direct_allows_a_provider_with_two_pools() -> None:
    results = allocate([_pool("P1", "S1", 100, OPS=1), _pool("P2", "S1", 50, OPS=1, B=1)], "direct")
    assert [(r.code, r.total) for r in results] == [("P1", 100), ("P2", 50)]


def test_parse_driver_and_targets() -> None:
    assert parse_driver("equal").kind == "equal"
    assert (parse_driver("usage:HELP").kind, parse_driver("usage:HELP").name) == ("usage", "HELP")
    assert parse_driver("sqft").text == "sqft"
    for bad in ("usage:", "sq ft", "usage:a b"):
        with pytest.raises(ValueError):
            parse_driver(bad)
    assert parse_targets("*") == Targets("all")
    assert parse_targets("parent:COL") == Targets("parent", ("COL",))
    assert parse_targets("ART | MATH").codes == ("ART", "MATH")
    for bad in ("ART||MATH", "parent:", "ART|ART"):
        with pytest.raises(ValueError):
            parse_targets(bad)


def test_resolve_targets_takes_active_internal_leaves() -> None:
    import datetime as dt
    from types import SimpleNamespace as U

    units = {
        u.code: u
        for u in [
            U(code="COL", kind="internal", parent=None, active_from=None, active_to=None),
            U(code="SCI", kind="internal", parent="COL", active_from=None, active_to=None),
            U(code="BIO", kind="internal", parent="SCI", active_from=None, active_to=None),
            U(code="CHEM", kind="internal", parent="SCI", active_from=None, active_to=dt.date(2026, 2, 28)),
            U(code="ART", kind="internal", parent="COL", active_from=dt.date(2026, 3, 31), active_to=None),
            U(code="FAC", kind="internal", parent="COL", active_from=None, active_to=None),
            U(code="EXT", kind="external", parent=None, active_from=None, active_to=None),
        ]
    }
    first, last = dt.date(2026, 3, 1), dt.date(2026, 3, 31)
    assert resolve_targets(Targets("all"), "FAC", units, first, last) == ["ART", "BIO"]
    assert resolve_targets(Targets("parent", ("SCI",)), "FAC", units, first, last) == ["BIO"]
    assert resolve_targets(Targets("parent", ("COL",)), "BIO", units, first, last) == ["ART", "FAC"]
    assert resolve_targets(Targets("list", ("SCI", "CHEM", "FAC")), "FAC", units, first, last) == ["SCI"]


# --- properties over random pools -------------------------------------------------

OPERATING_UNITS = ("O1", "O2", "O3", "O4", "O5")


@st.composite
def pool_systems(draw):  # type: ignore[no-untyped-def]
    """Random pools: distinct support providers S1..Sn serving each other and operating
    units O1..Om; every pool gives some positive driver value to an operating unit."""
    count = draw(st.integers(1, 4))
    operating = OPERATING_UNITS[: draw(st.integers(1, len(OPERATING_UNITS)))]
    providers = [f"S{i}" for i in range(1, count + 1)]
    orders = draw(st.permutations(range(1, count + 1)))
    pools = []
    for index, provider in enumerate(providers):
        weights = {u: Fraction(draw(st.integers(0, 1_000))) for u in providers + list(operating)}
        lucky = draw(st.sampled_from(operating))
        weights[lucky] += draw(st.integers(1, 1_000))
        if draw(st.booleans()):  # fractional driver values, e.g. FTEs
            weights = {u: w / draw(st.integers(1, 7)) for u, w in weights.items()}
        amount = draw(st.integers(0, 10**9))
        pools.append(PoolSpec(f"P{index + 1}", provider, amount, weights, orders[index]))
    return pools, operating


def _check_shares(results, pools) -> None:  # type: ignore[no-untyped-def]
    for result in results:
        assert sum(s.amount for s in result.shares) == result.total
        assert all(s.amount >= 0 for s in result.shares)
        assert result.provider not in {s.unit for s in result.shares}
    # Net zero: what providers are credited equals what units are debited.
    credited = sum(r.total for r in results)
    debited = sum(s.amount for r in results for s in r.shares)
    assert credited == debited


def _to_operating(results, operating) -> int:  # type: ignore[no-untyped-def]
    return sum(s.amount for r in results for s in r.shares if s.unit in operating)


@settings(max_examples=150, deadline=None)
@given(pool_systems())
def test_every_method_balances_and_direct_equals_step(system) -> None:  # type: ignore[no-untyped-def]
    pools, operating = system
    everything = sum(p.amount for p in pools)
    direct = allocate(pools, "direct")
    step = allocate(pools, "step")
    reciprocal = allocate(pools, "reciprocal")
    for results in (direct, step, reciprocal):
        _check_shares(results, pools)
    assert _to_operating(direct, operating) == everything
    assert _to_operating(step, operating) == everything
    assert abs(_to_operating(reciprocal, operating) - everything) < reciprocal_bound(reciprocal)


def reciprocal_bound(results) -> Fraction:  # type: ignore[no-untyped-def]
    """How far the reciprocal method's total to operating units can be from the pools'
    cost. The exact solution sends all of it; rounding each pool's total moves at most
    half a unit, and each share to another pool's provider is within one unit of its
    exact quota (largest remainder), so a pool can drift by less than 1/2 + (number of
    other providers among its targets). With one other provider per pool that is the
    issue's "one minor unit per pool"; with more it can exceed it (see below)."""
    providers = {r.provider for r in results}
    return sum((Fraction(1, 2) + sum(1 for s in r.shares if s.unit in providers) for r in results), Fraction(0))


def test_reciprocal_drift_can_exceed_one_unit_per_pool() -> None:
    """A found case: three pools serving each other and ten operating units. The exact
    totals send exactly 20,358.90 to the operating units, but the rounded totals and
    largest-remainder shares send 20,358.94: four cents for three pools. Pool P2 alone
    drifts 1.87 cents, because both other providers' shares were rounded down."""
    weights = [
        {
            "O00": 3,
            "O01": 2,
            "O02": 2,
            "O03": 2,
            "O04": 3,
            "O05": 1,
            "O06": 1,
            "O07": 2,
            "O08": 3,
            "O09": 3,
            "S1": 2,
            "S2": 4,
        },
        {
            "O00": 3,
            "O01": 2,
            "O02": 1,
            "O03": 2,
            "O04": 2,
            "O05": 3,
            "O06": 1,
            "O07": 2,
            "O08": 3,
            "O09": 3,
            "S0": 4,
            "S2": 1,
        },
        {
            "O00": 1,
            "O01": 3,
            "O02": 3,
            "O03": 3,
            "O04": 2,
            "O05": 2,
            "O06": 1,
            "O07": 2,
            "O08": 3,
            "O09": 1,
            "S0": 3,
            "S1": 3,
        },
    ]
    costs = [647_331, 490_309, 898_250]
    pools = [PoolSpec(f"P{i}", f"S{i}", costs[i], {u: Fraction(w) for u, w in weights[i].items()}) for i in range(3)]
    results = allocate(pools, "reciprocal")
    exact = sum(
        r.exact_total * sum(s.weight for s in r.shares if s.unit.startswith("O")) / r.weight_total for r in results
    )
    assert exact == sum(costs)
    operating = tuple(f"O{i:02d}" for i in range(10))
    drift = _to_operating(results, operating) - sum(costs)
    assert drift == 4 > len(pools)
    assert drift < reciprocal_bound(results)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 10**12),
    st.dictionaries(
        st.text("ABCabc-.09", min_size=1, max_size=3),
        st.fractions(min_value=0, max_value=10**6),
        min_size=1,
        max_size=8,
    ).filter(lambda w: sum(w.values()) > 0),
)
def test_split_is_exact_and_within_a_unit_of_the_quota(total: int, weights: dict) -> None:  # type: ignore[type-arg]
    shares = split(total, weights)
    assert sum(shares.values()) == total
    whole = sum(weights.values())
    for unit, share in shares.items():
        quota = Fraction(total) * weights[unit] / whole
        assert quota - 1 < share < quota + 1
        assert share >= 0
    # A unit that got the extra unit never has a smaller remainder than one that did not.
    extra = {u for u in shares if shares[u] > Fraction(total) * weights[u] / whole}
    for winner in extra:
        for loser in set(shares) - extra:
            rw = Fraction(total) * weights[winner] / whole % 1
            rl = Fraction(total) * weights[loser] / whole % 1
            assert rw > rl or (rw == rl and winner < loser)
