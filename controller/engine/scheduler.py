"""Schedule triggers on APScheduler 3.x with its SQLAlchemy job store on our database.

Each schedule workflow is one job with the fixed id ``schedule:<account>/<name>``, registered with
``replace_existing`` whenever its version changes and removed when the workflow stops being an
active schedule; jobs live in the store, so a restart re-registers nothing by hand and misses
nothing (missed runs are coalesced into one). The job function is module-level and finds its
engine in a registry filled at run time, because APScheduler stores jobs by reference.

Several replicas share the job store, and for a moment around a take-over two of them may run its
jobs: each fire inserts its (workflow, instant) into ``schedule_fires`` in the transaction that queues
the execution, so the second fire of an instant finds the row and queues nothing (``duplicates``
counts them), and the leader's fence (:meth:`controller.store.leadership.Leadership.fence`) runs in that
transaction too, so a replica that lost the lease queues nothing at all. The job store is fenced the same
way (:class:`_FencedJobStore`): APScheduler's loop moves a job on in the shared store right after submitting
it, and a replica that lost the lease must not, or the new leader would never see that instant due.

Registration checks the cadence again, with validation's own functions: a definition that reached
the store without validation (written there by hand, or applied by an older release) gets no job if
it could fire more often than the floor; ``Schedules.refused`` says which and why.
"""

from __future__ import annotations

import copy
import logging
import pickle
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.events import EVENT_JOB_ERROR
from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import datetime_to_utc_timestamp
from sqlalchemy import Connection, and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from controller.engine.admission import Request, read_target
from controller.engine.triggers import schedule
from controller.engine.triggers.listeners import Listener, listeners
from controller.errors import StoreError
from controller.model import parse_duration
from controller.model.cadence import check_cron, check_every, cron_trigger, time_zone
from controller.store.db import Store
from controller.store.leadership import NotLeader
from controller.store.tables import schedule_fires, schedule_jobs

if TYPE_CHECKING:
    from controller.engine.runtime import Engine

log = logging.getLogger(__name__)

Fence = Callable[[Connection], int]  # the leader's generation, or NotLeader
_engines: dict[str, Engine] = {}
_fences: dict[str, Fence] = {}
duplicates: Counter[str] = Counter()
"""Fires skipped because the instant had fired already (another leader), by workflow key."""


def fire(registry_id: str, key: str, fire_at: datetime | None = None) -> None:
    """The job function: ask admission for one execution of a schedule workflow, once per ``fire_at``.

    ``fire_at`` is the instant the job fired for (:class:`_Executor` hands it in); the fire is skipped when
    that instant of the workflow fired already, or when this replica lost the leader lease.
    """
    engine = _engines.get(registry_id)
    if engine is None:
        log.warning("schedule of %s fired in a process that no longer runs its engine", key)
        return
    at = fire_at or engine.clock.now()
    fence = _fences.get(registry_id)
    try:
        with engine.store.tx() as conn:
            generation = fence(conn) if fence is not None else 0
            target = read_target(conn, key)
            if target is not None and not _first_fire(conn, target.id, at, generation):
                duplicates[key] += 1
                log.info("schedule of %s fired for %s already (another replica): skipped", key, at.isoformat())
                return
            verdict = engine.admission.admit(conn, Request(key, schedule.TYPE, schedule.payload(at)), target)
            if target is not None and verdict.execution_id is not None:
                conn.execute(update(schedule_fires).where(schedule_fires.c.workflow_id == target.id,
                                                          schedule_fires.c.fire_at == at)
                             .values(execution_id=verdict.execution_id))
    except NotLeader as e:
        log.warning("schedule of %s not fired: %s", key, e)
        return
    if verdict.started:
        log.info("schedule of %s started execution %s", key, verdict.execution_id)
    elif verdict.decision != "dropped":  # drops are logged by admission, at most once a minute
        log.warning("schedule of %s %s: %s", key, verdict.decision, verdict.reason)


def _first_fire(conn: Connection, workflow_id: int, at: datetime, generation: int) -> bool:
    """Note that the workflow's schedule fired for ``at`` (by the leader of ``generation``); False when it
    had already."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (dialect.insert(schedule_fires).values(workflow_id=workflow_id, fire_at=at, generation=generation)
            .on_conflict_do_nothing(index_elements=["workflow_id", "fire_at"]).returning(schedule_fires.c.workflow_id))
    return conn.execute(stmt).first() is not None  # rowcount of an upsert is -1 on psycopg


class _Executor(ThreadPoolExecutor):  # type: ignore[misc]
    """Runs a schedule job in the scheduler loop's own thread, before the loop moves the job on, and hands it
    the instant it fires for, which APScheduler keeps to itself: the key of ``schedule_fires``, the same on
    every replica because the run times come from the shared job store.

    In a pool thread the fire could commit after the loop had moved the job past its instant: a lease lost,
    a store error or a kill -9 in between, and that instant never fired anywhere. Here the job moves on only
    once its fire committed; a fire that failed holds the job where it is (:meth:`_FencedJobStore.hold`).
    Other jobs run in the pool as APScheduler runs them.
    """

    def __init__(self, jobstore: _FencedJobStore):
        super().__init__()
        self.jobstore = jobstore

    def submit_job(self, job: Job, run_times: list[datetime]) -> None:
        if not job.id.startswith("schedule:"):
            return super().submit_job(job, run_times)
        fired = copy.copy(job)  # (by its pickled state, which leaves out where the job is kept)
        fired._scheduler, fired._jobstore_alias = job._scheduler, job._jobstore_alias
        fired.kwargs = {**job.kwargs, "fire_at": run_times[-1]}
        events = run_job(fired, fired._jobstore_alias, run_times, self._logger.name)
        if any(event.code == EVENT_JOB_ERROR for event in events):
            self.jobstore.hold(job.id)
        for event in events:
            self._scheduler._dispatch_event(event)


class _FencedJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """APScheduler's SQLAlchemy job store whose writes (add, move on, remove) run the leader's fence first,
    in their own transaction: a replica that lost the lease changes no job and its scheduler pauses.

    APScheduler's loop submits a due job and then moves it on (``update_job``) or removes it, whatever the
    fire did; an exception there would end the loop's thread, so a refused write is logged, changes
    nothing, and pauses the scheduler: else the job, still due in the store, would be found again at once,
    in a loop of reads. ``paused`` says the pause was this store's; :meth:`Schedules.register` (the leader's
    pass) resumes it. With ``fence`` None (one process, no lease) it is APScheduler's store unchanged.
    """

    def __init__(self, store: Store, fence: Fence | None):
        super().__init__(engine=store.engine, tablename=schedule_jobs.name)
        self.jobs_t = schedule_jobs  # the store's table, made by its migrations
        self.store = store
        self.fence = fence
        self.paused = False
        self.refused = 0
        """Writes refused because this replica no longer led."""
        self._held: set[str] = set()

    def start(self, scheduler: Any, alias: str) -> None:
        # APScheduler's start would make the table (CREATE TABLE after a read in one deferred transaction:
        # "database is locked" on SQLite when another connection wrote meanwhile); the migrations made it.
        BaseJobStore.start(self, scheduler, alias)

    def hold(self, job_id: str) -> None:
        """The job's fire failed: the loop's next move of it is refused (the job stays due; the scheduler
        pauses until the leader's next pass, which fires it again)."""
        self._held.add(job_id)

    def _holding(self, job_id: str) -> bool:
        if job_id not in self._held:
            return False
        self._held.discard(job_id)
        self._pause(f"schedule job {job_id} not moved on: its fire failed")
        return True

    def add_job(self, job: Job) -> None:
        if self.fence is None:
            return super().add_job(job)

        def add(conn: Connection) -> None:
            try:
                conn.execute(self.jobs_t.insert().values(id=job.id, **self._state(job)))
            except IntegrityError:
                raise ConflictingIdError(job.id) from None

        self._write("added", job.id, add)

    def update_job(self, job: Job) -> None:
        if self._holding(job.id):
            return
        if self.fence is None:
            return super().update_job(job)

        def move(conn: Connection) -> None:
            moved = conn.execute(self.jobs_t.update().values(**self._state(job)).where(self.jobs_t.c.id == job.id))
            if moved.rowcount == 0:
                raise JobLookupError(job.id)

        self._write("moved on", job.id, move, in_loop=True)

    def remove_job(self, job_id: str) -> None:
        if self._holding(job_id):
            return
        if self.fence is None:
            return super().remove_job(job_id)

        def remove(conn: Connection) -> None:
            if conn.execute(self.jobs_t.delete().where(self.jobs_t.c.id == job_id)).rowcount == 0:
                raise JobLookupError(job_id)

        self._write("removed", job_id, remove, in_loop=True)

    def remove_all_jobs(self) -> None:
        if self.fence is None:
            return super().remove_all_jobs()
        self._write("removed", "(all)", lambda conn: conn.execute(self.jobs_t.delete()))

    def _write(self, change: str, job_id: str, write: Callable[[Connection], Any], *, in_loop: bool = False) -> None:
        """``write`` in one transaction after the fence (BEGIN IMMEDIATE on SQLite: the fence reads before the
        write); nothing when this replica no longer leads. ``in_loop``: APScheduler's loop makes this write,
        whose thread a store error would end for good, so the error pauses the scheduler as a refusal does."""
        try:
            with self.store.tx() as conn:
                if self._leads(conn, change, job_id):
                    write(conn)
        except (StoreError, SQLAlchemyError) as e:
            if not in_loop:
                raise
            self._pause(f"schedule job {job_id} not {change}: the store failed ({type(e).__name__})")

    def _get_jobs(self, *conditions: Any) -> list[Job]:
        """APScheduler's read of the jobs; a row this release cannot unpickle (another release's, in a rolling
        upgrade) is deleted as APScheduler does, but under the fence: only the leader deletes it, and its next
        pass registers the job again. A replica that no longer leads leaves it and pauses."""
        if self.fence is None:
            return list(super()._get_jobs(*conditions))
        query = select(self.jobs_t.c.id, self.jobs_t.c.job_state).order_by(self.jobs_t.c.next_run_time)
        jobs, unreadable = [], []
        with self.engine.begin() as connection:
            for row in connection.execute(query.where(and_(*conditions)) if conditions else query):
                try:
                    jobs.append(self._reconstitute_job(row.job_state))
                except Exception:
                    log.warning("schedule job %s cannot be read by this release", row.id, exc_info=True)
                    unreadable.append(row.id)
        if unreadable:
            self._write("removed (unreadable)", ", ".join(unreadable),
                        lambda conn: conn.execute(self.jobs_t.delete().where(self.jobs_t.c.id.in_(unreadable))))
        return jobs

    def _state(self, job: Job) -> dict[str, Any]:
        return {"next_run_time": datetime_to_utc_timestamp(job.next_run_time),
                "job_state": pickle.dumps(job.__getstate__(), self.pickle_protocol)}

    def _leads(self, conn: Connection, change: str, job_id: str) -> bool:
        """True when this replica still leads (checked in ``conn``'s transaction); else the refusal."""
        assert self.fence is not None
        try:
            self.fence(conn)
        except NotLeader as e:
            self.refused += 1
            self._pause(f"schedule job {job_id} not {change} in the shared store: {e}")
            return False
        return True

    def _pause(self, why: str) -> None:
        """Pause the scheduler until the leader's next pass resumes it (:meth:`Schedules.register`): the job,
        still due in the store, would be found again at once, in a loop of reads."""
        log.warning("%s; the schedules pause until the next pass", why)
        if self._scheduler is not None and self._scheduler.state == STATE_RUNNING:
            self.paused = True
            self._scheduler.pause()  # the loop then waits for resume() instead of a next run


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

    def __init__(self, engine: Engine, fence: Fence | None = None):
        """``fence``: the leader's check, run in the transaction of every fire (None: one process, no lease)."""
        self.engine = engine
        self.fence = fence
        self.registry_id = uuid.uuid4().hex
        self.refused: dict[str, str] = {}
        """The schedule workflows the last ``register`` gave no job: key -> the reason."""
        self.jobstore = _FencedJobStore(engine.store, fence)
        self.scheduler = BackgroundScheduler(
            jobstores={"default": self.jobstore}, executors={"default": _Executor(self.jobstore)}, timezone=UTC,
            job_defaults={"coalesce": True, "misfire_grace_time": 3600, "max_instances": 1},
        )

    def start(self, *, paused: bool = False) -> None:
        _engines[self.registry_id] = self.engine
        if self.fence is not None:
            _fences[self.registry_id] = self.fence
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
        _fences.pop(self.registry_id, None)

    def register(self) -> int:
        """Make the jobs match the active schedule workflows; unchanged ones keep their next run.

        A workflow whose cadence is below the floor gets no job (an older one is removed): it is in
        ``refused`` with the reason, and one warning says so. Returns how many jobs are scheduled.
        A scheduler paused by a refused write (the lease was lost, see :class:`_FencedJobStore`) resumes:
        register runs in the leader's pass, so the lease is this replica's again.
        """
        if self.jobstore.paused and self.scheduler.state == STATE_PAUSED:
            self.jobstore.paused = False
            self.scheduler.resume()
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
        if self.scheduler.running:  # another replica may have moved a job in the shared store: look again now,
            self.scheduler.wakeup()  # not at the next run this process computed
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
            instant, following = job.next_run_time, job.trigger.get_next_fire_time(job.next_run_time, now)
            while following is not None and following <= now:  # coalesce missed runs into the last one
                instant, following = following, job.trigger.get_next_fire_time(following, now)
            job.func(*job.args, fire_at=instant)
            fired += 1
            if following is None:
                self.jobstore.remove_job(job.id)
            else:
                job._modify(next_run_time=following)
                self.jobstore.update_job(job)
        return fired
