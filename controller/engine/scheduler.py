"""Schedule triggers on APScheduler 3.x with its SQLAlchemy job store on our database.

Each schedule workflow is one job with the fixed id ``schedule:<account>/<name>``, registered with
``replace_existing`` whenever its version changes and removed when the workflow stops being an
active schedule; jobs live in the store, so a restart re-registers nothing by hand and misses
nothing (missed runs are coalesced into one). The job function is module-level and finds its
engine in a registry filled at run time, because APScheduler stores jobs by reference.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from controller.engine.admission import Request
from controller.engine.triggers import schedule
from controller.engine.triggers.listeners import listeners
from controller.model import parse_duration

if TYPE_CHECKING:
    from controller.engine.runtime import Engine

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_engines: dict[str, Engine] = {}


def fire(registry_id: str, key: str) -> None:
    """The job function: ask admission for one execution of a schedule workflow."""
    engine = _engines.get(registry_id)
    if engine is None:
        log.warning("schedule of %s fired in a process that no longer runs its engine", key)
        return
    verdict = engine.admit(Request(key, schedule.TYPE, schedule.payload(engine.clock.now())))
    if verdict.started:
        log.info("schedule of %s started execution %s", key, verdict.execution_id)
    elif verdict.decision != "dropped":  # drops are logged by admission, at most once a minute
        log.warning("schedule of %s %s: %s", key, verdict.decision, verdict.reason)


def cron_trigger(expr: str, tz: str) -> CronTrigger:
    """A crontab line as crontab means it: APScheduler 3 numbers weekdays from Monday, cron from Sunday."""
    minute, hour, day, month, dow = expr.split()
    dow = re.sub(r"(?<![/\d])\d+", lambda m: _DAYS[int(m.group()) % 7], dow)
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=dow, timezone=tz)


def trigger_for(spec: Mapping[str, Any], now: datetime | None = None) -> BaseTrigger:
    """The job trigger of a schedule; an interval counts from ``now`` (the engine's clock) if given."""
    tz = spec.get("timezone") or "UTC"
    if spec.get("cron"):
        return cron_trigger(spec["cron"], tz)
    seconds = parse_duration(spec["every"])
    start = now + timedelta(seconds=seconds) if now is not None else None
    return IntervalTrigger(seconds=seconds, timezone=tz, start_date=start)


class Schedules:
    """The schedule jobs of one engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.registry_id = uuid.uuid4().hex
        self.jobstore = SQLAlchemyJobStore(engine=engine.store.engine, tablename=JOB_TABLE)
        self.scheduler = BackgroundScheduler(
            jobstores={"default": self.jobstore}, timezone=UTC,
            job_defaults={"coalesce": True, "misfire_grace_time": 3600, "max_instances": 1},
        )

    def start(self, *, paused: bool = False) -> None:
        _engines[self.registry_id] = self.engine
        self.scheduler.start(paused=True)
        self.register()  # before any job runs: a job left by the previous process must find this engine
        if not paused:
            self.scheduler.resume()

    def shutdown(self) -> None:
        if self.scheduler.running:
            # APScheduler's loop makes one last pass after shutdown, by the wall clock: it would move due
            # jobs past runs it can no longer submit. Detached, the store keeps them as they are (and the
            # store's own engine is not disposed under it).
            self.scheduler.remove_jobstore("default", shutdown=False)
            self.scheduler.shutdown(wait=False)
        _engines.pop(self.registry_id, None)

    def register(self) -> int:
        """Make the jobs match the active schedule workflows; unchanged ones keep their next run."""
        with self.engine.store.read() as conn:
            wanted = {f"schedule:{w.key}": w for w in listeners(conn, "schedule")}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("schedule:") and job.id not in wanted:
                job.remove()
                log.info("unscheduled %s", job.id)
        for job_id, listener in wanted.items():
            name = f"{listener.key}@v{listener.version}"
            existing = self.scheduler.get_job(job_id)
            if existing is not None and existing.name == name:
                if existing.args[0] != self.registry_id:  # another process registered it: keep its next run
                    existing.modify(args=[self.registry_id, listener.key])
                continue
            now = self.engine.clock.now()  # next runs follow the engine's clock (a manual one in tests)
            trigger = trigger_for(listener.trigger, now)
            self.scheduler.add_job(fire, trigger=trigger, id=job_id, name=name, args=[self.registry_id, listener.key],
                                   next_run_time=trigger.get_next_fire_time(None, now), replace_existing=True)
            log.info("scheduled %s", name)
        return len(wanted)

    def next_run(self, key: str) -> datetime | None:
        job = self.scheduler.get_job(f"schedule:{key}")
        return job.next_run_time if job is not None else None

    def run_due(self, now: datetime) -> int:
        """Fire every job due at ``now`` and move it on, as the scheduler's loop would (tests, fake time)."""
        fired = 0
        for job in self.jobstore.get_due_jobs(now):
            job.func(*job.args)
            fired += 1
            following = job.trigger.get_next_fire_time(job.next_run_time, now)
            while following is not None and following <= now:  # coalesce missed runs into this one
                following = job.trigger.get_next_fire_time(following, now)
            if following is None:
                self.jobstore.remove_job(job.id)
            else:
                job._modify(next_run_time=following)
                self.jobstore.update_job(job)
        return fired
