"""The caller's own account: balance, positions, ledger lines."""

from __future__ import annotations

import datetime as dt

from ninja import Router, Schema

from bellwether.ledger.selectors import account_transfers
from bellwether.ledger.services import format_micro, open_user_account
from bellwether.markets.selectors import user_positions

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


@router.get("", response=MeOut, summary="My balance and positions")
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


@router.get("/transfers", response=list[TransferOut], summary="My ledger lines, newest first")
def my_transfers(request, limit: int = 100):
    account = open_user_account(user=request.auth)
    lines = account_transfers(account=account)[: min(max(limit, 1), 500)]
    return [
        {
            "id": t.pk,
            "at": t.created_at,
            "kind": t.kind,
            "description": t.get_kind_display(),
            "amount": format_micro(t.amount_micro if t.credit_id == account.pk else -t.amount_micro),
            "reference": t.reference,
        }
        for t in lines
    ]
