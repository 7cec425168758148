"""The markets JSON API through the real HTTP layer (/api/v1/markets, /me, /articles).

Every request goes through Django's test client with JSON bodies and a
bearer token (or a session). Every refused request is followed by a check
that nothing in the database moved: balances, transfers, trades, outcome
quantities, positions and stored idempotency keys.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.middleware.csrf import get_token
from django.test import Client, RequestFactory
from django.utils import timezone

from bellwether.accounts.services import create_token, create_user
from bellwether.ledger.models import Account, Transfer
from bellwether.ledger.services import get_treasury
from bellwether.markets.models import IdempotencyKey, Market, MarketArticle, Outcome, Position, Trade
from tests.news.factories import make_article

pytestmark = pytest.mark.django_db

M = 1_000_000
API = "/api/v1"
DECIMAL6 = re.compile(r"^-?\d+\.\d{6}$")
START = settings.STARTING_BALANCE_MICRO


# --- reference arithmetic (exact decimals, independent of lmsr.py) ---------


def _cost(q: list[int], b: int) -> Decimal:
    """C(q) = b ln(sum exp(q_i / b)), everything in micro-units, to 50 digits."""
    with localcontext() as ctx:
        ctx.prec = 50
        return Decimal(b) * sum((Decimal(x) / Decimal(b)).exp() for x in q).ln()


def ref_buy(q: list[int], b: int, i: int, d: int) -> int:
    """What a buyer pays, rounded up (the house's favour)."""
    after = list(q)
    after[i] += d
    with localcontext() as ctx:
        ctx.prec = 50
        return int((_cost(after, b) - _cost(q, b)).to_integral_value(rounding=ROUND_CEILING))


def ref_sell(q: list[int], b: int, i: int, d: int) -> int:
    """What a seller receives, rounded down."""
    after = list(q)
    after[i] -= d
    with localcontext() as ctx:
        ctx.prec = 50
        return int((_cost(q, b) - _cost(after, b)).to_integral_value(rounding=ROUND_FLOOR))


def ref_subsidy(b: int, n: int) -> int:
    with localcontext() as ctx:
        ctx.prec = 50
        return int((Decimal(b) * Decimal(n).ln()).to_integral_value(rounding=ROUND_CEILING))


def ref_prices(q: list[int], b: int) -> list[str]:
    with localcontext() as ctx:
        ctx.prec = 50
        weights = [(Decimal(x) / Decimal(b)).exp() for x in q]
        total = sum(weights)
        return [f"{w / total:.6f}" for w in weights]


def fmt(micro: int) -> str:
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), M)
    return f"{sign}{whole}.{frac:06d}"


# --- actors, requests, state -----------------------------------------------


@dataclass
class Actor:
    user: object
    token: str

    @property
    def account(self) -> Account:
        return Account.objects.get(user=self.user)

    @property
    def balance(self) -> int:
        return self.account.balance_micro


def make_actor(username: str, roles: tuple[str, ...] = ()) -> Actor:
    user = create_user(username=username, roles=roles)
    _, raw = create_token(user=user, name="test")
    return Actor(user, raw)


@pytest.fixture
def editor(db) -> Actor:
    return make_actor("eddie", roles=("editor",))


@pytest.fixture
def resolver(db) -> Actor:
    return make_actor("rosa", roles=("resolver",))


@pytest.fixture
def alice(db) -> Actor:
    return make_actor("alice")


@pytest.fixture
def bob(db) -> Actor:
    return make_actor("bob")


@pytest.fixture
def carol(db) -> Actor:
    return make_actor("carol")


def _auth(token: str | None, key: str | None) -> dict:
    headers = {}
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return headers


def post(client, path: str, body, token: str | None = None, key: str | None = None, **extra):
    return client.post(API + path, body, content_type="application/json", **_auth(token, key), **extra)


def get(client, path: str, token: str | None = None, **params):
    return client.get(API + path, params, **_auth(token, None))


def soon(**delta) -> str:
    return (timezone.now() + dt.timedelta(**(delta or {"days": 7}))).isoformat()


def create_market(client, editor: Actor, **fields) -> dict:
    body = {"question": "Will the harbour strike end by Friday?", "liquidity_b": "100", "close_at": soon(), **fields}
    response = post(client, "/markets", body, editor.token)
    assert response.status_code == 201, response.content
    return response.json()


def trade(client, actor: Actor, slug: str, key: str | None = None, **body):
    body.setdefault("side", "buy")
    return post(client, f"/markets/{slug}/trades", body, actor.token, key)


def buy(client, actor: Actor, slug: str, outcome: str = "yes", shares: str = "10") -> dict:
    response = trade(client, actor, slug, outcome=outcome, side="buy", shares=shares)
    assert response.status_code == 201, response.content
    return response.json()


def sell(client, actor: Actor, slug: str, outcome: str = "yes", **body) -> dict:
    response = trade(client, actor, slug, outcome=outcome, side="sell", **body)
    assert response.status_code == 201, response.content
    return response.json()


def resolve(client, actor: Actor, slug: str, **body):
    return post(client, f"/markets/{slug}/resolve", body, actor.token)


def snapshot() -> dict:
    """Everything a refused request must leave alone."""
    return {
        "balances": dict(Account.objects.values_list("pk", "balance_micro")),
        "transfers": sorted(Transfer.objects.values_list("pk", flat=True)),
        "trades": Trade.objects.count(),
        "shares": dict(Outcome.objects.values_list("pk", "shares_micro")),
        "payouts": dict(Outcome.objects.values_list("pk", "payout_per_share_micro")),
        "positions": sorted(
            Position.objects.values_list("pk", "shares_micro", "cost_basis_micro", "spent_micro", "received_micro", "payout_micro")
        ),
        "keys": IdempotencyKey.objects.count(),
        "markets": sorted(Market.objects.values_list("pk", "status", "volume_micro", "trade_count", "close_at", "resolution")),
        "links": MarketArticle.objects.count(),
    }


def assert_error(response, status: int, code: str, message: str | None = None) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if message is not None:
        assert body["error"]["message"] == message


def assert_audit_passes() -> None:
    out = StringIO()
    call_command("audit", stdout=out, stderr=StringIO())
    assert "audit passed" in out.getvalue()


def pool_balance(slug: str) -> int:
    return Market.objects.select_related("pool").get(slug=slug).pool.balance_micro


def set_close_in_past(slug: str) -> None:
    Market.objects.filter(slug=slug).update(close_at=timezone.now() - dt.timedelta(seconds=1))


@pytest.fixture
def market(client, editor) -> dict:
    return create_market(client, editor)


# --- creating markets -------------------------------------------------------


def test_create_market_refuses_anonymous_and_non_editors(client, alice, resolver):
    """Refuse market creation to anonymous callers (401) and to non-editors (403), creating nothing."""
    body = {"question": "Will it rain?", "liquidity_b": "100", "close_at": soon()}
    before = snapshot()
    assert_error(post(client, "/markets", body), 401, "unauthorized")
    assert_error(post(client, "/markets", body, alice.token), 403, "forbidden", "only editors create markets")
    assert_error(post(client, "/markets", body, resolver.token), 403, "forbidden", "only editors create markets")
    assert snapshot() == before
    assert not Market.objects.exists()


def test_create_binary_market_defaults_to_yes_no_and_funds_the_pool(client, editor):
    """Create a yes/no market by default and move exactly ceil(b ln 2) micro-credits from the treasury to its pool."""
    treasury_before = get_treasury().balance_micro
    data = create_market(client, editor, question="  Will the   ferry run?  ", liquidity_b="100", description="d", resolution_criteria="rc")
    assert data["slug"] == "will-the-ferry-run"
    assert data["question"] == "Will the ferry run?"
    assert data["kind"] == "binary"
    assert data["status"] == "open"
    assert data["liquidity_b"] == "100.000000"
    assert data["volume"] == "0.000000"
    assert data["trade_count"] == 0
    assert data["description"] == "d" and data["resolution_criteria"] == "rc"
    assert data["resolution"] is None and data["articles"] == []
    assert [(o["slug"], o["name"], o["probability"], o["shares"]) for o in data["outcomes"]] == [
        ("yes", "Yes", "0.500000", "0.000000"),
        ("no", "No", "0.500000", "0.000000"),
    ]
    subsidy = ref_subsidy(100 * M, 2)
    assert subsidy == 69_314_719
    market = Market.objects.get(slug=data["slug"])
    assert market.created_by == editor.user
    assert market.pool.balance_micro == subsidy
    assert get_treasury().balance_micro == treasury_before - subsidy
    transfers = list(Transfer.objects.filter(kind="subsidy"))
    assert len(transfers) == 1
    assert (transfers[0].debit_id, transfers[0].credit_id, transfers[0].amount_micro) == (get_treasury().pk, market.pool_id, subsidy)
    assert transfers[0].reference == f"market:{market.pk}"


def test_create_multiple_choice_market_with_three_outcomes(client, editor):
    """Create a multiple-choice market whose outcomes are slugged names, priced 1/3 each, subsidised ceil(b ln 3)."""
    data = create_market(client, editor, question="Who wins the mayoral race?", outcomes=["Ana Lopez", "Ben Okafor", "Chen Wei"], liquidity_b="250.5")
    assert data["kind"] == "multiple"
    assert data["liquidity_b"] == "250.500000"
    assert [(o["slug"], o["name"], o["probability"]) for o in data["outcomes"]] == [
        ("ana-lopez", "Ana Lopez", "0.333333"),
        ("ben-okafor", "Ben Okafor", "0.333333"),
        ("chen-wei", "Chen Wei", "0.333333"),
    ]
    subsidy = ref_subsidy(250_500_000, 3)
    assert pool_balance(data["slug"]) == subsidy
    assert Transfer.objects.get(kind="subsidy").amount_micro == subsidy


def test_create_market_named_yes_and_no_is_binary(client, editor):
    """Treat a market whose two named outcomes are Yes and No as a binary market."""
    data = create_market(client, editor, outcomes=["Yes", "No"])
    assert data["kind"] == "binary"
    assert [o["slug"] for o in data["outcomes"]] == ["yes", "no"]


def test_create_market_gives_a_taken_slug_a_suffix(client, editor):
    """Give a second market with the same question a distinct slug."""
    first = create_market(client, editor, question="Will it snow?")
    second = create_market(client, editor, question="Will it snow?")
    assert (first["slug"], second["slug"]) == ("will-it-snow", "will-it-snow-2")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"close_at": "2020-01-01T00:00:00Z"}, "close_at must be in the future"),
        ({"liquidity_b": "0"}, "liquidity_b must be greater than zero"),
        ({"liquidity_b": "-5"}, "liquidity_b must be greater than zero"),
        ({"liquidity_b": "abc"}, 'liquidity_b must be a decimal string such as "12.5"'),
        ({"liquidity_b": "1e999"}, 'liquidity_b must be a decimal string such as "12.5"'),
        ({"liquidity_b": "1000000000.000001"}, "liquidity_b is too large (at most 1000000000)"),
        ({"liquidity_b": "99999999999"}, "liquidity_b is too large (at most 1000000000)"),
        ({"liquidity_b": "NaN"}, 'liquidity_b must be a decimal string such as "12.5"'),
        ({"liquidity_b": "Infinity"}, 'liquidity_b must be a decimal string such as "12.5"'),
        ({"liquidity_b": "0.0000001"}, "liquidity_b has more than 6 decimal places"),
        ({"liquidity_b": 100}, None),
        ({"outcomes": ["Only one"]}, "outcomes: List should have at least 2 items after validation, not 1"),
        ({"outcomes": []}, "outcomes: List should have at least 2 items after validation, not 0"),
        ({"outcomes": [f"Option {i}" for i in range(51)]}, "outcomes: List should have at most 50 items after validation, not 51"),
        ({"outcomes": ["Red", "Blue", "Red"]}, None),
        ({"outcomes": ["Red", "red"]}, None),
        ({"outcomes": ["Red", "   "]}, None),
        ({"question": "   "}, None),
        ({"question": "x" * 301}, None),
        ({"close_at": "next tuesday"}, None),
    ],
    ids=lambda v: repr(v)[:40] if not isinstance(v, dict) else ",".join(f"{k}={str(x)[:20]}" for k, x in v.items()),
)
def test_create_market_refuses_invalid_input(client, editor, fields, message):
    """Refuse an invalid market with 400 invalid, creating no market, pool or transfer."""
    body = {"question": "Will it rain?", "liquidity_b": "100", "close_at": soon(), **fields}
    before = snapshot()
    assert_error(post(client, "/markets", body, editor.token), 400, "invalid", message)
    assert snapshot() == before
    assert not Market.objects.exists()
    assert not Account.objects.filter(kind="pool").exists()


def test_create_market_accepts_fifty_outcomes_and_a_liquidity_at_the_decimal_limit(client, editor):
    """Accept the boundaries: 50 outcomes and a liquidity with exactly 6 decimals."""
    data = create_market(client, editor, outcomes=[f"Option {i}" for i in range(50)], liquidity_b="0.000001")
    assert len(data["outcomes"]) == 50
    assert data["liquidity_b"] == "0.000001"
    assert pool_balance(data["slug"]) == ref_subsidy(1, 50)


def test_create_market_with_naive_close_at_is_not_a_server_error(client, editor):
    """Answer a close_at without a UTC offset with a 400 invalid (or read it as UTC), never a server error."""
    naive = (timezone.now() + dt.timedelta(days=3)).replace(tzinfo=None).isoformat()
    response = post(client, "/markets", {"question": "Will it rain?", "liquidity_b": "100", "close_at": naive}, editor.token)
    assert response.status_code in (201, 400)
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "invalid"


def test_create_market_refuses_an_outcome_name_too_long_to_store(client, editor):
    """Refuse an outcome name longer than the 200 characters the database holds, with 400 invalid."""
    before = snapshot()
    body = {"question": "Will it rain?", "liquidity_b": "100", "close_at": soon(), "outcomes": ["A" * 250, "B"]}
    assert_error(post(client, "/markets", body, editor.token), 400, "invalid")
    assert snapshot() == before


def test_create_market_links_articles_with_probabilities_at_publish(client, editor):
    """Link the given articles and store each one's odds at publication."""
    article = make_article()
    data = create_market(client, editor, articles=[article.pk])
    assert data["articles"] == [article.pk]
    link = MarketArticle.objects.get(market__slug=data["slug"], article=article)
    assert link.probabilities_at_publish == {"yes": 0.5, "no": 0.5}
    detail = get(client, f"/markets/{data['slug']}").json()
    assert detail["articles"] == [article.pk]


# --- listing, detail, history, docs -----------------------------------------


def test_list_markets_filters_by_status(client, editor, resolver):
    """List markets newest first and filter them by open, closed, resolved and cancelled."""
    open_ = create_market(client, editor, question="Open one?")["slug"]
    closed = create_market(client, editor, question="Closed one?")["slug"]
    resolved = create_market(client, editor, question="Resolved one?")["slug"]
    cancelled = create_market(client, editor, question="Cancelled one?")["slug"]
    set_close_in_past(closed)
    assert resolve(client, resolver, resolved, outcome="no").status_code == 200
    assert resolve(client, resolver, cancelled, cancel=True).status_code == 200

    everything = get(client, "/markets")
    assert everything.status_code == 200
    assert [m["slug"] for m in everything.json()["items"]] == [cancelled, resolved, closed, open_]
    assert [m["status"] for m in everything.json()["items"]] == ["cancelled", "resolved", "closed", "open"]
    assert everything.json()["next"] is None
    for status, slug in [("open", open_), ("closed", closed), ("resolved", resolved), ("cancelled", cancelled)]:
        response = get(client, "/markets", status=status)
        assert response.status_code == 200
        assert [m["slug"] for m in response.json()["items"]] == [slug], status


def test_list_markets_filters_by_tag_and_section_of_linked_articles(client, editor):
    """Filter the list by the slug of a linked article's tag or (ancestor) section."""
    harbour = make_article(tags=("Harbours",), section_path=("World",))
    vote = make_article(tags=("Elections",), section_path=("Politics", "Diplomacy"))
    world_market = create_market(client, editor, question="World market?", articles=[harbour.pk])["slug"]
    politics_market = create_market(client, editor, question="Politics market?", articles=[vote.pk])["slug"]
    create_market(client, editor, question="Unlinked market?")

    def slugs(**params):
        response = get(client, "/markets", **params)
        assert response.status_code == 200
        return [m["slug"] for m in response.json()["items"]]

    assert slugs(tag="harbours") == [world_market]
    assert slugs(tag="elections") == [politics_market]
    assert slugs(tag="nothing-tagged") == []
    assert slugs(section="world") == [world_market]
    assert slugs(section="politics") == [politics_market]
    assert slugs(section="diplomacy") == [politics_market]
    assert slugs(section="no-such-section") == []
    assert slugs(section="world", tag="elections") == []
    assert len(slugs()) == 3


def test_market_detail_and_unknown_slug(client, market):
    """Show one market by slug; answer an unknown slug with 404 not_found."""
    response = get(client, f"/markets/{market['slug']}")
    assert response.status_code == 200
    assert response.json() == market
    assert_error(get(client, "/markets/no-such-market"), 404, "not_found", "no market 'no-such-market'")
    assert_error(get(client, "/markets/no-such-market/history"), 404, "not_found")


def test_history_starts_uniform_then_adds_one_point_per_trade(client, market, alice, bob):
    """Start the price history at the uniform odds and add one point per trade."""
    slug = market["slug"]
    first = get(client, f"/markets/{slug}/history").json()
    assert [p["probabilities"] for p in first["items"]] == [{"yes": "0.500000", "no": "0.500000"}]
    assert first["next"] is None
    t1 = buy(client, alice, slug, "yes", "30")
    t2 = buy(client, bob, slug, "no", "5")
    points = get(client, f"/markets/{slug}/history").json()["items"]
    assert [p["probabilities"] for p in points] == [{"yes": "0.500000", "no": "0.500000"}, t1["probabilities"], t2["probabilities"]]
    times = [dt.datetime.fromisoformat(p["at"].replace("Z", "+00:00")) for p in points]
    assert times == sorted(times)


def test_history_of_a_multiple_choice_market_is_uniform_over_its_outcomes(client, editor):
    """Open a three-way market's history at 1/3 each."""
    data = create_market(client, editor, outcomes=["A", "B", "C"])
    points = get(client, f"/markets/{data['slug']}/history").json()["items"]
    assert [p["probabilities"] for p in points] == [{"a": "0.333333", "b": "0.333333", "c": "0.333333"}]


def test_openapi_docs_list_every_endpoint(client):
    """Serve the interactive docs and an OpenAPI schema listing every endpoint."""
    assert client.get(f"{API}/docs").status_code == 200
    response = client.get(f"{API}/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    expected = {
        "/api/v1/markets": {"get", "post"},
        "/api/v1/markets/{slug}": {"get"},
        "/api/v1/markets/{slug}/history": {"get"},
        "/api/v1/markets/{slug}/quote": {"post"},
        "/api/v1/markets/{slug}/trades": {"post"},
        "/api/v1/markets/{slug}/resolve": {"post"},
        "/api/v1/me": {"get"},
        "/api/v1/me/transfers": {"get"},
        "/api/v1/articles": {"get"},
        "/api/v1/articles/{article_id}": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), path


# --- quotes -----------------------------------------------------------------


def test_quote_matches_the_design_worked_example_anonymously(client, market):
    """Quote 10 YES at b=100 for 5.124948 credits without logging in, changing nothing."""
    before = snapshot()
    response = post(client, f"/markets/{market['slug']}/quote", {"outcome": "yes", "side": "buy", "shares": "10"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body == {
        "outcome": "yes",
        "side": "buy",
        "shares": "10.000000",
        "cost": "5.124948",
        "proceeds": None,
        "average_price": "0.512495",
        "probability_before": "0.500000",
        "probability_after": ref_prices([10 * M, 0], 100 * M)[0],
        "probabilities_after": dict(zip(["yes", "no"], ref_prices([10 * M, 0], 100 * M))),
        "max_payout": "10.000000",
    }
    assert snapshot() == before


def test_quote_by_amount_buys_the_most_shares_the_budget_pays_for(client, market):
    """Quote a budget as the largest whole number of micro-shares whose rounded-up cost fits it."""
    before = snapshot()
    response = post(client, f"/markets/{market['slug']}/quote", {"outcome": "no", "amount": "25"})
    assert response.status_code == 200, response.content
    body = response.json()
    shares = int(Decimal(body["shares"]) * M)
    cost = int(Decimal(body["cost"]) * M)
    assert cost == ref_buy([0, 0], 100 * M, 1, shares)
    assert cost <= 25 * M < ref_buy([0, 0], 100 * M, 1, shares + 1)
    assert body["outcome"] == "no" and body["side"] == "buy"
    assert snapshot() == before


def test_quote_a_sell_without_holdings_is_invalid(client, market, alice):
    """Refuse to quote a sell of shares the caller does not hold (anonymous or not), changing nothing."""
    slug = market["slug"]
    before = snapshot()
    assert_error(post(client, f"/markets/{slug}/quote", {"outcome": "yes", "side": "sell", "shares": "1"}), 400, "invalid")
    assert_error(post(client, f"/markets/{slug}/quote", {"outcome": "yes", "side": "sell", "all": True}), 400, "invalid", "you hold no shares of this outcome")
    assert_error(post(client, f"/markets/{slug}/quote", {"outcome": "yes", "side": "sell", "shares": "1"}, alice.token), 400, "invalid", "you hold 0.000000 shares, cannot sell 1.000000")
    assert snapshot() == before


def test_quote_a_sell_for_a_holder_uses_their_holdings(client, market, alice):
    """Quote a holder's sell (by shares and all) at the floor of the exact proceeds, changing nothing."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "10")
    before = snapshot()
    response = post(client, f"/markets/{slug}/quote", {"outcome": "yes", "side": "sell", "shares": "4"}, alice.token)
    assert response.status_code == 200, response.content
    assert response.json()["proceeds"] == fmt(ref_sell([10 * M, 0], 100 * M, 0, 4 * M))
    assert response.json()["cost"] is None
    assert response.json()["max_payout"] == "0.000000"
    everything = post(client, f"/markets/{slug}/quote", {"outcome": "yes", "side": "sell", "all": True}, alice.token).json()
    assert everything["shares"] == "10.000000"
    assert everything["proceeds"] == fmt(ref_sell([10 * M, 0], 100 * M, 0, 10 * M))
    assert snapshot() == before


def test_quote_on_closed_or_unknown_market(client, market):
    """Refuse a quote on a closed market (409) and an unknown one (404)."""
    set_close_in_past(market["slug"])
    body = {"outcome": "yes", "shares": "1"}
    assert_error(post(client, f"/markets/{market['slug']}/quote", body), 409, "market_closed", "the market closed for trading")
    assert_error(post(client, "/markets/nope/quote", body), 404, "not_found", "no market 'nope'")


# --- trades -----------------------------------------------------------------


def test_buy_by_shares_charges_the_rounded_up_cost(client, market, alice):
    """Buy 10 YES for 5.124948, debit the buyer, credit the pool, and report decimal strings."""
    slug = market["slug"]
    pool_before = pool_balance(slug)
    response = trade(client, alice, slug, outcome="yes", side="buy", shares="10")
    assert response.status_code == 201, response.content
    body = response.json()
    trade_row = Trade.objects.get()
    prices = ref_prices([10 * M, 0], 100 * M)
    assert body["trade_id"] == trade_row.pk
    assert body["market"] == slug and body["outcome"] == "yes" and body["side"] == "buy"
    assert body["shares"] == "10.000000"
    assert body["amount"] == "5.124948"
    assert body["average_price"] == "0.512495"
    assert body["probability_before"] == "0.500000"
    assert body["probabilities"] == {"yes": prices[0], "no": prices[1]}
    assert body["balance"] == "994.875052"
    assert body["position"] == {"shares": "10.000000", "cost_basis": "5.124948"}
    assert "replayed" not in body and "Idempotent-Replayed" not in response.headers
    for value in (body["shares"], body["amount"], body["balance"], *body["probabilities"].values(), *body["position"].values()):
        assert DECIMAL6.match(value), value

    assert alice.balance == START - 5_124_948
    assert pool_balance(slug) == pool_before + 5_124_948
    assert dict(Outcome.objects.filter(market__slug=slug).values_list("slug", "shares_micro")) == {"yes": 10 * M, "no": 0}
    debit = Transfer.objects.get(kind="buy")
    assert (debit.debit_id, debit.credit_id, debit.amount_micro, debit.reference) == (
        alice.account.pk, Market.objects.get(slug=slug).pool_id, 5_124_948, f"trade:{trade_row.pk}"
    )
    detail = get(client, f"/markets/{slug}").json()
    assert detail["volume"] == "5.124948" and detail["trade_count"] == 1
    assert [o["shares"] for o in detail["outcomes"]] == ["10.000000", "0.000000"]


def test_buy_by_amount_spends_at_most_the_budget(client, market, alice):
    """Buy with a budget: the most shares whose rounded-up cost fits it, never more than the budget."""
    slug = market["slug"]
    body = trade(client, alice, slug, outcome="no", side="buy", amount="25").json()
    shares = int(Decimal(body["shares"]) * M)
    cost = int(Decimal(body["amount"]) * M)
    assert cost == ref_buy([0, 0], 100 * M, 1, shares)
    assert cost <= 25 * M < ref_buy([0, 0], 100 * M, 1, shares + 1)
    assert alice.balance == START - cost
    assert body["balance"] == fmt(START - cost)
    assert body["position"] == {"shares": body["shares"], "cost_basis": body["amount"]}
    assert Outcome.objects.get(market__slug=slug, slug="no").shares_micro == shares


def test_sell_by_shares_pays_the_rounded_down_proceeds(client, market, alice):
    """Sell part of a holding for the floor of the exact proceeds; the basis drops pro rata."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "10")
    body = sell(client, alice, slug, "yes", shares="4")
    proceeds = ref_sell([10 * M, 0], 100 * M, 0, 4 * M)
    assert body["side"] == "sell"
    assert body["shares"] == "4.000000"
    assert body["amount"] == fmt(proceeds)
    assert body["balance"] == fmt(START - 5_124_948 + proceeds)
    assert body["position"] == {"shares": "6.000000", "cost_basis": fmt(5_124_948 - 5_124_948 * 4 // 10)}
    assert body["probabilities"] == dict(zip(["yes", "no"], ref_prices([6 * M, 0], 100 * M)))
    assert alice.balance == START - 5_124_948 + proceeds
    assert Outcome.objects.get(market__slug=slug, slug="yes").shares_micro == 6 * M
    assert Transfer.objects.get(kind="sell").amount_micro == proceeds


def test_sell_all_closes_the_position_and_the_round_trip_costs_a_micro_credit(client, market, alice):
    """Sell every share held with all: true; rounding in the house's favour keeps one micro-credit."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "10")
    body = sell(client, alice, slug, "yes", all=True)
    assert body["shares"] == "10.000000"
    assert body["amount"] == fmt(ref_sell([10 * M, 0], 100 * M, 0, 10 * M)) == "5.124947"
    assert body["position"] == {"shares": "0.000000", "cost_basis": "0.000000"}
    assert body["balance"] == "999.999999"
    assert body["probabilities"] == {"yes": "0.500000", "no": "0.500000"}
    assert alice.balance == START - 1
    assert Outcome.objects.get(market__slug=slug, slug="yes").shares_micro == 0
    assert_audit_passes()


def test_buy_over_max_cost_changes_nothing(client, market, alice):
    """A buy that would exceed max_cost changes nothing (409 slippage_exceeded); at max_cost it goes through."""
    slug = market["slug"]
    before = snapshot()
    response = trade(client, alice, slug, outcome="yes", shares="10", max_cost="5.124947")
    assert_error(response, 409, "slippage_exceeded", "costs 5.124948, more than max_cost 5.124947")
    assert snapshot() == before
    assert trade(client, alice, slug, outcome="yes", shares="10", max_cost="5.124948").status_code == 201


def test_sell_under_min_proceeds_changes_nothing(client, market, alice):
    """A sell that would pay less than min_proceeds changes nothing (409 slippage_exceeded)."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "10")
    proceeds = ref_sell([10 * M, 0], 100 * M, 0, 4 * M)
    before = snapshot()
    response = trade(client, alice, slug, outcome="yes", side="sell", shares="4", min_proceeds=fmt(proceeds + 1))
    assert_error(response, 409, "slippage_exceeded", f"pays {fmt(proceeds)}, less than min_proceeds {fmt(proceeds + 1)}")
    assert snapshot() == before
    ok = trade(client, alice, slug, outcome="yes", side="sell", shares="4", min_proceeds=fmt(proceeds))
    assert ok.status_code == 201 and ok.json()["amount"] == fmt(proceeds)


def test_buy_beyond_the_balance_is_refused(client, market, alice):
    """A buy costing more than the buyer's balance is refused with 422 insufficient_funds and changes nothing."""
    before = snapshot()
    response = trade(client, alice, market["slug"], outcome="yes", shares="100000")
    assert_error(response, 422, "insufficient_funds")
    quoted = re.fullmatch(r"this costs (\d+\.\d{6}) credits and you have 1000\.000000", response.json()["error"]["message"])
    assert quoted, response.json()
    # The exact cost rounded up; lmsr's float guard may add a micro-credit, never less.
    assert 0 <= int(Decimal(quoted[1]) * M) - ref_buy([0, 0], 100 * M, 0, 100_000 * M) <= 1
    assert snapshot() == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"outcome": "yes", "shares": "-1"}, "shares must be greater than zero"),
        ({"outcome": "yes", "shares": "0"}, "shares must be greater than zero"),
        ({"outcome": "yes", "shares": "NaN"}, 'shares must be a decimal string such as "12.5"'),
        ({"outcome": "yes", "shares": "Infinity"}, 'shares must be a decimal string such as "12.5"'),
        ({"outcome": "yes", "shares": "-Infinity"}, 'shares must be a decimal string such as "12.5"'),
        ({"outcome": "yes", "shares": "1e20"}, 'shares must be a decimal string such as "12.5"'),
        ({"outcome": "yes", "shares": "1000000001"}, "shares is too large (at most 1000000000)"),
        ({"outcome": "yes", "shares": "0.0000001"}, "shares has more than 6 decimal places"),
        ({"outcome": "yes", "shares": "ten"}, 'shares must be a decimal string such as "12.5"'),
        ({"outcome": "yes", "shares": ""}, 'shares must be a decimal string such as "12.5"'),
        ({"outcome": "yes", "shares": 5}, None),
        ({"outcome": "yes", "shares": 5.5}, None),
        ({"outcome": "yes", "amount": 5}, None),
        ({"outcome": "yes", "amount": "-3"}, "amount must be greater than zero"),
        ({"outcome": "yes", "amount": "0.0000001"}, "amount has more than 6 decimal places"),
        ({"outcome": "yes", "shares": "1", "max_cost": "0"}, "max_cost must be greater than zero"),
        ({"outcome": "yes", "shares": "1", "max_cost": "lots"}, 'max_cost must be a decimal string such as "12.5"'),
        ({"outcome": "yes", "shares": "1", "max_cost": 9}, None),
        ({"side": "buy", "shares": "1"}, None),
        ({"outcome": "maybe", "shares": "1"}, "unknown outcome 'maybe'; this market has yes, no"),
        ({"outcome": "yes", "shares": "1", "amount": "1"}, "give exactly one of shares, amount (buys) or all (sells)"),
        ({"outcome": "yes"}, "give exactly one of shares, amount (buys) or all (sells)"),
        ({"outcome": "yes", "side": "sell", "amount": "1"}, "amount is a buy's budget; sell by shares or all"),
        ({"outcome": "yes", "side": "buy", "all": True}, "all applies to sells"),
        ({"outcome": "yes", "side": "sell", "all": True, "shares": "1"}, "give exactly one of shares, amount (buys) or all (sells)"),
        ({"outcome": "yes", "side": "hold", "shares": "1"}, None),
        ({"outcome": "yes", "side": "sell", "shares": "1"}, "you hold 0.000000 shares, cannot sell 1.000000"),
        ({"outcome": "yes", "side": "sell", "all": True}, "you hold no shares of this outcome"),
    ],
    ids=lambda v: repr(v)[:60],
)
def test_invalid_trade_is_refused_and_changes_nothing(client, market, alice, body, message):
    """Refuse a malformed or impossible trade with 400 invalid and change nothing."""
    body = {"side": "buy", **body}
    before = snapshot()
    response = post(client, f"/markets/{market['slug']}/trades", body, alice.token)
    assert_error(response, 400, "invalid", message)
    assert snapshot() == before


def test_trade_body_that_is_not_json_is_refused(client, market, alice):
    """Refuse a body that is not JSON with 400, changing nothing."""
    before = snapshot()
    response = client.post(f"{API}/markets/{market['slug']}/trades", "{not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {alice.token}")
    assert_error(response, 400, "invalid", "Cannot parse request body")
    assert snapshot() == before


def test_trade_needs_authentication(client, market):
    """Refuse an anonymous trade with 401 unauthorized, changing nothing."""
    before = snapshot()
    assert_error(post(client, f"/markets/{market['slug']}/trades", {"outcome": "yes", "shares": "1"}), 401, "unauthorized")
    assert snapshot() == before


@pytest.mark.parametrize(
    ("close", "message"),
    [("past", "the market closed for trading"), ("resolved", "the market is resolved"), ("cancelled", "the market is cancelled")],
)
def test_trade_on_a_market_no_longer_open_is_refused(client, market, alice, resolver, close, message):
    """Refuse buys and sells on a closed, resolved or cancelled market with 409 market_closed, changing nothing."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "5")
    if close == "past":
        set_close_in_past(slug)
    elif close == "resolved":
        assert resolve(client, resolver, slug, outcome="yes").status_code == 200
    else:
        assert resolve(client, resolver, slug, cancel=True).status_code == 200
    before = snapshot()
    assert_error(trade(client, alice, slug, outcome="yes", shares="1"), 409, "market_closed", message)
    assert_error(trade(client, alice, slug, outcome="yes", side="sell", shares="1"), 409, "market_closed", message)
    assert_error(post(client, f"/markets/{slug}/quote", {"outcome": "yes", "shares": "1"}), 409, "market_closed", message)
    assert snapshot() == before


def test_trade_on_an_unknown_market_is_not_found(client, alice):
    """Answer a trade on an unknown market with 404 not_found, changing nothing."""
    open_account = alice.account  # the account exists before the snapshot
    before = snapshot()
    assert_error(trade(client, alice, "no-such-market", outcome="yes", shares="1"), 404, "not_found", "no market 'no-such-market'")
    assert snapshot() == before
    assert open_account.pk == alice.account.pk


# --- idempotency ------------------------------------------------------------


def test_same_key_same_body_replays_the_stored_response(client, market, alice):
    """Replay a repeated trade with the same key and body: the original 201 and body, `Idempotent-Replayed: true`, one trade, one debit."""
    slug = market["slug"]
    first = trade(client, alice, slug, key="k-1", outcome="yes", shares="10")
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    after_first = snapshot()
    second = trade(client, alice, slug, key="k-1", outcome="yes", shares="10")
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert snapshot() == after_first
    # The same request written differently ("10.0" is 10 shares) is the same request.
    third = trade(client, alice, slug, key="k-1", outcome="yes", shares="10.0")
    assert (third.status_code, third.headers["Idempotent-Replayed"], third.content) == (201, "true", first.content)
    assert snapshot() == after_first
    assert Trade.objects.count() == 1
    assert Transfer.objects.filter(kind="buy").count() == 1
    assert alice.balance == START - 5_124_948


def test_same_key_different_body_is_a_conflict(client, editor, market, alice):
    """Refuse a key reused with a different body (or on another market) with 422 idempotency_conflict, changing nothing."""
    slug = market["slug"]
    other = create_market(client, editor, question="Another question?")["slug"]
    assert trade(client, alice, slug, key="k-2", outcome="yes", shares="10").status_code == 201
    before = snapshot()
    message = "this Idempotency-Key was used for a different request"
    assert_error(trade(client, alice, slug, key="k-2", outcome="yes", shares="11"), 422, "idempotency_conflict", message)
    assert_error(trade(client, alice, slug, key="k-2", outcome="no", shares="10"), 422, "idempotency_conflict", message)
    assert_error(trade(client, alice, slug, key="k-2", outcome="yes", shares="10", max_cost="6"), 422, "idempotency_conflict", message)
    assert_error(trade(client, alice, other, key="k-2", outcome="yes", shares="10"), 422, "idempotency_conflict", message)
    assert snapshot() == before


def test_idempotency_keys_are_per_user(client, market, alice, bob):
    """Let another user use the same key string for their own trade."""
    slug = market["slug"]
    first = trade(client, alice, slug, key="shared-key", outcome="yes", shares="10")
    second = trade(client, bob, slug, key="shared-key", outcome="yes", shares="10")
    assert (first.status_code, second.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in second.headers
    assert second.json()["trade_id"] != first.json()["trade_id"]
    assert Trade.objects.count() == 2
    assert alice.balance == START - 5_124_948
    assert bob.balance == START - ref_buy([10 * M, 0], 100 * M, 0, 10 * M)


@pytest.mark.parametrize("key", ["k" * 201, "", "two words", "k\x00", "clé"], ids=["201 chars", "empty", "space", "NUL", "non-ASCII"])
def test_idempotency_key_must_be_1_to_200_visible_ascii_characters(client, market, alice, key):
    """Refuse an Idempotency-Key that is empty, longer than 200 characters or not visible ASCII with 400; accept one of exactly 200."""
    slug = market["slug"]
    before = snapshot()
    message = "Idempotency-Key must be 1 to 200 visible ASCII characters"
    assert_error(trade(client, alice, slug, key=key, outcome="yes", shares="1"), 400, "invalid", message)
    assert snapshot() == before
    ok = trade(client, alice, slug, key="k" * 200, outcome="yes", shares="1")
    assert ok.status_code == 201
    again = trade(client, alice, slug, key="k" * 200, outcome="yes", shares="1")
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (201, "true")


def test_refused_trade_does_not_store_its_key(client, market, alice):
    """Store no Idempotency-Key for a refused trade, so the same request can be retried."""
    slug = market["slug"]
    before = snapshot()
    assert_error(trade(client, alice, slug, key="k-3", outcome="yes", shares="10", max_cost="1"), 409, "slippage_exceeded")
    assert_error(trade(client, alice, slug, key="k-3", outcome="yes", shares="10", max_cost="1"), 409, "slippage_exceeded")
    assert snapshot() == before


# --- session auth and CSRF --------------------------------------------------


def test_session_user_can_read_me(client, alice):
    """Let a logged-in browser session read /me without a token."""
    client.force_login(alice.user)
    response = client.get(f"{API}/me")
    assert response.status_code == 200
    assert response.json()["username"] == "alice"


def _csrf_pair() -> tuple[str, str]:
    """Return (cookie secret, form token) as the CSRF middleware would issue them."""
    request = RequestFactory().get("/")
    token = get_token(request)
    return request.META["CSRF_COOKIE"], token


def test_session_trade_needs_the_csrf_token(market, alice):
    """Refuse a session POST without the CSRF token (403, nothing changes); accept it with the token."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice.user)
    slug = market["slug"]
    body = {"outcome": "yes", "side": "buy", "shares": "10"}
    before = snapshot()
    response = browser.post(f"{API}/markets/{slug}/trades", body, content_type="application/json")
    assert_error(response, 403, "forbidden")
    assert snapshot() == before

    secret, token = _csrf_pair()
    browser.cookies[settings.CSRF_COOKIE_NAME] = secret
    assert_error(browser.post(f"{API}/markets/{slug}/trades", body, content_type="application/json"), 403, "forbidden")
    response = browser.post(f"{API}/markets/{slug}/trades", body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content
    assert response.json()["balance"] == "994.875052"
    assert Trade.objects.get().user == alice.user


def test_bearer_token_needs_no_csrf_token(market, alice):
    """Accept a bearer-token POST from a client that enforces CSRF, without any CSRF token."""
    api_client = Client(enforce_csrf_checks=True)
    response = post(api_client, f"/markets/{market['slug']}/trades", {"outcome": "yes", "shares": "1"}, alice.token)
    assert response.status_code == 201, response.content


# --- resolution ---------------------------------------------------------------


def test_resolve_needs_the_resolver_role(client, market, alice, editor):
    """Refuse resolution to anonymous callers (401), traders and editors (403), changing nothing."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "5")
    before = snapshot()
    assert_error(post(client, f"/markets/{slug}/resolve", {"outcome": "yes"}), 401, "unauthorized")
    assert_error(resolve(client, alice, slug, outcome="yes"), 403, "forbidden", "only resolvers resolve markets")
    assert_error(resolve(client, editor, slug, outcome="yes"), 403, "forbidden", "only resolvers resolve markets")
    assert snapshot() == before
    assert Market.objects.get(slug=slug).status == "open"


def test_resolve_to_an_outcome_pays_one_credit_per_winning_share(client, market, alice, bob, carol, resolver):
    """Pay each winning share exactly 1 credit, empty the pool and return the rest to the treasury."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "10")
    buy(client, bob, slug, "no", "20")
    buy(client, carol, slug, "yes", "5.5")
    sell(client, carol, slug, "yes", shares="2.25")
    balances = {a.user.username: a.balance for a in (alice, bob, carol)}
    pool_before = pool_balance(slug)
    treasury_before = get_treasury().balance_micro

    response = resolve(client, resolver, slug, outcome="yes", note="Strike ended Thursday.", sources=["https://example.org/a", "https://example.org/b"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["already_resolved"] is False
    assert body["payouts"] == {"alice": "10.000000", "carol": "3.250000"}
    assert body["returned_to_treasury"] == fmt(pool_before - 13_250_000)
    assert body["market"]["status"] == "resolved"
    assert body["market"]["resolution"] == {"outcome": "yes"}
    assert body["market"]["resolution_note"] == "Strike ended Thursday."
    assert body["market"]["resolution_sources"] == ["https://example.org/a", "https://example.org/b"]
    assert body["market"]["resolved_at"] is not None

    assert alice.balance == balances["alice"] + 10 * M
    assert bob.balance == balances["bob"]
    assert carol.balance == balances["carol"] + 3_250_000
    assert pool_balance(slug) == 0
    assert get_treasury().balance_micro == treasury_before + pool_before - 13_250_000
    assert sorted(Transfer.objects.filter(kind="payout").values_list("amount_micro", flat=True)) == [3_250_000, 10 * M]
    assert Transfer.objects.get(kind="pool_return").amount_micro == pool_before - 13_250_000
    market_row = Market.objects.get(slug=slug)
    assert market_row.resolved_by == resolver.user
    assert dict(market_row.outcomes.values_list("slug", "payout_per_share_micro")) == {"yes": M, "no": 0}
    assert_audit_passes()


def test_resolve_to_probabilities_pays_the_floor_of_shares_times_p(client, market, alice, bob, resolver):
    """Pay each holder floor(shares * p_i) when resolving to probabilities."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "3.333333")
    buy(client, bob, slug, "no", "7.777777")
    before = {"alice": alice.balance, "bob": bob.balance}
    pool_before = pool_balance(slug)
    response = resolve(client, resolver, slug, probabilities={"yes": "0.3", "no": "0.7"})
    assert response.status_code == 200, response.content
    body = response.json()
    alice_pay = 3_333_333 * 300_000 // M  # 999999.9 -> 999999
    bob_pay = 7_777_777 * 700_000 // M  # 5444443.9 -> 5444443
    assert (alice_pay, bob_pay) == (999_999, 5_444_443)
    assert body["payouts"] == {"alice": fmt(alice_pay), "bob": fmt(bob_pay)}
    assert body["market"]["resolution"] == {"probabilities": {"yes": "0.300000", "no": "0.700000"}}
    assert alice.balance == before["alice"] + alice_pay
    assert bob.balance == before["bob"] + bob_pay
    assert body["returned_to_treasury"] == fmt(pool_before - alice_pay - bob_pay)
    assert pool_balance(slug) == 0
    assert_audit_passes()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"probabilities": {"yes": "0.3", "no": "0.6"}}, "probabilities must sum to 1"),
        ({"probabilities": {"yes": "0.6", "no": "0.6"}}, "probabilities must sum to 1"),
        ({"probabilities": {"yes": "1"}}, "give a probability for every outcome: yes, no"),
        ({"probabilities": {"yes": "0.5", "no": "0.5", "maybe": "0"}}, "give a probability for every outcome: yes, no"),
        ({"probabilities": {"yes": "1.5", "no": "-0.5"}}, None),
        ({"probabilities": {"yes": "half", "no": "0.5"}}, "probability for 'yes' must be a decimal string from 0 to 1 with at most 6 decimals"),
        ({"probabilities": {"yes": " 0.5", "no": "0.5"}}, "probability for 'yes' must be a decimal string from 0 to 1 with at most 6 decimals"),
        ({"probabilities": {"yes": "0_5", "no": "0.5"}}, "probability for 'yes' must be a decimal string from 0 to 1 with at most 6 decimals"),
        ({"probabilities": {"yes": "0.3000001", "no": "0.6999999"}}, None),
        ({"probabilities": {"yes": 0.3, "no": 0.7}}, None),
        ({"probabilities": {}}, None),
        ({"outcome": "maybe"}, "unknown outcome 'maybe'"),
        ({}, "resolve to one outcome, to probabilities, or cancel"),
        ({"outcome": "yes", "cancel": True}, "resolve to one outcome, to probabilities, or cancel"),
        ({"outcome": "yes", "probabilities": {"yes": "1", "no": "0"}}, "resolve to one outcome, to probabilities, or cancel"),
    ],
    ids=lambda v: repr(v)[:60],
)
def test_invalid_resolution_is_refused_and_changes_nothing(client, market, alice, resolver, body, message):
    """Refuse an invalid resolution with 400 invalid; the market stays open and no money moves."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "5")
    before = snapshot()
    assert_error(resolve(client, resolver, slug, **body), 400, "invalid", message)
    assert snapshot() == before
    assert Market.objects.get(slug=slug).status == "open"


def test_resolve_an_unknown_market_is_not_found(client, resolver):
    """Answer the resolution of an unknown market with 404 not_found."""
    assert_error(resolve(client, resolver, "no-such-market", outcome="yes"), 404, "not_found", "no market 'no-such-market'")


def test_cancel_refunds_each_traders_positive_net_spend(client, market, alice, bob, carol, resolver, editor):
    """Refund each trader spent minus received when positive (nothing when negative); the pool ends empty."""
    slug = market["slug"]
    dave = make_actor("dave")
    buy(client, dave, slug, "no", "20")  # early and cheap
    buy(client, alice, slug, "yes", "10")
    buy(client, bob, slug, "no", "30")
    sell(client, bob, slug, "no", shares="12.5")  # bought, then sold part
    buy(client, carol, slug, "no", "150")  # pushes NO up
    sell(client, dave, slug, "no", all=True)  # sells at a profit: net spend negative
    net = {}
    for row in Trade.objects.select_related("user"):
        net.setdefault(row.user.username, 0)
        net[row.user.username] += row.amount_micro if row.side == "buy" else -row.amount_micro
    assert net["dave"] < 0 < net["bob"]
    expected = {name: amount for name, amount in net.items() if amount > 0}
    assert set(expected) == {"alice", "bob", "carol"}
    actors = {"alice": alice, "bob": bob, "carol": carol, "dave": dave}
    balances = {name: actor.balance for name, actor in actors.items()}
    pool_before = pool_balance(slug)

    response = resolve(client, resolver, slug, cancel=True, note="Question was ambiguous.", sources=["https://example.org/c"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["already_resolved"] is False
    assert body["payouts"] == {name: fmt(amount) for name, amount in expected.items()}
    assert body["market"]["status"] == "cancelled"
    assert body["market"]["resolution"] == {"cancel": True}
    assert body["market"]["resolution_note"] == "Question was ambiguous."
    assert body["market"]["resolution_sources"] == ["https://example.org/c"]
    for name, actor in actors.items():
        assert actor.balance == balances[name] + expected.get(name, 0), name
    refunds = sorted(Transfer.objects.filter(kind="refund").values_list("amount_micro", flat=True))
    assert refunds == sorted(expected.values())
    total = sum(expected.values())
    cover = sum(Transfer.objects.filter(kind="cover").values_list("amount_micro", flat=True))
    assert body["returned_to_treasury"] == fmt(max(0, pool_before - total))
    assert cover == max(0, total - pool_before)
    assert pool_balance(slug) == 0
    assert_audit_passes()


def test_cancel_draws_refunds_beyond_the_pool_from_the_treasury(client, market, alice, bob, carol, resolver):
    """Cover refunds the pool cannot pay from the treasury with a recorded cover transfer; the pool ends empty."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "1000")  # pushes NO to almost nothing
    buy(client, bob, slug, "no", "500")  # cheap NO
    buy(client, carol, slug, "no", "1000")  # NO to almost certain
    bob_sold = sell(client, bob, slug, "no", all=True)  # bob profits far beyond the subsidy
    spent = {a.user.username: sum(t.amount_micro * (1 if t.side == "buy" else -1) for t in Trade.objects.filter(user=a.user)) for a in (alice, bob, carol)}
    assert spent["bob"] < -ref_subsidy(100 * M, 2)
    assert Decimal(bob_sold["amount"]) > 400
    pool_before = pool_balance(slug)
    refunds = spent["alice"] + spent["carol"]
    assert refunds > pool_before
    before = {a.user.username: a.balance for a in (alice, bob, carol)}
    treasury_before = get_treasury().balance_micro

    response = resolve(client, resolver, slug, cancel=True)
    assert response.status_code == 200, response.content
    assert response.json()["payouts"] == {"alice": fmt(spent["alice"]), "carol": fmt(spent["carol"])}
    assert response.json()["returned_to_treasury"] == "0.000000"
    cover = Transfer.objects.get(kind="cover")
    assert cover.amount_micro == refunds - pool_before
    assert (cover.debit_id, cover.credit_id) == (get_treasury().pk, Market.objects.get(slug=slug).pool_id)
    assert alice.balance == before["alice"] + spent["alice"]
    assert carol.balance == before["carol"] + spent["carol"]
    assert bob.balance == before["bob"]
    assert pool_balance(slug) == 0
    assert get_treasury().balance_micro == treasury_before - (refunds - pool_before)
    assert_audit_passes()


def test_second_resolution_pays_nothing_more(client, market, alice, resolver):
    """Answer the same resolution again with 200 already_resolved and move no money; the first resolution stands."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "10")
    assert resolve(client, resolver, slug, outcome="yes", note="first").status_code == 200
    before = snapshot()
    for body in ({"outcome": "yes"}, {"outcome": "yes", "note": "second"}):
        response = resolve(client, resolver, slug, **body)
        assert response.status_code == 200, response.content
        data = response.json()
        assert data["already_resolved"] is True
        assert data["payouts"] == {}
        assert data["returned_to_treasury"] == "0.000000"
        assert data["market"]["resolution"] == {"outcome": "yes"}
        assert data["market"]["resolution_note"] == "first"
    assert snapshot() == before
    assert_audit_passes()


@pytest.mark.parametrize(
    "body",
    [{"outcome": "no"}, {"cancel": True}, {"probabilities": {"yes": "0.5", "no": "0.5"}}],
    ids=["other outcome", "cancel", "probabilities"],
)
def test_resolving_a_resolved_market_another_way_is_a_conflict(client, market, alice, resolver, body):
    """Refuse to settle a resolved market differently with 409 conflict, moving no money; the first resolution stands."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "10")
    assert resolve(client, resolver, slug, outcome="yes", note="first").status_code == 200
    before = snapshot()
    assert_error(resolve(client, resolver, slug, **body), 409, "conflict")
    assert snapshot() == before
    detail = get(client, f"/markets/{slug}").json()
    assert (detail["resolution"], detail["resolution_note"]) == ({"outcome": "yes"}, "first")


def test_resolve_a_closed_market_and_a_multiple_choice_market(client, editor, alice, bob, resolver):
    """Resolve a market after close_at and a three-way market to one of its outcomes."""
    slug = create_market(client, editor, outcomes=["Red", "Green", "Blue"])["slug"]
    buy(client, alice, slug, "green", "4")
    buy(client, bob, slug, "blue", "6")
    set_close_in_past(slug)
    response = resolve(client, resolver, slug, outcome="green")
    assert response.status_code == 200, response.content
    assert response.json()["payouts"] == {"alice": "4.000000"}
    assert pool_balance(slug) == 0
    assert_audit_passes()


# --- /me and /me/transfers ----------------------------------------------------


def test_me_shows_balance_and_positions_with_value_and_pnl(client, market, alice):
    """Show the balance and each open position with its price, value (floored) and unrealised P&L."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "10")
    response = get(client, "/me", alice.token)
    assert response.status_code == 200
    body = response.json()
    price = Decimal(ref_prices([10 * M, 0], 100 * M)[0])
    assert body["username"] == "alice"
    assert body["balance"] == "994.875052"
    assert len(body["positions"]) == 1
    position = body["positions"][0]
    with localcontext() as ctx:
        ctx.prec = 50
        exact_price = (Decimal(10 * M) / Decimal(100 * M)).exp() / ((Decimal(10 * M) / Decimal(100 * M)).exp() + 1)
        value = int(Decimal(10 * M) * exact_price)
    assert position == {
        "market": slug,
        "question": market["question"],
        "outcome": "yes",
        "shares": "10.000000",
        "average_cost": "0.512495",
        "price": f"{price:.6f}",
        "value": fmt(value),
        "cost_basis": "5.124948",
        "pnl": fmt(value - 5_124_948),
        "settled": False,
    }


def test_me_shows_settled_positions_after_resolution(client, market, alice, resolver):
    """Show a resolved position as settled, valued at its payout, with P&L payout + received - spent."""
    slug = market["slug"]
    buy(client, alice, slug, "yes", "10")
    proceeds = sell(client, alice, slug, "yes", shares="4")["amount"]
    assert resolve(client, resolver, slug, outcome="yes").status_code == 200
    position = get(client, "/me", alice.token).json()["positions"][0]
    assert position["settled"] is True
    assert position["value"] == "6.000000"
    assert position["pnl"] == fmt(6 * M + int(Decimal(proceeds) * M) - 5_124_948)


def test_me_needs_authentication(client):
    """Refuse /me and /me/transfers to anonymous callers with 401."""
    assert_error(get(client, "/me"), 401, "unauthorized")
    assert_error(get(client, "/me/transfers"), 401, "unauthorized")


def test_my_transfers_list_grant_buy_sell_payout_with_signed_amounts(client, market, alice, resolver):
    """List the caller's ledger lines newest first, money in positive and money out negative."""
    slug = market["slug"]
    bought = buy(client, alice, slug, "yes", "10")
    sold = sell(client, alice, slug, "yes", shares="4")
    assert resolve(client, resolver, slug, outcome="yes").status_code == 200
    response = get(client, "/me/transfers", alice.token)
    assert response.status_code == 200
    assert response.json()["next"] is None
    lines = response.json()["items"]
    market_id = Market.objects.get(slug=slug).pk
    assert [(line["kind"], line["amount"], line["reference"]) for line in lines] == [
        ("payout", "6.000000", f"market:{market_id}"),
        ("sell", sold["amount"], f"trade:{sold['trade_id']}"),
        ("buy", "-5.124948", f"trade:{bought['trade_id']}"),
        ("grant", "1000.000000", f"user:{alice.user.pk}"),
    ]
    assert [line["description"] for line in lines] == ["Resolution payout", "Sold shares", "Bought shares", "Starting balance"]
    total = sum(Decimal(line["amount"]) for line in lines)
    assert total * M == alice.balance


# --- articles -----------------------------------------------------------------


def test_articles_list_and_detail(client):
    """List published articles and show one with its body; answer an unknown id with 404 not_found."""
    article = make_article(headline="Harbour strike ends", tags=("Harbours", "Labour"), section_path=("World", "Europe"))
    listed = client.get(f"{API}/articles")
    assert listed.status_code == 200
    row = next(a for a in listed.json()["items"] if a["id"] == article.pk)
    assert row["headline"] == "Harbour strike ends"
    assert row["section"] == ["World", "Europe"]
    assert row["region"] == "Europe" and row["desk"] == "Data Desk"
    assert row["authors"] == ["Ada Quill"]
    assert sorted(row["tags"]) == ["Harbours", "Labour"]
    assert "body" not in row
    detail = client.get(f"{API}/articles/{article.pk}")
    assert detail.status_code == 200
    body = detail.json()
    assert body["id"] == article.pk and body["headline"] == "Harbour strike ends"
    assert [block["type"] for block in body["body"]][:1] and body["body"]
    assert_error(client.get(f"{API}/articles/987654321"), 404, "not_found", "no article 987654321")


def test_unknown_status_filter_is_refused(client):
    """A status filter that is not a lifecycle state is a 400, not a silent 'everything'."""
    response = client.get(f"{API}/markets?status=bogus")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_unknown_article_ids_are_refused(client, editor):
    """Linking a market to an article that does not exist is refused and creates no market."""
    before = snapshot()
    body = {"question": "Will it rain?", "liquidity_b": "100", "close_at": soon(), "articles": [999999]}
    assert_error(post(client, "/markets", body, editor.token), 400, "invalid")
    assert snapshot() == before


@pytest.mark.parametrize(
    "body",
    [
        {"outcome": "yes", "side": "sell", "shares": "1", "max_cost": "5"},
        {"outcome": "yes", "side": "buy", "shares": "1", "min_proceeds": "0"},
    ],
)
def test_slippage_bound_on_the_wrong_side_is_refused(client, editor, body):
    """max_cost belongs to buys and min_proceeds to sells; the other way round is a 400."""
    market = create_market(client, editor)
    response = post(client, f"/markets/{market['slug']}/trades", body, editor.token)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
