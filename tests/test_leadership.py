"""Leadership by a lease row: take, renew, take-over, the fence on leader-only writes, one fire per instant,
the replicas in `wfctl status` and /readyz."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import leasekit
import pytest
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING
from click.testing import CliRunner
from conftest import PG_SKIP, PG_URL, _pg_schema_url
from cryptography.fernet import Fernet
from enginekit import Kit, kit
from gitutil import commit_files, make_repo
from servers import until
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from controller.cli import cli
from controller.engine import scheduler
from controller.engine.scheduler import Schedules
from controller.errors import StoreError
from controller.reconcile.reconciler import Reconciler
from controller.security import secrets
from controller.service import Controller, ServeOptions
from controller.settings import Settings
from controller.source import GitSource
from controller.store.leadership import FORGOTTEN, Leadership, NotLeader, recent
from controller.store.tables import executions, leader, replicas, schedule_fires, workflow_versions
from webhooks import create_app

WF = "workflows.d/acme/{}.yaml"
TICK = ("apiVersion: workflows/v1\nkind: Workflow\nmetadata:\n  name: {name}\nspec:\n"
        "  trigger: {{type: schedule, every: 5m}}\n  actions:\n"
        "    - {{id: note, type: set, vars: {{at: '{{{{ trigger.scheduled_at }}}}'}}}}\n")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema: leadership across replicas is PostgreSQL's (SQLite has one process)."""
    if not PG_URL:
        pytest.skip(PG_SKIP)
    yield from _pg_schema_url(PG_URL)


@pytest.fixture
def pg(tmp_path: Path, pg_url: str) -> Iterator[Kit]:
    with kit(tmp_path, pg_url) as k:
        yield k


def lease(k: Kit, ttl: float = 15.0) -> Leadership:
    return Leadership(k.store, k.data_dir, ttl, clock=k.clock.now)


def count(k: Kit, table: object) -> int:
    with k.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def sync(k: Kit, fence: Leadership) -> None:
    with GitSource(str(k.path), data_dir=k.data_dir) as source:
        reconciler = Reconciler(source, k.store, clock=k.clock.now)
        reconciler.fence = fence.fence
        reconciler.sync()


def test_lease_renewals_keep_the_generation_a_take_over_adds_one(pg: Kit) -> None:
    """A takes the lease (generation 1) and renews it; B waits until it runs out, then takes it (2)."""
    a, b = lease(pg), lease(pg)
    assert a.held() and a.generation == 1
    assert not b.held() and b.generation is None
    pg.clock.advance(seconds=10)
    assert a.held() and a.generation == 1  # renewed: expires 25 s from the start
    pg.clock.advance(seconds=10)
    assert not b.held()
    pg.clock.advance(seconds=16)  # A paused: no renewal for more than the ttl
    assert b.held() and b.generation == 2
    assert not a.held() and a.generation is None  # A's renewal finds the generation moved
    with pg.store.read() as conn:
        assert conn.execute(select(leader.c.holder, leader.c.generation)).one() == (b.id, 2)
    b.release()  # a clean stop hands over at once, without waiting for the ttl
    assert a.held() and a.generation == 3


def test_a_paused_leader_writes_nothing_after_a_take_over(pg: Kit) -> None:
    """A leads, pauses past its lease, B takes over: A's apply and A's schedule fire raise NotLeader or are
    skipped, and write nothing; B's go through."""
    a, b = lease(pg), lease(pg)
    assert a.held()
    pg.commit({WF.format("tick"): TICK.format(name="tick")})
    sync(pg, a)
    old = Schedules(pg.engine, a.fence)
    old.start(paused=True)
    pg.clock.advance(seconds=16)
    assert b.held() and b.generation == 2

    pg.commit({WF.format("tock"): TICK.format(name="tock")})
    versions = count(pg, workflow_versions)
    with pytest.raises(NotLeader, match="lost the leader lease .generation 1; now generation 2"):
        sync(pg, a)
    assert count(pg, workflow_versions) == versions  # the apply rolled back whole

    pg.clock.advance(minutes=5)
    assert old.run_due(pg.clock.now()) == 1  # the job ran, and its fire was fenced out
    assert (count(pg, executions), count(pg, schedule_fires)) == (0, 0)
    old.shutdown()

    assert b.held()  # B's heartbeat, five minutes on
    sync(pg, b)
    assert count(pg, workflow_versions) == versions + 1
    new = Schedules(pg.engine, b.fence)
    new.start(paused=True)
    try:
        pg.clock.advance(minutes=5)
        assert b.held()
        assert new.run_due(pg.clock.now()) == 2
    finally:
        new.shutdown()
    with pg.store.read() as conn:
        assert conn.execute(select(func.count(), func.min(schedule_fires.c.generation))).one() == (2, 2)
    assert count(pg, executions) == 2


def test_leader_loops_of_a_replica_that_lost_the_lease_write_nothing(pg: Kit) -> None:
    """The inactivity scan, the purge and the alerts pass each check the fence in their transaction."""
    with GitSource(str(pg.path), data_dir=pg.data_dir) as source:
        controller = Controller(Reconciler(source, pg.store, clock=pg.clock.now), pg.engine, ServeOptions())
        controller.leadership.clock = pg.clock.now
        assert controller.leadership.held()
        assert controller.purge() == 0
        pg.clock.advance(seconds=16)
        assert lease(pg).held()
        pg.clock.advance(seconds=700)  # past purge_every
        for loop in (controller.purge, controller.notify, controller._inactivity):
            with pytest.raises(NotLeader):
                loop()
        with pytest.raises(NotLeader, match="does not hold the leader lease"):
            controller.purge()  # once lost, no query needed


def test_one_fire_per_instant_when_two_leaders_race(pg: Kit) -> None:
    """The same instant fired by the leader before a take-over and by the new one after, and by two
    schedulers at once: one execution, the repeats counted."""
    a, b = lease(pg), lease(pg)
    assert a.held()
    pg.deploy({WF.format("tick"): TICK.format(name="tick")})
    first, second = Schedules(pg.engine, a.fence), Schedules(pg.engine, b.fence)
    first.start(paused=True)
    instant = datetime(2026, 1, 5, 9, 5, tzinfo=UTC)
    before = scheduler.duplicates["acme/tick"]
    try:
        scheduler.fire(first.registry_id, "acme/tick", instant)
        pg.clock.advance(seconds=16)
        assert b.held()
        second.start(paused=True)
        scheduler.fire(second.registry_id, "acme/tick", instant)  # the new leader fires it again: skipped
        assert count(pg, executions) == 1
        later = instant + timedelta(minutes=5)
        racing = [threading.Thread(target=scheduler.fire, args=(second.registry_id, "acme/tick", later))
                  for _ in range(4)]
        for thread in racing:
            thread.start()
        for thread in racing:
            thread.join()
    finally:
        first.shutdown()
        second.shutdown()
    assert count(pg, executions) == 2
    assert scheduler.duplicates["acme/tick"] - before == 4
    with pg.store.read() as conn:
        fired = conn.execute(select(schedule_fires.c.fire_at, schedule_fires.c.generation, executions.c.trigger)
                             .join(executions, executions.c.id == schedule_fires.c.execution_id)
                             .order_by(schedule_fires.c.fire_at)).all()
    assert [(row.fire_at, row.generation, row.trigger["scheduled_at"]) for row in fired] == [
        (instant, 1, instant.isoformat()), (later, 2, later.isoformat())]


@pytest.fixture
def any_store(tmp_path: Path, store_url: str) -> Iterator[Kit]:
    with kit(tmp_path, store_url) as k:
        yield k


def test_sqlite_leads_by_the_file_lock_and_writes_the_lease(tmp_path: Path, sqlite_url: str) -> None:
    """On SQLite a second process (a second lock on the file) follows; the lease row has the holder."""
    with kit(tmp_path, sqlite_url) as k:
        one, two = Leadership(k.store, k.data_dir), Leadership(k.store, tmp_path / "another-data-dir")
        assert one.held() and one.generation == 1 and one.held()
        assert not two.held()  # the lock is beside the database, not in a data directory
        assert one.lock_path == Path(f"{tmp_path / 'store.db'}-leader.lock")
        with k.store.read() as conn:
            assert conn.execute(select(leader.c.holder, leader.c.generation)).one() == (one.id, 1)
        one.release()
        assert two.held() and two.generation == 2
        two.release()


def test_status_and_readyz_show_the_replicas_seen_recently(any_store: Kit) -> None:
    """id, host, role and last heartbeat of each replica, leader first; one silent for 3 ttls is not shown,
    one silent for 10 ttls is deleted by the leader."""
    k = any_store
    first, second, silent = (Leadership(k.store, k.data_dir, 15.0) for _ in range(3))
    assert first.held()
    assert not second.held() and not silent.held()
    with k.store.tx() as conn:  # the third went quiet 4 ttls ago
        conn.execute(replicas.update().where(replicas.c.id == silent.id)
                     .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=60)))
    settings = ["--repo", str(k.path), "--data-dir", str(k.data_dir), "--db", k.store.engine.url.render_as_string(False)]
    shown = json.loads(CliRunner().invoke(cli, [*settings, "status", "--json"], catch_exceptions=False).output)
    assert [(r["id"], r["role"]) for r in shown["replicas"]] == [(first.id, "leader"), (second.id, "follower")]
    assert shown["replicas"][0]["host"] and shown["replicas"][0]["heartbeat_at"]
    text = CliRunner().invoke(cli, [*settings, "status"], catch_exceptions=False).output
    assert f"replica {first.id} on {shown['replicas'][0]['host']}: leader, last heartbeat" in text
    assert f"replica {second.id} " in text and silent.id not in text

    app = create_app(Settings(repo=str(k.path), data_dir=k.data_dir), k.store, k.engine,
                     environ={secrets.KEY_ENV: Fernet.generate_key().decode()})
    ready = app.test_client().get("/readyz").json
    assert ready is not None
    assert [r["id"] for r in ready["replicas"]] == [first.id, second.id]

    with k.store.tx() as conn:
        conn.execute(replicas.update().where(replicas.c.id == silent.id)
                     .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=FORGOTTEN * 15 + 1)))
    assert first.held()
    with k.store.read() as conn:
        assert {r["id"] for r in recent(conn)} == {first.id, second.id}
        assert set(conn.execute(select(replicas.c.id)).scalars()) == {first.id, second.id}
    first.release()
    second.release()


JOB = "schedule:acme/tick"


def _job(url: str, due: datetime | None = None) -> float | None:
    return leasekit.job(url, JOB, due)



def _serve(base: list[str], data: Path) -> subprocess.Popen[bytes]:
    data.mkdir()
    with (data / "serve.log").open("wb") as log:  # read when the test fails
        return subprocess.Popen([*base, "--data-dir", str(data), "-v", "serve", "--interval", "0.3",
                                 "--workers", "1", "--worker-processes", "0", "--lease-ttl", "2", "--port", "0"],
                                stdout=subprocess.DEVNULL, stderr=log)


@pytest.mark.postgres
def test_a_killed_leader_is_replaced_and_schedules_fire_once_per_instant(tmp_path: Path, pg_url: str) -> None:
    """Two `wfctl serve` on PostgreSQL, --lease-ttl 2: the leader fires an instant and is killed with kill -9
    before its job moves on; the other takes over within ttl and a heartbeat, skips that instant (it fired
    already) and fires the next one, once."""
    url = pg_url
    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {WF.format("tick"): TICK.format(name="tick")}, "add")
    base = [sys.executable, "-m", "controller", "--repo", str(repo), "--db", url]
    first = _serve(base, tmp_path / "a")
    second: subprocess.Popen[bytes] | None = None
    try:
        assert until(lambda: leasekit.leader_pid(url) == first.pid and _job(url) is not None, timeout=30)
        second = follower = _serve(base, tmp_path / "b")
        assert until(lambda: len(leasekit.replicas(url)) == 2, timeout=30)
        instant = _due(url)
        assert until(lambda: instant in leasekit.fires(url), timeout=10)  # the leader fired it

        first.kill()
        killed = time.monotonic()
        first.wait()
        _job(url, due=instant)  # as if it died before moving its job on: the next leader sees it due
        assert until(lambda: leasekit.leader_pid(url) == follower.pid, timeout=10)
        took_over = time.monotonic() - killed
        assert took_over < 6, took_over
        print(f"leader lease taken over {took_over:.2f} s after kill -9 (ttl 2 s)")  # shown with -s
        assert until(lambda: (_job(url) or 0) > instant.timestamp(), timeout=10)  # ... and moved it on

        later = _due(url)
        assert until(lambda: later in leasekit.fires(url), timeout=10)
        fired = leasekit.fires(url)  # one execution each; the later under a newer lease (a slow beat may renumber)
        assert set(fired) == {instant, later} and fired[instant][1] == fired[later][1] == 1
        assert fired[instant][0] < fired[later][0]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(15)


@contextmanager
def _ticking(tmp_path: Path, store_url: str) -> Iterator[tuple[Kit, str, Leadership]]:
    """A store whose lease ``a`` holds (from this process), with the schedule workflow ``tick`` applied."""
    with kit(tmp_path, store_url) as k:
        a = lease(k)
        assert a.held()
        k.deploy({WF.format("tick"): TICK.format(name="tick")})
        yield k, k.store.engine.url.render_as_string(hide_password=False), a


@contextmanager
def _paused(k: Kit, fence: Any) -> Iterator[Schedules]:
    """The schedules of ``k`` under ``fence``, started paused (the test resumes them), shut down at the end."""
    schedules = Schedules(k.engine, fence)
    schedules.start(paused=True)
    try:
        yield schedules
    finally:
        schedules.shutdown()


def _due(url: str) -> datetime:
    """Make the tick job due a second ago; that instant."""
    instant = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    _job(url, due=instant)
    return instant


@pytest.mark.parametrize("then", ["new leader", "leading again"])
def test_a_fenced_out_scheduler_leaves_the_due_job_to_the_leader(tmp_path: Path, store_url: str, then: str) -> None:
    """APScheduler's loop in a replica that lost the lease submits a due job (the fire is fenced out) and then
    moves the job on in the shared store: the store refuses that write, so the instant is still due and the
    leader fires it, once: the new leader, or the same replica once it leads again (its pass of register
    resumes the scheduler the refusal paused, rather than let it find the same job due again at once)."""
    with _ticking(tmp_path, store_url) as (k, url, a):
        old = Schedules(k.engine, a.fence)
        old.start(paused=True)
        new: Schedules | None = None
        try:
            # B takes over: on PostgreSQL once A's lease ran out, on SQLite once A's process is gone (its lock)
            if k.store.dialect == "sqlite":
                a._file.close()
                a._file = None
            b = Leadership(k.store, tmp_path / "b", clock=k.clock.now)
            k.clock.advance(seconds=16)
            assert b.held() and b.generation == 2
            instant = _due(url)
            old.scheduler.resume()  # A wakes up: its loop finds the job due
            assert until(lambda: old.scheduler.state == STATE_PAUSED or _job(url) != instant.timestamp(), timeout=10)
            assert _job(url) == instant.timestamp(), "the fenced-out scheduler moved the job on"
            assert count(k, schedule_fires) == 0 and not a.leading
            assert old.jobstore.paused and old.jobstore.refused == 1

            if then == "new leader":
                old.shutdown()
                new = Schedules(k.engine, b.fence)
                new.start()
            else:
                b.release()
                assert a.held() and a.generation == 3
                old.register()
            assert until(lambda: instant in leasekit.fires(url) and (_job(url) or 0) > instant.timestamp(), timeout=10)
        finally:
            old.shutdown()
            if new is not None:
                new.shutdown()
        assert leasekit.fires(url) == {instant: (2 if then == "new leader" else 3, 1)}
        (b if then == "new leader" else a).release()


def _firing() -> bool:
    """Whether the fence is asked by a schedule fire (not by the job store moving the job on)."""
    return any(frame.name == "fire" and frame.filename == scheduler.__file__ for frame in traceback.extract_stack())


@pytest.mark.parametrize("failing", ["fire", "move"])
def test_a_store_failure_around_a_fire_leaves_the_job_due_and_keeps_the_loop(tmp_path: Path, store_url: str,
                                                                             failing: str) -> None:
    """The store fails in the fire (the job must not move past an instant that did not fire) or in the write that
    moves the job on (an error there would end APScheduler's loop thread for good): either way the scheduler
    pauses with the job still due, and the leader's next pass fires it, once."""
    with _ticking(tmp_path, store_url) as (k, url, a):
        broken = {"now": False}

        def fence(conn: Any) -> int:
            if broken["now"] and _firing() == (failing == "fire"):
                raise OperationalError("UPDATE", {}, ConnectionError("server closed the connection"))
            return a.fence(conn)

        with _paused(k, fence) as schedules:
            instant = _due(url)
            broken["now"] = True
            schedules.scheduler.resume()
            assert until(lambda: schedules.scheduler.state == STATE_PAUSED, timeout=10)
            assert schedules.jobstore.paused and schedules.scheduler._thread.is_alive()
            assert _job(url) == instant.timestamp()  # still due
            assert leasekit.fires(url) == ({} if failing == "fire" else {instant: (1, 1)})
            broken["now"] = False
            schedules.register()  # the leader's next pass
            assert until(lambda: (_job(url) or 0) > instant.timestamp(), timeout=10)
            assert schedules.scheduler.state == STATE_RUNNING and leasekit.fires(url) == {instant: (1, 1)}
        a.release()


@pytest.mark.parametrize("leads", [True, False])
def test_a_job_row_this_release_cannot_read_is_deleted_only_by_the_leader(tmp_path: Path, store_url: str,
                                                                           leads: bool) -> None:
    """APScheduler deletes a job row it cannot unpickle (another release's, in a rolling upgrade): here only the
    leader does (its next pass registers the job again); a replica that lost the lease leaves the row."""
    with kit(tmp_path, store_url) as k:
        a = lease(k)
        assert a.held()

        def fence(conn: Any) -> int:
            if not leads:
                raise NotLeader("another replica leads")
            return a.fence(conn)

        with _paused(k, fence) as schedules:  # (starting creates the job table)
            table = schedules.jobstore.jobs_t
            with k.store.tx() as conn:
                conn.execute(table.insert().values(id="schedule:acme/ghost", next_run_time=1.0,
                                                   job_state=b"not a pickle"))
            assert schedules.jobstore.get_due_jobs(datetime.now(UTC)) == []
        with k.store.read() as conn:
            left = conn.execute(select(table.c.id)).scalars().all()
        assert left == ([] if leads else ["schedule:acme/ghost"])
        a.release()


def test_a_schedule_job_moves_on_only_once_its_fire_committed(tmp_path: Path, store_url: str) -> None:
    """A slow fire: the loop moves the job past the instant only after the fire's row is committed, so a lease
    lost, a store error or a kill -9 between the two can never leave an instant that fired nowhere."""
    with _ticking(tmp_path, store_url) as (k, url, a):
        at_move: list[dict[Any, Any]] = []

        def fence(conn: Any) -> int:
            if _firing():
                time.sleep(0.5)
            else:
                at_move.append(leasekit.fires(url))
            return a.fence(conn)

        with _paused(k, fence) as schedules:
            instant = _due(url)
            at_move.clear()  # (registering wrote the job too)
            schedules.scheduler.resume()
            assert until(lambda: (_job(url) or 0) > instant.timestamp(), timeout=10)
        assert at_move and at_move[0] == {instant: (1, 1)}, at_move
        a.release()


def test_a_serving_leader_that_loses_the_lease_stops_its_schedules(pg: Kit) -> None:
    """The heartbeat finds the lease taken (generation moved): the leader's loops stop and the scheduler with
    them; when the lease comes free again the same replica takes it back and schedules again."""
    pg.commit({WF.format("tick"): TICK.format(name="tick")})
    with GitSource(str(pg.path), data_dir=pg.data_dir) as source:
        controller = Controller(Reconciler(source, pg.store), pg.engine,
                                ServeOptions(interval=0.1, workers=1, idle_poll=0.05, lease_ttl=0.6))
        controller.start()
        try:
            assert until(lambda: controller._scheduling and controller.schedules.next_run("acme/tick"), timeout=10)
            with pg.store.tx() as conn:  # another replica took over
                conn.execute(leader.update().values(holder="elsewhere", generation=leader.c.generation + 1,
                                                    expires_at=func.now() + timedelta(seconds=2)))
            assert until(lambda: not controller.leadership.leading and not controller._scheduling, timeout=5)
            assert until(lambda: (controller.leadership.generation or 0) >= 3 and controller._scheduling, timeout=5)
        finally:
            controller.stop()
    with pg.store.read() as conn:
        assert conn.execute(select(leader.c.holder)).scalar_one() is None  # released on stop
        assert conn.execute(select(func.count()).select_from(replicas)).scalar_one() == 0


def test_a_heartbeat_that_cannot_reach_the_store_stops_the_leading(any_store: Kit,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut off from the store, a leader cannot renew: it stops leading at once (and its loops are kicked to
    stop), rather than acting on a lease that may already be another replica's."""
    k = any_store
    with GitSource(str(k.path), data_dir=k.data_dir) as source:
        controller = Controller(Reconciler(source, k.store), k.engine, ServeOptions())
        controller._beat()
        assert controller.leadership.leading

        @contextmanager
        def unreachable() -> Iterator[None]:
            raise StoreError("store is not reachable: connection refused")
            yield

        monkeypatch.setattr(k.store, "tx", unreachable)
        controller._kick.clear()
        controller._beat()
        assert not controller.leadership.leading and controller._kick.is_set()
        monkeypatch.undo()
        controller._beat()
        assert controller.leadership.leading
        controller.leadership.release()


def test_lease_ttl_comes_from_the_option_or_the_environment(tmp_path: Path) -> None:
    """`--lease-ttl` / WFC_LEASE_TTL: a value below 0.1 s is refused with one line naming the option."""
    for args, env in ((["--lease-ttl", "0"], {}), ([], {"WFC_LEASE_TTL": "0.01"})):
        result = CliRunner().invoke(cli, ["--repo", str(tmp_path), "serve", *args], env=env)
        assert result.exit_code == 2
        assert "Invalid value for '--lease-ttl'" in result.output and "Traceback" not in result.output


def test_the_scheduler_starts_while_another_connection_holds_the_write_lock(tmp_path: Path, sqlite_url: str) -> None:
    """Starting the schedules of a new store with none to register writes nothing: the job table is the
    migrations' (APScheduler's own start made it, after a read in one deferred transaction, which met
    "database is locked" under a busy writer: the scheduler's pass failed and /readyz answered 503)."""
    with kit(tmp_path, sqlite_url) as k:
        holder = sqlite3.connect(str(tmp_path / "store.db"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held until the start has returned
        schedules = Schedules(k.engine, None)
        thread = threading.Thread(target=schedules.start)
        thread.start()
        thread.join(10)
        started_under_the_lock = not thread.is_alive()
        holder.execute("ROLLBACK")
        holder.close()
        thread.join(60)
        try:
            assert started_under_the_lock
            assert schedules.scheduler.running and schedules.scheduler.get_jobs() == []
        finally:
            schedules.shutdown()
