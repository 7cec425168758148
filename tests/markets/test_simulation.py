"""Simulated traders: real trades through the trade service, reproducible, only on open markets, never broke."""

from __future__ import annotations

import datetime as dt
import io
import sys
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.ledger.models import Account, Transfer
from bellwether.markets import services, simulation
from bellwether.markets.audit import run_audit
from bellwether.markets.models import Market, Position, Trade
from bellwether.markets.services import TradeRequest
from bellwether.markets.simulation import Simulation, ensure_traders, run, trader_username
from bellwether.news.management.commands.demo import demo_traders, simulator_argv

M = services.MICRO


def new_market(question: str, **kwargs) -> Market:
    defaults = dict(question=question, liquidity_b_micro=100 * M, close_at=timezone.now() + dt.timedelta(days=7))
    defaults.update(kwargs)
    return services.create_market(**defaults)


def three_markets() -> list[Market]:
    return [
        new_market("Will the ceasefire hold through March?"),
        new_market("Will turnout exceed 60%?"),
        new_market("Who wins the cup?", outcomes=["Rovers", "United", "City"]),
    ]


def trade_rows() -> list[tuple]:
    """Return every trade as (trader, market, outcome, side, shares, amount), oldest first."""
    return list(
        Trade.objects.order_by("pk").values_list(
            "user__username", "market__slug", "outcome__slug", "side", "shares_micro", "amount_micro"
        )
    )


def simulate(*, seed: int, steps: int, traders: int = 3) -> Simulation:
    sim = Simulation(traders=ensure_traders(count=traders), seed=seed)
    for _ in range(steps):
        sim.step()
    return sim


@pytest.mark.django_db
def test_trader_names_say_simulated_and_creating_them_twice_changes_nothing():
    """Traders are sim-ana, sim-bo, ... (then sim-ana-2), made once with the starting balance."""
    assert [trader_username(i) for i in (0, 1, 2, 19, 20, 41)] == ["sim-ana", "sim-bo", "sim-chen", "sim-tove", "sim-ana-2", "sim-bo-3"]
    first = ensure_traders(count=3)
    again = ensure_traders(count=4)
    assert [u.pk for u in again[:3]] == [u.pk for u in first]
    assert [u.username for u in again] == ["sim-ana", "sim-bo", "sim-chen", "sim-dara"]
    assert Transfer.objects.filter(kind=Transfer.Kind.GRANT).count() == 4
    assert set(Account.objects.filter(user__in=again).values_list("balance_micro", flat=True)) == {1000 * M}


@pytest.mark.django_db
def test_every_simulated_trade_goes_through_place_trade_and_the_books_balance(monkeypatch):
    """200 steps trade only through place_trade: one Trade and one ledger line each, and the audit passes."""
    three_markets()
    calls = []
    real_place_trade = services.place_trade

    def counting_place_trade(**kwargs):
        calls.append(kwargs["request"])
        return real_place_trade(**kwargs)

    monkeypatch.setattr(services, "place_trade", counting_place_trade)
    sim = simulate(seed=11, steps=200)
    tally = sim.tally
    assert tally.trades >= 100
    assert tally.buys > 0 and tally.sells > 0
    assert tally.trades + tally.passes + tally.waits + tally.refused == 200
    assert len(calls) == tally.trades + tally.refused
    assert Trade.objects.count() == tally.trades
    assert Transfer.objects.filter(kind=Transfer.Kind.BUY).count() == tally.buys
    assert {name for name, *_ in trade_rows()} <= {"sim-ana", "sim-bo", "sim-chen"}
    assert sum(amount for *_, amount in trade_rows()) == tally.volume_micro
    assert run_audit().problems == []


@pytest.mark.django_db
def test_the_same_seed_makes_the_same_trades_and_another_seed_others():
    """On the same data, seed 5 twice gives the identical sequence of trades; seed 6 a different one."""

    def trades_with(seed: int) -> list[tuple]:
        # A bare savepoint (not an atomic block) lets place_trade's durable
        # block nest in the test's transaction, and undoes the run after.
        savepoint = transaction.savepoint()
        three_markets()
        simulate(seed=seed, steps=60)
        rows = trade_rows()
        transaction.savepoint_rollback(savepoint)
        return rows

    first = trades_with(5)
    assert len(first) >= 20
    assert trades_with(5) == first
    assert trades_with(6) != first
    assert Trade.objects.count() == 0


@pytest.mark.django_db
def test_only_open_markets_before_their_close_are_traded():
    """Drafts, closed, resolved and cancelled markets see no simulated trade; the open one does."""
    person = create_user(username="reader")
    open_market = new_market("Will the bridge open on time?")
    new_market("A draft question?", status=Market.Status.DRAFT)
    closed = new_market("A closed question?")
    Market.objects.filter(pk=closed.pk).update(close_at=timezone.now() - dt.timedelta(minutes=1))
    for question, how in (("A resolved question?", {"outcome": "yes"}), ("A cancelled question?", {"cancel": True})):
        settled = new_market(question)
        services.place_trade(user=person, market_slug=settled.slug, request=TradeRequest(outcome="yes", side="buy", amount_micro=10 * M))
        services.resolve_market(market_slug=settled.slug, by=person, **how)
    sim = simulate(seed=3, steps=60)
    assert sim.tally.trades > 0
    assert sim.tally.refused == 0
    assert set(Trade.objects.filter(user__username__startswith="sim-").values_list("market__slug", flat=True)) == {open_market.slug}


@pytest.mark.django_db
def test_a_market_that_closes_after_being_listed_is_refused_not_a_crash(monkeypatch):
    """When the service refuses a trade (the market closed meanwhile), the trader moves on and nothing is written."""
    market = new_market("Will the strike end this week?")
    stale = simulation._trading_markets()
    Market.objects.filter(pk=market.pk).update(close_at=timezone.now() - dt.timedelta(seconds=1))
    monkeypatch.setattr(simulation, "_trading_markets", lambda: stale)
    sim = simulate(seed=2, steps=20)
    assert sim.tally.trades == 0
    assert sim.tally.refused > 0
    assert sim.tally.refused + sim.tally.passes == 20
    assert Trade.objects.count() == 0


@pytest.mark.django_db
def test_a_broke_trader_with_nothing_to_sell_waits(settings, monkeypatch):
    """Without cash or holdings a trader waits, also when a stale balance lets it try and the service says InsufficientFunds."""
    settings.STARTING_BALANCE_MICRO = 0
    three_markets()
    sim = simulate(seed=4, steps=30)
    assert (sim.tally.trades, sim.tally.refused) == (0, 0)
    assert sim.tally.waits > 0
    assert sim.tally.waits + sim.tally.passes == 30
    # A balance read that claims riches makes it try: the service refuses and it still waits.
    monkeypatch.setattr(simulation, "user_balance", lambda *, user: (None, 1000 * M))
    tried = simulate(seed=4, steps=30)
    assert (tried.tally.trades, tried.tally.refused) == (0, 0)
    assert tried.tally.waits > 0
    assert Trade.objects.count() == 0
    assert run_audit().problems == []


@pytest.mark.django_db
def test_a_broke_trader_with_a_holding_sells_part_of_it(settings):
    """A trader left with less than a credit raises cash by selling shares, and never buys before it has some."""
    settings.STARTING_BALANCE_MICRO = 20 * M
    market = new_market("Will the ferry run on Sunday?")
    (trader,) = ensure_traders(count=1)
    services.place_trade(user=trader, market_slug=market.slug, request=TradeRequest(outcome="yes", side="buy", amount_micro=19_600_000))
    assert Account.objects.get(user=trader).balance_micro < M
    held = Position.objects.get(user=trader).shares_micro
    sim = Simulation(traders=[trader], seed=9)
    first = None
    for _ in range(50):
        first = sim.step()
        if first is not None:
            break
    assert first is not None
    assert (first.side, first.outcome, first.trader) == ("sell", "yes", "sim-ana")
    assert 0 < first.shares_micro < held
    assert Position.objects.get(user=trader).shares_micro == held - first.shares_micro
    assert run_audit().problems == []


@pytest.mark.django_db
def test_run_stops_when_asked_and_after_its_steps():
    """run() makes exactly ``steps`` decisions, and returns promptly once its stop event is set."""
    three_markets()
    sim = Simulation(traders=ensure_traders(count=2), seed=1)
    tally = run(sim, rate_per_min=600_000, steps=25, seed=1)
    assert tally.trades + tally.passes + tally.waits + tally.refused == 25
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    run(sim, rate_per_min=1, stop=stop, seed=1)  # a pause of about a minute, cut short
    assert time.monotonic() - started < 3


@pytest.mark.django_db
def test_simulate_command_prints_a_line_per_trade_at_verbosity_2_and_a_summary():
    """`bellwether simulate -v 2` prints a start line, one line per trade and the summary; -v 1 only the two."""
    three_markets()
    out = io.StringIO()
    call_command("simulate", traders=2, steps=30, rate=600_000, seed=8, verbosity=2, stdout=out)
    lines = out.getvalue().splitlines()
    trades = trade_rows()
    assert lines[0] == "2 simulated trader(s) (sim-ana, sim-bo) trading about 600000 times a minute; Ctrl-C stops them."
    assert len(lines) == len(trades) + 2
    first = Trade.objects.order_by("pk").first()
    verb = "bought" if first.side == "buy" else "sold"
    assert lines[1].endswith(f"#{first.pk} {first.user.username} {verb} {first.shares_micro / M:.2f} {first.outcome.slug} in {first.market.slug} for {first.amount_micro / M:.2f} credits ({first.outcome.slug} {first.probability_before:.1%} -> {first.probabilities_after[first.outcome.position]:.1%})")
    assert f": {len(trades)} trades (" in lines[-1]
    quiet = io.StringIO()
    call_command("simulate", traders=2, steps=5, rate=600_000, seed=8, stdout=quiet)
    assert len(quiet.getvalue().splitlines()) == 2
    with pytest.raises(CommandError, match="--traders must be at least 1"):
        call_command("simulate", traders=0, steps=1)


def test_demo_runs_the_configured_number_of_traders_and_none_with_zero(settings):
    """The demo's traders: --traders wins over DEMO_TRADERS; 0 (either way) starts no process."""
    settings.DEMO_TRADERS = 2
    assert demo_traders(None) == 2
    assert demo_traders(5) == 5
    assert demo_traders(0) == 0
    settings.DEMO_TRADERS = 0
    assert demo_traders(None) == 0
    assert demo_traders(3) == 3
    assert simulator_argv(traders=0) is None
    assert simulator_argv(traders=-1) is None
    assert simulator_argv(traders=3) == [sys.executable, "-m", "bellwether.cli", "simulate", "--traders", "3", "--verbosity", "0"]
