"""Reading ``--from`` / ``--to`` options: a day or an ISO 8601 time."""

from __future__ import annotations

import datetime as dt

from gridloom.errors import GridloomError


def period_bound(text: str | None, *, option: str, end: bool, error: type[GridloomError]) -> dt.datetime | None:
    """A day (UTC midnight; for ``end`` the day is included) or an ISO 8601 time (UTC when it has no offset).

    A malformed value raises ``error`` naming the option and the expected forms.
    """
    if text is None:
        return None
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end else 0)
            return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise error(f"{option} {text!r} is not a day (2026-07-01) or an ISO 8601 time") from None
    return (at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
