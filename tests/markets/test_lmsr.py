"""Properties of the LMSR market maker (``bellwether.markets.lmsr``).

Pure math: no database, no Django. Hypothesis draws markets of 2 to 50
outcomes, liquidity over nine orders of magnitude and quantities up to
q/b = 10^6; the exact references use ``decimal`` at 60 digits.
"""

from __future__ import annotations

import decimal
import math
from decimal import Decimal

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from bellwether.markets import lmsr
from bellwether.markets.lmsr import (
    MAX_OUTCOMES,
    MICRO,
    MIN_OUTCOMES,
    buy_cost,
    buy_cost_micro,
    cost,
    log_sum_exp,
    max_loss,
    max_loss_micro,
    prices,
    prices_after_micro,
    sell_proceeds,
    sell_proceeds_micro,
    shares_for_budget,
    shares_for_budget_micro,
)

FAST = settings(max_examples=100, deadline=None)
SLOW = settings(max_examples=50, deadline=None)

# Float results are compared "to floating rounding": relative 1e-9, absolute 1e-9
# (or, on markets spread over up to 10^6 b, float64's resolution there).
TOL = {"rel_tol": 1e-9, "abs_tol": 1e-9}

OUTCOME_COUNTS = st.integers(MIN_OUTCOMES, MAX_OUTCOMES)
LIQUIDITY = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
LIQUIDITY_MICRO = st.integers(1_000, 10**10)  # 0.001 to 10,000 credits


def ratios(max_ratio: float) -> st.SearchStrategy[float]:
    """Quantities as multiples of b, 0 <= q/b <= max_ratio."""
    return st.floats(min_value=0, max_value=max_ratio, allow_nan=False, allow_infinity=False)


@st.composite
def markets(draw, max_ratio: float = 30.0):
    """Draw (q, b) in credits with 0 <= q_i/b <= max_ratio."""
    n = draw(OUTCOME_COUNTS)
    b = draw(LIQUIDITY)
    q = [r * b for r in draw(st.lists(ratios(max_ratio), min_size=n, max_size=n))]
    return q, b


@st.composite
def trades(draw, max_ratio: float = 30.0, max_shares_ratio: float = 30.0):
    """Draw (q, b, i, d): a market, an outcome of it and a positive trade size."""
    q, b = draw(markets(max_ratio))
    i = draw(st.integers(0, len(q) - 1))
    d = draw(st.floats(min_value=1e-6, max_value=max_shares_ratio)) * b
    return q, b, i, d


# Up to 10^14 micro-units (100 million credits) float64 resolves amounts far
# finer than a micro-credit; the exact-reference test goes to 10^16.
MAX_Q_MICRO = 10**14


@st.composite
def micro_markets(draw, max_ratio: int = 10**6, max_q: int = MAX_Q_MICRO):
    """Draw (q_micro, b_micro) with 0 <= q_i <= min(b * max_ratio, max_q), all integers.

    Half the time the quantities crowd together far from 0 (a busy, balanced
    market), where precision is lost if large numbers are turned into floats
    before they are subtracted.
    """
    n = draw(OUTCOME_COUNTS)
    b = draw(LIQUIDITY_MICRO)
    top = min(b * max_ratio, max_q)
    if draw(st.booleans()):
        q = draw(st.lists(st.integers(0, top), min_size=n, max_size=n))
    else:
        base = draw(st.integers(top // 2, top))
        q = [max(0, base - k) for k in draw(st.lists(st.integers(0, 30 * b), min_size=n, max_size=n))]
    return q, b


@st.composite
def micro_trades(draw, max_ratio: int = 10**6, max_q: int = MAX_Q_MICRO):
    """Draw (q_micro, b_micro, i, shares_micro) with 1 <= shares_micro <= min(b * max_ratio, max_q)."""
    q, b = draw(micro_markets(max_ratio, max_q))
    i = draw(st.integers(0, len(q) - 1))
    shares = draw(st.integers(1, min(b * max_ratio, max_q)))
    return q, b, i, shares


def exact_trade_micro(q_micro, b_micro, i, shares_micro) -> Decimal:
    """Return C(q + d*e_i) - C(q) in micro-credits, to 60 digits (d < 0 sells)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        ctx.Emax, ctx.Emin = 10**8, -(10**8)
        b = Decimal(b_micro)
        top = max(q_micro)
        z = [Decimal(x - top) / b for x in q_micro]
        total = sum(zj.exp() for zj in z)
        others = sum(zj.exp() for j, zj in enumerate(z) if j != i)
        moved = others + (z[i] + Decimal(shares_micro) / b).exp()
        return b * (moved.ln() - total.ln())


# --- prices -----------------------------------------------------------------


@FAST
@given(markets(max_ratio=1e6))
@example(([1e8, 0.0], 100.0))
@example(([0.0] * 49 + [1e8], 100.0))
def test_prices_are_a_distribution(market):
    """Each price lies in [0, 1] and the prices sum to 1 within 1e-12, up to q/b = 10^6."""
    q, b = market
    p = prices(q, b)
    assert len(p) == len(q)
    assert all(0.0 <= pi <= 1.0 for pi in p)
    assert math.fsum(p) == pytest.approx(1.0, abs=1e-12)


@FAST
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=MIN_OUTCOMES, max_size=MAX_OUTCOMES),
    st.floats(min_value=0, exclude_min=True, allow_nan=False, allow_infinity=False),
)
@example([-1.7e308, 1.7e308], 5e-324)
@example([1.7e308, -1.7e308, 0.0], 1.7e308)
def test_prices_work_for_any_finite_quantities(q, b):
    """Any finite quantities, negative or huge, and any positive finite b give a distribution."""
    p = prices(q, b)
    assert all(0.0 <= pi <= 1.0 for pi in p)
    assert math.fsum(p) == pytest.approx(1.0, abs=1e-12)
    # The largest quantity never has the smallest price.
    assert p[q.index(max(q))] == max(p)


@FAST
@given(
    OUTCOME_COUNTS.flatmap(
        lambda n: st.lists(st.floats(min_value=0, max_value=30, exclude_max=True), min_size=n, max_size=n)
    ),
    LIQUIDITY,
)
@example([29.999999999999996, 0.0], 1.0)
@example([0.0] * 49 + [29.999999999999996], 1e-3)
def test_prices_strictly_inside_for_moderate_quantities(ratio_list, b):
    """For 0 <= q/b < 30 every price is strictly between 0 and 1.

    (Quantities 37 b apart put 1 - p below float64's resolution at 1.0.)
    """
    q = [r * b for r in ratio_list]
    assert all(0.0 < pi < 1.0 for pi in prices(q, b))


@FAST
@given(markets(max_ratio=30.0))
def test_prices_follow_the_definition(market):
    """p_i = exp(q_i/b) / sum_j exp(q_j/b), computed naively where it cannot overflow."""
    q, b = market
    weights = [math.exp(x / b) for x in q]
    total = math.fsum(weights)
    for got, w in zip(prices(q, b), weights, strict=True):
        assert math.isclose(got, w / total, rel_tol=1e-9, abs_tol=1e-15)


@FAST
@given(micro_markets(max_ratio=1000))
def test_prices_after_micro_match_prices_in_credits(market):
    """prices_after_micro reads integer micro-units as credits."""
    q, b = market
    expected = prices([x / MICRO for x in q], b / MICRO)
    for got, want in zip(prices_after_micro(q, b), expected, strict=True):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15)


def test_equal_quantities_give_equal_prices():
    """A fresh market of n outcomes prices each at exactly 1/n."""
    assert prices([0, 0], 100) == [0.5, 0.5]
    assert prices([7.0] * 4, 3.0) == [0.25] * 4
    assert prices_after_micro([0] * 5, 100 * MICRO) == [0.2] * 5


# --- cost ---------------------------------------------------------------------


@FAST
@given(markets(max_ratio=30.0))
def test_cost_follows_the_definition(market):
    """C(q) = b * ln(sum_i exp(q_i/b)), and C(0) is the subsidy b*ln(n)."""
    q, b = market
    naive = b * math.log(math.fsum(math.exp(x / b) for x in q))
    assert math.isclose(cost(q, b), naive, rel_tol=1e-12, abs_tol=1e-9)
    assert math.isclose(cost([0.0] * len(q), b), max_loss(b, len(q)), rel_tol=1e-12)


@FAST
@given(markets(max_ratio=1e6), st.floats(min_value=-1e6, max_value=1e6))
def test_cost_shifts_with_quantities_and_stays_above_the_maximum(market, shift_ratio):
    """C(q + c) = C(q) + c, and max_i q_i <= C(q) <= max_i q_i + b*ln(n)."""
    q, b = market
    c = shift_ratio * b
    base = cost(q, b)
    assert math.isfinite(base)
    scale = max(1.0, max(q), abs(c)) * 1e-12
    assert cost([x + c for x in q], b) == pytest.approx(base + c, abs=scale + b * 1e-12)
    assert max(q) - scale <= base <= max(q) + max_loss(b, len(q)) + scale


@FAST
@given(trades(max_ratio=10.0, max_shares_ratio=100.0))
def test_cost_rises_with_every_quantity(trade):
    """C(q + d*e_i) > C(q) for every outcome i and every d > 0 (moderate ranges)."""
    q, b, i, d = trade
    assume(d >= 1e-3 * b)
    bumped = list(q)
    bumped[i] += d
    assert cost(bumped, b) > cost(q, b)


# --- buy_cost and sell_proceeds ---------------------------------------------


@FAST
@given(trades(max_ratio=30.0, max_shares_ratio=1000.0))
@example(([0.0, 0.0], 100.0, 0, 1e-10))
def test_buy_cost_is_positive_and_between_old_and_new_price(trade):
    """A buy costs more than 0, at least p_i*d before and at most p_i*d after (and at most d)."""
    q, b, i, d = trade
    paid = buy_cost(q, b, i, d)
    assert paid > 0
    after = list(q)
    after[i] += d
    assert paid >= prices(q, b)[i] * d * (1 - 1e-9)
    assert paid <= prices(after, b)[i] * d * (1 + 1e-9)
    assert paid <= d * (1 + 1e-12)


@FAST
@given(trades(max_ratio=30.0, max_shares_ratio=100.0))
def test_buy_cost_is_the_difference_of_costs(trade):
    """buy_cost = C(q + d*e_i) - C(q) and sell_proceeds = C(q) - C(q - d*e_i)."""
    q, b, i, d = trade
    after = list(q)
    after[i] += d
    tol = 1e-12 * max(abs(cost(after, b)), 1.0)
    assert buy_cost(q, b, i, d) == pytest.approx(cost(after, b) - cost(q, b), abs=tol)
    assert sell_proceeds(after, b, i, d) == pytest.approx(cost(after, b) - cost(q, b), abs=tol)


def resolution(q, *amounts) -> float:
    """Return float64's absolute resolution for trades on q: about eps per credit of spread."""
    return 1e-15 * (max(q) - min(q) + sum(amounts))


@FAST
@given(
    markets(max_ratio=1e6),
    st.data(),
    st.one_of(st.floats(min_value=0, max_value=50.0), st.floats(min_value=0, max_value=1e6)),
    st.one_of(st.floats(min_value=0, max_value=50.0), st.floats(min_value=0, max_value=1e6)),
)
@example(([1e8, 0.0], 100.0), None, 5e5, 5e5)
def test_buying_in_two_steps_costs_the_same(market, data, x_ratio, y_ratio):
    """Buying x then y shares costs what buying x + y shares at once costs."""
    q, b = market
    i = data.draw(st.integers(0, len(q) - 1)) if data is not None else 1
    x, y = x_ratio * b, y_ratio * b
    first = buy_cost(q, b, i, x)
    moved = list(q)
    moved[i] += x
    second = buy_cost(moved, b, i, y)
    together = buy_cost(q, b, i, x + y)
    assert math.isclose(first + second, together, **TOL) or abs(first + second - together) <= resolution(q, x, y)


@FAST
@given(markets(max_ratio=1e6), st.floats(min_value=1e-6, max_value=1e4))
def test_one_share_of_every_outcome_costs_one_credit(market, shares):
    """Buying s shares of each outcome in turn costs exactly s credits: the bundle always pays s."""
    q, b = market
    q = list(q)
    total = 0.0
    for i in range(len(q)):
        total += buy_cost(q, b, i, shares)
        q[i] += shares
    assert abs(total - shares) <= 1e-9 * shares + len(q) * resolution(q)


@FAST
@given(micro_markets(max_ratio=10**6), st.integers(1, 10**10))
@example(([0, 0], 100 * MICRO), 10 * MICRO)
def test_one_share_of_every_outcome_in_micro_units(market, shares):
    """In micro-units the bundle costs at least s and at most s + n (one micro-credit per leg)."""
    q, b = market
    q = list(q)
    total = 0
    for i in range(len(q)):
        total += buy_cost_micro(q, b, i, shares)
        q[i] += shares
    assert shares <= total <= shares + len(q)


@FAST
@given(st.one_of(trades(max_ratio=30.0, max_shares_ratio=100.0), trades(max_ratio=1e6, max_shares_ratio=1e6)))
@example(([0.0, 0.0], 1.0, 0, 30.0))
def test_round_trip_never_makes_money_in_floats(trade):
    """Buying d shares then selling them back returns what was paid, never more."""
    q, b, i, d = trade
    paid = buy_cost(q, b, i, d)
    after = list(q)
    after[i] += d
    back = sell_proceeds(after, b, i, d)
    assert back <= paid + 1e-9 * max(1.0, paid) + resolution(after)
    assert math.isclose(back, paid, **TOL) or abs(back - paid) <= resolution(after, d)


@FAST
@given(micro_trades())
@example(([0, 0], 100 * MICRO, 0, 10 * MICRO))
@example(([10**14, 0], 100 * MICRO, 0, 10**14))
@example(([0, 0], MICRO, 0, 30 * MICRO))  # log1p(p * expm1(-x)) near -1 once paid back 426 micro extra
def test_round_trip_never_makes_money_in_micro_units(trade):
    """sell_proceeds_micro(after the buy) <= buy_cost_micro(before it), and >= 0."""
    q, b, i, shares = trade
    paid = buy_cost_micro(q, b, i, shares)
    after = list(q)
    after[i] += shares
    back = sell_proceeds_micro(after, b, i, shares)
    assert 0 <= back <= paid
    assert paid - back <= 2 + paid * 1e-11  # only the rounding is kept, nothing more


@FAST
@given(micro_trades())
def test_sale_never_pays_more_than_the_symmetric_buy(trade):
    """Selling d shares at q pays at most what buying d shares at q costs, and never below 0."""
    q, b, i, shares = trade
    back = sell_proceeds_micro(q, b, i, shares)
    assert 0 <= back <= buy_cost_micro(q, b, i, shares)


@SLOW
@given(micro_trades(max_ratio=10**6, max_q=10**16))
@example(([10**14, 0], 100 * MICRO, 1, 10**14))
@example(([10**14, 0], 100 * MICRO, 0, 10**14))
@example(([0, 0], 100 * MICRO, 0, 10 * MICRO))
# Cases float64 gets wrong by more than the relative guard, found by search:
@example(([62285813006000, 62286168801646], 100 * MICRO, 1, 1955156085))  # sale: 358605485.99914...
@example(([150860149, 30358042, 184104312, 67043753], 1000, 1, 153775681))  # buy: 29411.00000000017...
@example(([14578882353, 73049809668], 100_000, 0, 58473364533))  # buy: 2437218.0000026...
def test_micro_amounts_round_the_exact_amount_in_the_houses_favour(trade):
    """A buy costs at least the exact amount rounded up; a sale pays at most it rounded down.

    "Exact" is a 60-digit reference; each is off by no more than the guards.
    """
    q, b, i, shares = trade
    guard = Decimal(2e-12) + Decimal(2e-15) * (max(q) - min(q) + shares) / b
    paid = buy_cost_micro(q, b, i, shares)
    exact_buy = exact_trade_micro(q, b, i, shares)
    assert math.ceil(exact_buy) <= paid <= math.ceil(exact_buy * (1 + guard)) + 1
    exact_sale = -exact_trade_micro(q, b, i, -shares)
    back = sell_proceeds_micro(q, b, i, shares)
    assert max(0, math.floor(exact_sale * (1 - guard)) - 1) <= back <= max(0, math.floor(exact_sale))


# --- the house's worst case ---------------------------------------------------


@st.composite
def trade_sequences(draw):
    """Draw a market from q = 0 and a list of (outcome, shares_micro, buy?) trades."""
    n = draw(OUTCOME_COUNTS)
    b = draw(LIQUIDITY_MICRO)
    size = st.one_of(st.integers(1, b), st.integers(1, b * 100), st.integers(1, b * 10**6))
    steps = draw(st.lists(st.tuples(st.integers(0, n - 1), size, st.booleans()), min_size=1, max_size=25))
    return n, b, steps


@SLOW
@given(trade_sequences())
@example((2, 100 * MICRO, [(0, 10**14, True)]))
@example((2, 100 * MICRO, [(0, 10**6, True)] * 25))
def test_pool_always_covers_the_largest_payout(scenario):
    """Subsidy + buys - sales (micro) always covers max_i q_i, and C(q) - C(0) >= max_i q_i - b*ln(n)."""
    n, b, steps = scenario
    q = [0] * n
    pool = max_loss_micro(b, n)
    for i, shares, is_buy in steps:
        if is_buy:
            pool += buy_cost_micro(q, b, i, shares)
            q[i] += shares
        else:
            shares = min(shares, q[i])  # nobody can sell shares that were never bought
            pool -= sell_proceeds_micro(q, b, i, shares)
            q[i] -= shares
        assert pool >= max(q)
        credits = [x / MICRO for x in q]
        lower = max(credits) - max_loss(b / MICRO, n)
        assert cost(credits, b / MICRO) - cost([0.0] * n, b / MICRO) >= lower - 1e-12 * max(credits)


@FAST
@given(LIQUIDITY_MICRO, OUTCOME_COUNTS)
def test_max_loss_micro_rounds_the_subsidy_up(b, n):
    """The subsidy b*ln(n) in micro-credits is the exact value rounded up (within 2 micro)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        exact = Decimal(b) * Decimal(n).ln()
    assert math.ceil(exact) <= max_loss_micro(b, n) <= math.ceil(exact) + 1
    assert max_loss(b / MICRO, n) == pytest.approx(float(exact) / MICRO, rel=1e-12)


# --- shares for a budget ------------------------------------------------------


@FAST
@given(markets(max_ratio=1e6), st.data(), st.floats(min_value=0, max_value=1e4))
@example(([0.0, 0.0], 100.0), None, 5.124948)
def test_shares_for_budget_inverts_buy_cost(market, data, budget_ratio):
    """buy_cost(shares_for_budget(m)) = m, even where the price is 0.0 or 1.0 in float64."""
    q, b = market
    i = data.draw(st.integers(0, len(q) - 1)) if data is not None else 0
    budget = budget_ratio * b if data is not None else budget_ratio
    shares = shares_for_budget(q, b, i, budget)
    assert math.isfinite(shares) and shares >= 0
    assert math.isclose(buy_cost(q, b, i, shares), budget, **TOL)


@FAST
@given(trades(max_ratio=30.0, max_shares_ratio=30.0))
def test_buy_cost_inverts_shares_for_budget(trade):
    """shares_for_budget(buy_cost(d)) = d for moderate markets."""
    q, b, i, d = trade
    assert math.isclose(shares_for_budget(q, b, i, buy_cost(q, b, i, d)), d, rel_tol=1e-9, abs_tol=1e-9 * b)


@FAST
@given(micro_markets(max_ratio=10**6), st.data())
@example(([0, 0], 100 * MICRO), None)
def test_shares_for_budget_micro_is_the_largest_affordable(market, data):
    """shares_for_budget_micro returns n with cost(n) <= budget < cost(n + 1)."""
    q, b = market
    if data is None:
        i, budget = 0, 5_124_948
    else:
        i = data.draw(st.integers(0, len(q) - 1))
        budget = data.draw(st.one_of(st.integers(0, 1000), st.integers(0, b * 10**4)))
    n = shares_for_budget_micro(q, b, i, budget)
    assert n >= 0
    assert buy_cost_micro(q, b, i, n) <= budget < buy_cost_micro(q, b, i, n + 1)


@pytest.mark.parametrize("skew", [0.0, 0.5, 0.999999, 1.000001, 2.0])
def test_shares_for_budget_micro_corrects_a_bad_guess(monkeypatch, skew):
    """The bracket search still lands on the largest affordable n when the closed-form guess is off."""
    q, b, i, budget = [3 * MICRO, 0, 0], 100 * MICRO, 0, 5_124_948
    expected = shares_for_budget_micro(q, b, i, budget)
    closed_form = lmsr.shares_for_budget
    monkeypatch.setattr(lmsr, "shares_for_budget", lambda *args: closed_form(*args) * skew)
    assert shares_for_budget_micro(q, b, i, budget) == expected
    assert buy_cost_micro(q, b, i, expected) <= budget < buy_cost_micro(q, b, i, expected + 1)


def test_a_budget_of_nothing_buys_nothing():
    """A zero budget buys zero shares, even of an outcome priced at 0.0 in float64."""
    assert shares_for_budget([0, 0], 100, 0, 0) == 0.0
    assert shares_for_budget([1e8, 0], 100, 1, 0) == 0.0
    assert shares_for_budget_micro([0, 0], 100 * MICRO, 0, 0) == 0
    assert shares_for_budget_micro([10**14, 0], 100 * MICRO, 1, 0) == 0


def test_any_positive_buy_costs_at_least_one_micro_credit():
    """Rounding up means a buy of one micro-share costs 1, even where the price underflows."""
    assert buy_cost_micro([0, 0], 100 * MICRO, 0, 1) == 1
    assert buy_cost_micro([10**14, 0], 100 * MICRO, 1, 1) == 1
    assert buy_cost_micro([0, 0], 100 * MICRO, 0, 0) == 0
    assert sell_proceeds_micro([0, 0], 100 * MICRO, 0, 0) == 0


# --- the worked example -------------------------------------------------------


def test_worked_example_from_the_design():
    """b = 100, 50/50: 10 YES cost 100*ln((e^0.1 + 1)/2) = 5.124948 credits = 5124948 micro."""
    assert buy_cost([0, 0], 100, 0, 10) == pytest.approx(100 * math.log((math.exp(0.1) + 1) / 2), rel=1e-14)
    assert round(buy_cost([0, 0], 100, 0, 10), 6) == 5.124948
    assert buy_cost_micro([0, 0], 100_000_000, 0, 10_000_000) == 5124948
    assert sell_proceeds_micro([10_000_000, 0], 100_000_000, 0, 10_000_000) == 5124947
    assert shares_for_budget([0, 0], 100, 0, 100 * math.log((math.exp(0.1) + 1) / 2)) == pytest.approx(10, rel=1e-12)
    assert shares_for_budget_micro([0, 0], 100_000_000, 0, 5124948) == 10_000_000
    assert max_loss_micro(100_000_000, 2) == 69314719
    assert cost([0, 0], 100) == pytest.approx(100 * math.log(2), rel=1e-15)
    assert log_sum_exp([1000.0, 1000.0]) == pytest.approx(1000 + math.log(2), rel=1e-15)


# --- stability at q/b = 10^6 --------------------------------------------------


def test_extreme_market_prices_and_cost():
    """At q = [1e8, 0], b = 100 prices are [1.0, ~0.0] and C(q) = 1e8 (no overflow, no NaN)."""
    q, b = [1e8, 0.0], 100.0
    p = prices(q, b)
    assert p[0] == 1.0
    assert 0.0 <= p[1] < 1e-300
    assert cost(q, b) == 1e8
    assert cost([1e300, 0.0], 1e-10) == 1e300  # q/b itself would overflow
    assert prices(list(reversed(q)), b) == list(reversed(p))


def test_extreme_market_trades():
    """Buys, sales and budgets at q/b = 10^6 give the closed-form answers instead of failing."""
    q, b = [1e8, 0.0], 100.0
    ln2 = math.log(2)
    # The favourite costs its face value; the long shot is nearly free until it catches up.
    assert buy_cost(q, b, 0, 10) == pytest.approx(10, rel=1e-12)
    assert buy_cost(q, b, 1, 10) == 0.0
    assert buy_cost(q, b, 1, 1e8) == pytest.approx(b * ln2, rel=1e-9)
    assert buy_cost(q, b, 1, 2e8) == pytest.approx(1e8, rel=1e-12)
    # Selling the whole favourite position returns C(q) - C(0).
    assert sell_proceeds(q, b, 0, 1e8) == pytest.approx(1e8 - b * ln2, rel=1e-12)
    assert sell_proceeds(q, b, 0, 1e6) == pytest.approx(1e6, rel=1e-12)
    assert sell_proceeds(q, b, 1, 10) == 0.0
    # A budget of 50 buys just the favourite's 50, or the long shot up to near 1e8.
    assert shares_for_budget(q, b, 0, 50) == pytest.approx(50, rel=1e-12)
    assert shares_for_budget(q, b, 1, 50) == pytest.approx(1e8 + b * math.log(math.expm1(0.5)), rel=1e-12)
    assert shares_for_budget(q, b, 1, 1e9) == pytest.approx(1e9 + b * math.log1p(-math.exp(-1e7)) + 1e8, rel=1e-12)
    assert buy_cost([0.0, 0.0], 1.0, 0, 1000) == pytest.approx(1000 - ln2, rel=1e-12)
    assert shares_for_budget([0.0, 0.0], 1.0, 0, 1000) == pytest.approx(1000 + ln2, rel=1e-12)


def test_extreme_market_in_micro_units():
    """Micro-unit trades at q/b = 10^6 round in the house's favour without failing."""
    q, b = [10**14, 0], 100 * MICRO
    assert buy_cost_micro(q, b, 0, 10 * MICRO) == 10 * MICRO + 1
    assert buy_cost_micro(q, b, 1, 10**14) == 69314719
    # C(q) - C(0) = 99999930685281.944 micro, rounded down, less at most a 1e-12 relative guard.
    assert 99999930685281 - 100 <= sell_proceeds_micro(q, b, 0, 10**14) <= 99999930685281
    assert 0 < shares_for_budget_micro(q, b, 1, 50 * MICRO) < 10**14
    assert prices_after_micro(q, b) == [1.0, 0.0]


@FAST
@given(markets(max_ratio=1e6), st.data())
@example(([1e8, 0.0], 100.0), None)
def test_every_function_is_finite_up_to_a_million_b(market, data):
    """Up to q/b = 10^6 and trades of 10^6*b nothing raises, overflows or returns NaN."""
    q, b = market
    if data is None:
        i, d = 1, 1e8
    else:
        i = data.draw(st.integers(0, len(q) - 1))
        d = data.draw(st.floats(min_value=0, max_value=1e6)) * b
    results = [
        cost(q, b),
        buy_cost(q, b, i, d),
        sell_proceeds(q, b, i, d),
        shares_for_budget(q, b, i, d),
        *prices(q, b),
    ]
    assert all(math.isfinite(r) for r in results)
    assert all(r >= 0 for r in results[1:])


# --- errors -------------------------------------------------------------------


def _callers(q, b):
    """Every public entry point that validates a market, called with (q, b)."""
    return [
        lambda: cost(q, b),
        lambda: prices(q, b),
        lambda: buy_cost(q, b, 0, 1),
        lambda: sell_proceeds(q, b, 0, 1),
        lambda: shares_for_budget(q, b, 0, 1),
    ]


@pytest.mark.parametrize("n", [0, 1, MAX_OUTCOMES + 1, 100])
def test_wrong_number_of_outcomes_is_rejected(n):
    """A market has 2 to 50 outcomes; anything else is a ValueError."""
    q = [0.0] * n
    for call in _callers(q, 10.0):
        with pytest.raises(ValueError, match=f"2 to 50 outcomes, not {n}"):
            call()
    with pytest.raises(ValueError):
        buy_cost_micro([0] * n, MICRO, 0, 1)
    with pytest.raises(ValueError):
        sell_proceeds_micro([0] * n, MICRO, 0, 1)
    with pytest.raises(ValueError):
        shares_for_budget_micro([0] * n, MICRO, 0, 1)


@pytest.mark.parametrize("b", [0.0, -0.0, -1.0, math.nan, math.inf, -math.inf])
def test_bad_liquidity_is_rejected(b):
    """Liquidity b must be positive and finite: 0, negatives, NaN and inf are ValueErrors."""
    for call in _callers([0.0, 0.0], b):
        with pytest.raises(ValueError, match="liquidity b must be a positive finite number"):
            call()


@pytest.mark.parametrize("b_micro", [0, -1])
def test_bad_liquidity_in_micro_units_is_rejected(b_micro):
    """The micro-unit functions reject b <= 0 too."""
    for call in (
        lambda: buy_cost_micro([0, 0], b_micro, 0, 1),
        lambda: sell_proceeds_micro([0, 0], b_micro, 0, 1),
        lambda: shares_for_budget_micro([0, 0], b_micro, 0, 1),
        lambda: prices_after_micro([0, 0], b_micro),
    ):
        with pytest.raises(ValueError, match="liquidity b"):
            call()


@pytest.mark.parametrize("amount", [-1.0, -1e-12, -math.inf, math.nan])
def test_negative_amounts_are_rejected(amount):
    """Negative (or NaN) shares and budgets are ValueErrors, not silently mirrored trades."""
    with pytest.raises(ValueError, match="shares must not be negative"):
        buy_cost([0, 0], 10, 0, amount)
    with pytest.raises(ValueError, match="shares must not be negative"):
        sell_proceeds([0, 0], 10, 0, amount)
    with pytest.raises(ValueError, match="budget must not be negative"):
        shares_for_budget([0, 0], 10, 0, amount)


def test_negative_micro_amounts_are_rejected():
    """The micro-unit functions reject negative shares and budgets."""
    with pytest.raises(ValueError, match="shares must not be negative"):
        buy_cost_micro([0, 0], MICRO, 0, -1)
    with pytest.raises(ValueError, match="shares must not be negative"):
        sell_proceeds_micro([0, 0], MICRO, 0, -1)
    with pytest.raises(ValueError, match="budget must not be negative"):
        shares_for_budget_micro([0, 0], MICRO, 0, -1)


@pytest.mark.parametrize("i", [-1, 2])
def test_unknown_outcome_is_rejected(i):
    """An outcome index outside 0..n-1 is an IndexError (no wrap-around for -1)."""
    for call in (
        lambda: buy_cost([0, 0], 10, i, 1),
        lambda: sell_proceeds([0, 0], 10, i, 1),
        lambda: shares_for_budget([0, 0], 10, i, 1),
        lambda: buy_cost_micro([0, 0], MICRO, i, 1),
    ):
        with pytest.raises(IndexError, match=f"outcome {i} is not one of the market's 2 outcomes"):
            call()
