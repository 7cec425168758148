"""The logarithmic market scoring rule (LMSR), in plain numbers.

No Django and nothing else of Bellwether's: every function takes outcome
quantities ``q`` (shares sold so far, one per outcome) and the liquidity
``b``, in any one unit, and returns numbers in that unit.

Cost function, prices and the house's worst case, for n outcomes::

    C(q)   = b * ln(sum_i exp(q_i / b))
    p_i(q) = exp(q_i / b) / sum_j exp(q_j / b)
    loss   = b * ln(n)

Trading ``d`` shares of outcome i moves along the cost function::

    buy  cost     = C(q + d*e_i) - C(q) = b * ln(1 + p_i * (exp(d/b) - 1))
    sell proceeds = C(q) - C(q - d*e_i) = -b * ln(1 + p_i * (exp(-d/b) - 1))
    shares for a budget m = b * ln((exp(m/b) - 1 + p_i) / p_i)

The right-hand forms need only the price p_i, worked from the log-odds
ln(p_i / (1 - p_i)) with the log-sum-exp shift (subtract max q_i). Small
trades use ``log1p``/``expm1`` as written; large ones sum
ln(1 - p_i + p_i * exp(+-d/b)) in log space. So nothing overflows, underflows
to a wrong answer or loses its digits, even at q/b = 10^6.

Worked example: b = 100, two outcomes at 50/50; 10 YES shares cost
100 * ln((e^0.1 + 1) / 2) = 5.124948 credits:

>>> round(buy_cost([0, 0], 100, 0, 10), 6)
5.124948
>>> prices([0, 0], 100)
[0.5, 0.5]
>>> round(shares_for_budget([0, 0], 100, 0, 5.124948), 4)
10.0

Money is integer micro-units. The ``*_micro`` functions round in the
house's favour: a buyer pays the ceiling, a seller gets the floor, a budget
buys the largest whole number of micro-shares it can pay for.

>>> buy_cost_micro([0, 0], 100_000_000, 0, 10_000_000)
5124948
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MICRO = 1_000_000
MIN_OUTCOMES = 2
MAX_OUTCOMES = 50
# Float results are nudged this far (relative, about 45 float64 ulps)
# towards the house before rounding, so float error cannot round a payment
# the trader's way, yet amounts near 10^11 micro are not pushed a whole unit.
_GUARD = 1e-14
# When outcomes are far apart (q/b up to 10^6) float64 resolves the log-odds
# only to about eps * spread / b, which no relative guard covers: a trade's
# error is then up to about 2.5 * eps * (spread + shares) * min(1, amount / b)
# micro-credits (eps = 2.2e-16). Nudge by 1e-15 times that product as well.
_SPREAD_GUARD = 1e-15


def _check(q: Sequence[float], b: float) -> None:
    if not MIN_OUTCOMES <= len(q) <= MAX_OUTCOMES:
        raise ValueError(f"a market has {MIN_OUTCOMES} to {MAX_OUTCOMES} outcomes, not {len(q)}")
    if not (b > 0 and math.isfinite(b)):
        raise ValueError("liquidity b must be a positive finite number")


def _check_amount(amount: float, what: str) -> None:
    # ``not amount >= 0`` also rejects NaN, which ``amount < 0`` lets through.
    if not amount >= 0:
        raise ValueError(f"{what} must not be negative")


def log_sum_exp(xs: Sequence[float]) -> float:
    """Return ln(sum(exp(x))) without overflow.

    >>> round(log_sum_exp([1000.0, 1000.0]) - 1000.0, 12) == round(math.log(2), 12)
    True
    """
    top = max(xs)
    return top + math.log(math.fsum(math.exp(x - top) for x in xs))


def _softplus(t: float) -> float:
    """Return ln(1 + e^t) without overflow or loss for very negative t."""
    if t > 0:
        return t + math.log1p(math.exp(-t))
    return math.log1p(math.exp(t))


def _log_add_exp(a: float, c: float) -> float:
    """Return ln(e^a + e^c) without overflow."""
    top, low = (a, c) if a >= c else (c, a)
    return top + math.log1p(math.exp(low - top))


def _odds(q: Sequence[float], b: float, i: int) -> tuple[float, float, float]:
    """Return (p_i, ln p_i, ln(1 - p_i)) for outcome ``i``.

    Worked from the log-odds ln(p_i / (1 - p_i)), so neither logarithm
    underflows even when p_i is 0.0 or 1.0 in float64 (q/b of 10^6).
    """
    _check(q, b)
    if not 0 <= i < len(q):
        raise IndexError(f"outcome {i} is not one of the market's {len(q)} outcomes")
    top = max(q)
    z = [(x - top) / b for x in q]
    odds = z[i] - log_sum_exp(z[:i] + z[i + 1 :])
    log_p, log_not_p = -_softplus(-odds), -_softplus(odds)
    p = 1 / (1 + math.exp(-odds)) if odds >= 0 else math.exp(odds) / (1 + math.exp(odds))
    return p, log_p, log_not_p


def cost(q: Sequence[float], b: float) -> float:
    """Return C(q) = b * ln(sum_i exp(q_i / b)).

    >>> round(cost([0, 0], 100), 6) == round(100 * math.log(2), 6)
    True
    """
    _check(q, b)
    # Shift before dividing: q_i / b alone can overflow for a tiny b.
    top = max(q)
    return top + b * math.log(math.fsum(math.exp((x - top) / b) for x in q))


def prices(q: Sequence[float], b: float) -> list[float]:
    """Return each outcome's price (probability); they sum to 1.

    >>> [round(p, 4) for p in prices([10, 0], 10)]
    [0.7311, 0.2689]
    """
    _check(q, b)
    top = max(q)
    weights = [math.exp((x - top) / b) for x in q]
    total = math.fsum(weights)
    return [w / total for w in weights]


def buy_cost(q: Sequence[float], b: float, i: int, shares: float) -> float:
    """Return what buying ``shares`` of outcome ``i`` costs: C(q + d*e_i) - C(q)."""
    _check_amount(shares, "shares")
    p, log_p, log_not_p = _odds(q, b, i)
    x = shares / b
    if x <= 1:
        return b * math.log1p(p * math.expm1(x))
    # ln(1 - p + p*e^x): exp(x) would overflow past x = 709.
    return b * _log_add_exp(log_not_p, log_p + x)


def sell_proceeds(q: Sequence[float], b: float, i: int, shares: float) -> float:
    """Return what selling ``shares`` of outcome ``i`` pays: C(q) - C(q - d*e_i)."""
    _check_amount(shares, "shares")
    p, log_p, log_not_p = _odds(q, b, i)
    x = shares / b
    step = p * math.expm1(-x)
    if step >= -0.5:
        return -b * math.log1p(step)
    # ln(1 - p + p*e^-x) when it is far below 0: log1p(-1.0) would fail.
    return -b * _log_add_exp(log_not_p, log_p - x)


def shares_for_budget(q: Sequence[float], b: float, i: int, budget: float) -> float:
    """Return how many shares of outcome ``i`` a budget buys (closed form).

    d = b * ln((exp(m/b) - 1 + p_i) / p_i)
    """
    _check_amount(budget, "budget")
    p, log_p, log_not_p = _odds(q, b, i)
    t = budget / b
    if t == 0:
        return 0.0
    if t <= 1 and p > 0:
        ratio = math.expm1(t) / p
        if ratio < 1e300:
            return b * math.log1p(ratio)
    # A huge ratio (large budget or a price near 0): ln(e^t - (1 - p)) - ln p.
    if t <= 1:
        head = math.log(math.expm1(t) + p)
    else:
        head = t + math.log1p(-math.exp(log_not_p - t))
    return b * (head - log_p)


def max_loss(b: float, n: int) -> float:
    """Return the house's worst-case loss (the subsidy), b * ln(n).

    >>> round(max_loss(100, 2), 6)
    69.314718
    """
    return b * math.log(n)


def _credits(q_micro: Sequence[int]) -> list[float]:
    # Shift in integers first (exact, and prices and trade costs are
    # shift-invariant), so large holdings lose no precision to the float.
    top = max(q_micro, default=0)
    return [(x - top) / MICRO for x in q_micro]


def _slack(q_micro: Sequence[int], b_micro: int, shares_micro: int, amount: float) -> float:
    spread = max(q_micro, default=0) - min(q_micro, default=0)
    return _SPREAD_GUARD * (spread + shares_micro) * min(1.0, amount / b_micro)


def buy_cost_micro(q_micro: Sequence[int], b_micro: int, i: int, shares_micro: int) -> int:
    """Return the micro-credits a buyer pays for ``shares_micro``, rounded up.

    Any positive number of shares costs a positive amount, so at least 1.
    """
    exact = buy_cost(_credits(q_micro), b_micro / MICRO, i, shares_micro / MICRO) * MICRO
    if shares_micro == 0:
        return 0
    return max(1, math.ceil(exact * (1 + _GUARD) + _slack(q_micro, b_micro, shares_micro, exact)))


def sell_proceeds_micro(q_micro: Sequence[int], b_micro: int, i: int, shares_micro: int) -> int:
    """Return the micro-credits a seller receives for ``shares_micro``, rounded down."""
    exact = sell_proceeds(_credits(q_micro), b_micro / MICRO, i, shares_micro / MICRO) * MICRO
    return max(0, math.floor(exact * (1 - _GUARD) - _slack(q_micro, b_micro, shares_micro, exact)))


def shares_for_budget_micro(q_micro: Sequence[int], b_micro: int, i: int, budget_micro: int) -> int:
    """Return the most micro-shares of ``i`` whose rounded-up cost fits ``budget_micro``.

    >>> n = shares_for_budget_micro([0, 0], 100_000_000, 0, 5_124_948)
    >>> buy_cost_micro([0, 0], 100_000_000, 0, n) <= 5_124_948 < buy_cost_micro([0, 0], 100_000_000, 0, n + 1)
    True
    """
    guess = math.floor(shares_for_budget(_credits(q_micro), b_micro / MICRO, i, budget_micro / MICRO) * MICRO)

    def fits(n: int) -> bool:
        return buy_cost_micro(q_micro, b_micro, i, n) <= budget_micro

    # The closed form is exact in reals; float rounding can leave it off by
    # a few micro-shares either way. Bracket the integer boundary around the
    # guess, then bisect: lo always fits, hi never does.
    lo, step = max(0, guess), 1
    while lo > 0 and not fits(lo):
        lo, step = max(0, lo - step), step * 2
    hi, step = lo + 1, 1
    while fits(hi):
        lo, hi, step = hi, hi + step, step * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def max_loss_micro(b_micro: int, n: int) -> int:
    """Return the subsidy in micro-credits, rounded up so the pool is never short."""
    return math.ceil(max_loss(b_micro / MICRO, n) * MICRO * (1 + _GUARD))


def prices_after_micro(q_micro: Sequence[int], b_micro: int) -> list[float]:
    """Return prices for integer quantities (a convenience for callers holding micro units)."""
    return prices(_credits(q_micro), b_micro / MICRO)
