from .origin import live_base


def live_streams(request) -> dict:
    """Give templates ``LIVE_BASE``: prefix ``/live/...`` with it to reach the streams."""
    return {"LIVE_BASE": live_base(request)}
