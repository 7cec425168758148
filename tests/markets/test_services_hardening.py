"""Market services under hostile or unlucky input: sources, sizes, scripts, settled markets, old keys, lock order."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bellwether.accounts.services import create_user
from bellwether.ledger.models import Account, Transfer
from bellwether.markets import limits, lmsr, services
from bellwether.markets.audit import run_audit
from bellwether.markets.exceptions import InvalidTrade, ResolutionConflict
from bellwether.markets.models import IdempotencyKey, Market
from bellwether.markets.services import TradeRequest

pytestmark = pytest.mark.django_db
M = lmsr.MICRO


def new_market(**kwargs) -> Market:
    defaults = dict(question="Will the talks yield substantive progress?", liquidity_b_micro=100 * M, close_at=timezone.now() + dt.timedelta(days=7))
    defaults.update(kwargs)
    return services.create_market(**defaults)


def buy(user, market, outcome="yes", key=None, shares=10 * M):
    request = TradeRequest(outcome=outcome, side="buy", shares_micro=shares)
    return services.place_trade(user=user, market_slug=market.slug, request=request, idempotency_key=key)


@pytest.fixture
def alice():
    return create_user(username="alice")


@pytest.fixture
def rosa():
    return create_user(username="rosa")


# --- resolution sources -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (["javascript:alert(1)"], "'javascript:alert(1)' is not a web address (http:// or https://)"),
        (["data:text/html,<script>alert(1)</script>"], "'data:text/html,<script>alert(1)</script>' is not a web address (http:// or https://)"),
        (["ftp://example.org/file"], "'ftp://example.org/file' is not a web address (http:// or https://)"),
        (["see the minutes"], "'see the minutes' is not a web address (http:// or https://)"),
        (["https://example.org/" + "a" * 2_000], "a source is longer than 2,000 characters"),
        ([f"https://example.org/{i}" for i in range(21)], "give at most 20 sources"),
        ("https://example.org/a", "sources must be a list of web addresses"),
    ],
)
def test_a_resolution_with_a_bad_source_is_refused_and_pays_nothing(alice, rosa, sources, message):
    """Only http(s) addresses, at most 20, each at most 2,000 characters: anything else changes nothing."""
    market = new_market()
    buy(alice, market)
    before = Account.objects.get(user=alice).balance_micro
    with pytest.raises(InvalidTrade) as caught:
        services.resolve_market(market_slug=market.slug, by=rosa, outcome="yes", sources=sources)
    assert str(caught.value) == message
    market.refresh_from_db()
    assert market.status == "open" and market.resolution_sources == []
    assert Account.objects.get(user=alice).balance_micro == before


def test_good_sources_are_kept_trimmed_and_without_blank_lines(rosa):
    """Twenty http(s) addresses are accepted as given, surrounding spaces and empty entries dropped."""
    market = new_market()
    sources = [f" https://example.org/{i} " for i in range(limits.SOURCES_MAX)] + ["", "   "]
    services.resolve_market(market_slug=market.slug, by=rosa, outcome="no", sources=sources)
    market.refresh_from_db()
    assert market.resolution_sources == [f"https://example.org/{i}" for i in range(limits.SOURCES_MAX)]


def test_a_note_beyond_its_limit_is_refused(rosa):
    """A resolution note over NOTE_MAX_CHARS characters is refused before anything is locked."""
    market = new_market()
    with pytest.raises(InvalidTrade, match="the note is longer than 2,000 characters"):
        services.resolve_market(market_slug=market.slug, by=rosa, outcome="no", note="x" * (limits.NOTE_MAX_CHARS + 1))
    assert Market.objects.get(pk=market.pk).status == "open"


# --- settled markets -------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "again", "conflict"),
    [
        ({"outcome": "yes"}, {"outcome": "yes"}, False),
        ({"outcome": "yes"}, {"outcome": "no"}, True),
        ({"outcome": "yes"}, {"cancel": True}, True),
        ({"cancel": True}, {"cancel": True}, False),
        ({"cancel": True}, {"outcome": "no"}, True),
        ({"probabilities": {"yes": "0.3", "no": "0.7"}}, {"probabilities": {"yes": "0.300000", "no": "0.7"}}, False),
        ({"probabilities": {"yes": "0.3", "no": "0.7"}}, {"probabilities": {"yes": "0.4", "no": "0.6"}}, True),
        ({"probabilities": {"yes": "0.3", "no": "0.7"}}, {"outcome": "yes"}, True),
    ],
)
def test_settling_again_another_way_is_a_conflict_and_the_same_way_a_harmless_repeat(alice, rosa, first, again, conflict):
    """A settlement is final: a different one raises ResolutionConflict, the same one returns already_done; neither moves money."""
    market = new_market()
    buy(alice, market)
    services.resolve_market(market_slug=market.slug, by=rosa, **first)
    transfers = Transfer.objects.count()
    if conflict:
        with pytest.raises(ResolutionConflict) as caught:
            services.resolve_market(market_slug=market.slug, by=rosa, **again)
        assert caught.value.code == "conflict"
        assert "a settlement is final" in str(caught.value)
    else:
        assert services.resolve_market(market_slug=market.slug, by=rosa, **again).already_done is True
    assert Transfer.objects.count() == transfers
    assert run_audit().problems == []


# --- sizes and scripts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "limit", "message"),
    [
        ("description", limits.DESCRIPTION_MAX_CHARS, "the description is longer than 10,000 characters"),
        ("resolution_criteria", limits.CRITERIA_MAX_CHARS, "the resolution criteria are longer than 10,000 characters"),
    ],
)
def test_long_texts_are_refused_on_create_and_on_edit(field, limit, message):
    """Description and criteria have size limits when a market is created and when it is edited."""
    new_market(**{field: "x" * limit})  # at the limit: fine
    with pytest.raises(InvalidTrade, match=message):
        new_market(question="Will it be too long?", **{field: "x" * (limit + 1)})
    market = Market.objects.get()
    texts = {"description": market.description, "resolution_criteria": market.resolution_criteria, field: "y" * (limit + 1)}
    with pytest.raises(InvalidTrade, match=message):
        services.update_market(market_slug=market.slug, close_at=market.close_at, **texts)
    market.refresh_from_db()
    assert getattr(market, field) == "x" * limit


def test_outcomes_in_any_script_get_stable_distinct_slugs(alice):
    """Korean, Japanese and symbol-only names make a market; "C" and "C++" stay two outcomes; slugs trade."""
    market = new_market(question="Which will lead?", outcomes=["日本", "대한민국", "C", "C++", "+++"])
    assert [(o.slug, o.name) for o in market.outcomes.order_by("position")] == [
        ("日本", "日本"), ("대한민국", "대한민국"), ("c", "C"), ("o4", "C++"), ("o5", "+++"),
    ]
    buy(alice, market, outcome="대한민국")
    buy(alice, market, outcome="o4")
    probabilities = lmsr.prices([o.shares_micro for o in market.outcomes.order_by("position")], market.liquidity_b_micro)
    assert probabilities[1] == probabilities[3] > probabilities[0]


@pytest.mark.parametrize(
    ("outcomes", "message"),
    [
        (["Seoul", "seoul"], "the outcomes 'Seoul' and 'seoul' are the same"),
        (["Seoul", ""], "outcome names must not be empty"),
        (["Seoul", "x" * 201], "is longer than 200 characters"),
    ],
)
def test_outcome_names_that_cannot_be_told_apart_are_refused(outcomes, message):
    """Names equal but for case, empty names and names over 200 characters are refused; no market is made."""
    with pytest.raises(InvalidTrade, match=message):
        new_market(outcomes=outcomes)
    assert not Market.objects.exists()


# --- idempotency keys --------------------------------------------------------------


def test_an_expired_idempotency_key_counts_as_new_and_the_sweep_removes_old_keys(alice, settings):
    """After IDEMPOTENCY_KEY_TTL_S a key is forgotten: the same key trades again; the sweep deletes only expired keys."""
    settings.IDEMPOTENCY_KEY_TTL_S = 3600
    market = new_market()
    first = buy(alice, market, key="k-1")
    assert buy(alice, market, key="k-1")["replayed"] is True
    buy(alice, market, key="k-2")
    IdempotencyKey.objects.filter(key="k-1").update(created_at=timezone.now() - dt.timedelta(seconds=3601))
    again = buy(alice, market, key="k-1")
    assert "replayed" not in again and again["trade_id"] != first["trade_id"]
    assert Market.objects.get(pk=market.pk).trade_count == 3
    IdempotencyKey.objects.update(created_at=timezone.now() - dt.timedelta(seconds=3601))
    IdempotencyKey.objects.create(user=alice, key="fresh", fingerprint="f", response="{}")
    assert services.sweep_idempotency_keys() == 2
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]


def test_the_worker_sweeps_expired_keys_at_its_schedule_check(alice, settings):
    """`bellwether worker` runs the sweep with its schedule check, so the table stops growing."""
    from bellwether.highlights.management.commands.worker import sweep_expired

    settings.IDEMPOTENCY_KEY_TTL_S = 60
    market = new_market()
    buy(alice, market, key="old")
    IdempotencyKey.objects.update(created_at=timezone.now() - dt.timedelta(minutes=5))
    assert sweep_expired() == 1
    assert not IdempotencyKey.objects.exists()


# --- lock order ---------------------------------------------------------------------


def test_a_first_trade_opens_the_account_before_the_market_is_locked():
    """The grant from the treasury is written in its own transaction before the trade locks the market row.

    Otherwise a first trade would lock the treasury while holding a market,
    against the documented order (market, then accounts by id).
    """
    newcomer = get_user_model().objects.create_user(username="newcomer")
    market = new_market()
    assert not Account.objects.filter(user=newcomer).exists()
    with CaptureQueriesContext(connection) as queries:
        buy(newcomer, market)
    sql = [q["sql"] for q in queries.captured_queries]
    grant = next(i for i, s in enumerate(sql) if s.startswith('INSERT INTO "ledger_transfer"'))
    market_lock = next(i for i, s in enumerate(sql) if 'FROM "markets_market"' in s)
    assert grant < market_lock
    assert Transfer.objects.filter(kind="grant", credit__user=newcomer).count() == 1
    assert run_audit().problems == []
