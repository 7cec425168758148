"""RequestGuardMiddleware: a NUL character anywhere in a request is a 400, never a query; API bodies are capped.

PostgreSQL refuses NUL characters in text (and used to answer these
requests with a 500); SQLite stores them. Both databases must answer 400,
so these tests run on both.
"""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory

from bellwether.markets.models import IdempotencyKey, Trade
from bellwether.news.views import search
from tests.markets.test_pages_trading import client_for, form, make_market, post_trade, quote_then_fields, user
from tests.news.factories import make_article

pytestmark = pytest.mark.django_db


def assert_plain_400(response) -> None:
    """A page's 400: Django's bad-request page, not the API's JSON."""
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_a_nul_in_a_search_is_a_400_page(client, home):
    """Answer /search/?q=%00 with the plain 400 page."""
    assert_plain_400(client.get("/search/?q=%00"))
    assert_plain_400(client.get("/search/?q=harbour%00strike"))


def test_the_search_view_drops_a_nul_on_its_own(home):
    """Search for the words around a NUL when the view is reached without the middleware (it drops the character)."""
    article = make_article(headline="Harbour strike ends")
    request = RequestFactory().get("/search/", {"q": "Harbour\x00"})
    request.user = user("reader")
    response = search(request)
    assert response.status_code == 200
    assert f'href="{article.url}"' in response.content.decode()


@pytest.mark.parametrize("content", ["urlencoded", "multipart"])
def test_a_nul_in_a_form_field_is_a_400_page(home, content):
    """Refuse a form post with a NUL in a field (a login name here) with the plain 400 page, before any view runs."""
    data = {"login": "ana\x00", "password": "pw"}
    client = Client()
    if content == "urlencoded":
        response = client.post("/accounts/login/", "login=ana%00&password=pw", content_type="application/x-www-form-urlencoded")
    else:
        response = client.post("/accounts/login/", data)
    assert_plain_400(response)


def test_a_nul_in_the_trade_tickets_key_trades_nothing(home):
    """Refuse a ticket whose idempotency key holds a NUL with 400; no trade, no stored key (PostgreSQL answered 500)."""
    alice = user("alice")
    market = make_market()
    c = client_for(alice)
    fields = quote_then_fields(c, market, form(mode="shares", value="10", key="k-1"))
    fields["idempotency_key"] = "k\x00"
    assert_plain_400(post_trade(c, market, fields))
    assert not Trade.objects.exists() and not IdempotencyKey.objects.exists()


def test_a_nul_in_an_api_body_of_any_content_type_is_a_400(client):
    """Check an API body for NUL whatever its Content-Type: the API reads every body as JSON."""
    for content_type in ("text/plain", "multipart/form-data", "application/x-www-form-urlencoded"):
        response = client.post("/api/v1/markets/x/quote", '{"outcome": "yes\\u0000"}', content_type=content_type)
        assert response.status_code == 400, content_type
        assert response.json() == {
            "error": {"code": "invalid", "message": "the JSON body contains a NUL character (\\u0000), which cannot be stored"},
        }


def test_an_api_body_over_the_limit_is_refused_before_it_is_read(client, settings):
    """Answer 413 payload_too_large from the declared Content-Length alone; API_MAX_BODY_BYTES sets the limit."""
    settings.API_MAX_BODY_BYTES = 100
    response = client.post("/api/v1/markets/x/quote", '{"outcome": "yes", "shares": "1", "pad": "' + "x" * 80 + '"}', content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {"error": {"code": "payload_too_large", "message": "the request body is larger than 100 bytes"}}


def test_pages_and_the_api_keep_working(client, home):
    """Let ordinary requests through untouched: a search, the API list, a JSON body with an escaped backslash."""
    assert client.get("/search/?q=harbour").status_code == 200
    assert client.get("/api/v1/markets?tag=harbours").status_code == 200
    response = client.post("/api/v1/markets/no-such/quote", '{"outcome": "a\\\\u0000", "shares": "1"}', content_type="application/json")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")


# --- ids past the database's integers, and errors no route answers ----------------


HUGE = "9" * 30


@pytest.mark.parametrize("path", [f"/markets/panels/article/{HUGE}/", f"/markets/panels/section/{HUGE}/", f"/highlights/{HUGE}/"])
def test_a_page_id_too_large_for_the_database_is_a_404(client, home, path):
    """Answer an id of 30 digits in a page address with 404: it matches no URL instead of overflowing a query."""
    assert client.get(path).status_code == 404


def test_an_api_article_id_too_large_for_the_database_is_a_400(client):
    """Refuse /api/v1/articles/<30 digits> with 400 and the JSON error body, before any query."""
    response = client.get(f"/api/v1/articles/{HUGE}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


@pytest.mark.parametrize(("method", "path"), [("put", "/api/v1/markets"), ("delete", "/api/v1/markets/some-market")])
def test_a_method_a_route_does_not_take_is_a_405_with_the_json_error(client, method, path):
    """Answer an unsupported method with 405, its Allow header and the API's JSON error body."""
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert response.json() == {"error": {"code": "method_not_allowed", "message": "this address does not take that method"}}
    assert "GET" in response["Allow"]


def test_an_unknown_api_address_is_a_404_with_the_json_error(client):
    """Answer an address under /api/ that no route has with 404 and the JSON error body, not Django's HTML page."""
    response = client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "no such address in the API"}}
