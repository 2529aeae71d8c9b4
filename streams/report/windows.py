"""Which windows a digest can cover, and how far back in time each one reads.

The digest reads previous periods and trend points from the workers' retained hour
buckets, so the reachable history is bounded by the bucket retention; this module holds
those limits in one place for the digest builder, the command line and the tests.
"""

from __future__ import annotations

from salespulse.agents.rolling import HOUR, RETENTION_HOURS, WINDOW_SECONDS

DAY = 24 * HOUR
#: Windows a digest can cover, each with its trend: (step between points, number of points).
#: ``1h`` is left out on purpose. Earlier clocks have hour resolution, so a "previous hour"
#: would mostly be the current one.
TREND: dict[str, tuple[int, int]] = {
    "24h": (DAY, 8),
    "7d": (7 * DAY, 8),
    "30d": (7 * DAY, 5),
}
DIGEST_WINDOWS = tuple(TREND)


def oldest_reach(window: str) -> int:
    """Seconds before the clock that the oldest bucket the digest reads starts at.

    It must stay within the 62-day bucket retention (``RETENTION_SECONDS``).
    """
    step, points = TREND[window]
    length = WINDOW_SECONDS[window]
    return max(step * (points - 1), length) + length


RETENTION_SECONDS = RETENTION_HOURS * HOUR
