"""How often a schedule can fire, and the floors below which a workflow is refused.

Validated with APScheduler 3's own ``CronTrigger`` so that what passes here is exactly what the
scheduler will run. This runs for every schedule of every file a sync loads, so it reasons from the
cron fields instead of walking a day of fire times, and caches per ``(expression, time zone)``.

The smallest gap of a crontab whose seconds are fixed at 0 is either a gap between two minutes of
the minute field (it recurs in every hour that fires) or the wrap from the last minute of one hour
to the first of the next, which exists only when two consecutive hours fire.

That reasoning is in wall-clock time. Where the zone changes its UTC offset, real time differs: on
the night the clocks skip 02:00, ``0,59 1,3 * * *`` fires at 01:59 and one minute later at 03:00,
and where they repeat an hour APScheduler fires in both passes of it. So for each offset change of
the zone in the next two years, the real fire times in a window around it are walked and compared
in UTC: a few fires per change, and nothing at all in zones without changes (UTC, Asia/Tokyo).
The window starts today, so the cache of that walk is keyed by the day too.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from controller.model.durations import describe_seconds

if TYPE_CHECKING:  # imported where a cron is read: most workflows have none
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.cron.fields import BaseField

SCHEDULE_FLOOR_SECONDS = 5 * 60
INACTIVITY_FLOOR_SECONDS = 15 * 60

_START = (2026, 1, 5)  # a Monday far from any DST change: the search starts here in the zone
_DAY_PROBES = 14  # fire days checked for a 23:xx -> 00:xx wrap: two weeks of weekly patterns
_CRON_HINT = "use 5 fields: minute hour day-of-month month day-of-week, e.g. '*/15 * * * *'"
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_HORIZON_DAYS = 2 * 366  # offset changes checked: those of the next two years
_DAY_SECONDS = 24 * 3600


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
    """The APScheduler trigger of a 5-field crontab as crontab means it; ValueError saying how to write one.

    The scheduler registers exactly this trigger, so what is validated is what runs. APScheduler 3
    numbers weekdays from Monday (``from_crontab`` keeps that), crontab from Sunday: numbers of the
    day-of-week field become day names (7 is Sunday too), steps stay numbers, and a number above 7
    is left for APScheduler to refuse.
    """
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    try:
        if len(fields) != 5:
            raise ValueError(f"Wrong number of fields; got {len(fields)}, expected 5")
        minute, hour, day, month, dow = fields
        dow = ",".join(_crontab_days(term) for term in dow.split(","))
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=dow, timezone=zone)
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


def check_cron(expr: str, zone_name: str, today: date | None = None) -> None:
    """ValueError if ``expr`` is not a valid crontab or can fire more often than the floor.

    Both on ordinary days and across the offset changes of ``zone_name`` in the two years from
    ``today`` (the current UTC date if not given). Validation and the scheduler both call this.
    """
    gap = cron_min_gap(expr, zone_name)
    if gap < SCHEDULE_FLOOR_SECONDS:
        raise ValueError(
            f"cron {expr!r} fires every {describe_seconds(gap)}; "
            f"the floor is {describe_seconds(SCHEDULE_FLOOR_SECONDS)}"
        )
    clash = offset_change_clash(expr, zone_name, datetime.now(UTC).date() if today is None else today)
    if clash is not None:
        raise ValueError(
            f"cron {expr!r} fires at {clash.first:%H:%M} and {clash.second:%H:%M} on {clash.day} in "
            f"{zone_name} (the clocks {clash.change}), {describe_seconds(clash.gap)} apart; "
            f"the floor is {describe_seconds(SCHEDULE_FLOOR_SECONDS)}"
        )


@dataclass(frozen=True)
class Clash:
    """Two consecutive fires closer than the floor because the zone's UTC offset changed between them."""

    first: datetime
    """The earlier fire, in local time as the wall clock shows it."""
    second: datetime
    gap: int
    """Real seconds between the two."""
    day: date
    """The local date of the offset change."""
    change: str
    """What the clocks do, for messages: "skip an hour", "repeat 30 minutes"."""


@functools.lru_cache(maxsize=4096)
def offset_change_clash(expr: str, zone_name: str, today: date) -> Clash | None:
    """The first pair of fires closer than the floor across an offset change in the two years from ``today``.

    Only fires near a change can be affected. Two fires both before it, or both after the skipped
    or repeated span, are as far apart as their wall times, which ``cron_min_gap`` has checked; so
    the walk covers the floor before the change, the span (where the clocks skip, APScheduler fires
    the missing wall times in it; where they repeat, it fires them twice) and the floor after it.
    """
    zone = time_zone(zone_name)
    changes = offset_changes(zone_name, today)
    if not changes:
        return None
    trigger = cron_trigger(expr, zone)
    floor = timedelta(seconds=SCHEDULE_FLOOR_SECONDS)
    every_day, seen = expr.split()[2:] == ["*", "*", "*"], set()
    for at in changes:
        before, after = _offset(zone, at - timedelta(seconds=1)), _offset(zone, at)
        if every_day:  # fires the same every day: a change like one already walked (next year's) would repeat it
            shape = (at.astimezone(zone).time(), before, after)
            if shape in seen:
                continue
            seen.add(shape)
        shift = abs(after - before)
        pair = _closer_than(trigger, at - floor, at + shift + floor, floor)
        if pair is not None:
            first, second = (fire.astimezone(UTC).astimezone(zone) for fire in pair)
            verb = "skip" if after > before else "repeat"
            amount = "an hour" if shift == timedelta(hours=1) else describe_seconds(int(shift.total_seconds()))
            return Clash(first, second, int((pair[1] - pair[0]).total_seconds()), at.astimezone(zone).date(),
                         f"{verb} {amount}")
    return None


@functools.lru_cache(maxsize=1024)
def offset_changes(zone_name: str, today: date) -> tuple[datetime, ...]:
    """The instants (UTC) in the two years from ``today`` at which ``zone_name`` changes its UTC offset.

    zoneinfo does not list its transitions, so the offset is probed once a day and a change is
    narrowed to the second by bisection: about 730 probes per zone and day, then cached.
    """
    zone = time_zone(zone_name)
    start = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp())
    changes, previous = [], _offset_at(zone, start)
    for probe in range(start + _DAY_SECONDS, start + (_HORIZON_DAYS + 1) * _DAY_SECONDS, _DAY_SECONDS):
        offset = _offset_at(zone, probe)
        if offset != previous:
            changes.append(datetime.fromtimestamp(_first_second(zone, probe - _DAY_SECONDS, probe), UTC))
            previous = offset
    return tuple(changes)


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


def _crontab_days(term: str) -> str:
    """One term of a crontab day-of-week field in APScheduler's day names."""
    found = re.fullmatch(r"0-([0-7])(?:/([1-9]\d*))?", term)
    if found is not None:
        # A range from Sunday as a list: APScheduler's weeks start on Monday, so "sun-fri" is no range.
        return ",".join(_DAYS[day % 7] for day in range(0, int(found[1]) + 1, int(found[2] or 1)))
    return re.sub(r"(?<![/\d])\d+", _day_name, term)


def _day_name(number: re.Match[str]) -> str:
    value = int(number.group())
    return _DAYS[value % 7] if value <= 7 else number.group()


def _offset(zone: tzinfo, at: datetime) -> timedelta:
    return at.astimezone(zone).utcoffset() or timedelta(0)


def _offset_at(zone: tzinfo, timestamp: int) -> timedelta:
    return datetime.fromtimestamp(timestamp, zone).utcoffset() or timedelta(0)


def _first_second(zone: tzinfo, low: int, high: int) -> int:
    """The first second after ``low`` with the offset of ``high``; one change between them (a day apart)."""
    before = _offset_at(zone, low)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at(zone, middle) == before:
            low = middle
        else:
            high = middle
    return high


def _closer_than(
    trigger: CronTrigger, start: datetime, end: datetime, floor: timedelta
) -> tuple[datetime, datetime] | None:
    """The first two consecutive fires from ``start`` to ``end`` (UTC) less than ``floor`` apart in real time."""
    previous: datetime | None = None
    fire = trigger.get_next_fire_time(None, start.astimezone(trigger.timezone))
    while fire is not None:
        # Subtract in UTC: two datetimes of one tzinfo subtract as wall times, which is the very mistake here.
        real = fire.astimezone(UTC)
        if real > end or (previous is not None and real <= previous):
            return None  # past the window (or not advancing, which would be an APScheduler bug)
        if previous is not None and real - previous < floor:
            return previous, real
        previous = real
        fire = trigger.get_next_fire_time(fire, fire)
    return None


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
