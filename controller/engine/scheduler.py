"""Schedule triggers on APScheduler 3.x with its SQLAlchemy job store on our database.

Each schedule workflow is one job with the fixed id ``schedule:<account>/<name>``, registered with
``replace_existing`` whenever its version changes and removed when the workflow stops being an
active schedule; jobs live in the store, so a restart re-registers nothing by hand and misses
nothing (missed runs are coalesced into one). The job function is module-level and finds its
engine in a registry filled at run time, because APScheduler stores jobs by reference.

Registration checks the cadence again, with validation's own functions: a definition that reached
the store without validation (written there by hand, or applied by an older release) gets no job if
it could fire more often than the floor; ``Schedules.refused`` says which and why.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from controller.engine.admission import Request
from controller.engine.triggers import schedule
from controller.engine.triggers.listeners import Listener, listeners
from controller.model import parse_duration
from controller.model.cadence import check_cron, check_every, cron_trigger, time_zone

if TYPE_CHECKING:
    from controller.engine.runtime import Engine

log = logging.getLogger(__name__)

JOB_TABLE = "apscheduler_jobs"
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


def check_cadence(spec: Mapping[str, Any], today: date | None = None) -> None:
    """ValueError if the schedule ``spec`` could fire more often than the floor, or is no schedule at all.

    Validation's own checks (``time_zone``, ``check_cron``, ``check_every``), on a definition read
    back from the store; offset changes are looked for in the two years from ``today``.
    """
    tz = spec.get("timezone") or "UTC"
    time_zone(tz)
    if spec.get("cron"):
        check_cron(spec["cron"], tz, today)
    elif spec.get("every"):
        check_every(spec["every"], parse_duration(spec["every"]))
    else:
        raise ValueError("a schedule needs cron or every")


def trigger_for(spec: Mapping[str, Any], now: datetime | None = None) -> BaseTrigger:
    """The job trigger of a schedule; an interval counts from ``now`` (the engine's clock) if given.

    ValueError, and no trigger, for a cadence below the floor (see ``check_cadence``).
    """
    check_cadence(spec, now.astimezone(UTC).date() if now is not None else None)
    tz = spec.get("timezone") or "UTC"
    if spec.get("cron"):
        return cron_trigger(spec["cron"], time_zone(tz))
    seconds = parse_duration(spec["every"])
    start = now + timedelta(seconds=seconds) if now is not None else None
    return IntervalTrigger(seconds=seconds, timezone=tz, start_date=start)


class Schedules:
    """The schedule jobs of one engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.registry_id = uuid.uuid4().hex
        self.refused: dict[str, str] = {}
        """The schedule workflows the last ``register`` gave no job: key -> the reason."""
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
        """Make the jobs match the active schedule workflows; unchanged ones keep their next run.

        A workflow whose cadence is below the floor gets no job (an older one is removed): it is in
        ``refused`` with the reason, and one warning says so. Returns how many jobs are scheduled.
        """
        with self.engine.store.read() as conn:
            wanted = {f"schedule:{w.key}": w for w in listeners(conn, "schedule")}
        now = self.engine.clock.now()  # next runs follow the engine's clock (a manual one in tests)
        refused = self._refusals(wanted, now)
        self.refused = {wanted[job_id].key: reason for job_id, reason in refused.items()}
        wanted = {job_id: listener for job_id, listener in wanted.items() if job_id not in refused}
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
            trigger = trigger_for(listener.trigger, now)
            self.scheduler.add_job(fire, trigger=trigger, id=job_id, name=name, args=[self.registry_id, listener.key],
                                   next_run_time=trigger.get_next_fire_time(None, now), replace_existing=True)
            log.info("scheduled %s", name)
        return len(wanted)

    def _refusals(self, wanted: Mapping[str, Listener], now: datetime) -> dict[str, str]:
        """The job ids ``check_cadence`` refuses, with the reason; a warning for each new one.

        Unchanged jobs are checked too (one registered by an older release never was); the checks
        are cached, so this costs little on every tick.
        """
        refused: dict[str, str] = {}
        for job_id, listener in wanted.items():
            try:
                check_cadence(listener.trigger, now.astimezone(UTC).date())
            except ValueError as error:
                refused[job_id] = str(error)
                if self.refused.get(listener.key) != refused[job_id]:  # register() runs every tick: say it once
                    log.warning("refused to schedule %s@v%d: %s", listener.key, listener.version, error)
        return refused

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
