"""The bounded retry on PostgreSQL serialization failures and deadlocks."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from bellwether.markets import services


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _failing(sqlstate: str, times: int):
    calls = []

    @services.retry_on_conflict
    def work():
        calls.append(1)
        if len(calls) <= times:
            try:
                raise _PgError(sqlstate)
            except _PgError as cause:
                raise OperationalError("conflict") from cause
        return "done"

    return work, calls


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_serialization_failures_and_deadlocks_are_retried(sqlstate):
    """40001 and 40P01 are retried until the work succeeds."""
    work, calls = _failing(sqlstate, times=2)
    assert work() == "done"
    assert len(calls) == 3


def test_retries_are_bounded():
    """After RETRY_ATTEMPTS failures the error reaches the caller."""
    work, calls = _failing("40001", times=100)
    with pytest.raises(OperationalError):
        work()
    assert len(calls) == services.RETRY_ATTEMPTS


def test_other_errors_are_not_retried():
    """Any other database error is raised at once."""
    work, calls = _failing("23505", times=1)
    with pytest.raises(OperationalError):
        work()
    assert len(calls) == 1


def test_sqlite_writers_are_served_in_arrival_order():
    """The per-process write queue lets waiting threads in first come, first served."""
    import threading
    import time

    lock = services._FairLock()
    order: list[int] = []
    lock.__enter__()  # hold it while the others line up
    threads = []
    for n in range(5):
        def waiter(n=n):
            with lock:
                order.append(n)

        thread = threading.Thread(target=waiter)
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 5
        while lock._next_ticket != n + 2 and time.monotonic() < deadline:  # wait until it holds a ticket
            time.sleep(0.001)
    lock.__exit__(None, None, None)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]
