"""The market page, its price chart, the trade ticket and the portfolio.

The ticket speaks htmx: a quote renders into ``#ticket-quote``; a trade
re-renders ``#trade-ticket`` and updates the balance chip, the odds, the
reader's position and the recent trades out of band. Refusals come back as
200 responses carrying the message, because htmx does not swap error
statuses by default. Without JavaScript the same form posts normally: a
trade redirects back with a message, anything else re-renders the page.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from bellwether.ledger.exceptions import LedgerError

from .. import selectors, services
from ..api import trade_body
from ..exceptions import IdempotencyConflict, MarketError, MarketNotFound, SlippageExceeded
from ..models import Market
from ..ticket import (
    Quote,
    Ticket,
    blank_ticket,
    confirmed_request,
    done_message,
    error_message,
    new_key,
    request_for,
    ticket_from_form,
)

TICKET = "markets/_ticket.html"
PAGE = "markets/market_detail.html"
TRADED_EVENT = "bellwether:traded"


def _market_or_404(request, slug: str) -> Market:
    try:
        return selectors.market_for_page(slug=slug, user=request.user)
    except MarketNotFound:
        raise Http404("No such market") from None


def _range_key(request) -> str:
    key = (request.GET.get("range") or "all").lower()
    return key if key in selectors.CHART_RANGES else "all"


def _page_context(request, market: Market, ticket: Ticket | None) -> dict:
    """Return everything the market page shows (a fixed number of queries)."""
    settled = market.status in (Market.Status.RESOLVED, Market.Status.CANCELLED)
    range_key = _range_key(request)
    return {
        "market": market,
        "odds": selectors.market_odds(market=market),
        "holdings": selectors.market_holdings(market=market, user=request.user),
        "trades": selectors.recent_trades(market=market),
        "holders": selectors.top_holders(market=market),
        "articles": selectors.linked_articles(market=market),
        "expert_forecasts": selectors.market_expert_forecasts(market=market),
        "payouts": selectors.market_payouts(market=market) if settled else None,
        "resolution": _resolution(market) if settled else None,
        "ticket": ticket,
        "chart_range": range_key,
        "chart_ranges": [(key, label) for key, (label, _) in selectors.CHART_RANGES.items()],
        "next_url": market.get_absolute_url(),
    }


def _resolution(market: Market) -> dict:
    """Return the resolution record in the page's terms; sources that are not web links stay plain text."""
    outcomes = {o.slug: o for o in market.outcomes.all()}
    record = market.resolution or {}
    winner = outcomes.get(record.get("outcome")) if record.get("outcome") else None
    split = record.get("probabilities") or {}
    # In outcome order: PostgreSQL's jsonb does not keep the keys' order.
    shares = [{"outcome": o, "probability": float(split[slug])} for slug, o in outcomes.items() if slug in split]
    return {"cancelled": bool(record.get("cancel")), "winner": winner, "probabilities": shares, "sources": market.source_links}


def _render_page(request, market: Market, ticket: Ticket | None, status: int = 200):
    return render(request, PAGE, _page_context(request, market, ticket), status=status)


@never_cache
@require_GET
def market_detail(request, slug: str):
    """Show one market: odds, chart, ticket, the reader's position, trades, holders, articles, resolution."""
    market = _market_or_404(request, slug)
    ticket = None
    if request.user.is_authenticated and market.is_trading:
        ticket = blank_ticket(market=market, outcome=request.GET.get("outcome"), side=request.GET.get("side") or "buy")
    return _render_page(request, market, ticket)


@never_cache
@require_GET
def chart_data(request, slug: str):
    """Return the price history for one range as JSON, with article markers."""
    market = _market_or_404(request, slug)
    range_key = _range_key(request)
    series = selectors.chart_series(market=market, range_key=range_key)
    return JsonResponse({
        "range": range_key,
        "outcomes": [{"slug": o.slug, "name": o.name} for o in series["outcomes"]],
        "t": series["times"],
        "series": series["series"],
        "markers": [
            {"t": round(a.dated_at.timestamp(), 3), "title": a.title, "url": a.get_url(request)}
            for a in series["articles"]
        ],
        "trade_count": series["trade_count"],
        "empty": series["trade_count"] == 0,
    })


def _refuse_anonymous(request, slug: str):
    """Refuse a quote or trade from a reader who is not logged in: 403 for htmx, else the login page."""
    if _is_htmx(request):
        return HttpResponseForbidden("Log in to trade.")
    login = reverse("account_login")
    return redirect(f"{login}?{urlencode({'next': reverse('markets:detail', args=[slug])})}")


def _is_htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _quote_into(ticket: Ticket, market: Market, user) -> Ticket:
    """Add the current quote for the ticket's choices, or the reason there is none."""
    try:
        fill = services.quote(market=market, request=request_for(ticket), user=user)
    except (MarketError, LedgerError) as exc:
        ticket.quote = None
        return ticket.say(error_message(exc))
    ticket.quote = Quote.from_fill(fill=fill, market=market, quote_for=ticket.quote_for)
    return ticket


@never_cache
@require_POST
def quote(request, slug: str):
    """Render the quote for the ticket's choices into ``#ticket-quote`` (the message goes out of band)."""
    if not request.user.is_authenticated:
        return _refuse_anonymous(request, slug)
    try:
        market = selectors.market_for_page(slug=slug, user=request.user)
    except MarketNotFound as exc:
        if not _is_htmx(request):
            raise Http404("No such market") from None
        return render(request, TICKET + "#quote-response", {"ticket": Ticket(outcome="").say(error_message(exc))})
    ticket = ticket_from_form(data=request.POST, market=market)
    if ticket.value or ticket.sell_all:
        _quote_into(ticket, market, request.user)
    if not _is_htmx(request):
        return _render_page(request, market, ticket)
    return render(request, TICKET + "#quote-response", {"market": market, "ticket": ticket})


@never_cache
@require_POST
def trade(request, slug: str):
    """Place the quoted trade; without a matching quote, quote it for review instead."""
    if not request.user.is_authenticated:
        return _refuse_anonymous(request, slug)
    htmx = _is_htmx(request)
    try:
        market = selectors.market_for_page(slug=slug, user=request.user)
    except MarketNotFound as exc:
        if not htmx:
            raise Http404("No such market") from None
        return render(request, TICKET + "#ticket", {"ticket": Ticket(outcome="").say(error_message(exc))})
    ticket = ticket_from_form(data=request.POST, market=market)
    try:
        confirmed = confirmed_request(ticket=ticket, data=request.POST)
    except MarketError as exc:
        confirmed = None
        ticket.say(error_message(exc))
    if confirmed is None:
        # No quote for these exact choices yet: show one to confirm.
        _quote_into(ticket, market, request.user)
        if ticket.quote is not None and not ticket.message:
            ticket.say("Check the quote, then confirm.", "info")
        return _ticket_response(request, market, ticket)
    try:
        body = services.place_trade(
            user=request.user, market_slug=market.slug, request=confirmed, idempotency_key=ticket.key or None,
            render=trade_body,
        )
    except (MarketError, LedgerError) as exc:
        if isinstance(exc, IdempotencyConflict):
            ticket.key = new_key()
        if isinstance(exc, (SlippageExceeded, IdempotencyConflict)):
            _quote_into(ticket, market, request.user)
        ticket.say(error_message(exc))
        if isinstance(exc, MarketNotFound):
            ticket.quote = None
        market = _fresh(request, market)
        return _ticket_response(request, market, ticket)
    text = done_message(body=body, market=market)
    if not htmx:
        messages.success(request, text)
        return redirect(f"{market.get_absolute_url()}?{urlencode({'outcome': ticket.outcome})}")
    market = _fresh(request, market)
    fresh = blank_ticket(market=market, outcome=ticket.outcome, side=ticket.side).say(text, "success")
    response = render(request, "markets/_trade_result.html", _trade_result_context(request, market, fresh))
    response["HX-Trigger"] = json.dumps({TRADED_EVENT: {"trade_id": body["trade_id"]}})
    return response


def _fresh(request, market: Market) -> Market:
    """Return the market re-read after a write (prices, status), or the old copy if it vanished."""
    try:
        return selectors.market_for_page(slug=market.slug, user=request.user)
    except MarketNotFound:
        return market


def _trade_result_context(request, market: Market, ticket: Ticket) -> dict:
    """Return what a trade's htmx answer re-renders: the ticket, the odds, the reader's position and the recent trades."""
    return {
        "market": market,
        "ticket": ticket,
        "odds": selectors.market_odds(market=market),
        "holdings": selectors.market_holdings(market=market, user=request.user),
        "trades": selectors.recent_trades(market=market),
        "next_url": market.get_absolute_url(),
    }


def _ticket_response(request, market: Market, ticket: Ticket):
    """Return the ticket alone for htmx, or the whole page for a plain form post."""
    if _is_htmx(request):
        context = {"market": market, "ticket": ticket, "odds": selectors.market_odds(market=market), "next_url": market.get_absolute_url()}
        return render(request, TICKET + "#ticket", context)
    return _render_page(request, market, ticket)


@never_cache
@login_required
def portfolio(request):
    """Show the reader's balance, positions, settled markets and ledger lines."""
    account, balance = selectors.user_balance(user=request.user)
    positions = selectors.portfolio_positions(user=request.user)
    lines = selectors.ledger_lines(account=account, page_number=request.GET.get("page") or 1)
    return render(request, "markets/portfolio.html", {
        "balance_micro": balance,
        "total_micro": balance + positions["open_value_micro"],
        "positions": positions,
        "lines": lines,
        "page_obj": lines,
        "now": timezone.now(),
    })
