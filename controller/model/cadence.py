"""How often a schedule can fire, and the floors below which a workflow is refused.

Validated with APScheduler 3's own ``CronTrigger`` so that what passes here is exactly what the
scheduler will run. This runs for every schedule of every file a sync loads, so it reasons from the
cron fields instead of walking a day of fire times, and caches per ``(expression, time zone)``.

The smallest gap of a crontab whose seconds are fixed at 0 is either a gap between two minutes of
the minute field (it recurs in every hour that fires) or the wrap from the last minute of one hour
to the first of the next, which exists only when two consecutive hours fire.
"""

from __future__ import annotations

import functools
import itertools
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.cron.fields import BaseField

from controller.model.durations import describe_seconds

SCHEDULE_FLOOR_SECONDS = 5 * 60
INACTIVITY_FLOOR_SECONDS = 15 * 60

_START = (2026, 1, 5)  # a Monday far from any DST change: the search starts here in the zone
_DAY_PROBES = 14  # fire days checked for a 23:xx -> 00:xx wrap: two weeks of weekly patterns
_CRON_HINT = "use 5 fields: minute hour day-of-month month day-of-week, e.g. '*/15 * * * *'"


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError saying what to use if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a directory of the tz database ("Europe") is not a zone either.
        raise ValueError(
            f"{name!r} is not a time zone (use an IANA name such as UTC or Europe/Berlin)"
        ) from None


def cron_trigger(expr: str, zone: tzinfo) -> CronTrigger:
    """The APScheduler trigger of a 5-field crontab; ValueError saying how to write one."""
    try:
        return CronTrigger.from_crontab(expr, timezone=zone)
    except ValueError as error:
        raise ValueError(f"{expr!r} is not a valid cron expression: {error} ({_CRON_HINT})") from None


@functools.lru_cache(maxsize=4096)
def cron_min_gap(expr: str, zone_name: str) -> int:
    """The smallest number of seconds between two fires of ``expr`` in ``zone_name``, capped at an hour.

    The cap keeps this cheap: every floor is below an hour, and gaps of an hour or more need the
    day fields. ValueError when the expression, the zone or the schedule itself is impossible.
    """
    zone = time_zone(zone_name)
    trigger = cron_trigger(expr, zone)
    start = datetime(*_START, tzinfo=zone)
    if trigger.get_next_fire_time(None, start) is None:
        raise ValueError(f"cron {expr!r} never fires (check the day and month fields)")
    minutes = _values(trigger, "minute", start)
    hours = _values(trigger, "hour", start)
    inside = min((b - a for a, b in itertools.pairwise(minutes)), default=60) * 60
    wrap = (60 - minutes[-1] + minutes[0]) * 60
    if inside <= wrap:
        return inside
    if _hours_wrap(trigger, expr, zone, minutes, hours, wrap):
        return wrap
    return inside


def check_cron(expr: str, zone_name: str) -> None:
    """ValueError if ``expr`` is not a valid crontab or can fire more often than the floor."""
    gap = cron_min_gap(expr, zone_name)
    if gap < SCHEDULE_FLOOR_SECONDS:
        raise ValueError(
            f"cron {expr!r} fires every {describe_seconds(gap)}; "
            f"the floor is {describe_seconds(SCHEDULE_FLOOR_SECONDS)}"
        )


def check_every(every: str, seconds: int) -> None:
    """ValueError if an ``every`` schedule of ``seconds`` is below the floor."""
    if seconds < SCHEDULE_FLOOR_SECONDS:
        raise ValueError(
            f"every {every!r} fires every {describe_seconds(seconds)}; "
            f"the floor is {describe_seconds(SCHEDULE_FLOOR_SECONDS)}"
        )


def check_inactivity(after: str, seconds: int) -> None:
    """ValueError if an inactivity period of ``seconds`` is below the floor."""
    if seconds < INACTIVITY_FLOOR_SECONDS:
        raise ValueError(
            f"after {after!r} is too short for an inactivity trigger; "
            f"the floor is {describe_seconds(INACTIVITY_FLOOR_SECONDS)}"
        )


def _field(trigger: CronTrigger, name: str) -> BaseField:
    return next(field for field in trigger.fields if field.name == name)


def _values(trigger: CronTrigger, name: str, day: datetime) -> list[int]:
    """The sorted values of the minute or hour field (the same on every day)."""
    field, values = _field(trigger, name), []
    upper = 59 if name == "minute" else 23
    value = field.get_next_value(_at(day, name, 0))
    while value is not None:
        values.append(value)
        if value >= upper:
            break
        value = field.get_next_value(_at(day, name, value + 1))
    return values


def _at(day: datetime, name: str, value: int) -> datetime:
    return day.replace(minute=value) if name == "minute" else day.replace(hour=value)


def _hours_wrap(
    trigger: CronTrigger, expr: str, zone: tzinfo, minutes: list[int], hours: list[int], wrap: int
) -> bool:
    """Whether some hour's last fire is followed by the next hour's first one, ``wrap`` s later."""
    if any(b - a == 1 for a, b in itertools.pairwise(hours)):
        return True  # every day that fires at all fires in both hours
    if not (hours[0] == 0 and hours[-1] == 23):
        return False
    # 23:xx -> 00:xx crosses midnight: whether the next day fires depends on the day fields.
    last = cron_trigger(" ".join([str(minutes[-1]), "23", *expr.split()[2:]]), zone)
    fire = last.get_next_fire_time(None, datetime(*_START, tzinfo=zone))
    for _ in range(_DAY_PROBES):
        if fire is None:
            return False
        following = trigger.get_next_fire_time(fire, fire)
        if following is not None and following.timestamp() - fire.timestamp() <= wrap:
            return True
        fire = last.get_next_fire_time(fire, fire)
    return False
