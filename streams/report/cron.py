"""Fixed send times for the digest: ``salespulse report --cron "0 8 * * mon"``.

``--every`` repeats a period from whenever the command started; a team that reads its
digest on Monday at 08:00 wants that time whatever the start. The expression is read by
croniter (the same library faust schedules its crontab timers with) in UTC, the zone the
digest's stamps are in. Only the classic five fields or an ``@daily``-style alias: croniter
would also take a seconds column, which would make ``*/5 * * * * 30`` silently mean
something else than most readers of a crontab think.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from salespulse.streams.report.errors import ReportError

_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


@dataclass(frozen=True)
class CronSchedule:
    """The UTC moments a cron expression names; a bad expression is refused when made."""

    expression: str

    def __post_init__(self) -> None:
        text = self.expression.strip()
        fields = text.split()
        if not (len(fields) == 5 or (len(fields) == 1 and text.lower() in _ALIASES)):
            raise ReportError(
                f"--cron {self.expression!r} is not a cron expression: give five fields, "
                "minute hour day-of-month month day-of-week (e.g. '0 8 * * mon'), or one of "
                + ", ".join(_ALIASES)
            )
        try:
            croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
        except CroniterBadCronError as exc:
            raise ReportError(f"--cron {self.expression!r} is not a cron expression: {exc}") from None
        except CroniterBadDateError:
            never = "names no date that exists (it never fires)"
            raise ReportError(f"--cron {self.expression!r} {never}") from None

    def next_after(self, epoch: float) -> float:
        """The first moment strictly after ``epoch`` (seconds), in epoch seconds."""
        start = datetime.fromtimestamp(epoch, UTC)
        moment: datetime = croniter(self.expression.strip(), start).get_next(datetime)
        return moment.timestamp()
