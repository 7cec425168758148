"""Simulated traders: accounts that trade the open markets so a demo site looks alive.

They trade through ``services.place_trade``, the same path as people, so
every rule, lock and ledger line applies to them and the audit covers them.
Their usernames start with ``sim-`` so nobody mistakes them for readers.

How a simulated trader behaves (all randomness comes from one seeded
``random.Random``, so a seed replays the same trades on the same data):

- Each market has a hidden "consensus" (a logit per outcome) that drifts a
  little every time the market is looked at, like news arriving.
- Each trader sees that consensus through a personal, slowly drifting bias
  plus fresh noise; the result, turned into probabilities, is its belief.
- Compared with the market's prices, the outcome the trader believes is
  cheapest by more than ``BUY_EDGE`` gets bought with a modest budget
  (one to eighteen credits, more when the bargain looks bigger, never more
  than a tenth of the trader's cash). A held outcome that looks overpriced
  by ``SELL_EDGE`` is partly sold (a fifth to four fifths, or all of a
  remainder under one share); now and then a trader takes profit on a
  holding anyway. No bargain: the trader passes.
- A trader short of cash sells half of its largest open holding, or waits.
- Some markets draw more interest than others (a heavy-tailed weight per
  market), so a few markets move a lot and most a little, as on real sites.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from bellwether.accounts.services import create_user

from . import lmsr, services
from .exceptions import InsufficientFunds, InvalidTrade, MarketClosed, MarketNotFound, SlippageExceeded
from .models import Market, Outcome, Position, Trade
from .selectors import user_balance

MICRO = services.MICRO
USERNAME_PREFIX = "sim-"
NAMES = (
    "ana", "bo", "chen", "dara", "eli", "femi", "gus", "hana", "ivo", "jun",
    "kai", "lena", "milo", "nia", "omar", "pia", "quinn", "rosa", "sami", "tove",
)
BUY_EDGE = 0.03  # a belief this far above the price is a bargain
SELL_EDGE = 0.06  # a held outcome priced this far above the belief gets sold
TAKE_PROFIT_CHANCE = 0.04
CONSENSUS_DRIFT = 0.08  # logit steps of the hidden consensus per look
BIAS_SPREAD = 0.35  # how far one trader's view sits from the consensus
BIAS_DRIFT = 0.03
REVERSION = 0.005  # pull towards even odds per look, so beliefs never run off to certainty
MAX_INTEREST = 8.0
VIEW_NOISE = 0.10
MIN_BUDGET_MICRO = MICRO  # below one credit of cash, a trader is broke
MAX_BUDGET_SHARE = 0.10  # of the trader's cash, per trade


def trader_username(index: int) -> str:
    """Return the username of the ``index``-th simulated trader: sim-ana, sim-bo, ..., then sim-ana-2."""
    name = NAMES[index % len(NAMES)]
    round_ = index // len(NAMES)
    return f"{USERNAME_PREFIX}{name}" + (f"-{round_ + 1}" if round_ else "")


def ensure_traders(*, count: int) -> list:
    """Return ``count`` simulated traders, creating the missing ones with the starting balance."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    traders = []
    for index in range(count):
        username = trader_username(index)
        user = User.objects.filter(username=username).first()
        traders.append(user or create_user(username=username))
    return traders


@dataclass(frozen=True)
class SimTrade:
    """One trade a simulated trader made."""

    trade_id: int
    trader: str
    market: str
    outcome: str
    side: str
    shares_micro: int
    amount_micro: int
    probability_before: float
    probability_after: float

    def describe(self) -> str:
        """Return a one-line account of the trade, e.g. for a log."""
        verb = "bought" if self.side == Trade.Side.BUY else "sold"
        return (
            f"{self.trader} {verb} {self.shares_micro / MICRO:.2f} {self.outcome} in {self.market} "
            f"for {self.amount_micro / MICRO:.2f} credits "
            f"({self.outcome} {self.probability_before:.1%} -> {self.probability_after:.1%})"
        )


@dataclass
class Tally:
    """What a simulation did so far."""

    buys: int = 0
    sells: int = 0
    passes: int = 0  # no bargain in sight
    waits: int = 0  # broke, nothing to sell
    refused: int = 0  # the service said no (market closed meanwhile, ...)
    errors: int = 0  # the database was unreachable for a moment
    volume_micro: int = 0

    @property
    def trades(self) -> int:
        return self.buys + self.sells


@dataclass
class _MarketMind:
    """The hidden consensus about one market and how much attention it draws."""

    consensus: list[float]
    interest: float
    biases: dict[int, list[float]] = field(default_factory=dict)  # trader id -> bias per outcome


class Simulation:
    """A set of simulated traders and their beliefs; ``step()`` lets one of them act once."""

    def __init__(self, *, traders: list, seed: int | None = None) -> None:
        if not traders:
            raise ValueError("a simulation needs at least one trader")
        self.traders = list(traders)
        self.rng = random.Random(seed)
        self.tally = Tally()
        self._minds: dict[int, _MarketMind] = {}

    # -- one step ------------------------------------------------------------

    def step(self) -> SimTrade | None:
        """Let one trader look at one open market and trade, or not; return the trade made, if any."""
        markets = _trading_markets()
        if not markets:
            self.tally.passes += 1
            return None
        trader = self.rng.choice(self.traders)
        minds = [self._mind(market) for market in markets]
        market = self.rng.choices(markets, weights=[mind.interest for mind in minds])[0]
        mind = self._minds[market["pk"]]
        slugs = [slug for slug, _ in market["outcomes"]]
        prices = _prices(market)
        belief = self._belief(mind, trader.pk)
        held = dict(
            Position.objects.filter(user=trader, market_id=market["pk"], shares_micro__gt=0).values_list("outcome__slug", "shares_micro")
        )
        # Sell what looks overpriced, or now and then take profit.
        overpriced = [i for i, slug in enumerate(slugs) if held.get(slug) and prices[i] - belief[i] > SELL_EDGE]
        if not overpriced and held and self.rng.random() < TAKE_PROFIT_CHANCE:
            overpriced = [slugs.index(self.rng.choice(sorted(held)))]
        if overpriced:
            index = max(overpriced, key=lambda i: prices[i] - belief[i])
            fraction = self.rng.uniform(0.2, 0.8)
            return self._sell(trader, market["slug"], slugs[index], held[slugs[index]], fraction)
        edges = [b - p for b, p in zip(belief, prices)]
        best = max(range(len(slugs)), key=lambda i: edges[i])
        if edges[best] < BUY_EDGE:
            self.tally.passes += 1
            return None
        budget = self.rng.uniform(1.0, 6.0) * min(1.0 + 10.0 * edges[best], 3.0) * MICRO
        _, cash = user_balance(user=trader)
        budget = int(min(budget, cash * MAX_BUDGET_SHARE))
        if budget < MIN_BUDGET_MICRO:
            return self._raise_cash(trader)
        request = services.TradeRequest(outcome=slugs[best], side=Trade.Side.BUY, amount_micro=budget)
        try:
            return self._place(trader, market["slug"], request)
        except InsufficientFunds:
            return self._raise_cash(trader)

    def _mind(self, market: dict) -> _MarketMind:
        """Return the market's hidden state, made from its prices the first time it is seen."""
        mind = self._minds.get(market["pk"])
        if mind is None:
            consensus = [math.log(max(p, 1e-6)) + self.rng.gauss(0, 0.5) for p in _prices(market)]
            mind = self._minds[market["pk"]] = _MarketMind(consensus=consensus, interest=min(self.rng.paretovariate(1.2), MAX_INTEREST))
        return mind

    def _belief(self, mind: _MarketMind, trader_id: int) -> list[float]:
        """Drift the consensus and the trader's bias a little; return the trader's probabilities."""
        keep = 1.0 - REVERSION
        mind.consensus = [keep * c + self.rng.gauss(0, CONSENSUS_DRIFT) for c in mind.consensus]
        bias = mind.biases.get(trader_id)
        if bias is None:
            bias = [self.rng.gauss(0, BIAS_SPREAD) for _ in mind.consensus]
        bias = mind.biases[trader_id] = [keep * b + self.rng.gauss(0, BIAS_DRIFT) for b in bias]
        logits = [c + b + self.rng.gauss(0, VIEW_NOISE) for c, b in zip(mind.consensus, bias)]
        top = max(logits)
        weights = [math.exp(x - top) for x in logits]
        total = sum(weights)
        return [w / total for w in weights]

    def _sell(self, trader, market_slug: str, outcome: str, held_micro: int, fraction: float) -> SimTrade | None:
        shares = int(held_micro * fraction)
        if held_micro - shares < MICRO:
            # Leave no crumbs: a remainder under one share goes too.
            request = services.TradeRequest(outcome=outcome, side=Trade.Side.SELL, sell_all=True)
        else:
            request = services.TradeRequest(outcome=outcome, side=Trade.Side.SELL, shares_micro=shares)
        return self._place(trader, market_slug, request)

    def _raise_cash(self, trader) -> SimTrade | None:
        """Sell half of the trader's largest holding in a market still trading, or wait if there is none."""
        position = (
            Position.objects.filter(
                user=trader, shares_micro__gt=0, market__status=Market.Status.OPEN, market__close_at__gt=timezone.now()
            )
            .select_related("market", "outcome")
            .order_by("-shares_micro", "pk")
            .first()
        )
        if position is None:
            self.tally.waits += 1
            return None
        return self._sell(trader, position.market.slug, position.outcome.slug, position.shares_micro, 0.5)

    def _place(self, trader, market_slug: str, request: services.TradeRequest) -> SimTrade | None:
        try:
            body = services.place_trade(user=trader, market_slug=market_slug, request=request)
        except (MarketClosed, MarketNotFound, InvalidTrade, SlippageExceeded):
            self.tally.refused += 1
            return None
        trade = Trade.objects.select_related("outcome").get(pk=body["trade_id"])
        index = trade.outcome.position
        made = SimTrade(
            trade_id=trade.pk, trader=trader.get_username(), market=market_slug, outcome=trade.outcome.slug,
            side=trade.side, shares_micro=trade.shares_micro, amount_micro=trade.amount_micro,
            probability_before=trade.probability_before, probability_after=trade.probabilities_after[index],
        )
        if made.side == Trade.Side.BUY:
            self.tally.buys += 1
        else:
            self.tally.sells += 1
        self.tally.volume_micro += made.amount_micro
        return made


def _trading_markets() -> list[dict]:
    """Return the markets open for trading now (open and before close), oldest first, with their outcomes.

    Two queries whatever the number of markets.
    """
    markets = list(
        Market.objects.filter(status=Market.Status.OPEN, close_at__gt=timezone.now())
        .order_by("pk")
        .values("pk", "slug", "liquidity_b_micro")
    )
    by_id = {market["pk"]: market for market in markets}
    for market in markets:
        market["outcomes"] = []
    rows = Outcome.objects.filter(market_id__in=by_id).order_by("market_id", "position").values_list("market_id", "slug", "shares_micro")
    for market_id, slug, shares in rows:
        by_id[market_id]["outcomes"].append((slug, shares))
    return markets


def _prices(market: dict) -> list[float]:
    return lmsr.prices_after_micro([q for _, q in market["outcomes"]], market["liquidity_b_micro"])


def run(
    simulation: Simulation,
    *,
    rate_per_min: float,
    duration_s: float = 0,
    steps: int = 0,
    stop: threading.Event | None = None,
    on_trade: Callable[[SimTrade], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
    seed: int | None = None,
) -> Tally:
    """Step ``simulation`` about ``rate_per_min`` times a minute until ``stop`` is set.

    Also stops after ``duration_s`` seconds or ``steps`` steps when those are
    positive. Pauses between steps are exponential (arrivals of a Poisson
    process) and drawn from their own generator, so timing never changes
    which trades a seed produces.
    """
    if rate_per_min <= 0:
        raise ValueError("the rate must be positive")
    stop = stop or threading.Event()
    pauses = random.Random(None if seed is None else seed + 1)
    deadline = time.monotonic() + duration_s if duration_s > 0 else math.inf
    done = 0
    while not stop.is_set() and time.monotonic() < deadline and (steps <= 0 or done < steps):
        try:
            trade = simulation.step()
        except (OperationalError, InterfaceError) as exc:
            # A restarted or briefly unreachable database should not end the demo.
            simulation.tally.errors += 1
            connection.close()
            if on_error:
                on_error(exc)
            trade = None
        done += 1
        if trade is not None and on_trade:
            on_trade(trade)
        pause = pauses.expovariate(rate_per_min / 60.0)
        stop.wait(min(pause, max(0.0, deadline - time.monotonic())))
    return simulation.tally
