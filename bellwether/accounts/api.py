"""The caller's own account: balance, positions, ledger lines."""

from __future__ import annotations

import datetime as dt

from ninja import Field, Query, Router, Schema

from bellwether.api_common import ANY_ROUTE, cursor_param, errors
from bellwether.ledger.services import format_micro, open_user_account
from bellwether.markets.selectors import user_positions
from bellwether.paging import decode_cursor, encode_cursor

from .selectors import transfer_lines

router = Router(tags=["me"])


class PositionOut(Schema):
    market: str
    question: str
    outcome: str
    shares: str
    average_cost: str
    price: str
    value: str
    cost_basis: str
    pnl: str
    settled: bool


class MeOut(Schema):
    username: str
    balance: str
    positions: list[PositionOut]


class TransferOut(Schema):
    id: int
    at: dt.datetime
    kind: str
    description: str
    amount: str
    reference: str


class TransferPage(Schema):
    items: list[TransferOut]
    next: str | None = Field(None, description="send as ?cursor= for the next page; null on the last page")


TRANSFERS_PAGE_MAX = 200


@router.get("", response={200: MeOut, **errors(*ANY_ROUTE, 401)}, summary="My balance and positions")
def me(request):
    account = open_user_account(user=request.auth)
    positions = [
        {
            **{k: p[k] for k in ("market", "question", "outcome", "settled")},
            "shares": format_micro(p["shares_micro"]),
            "average_cost": f"{p['average_cost']:.6f}",
            "price": f"{p['price']:.6f}",
            "value": format_micro(p["value_micro"]),
            "cost_basis": format_micro(p["cost_basis_micro"]),
            "pnl": format_micro(p["pnl_micro"]),
        }
        for p in user_positions(user=request.auth)
    ]
    return {"username": request.auth.get_username(), "balance": format_micro(account.balance_micro), "positions": positions}


@router.get("/transfers", response={200: TransferPage, **errors(*ANY_ROUTE, 401)}, summary="My ledger lines, newest first")
def my_transfers(request, limit: int = Query(100, ge=1, le=TRANSFERS_PAGE_MAX), cursor: str | None = cursor_param()):
    """The caller's ledger lines, newest first, a page at a time; money in is positive, money out negative."""
    after = decode_cursor(cursor, "datetime", "int") if cursor else None
    account = open_user_account(user=request.auth)
    lines = transfer_lines(account=account, limit=limit + 1, after=after)
    page = lines[:limit]
    return {
        "items": [
            {
                "id": t.pk,
                "at": t.created_at,
                "kind": t.kind,
                "description": t.get_kind_display(),
                "amount": format_micro(t.amount_micro if t.credit_id == account.pk else -t.amount_micro),
                "reference": t.reference,
            }
            for t in page
        ],
        "next": encode_cursor(page[-1].created_at, page[-1].pk) if len(lines) > limit else None,
    }
