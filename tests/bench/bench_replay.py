"""Impact preview speed: 1,000 real events of a five-step workflow replayed through two versions.

    python tests/bench/bench_replay.py [--events 1000] [--repeat 3] [--db URL] [--profile]

Setup (not measured, its time is printed): a store (a SQLite file, or ``--db`` a PostgreSQL URL: the
bench makes its own schema there and drops it afterwards), a git repository with ``acme/escalate``
synced (a record trigger with a ``when``; five steps: if, email.send through an outbox mailbox,
http.request to a real listener on 127.0.0.1, record.update, set), and ``--events`` tickets created
through RecordService with the engine run: about 60 % pass the ``when`` and run for real (mail in
the outbox, calls to the listener, the ticket flagged), the rest are filtered decisions that keep
their event. The controller's app is served by ``webhooks.start_server`` in this process.

Measured (wall time, best of ``--repeat``): (a) ``POST /api/v1/workflows/acme/escalate/replay`` with
``limit`` = events and a proposed version that changes a recipient and widens the ``when``, with a
token holding ``workflow.replay`` and one without (a redacted report); (b) the whole
``wfctl check --replay N --controller URL --token T --base HEAD~1`` process. ms per event covers its
two dry runs. Peak RSS: of this process (which serves the controller) during the measurement
(``/proc/self/clear_refs`` resets the high-water mark first), and of the wfctl child for (b) (its VmHWM
polled every 10 ms: the last few ms before it exits are not seen).
``--profile`` adds the top functions (cProfile) of one replay in-process and of one wfctl check process. The aim (issue 19):
under 5 s for 1,000 events. Not part of the default test run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
from conftest import _pg_schema_url
from enginekit import DIRECTORY, Kit, kit
from servers import http_server

from controller.check.replay import Request, replay
from controller.check.target import directory_for, record_reader
from controller.engine.records import RecordService
from controller.security import tokens
from controller.settings import Settings
from webhooks import create_app, start_server

PATH = "workflows.d/acme/escalate.yaml"
AIM_SECONDS = 5.0
LEAD = "\n  - {id: u_lead, name: Lena Lead, email: lena.lead@acme.test, permissions: []}"


def workflow(url: str, *, when: str = "{{ record.priority == 'high' }}", to: str = "user:u_alice") -> str:
    """Five steps: if (then e-mail), http.request, record.update, set."""
    return f"""apiVersion: workflows/v1
kind: Workflow
metadata:
  name: escalate
  description: Escalate urgent tickets
spec:
  trigger:
    type: record
    entity: ticket
    events: [created]
    when: "{when}"
  actions:
    - id: vip
      type: if
      condition: "{{{{ record.vip }}}}"
      then:
        - id: mail-lead
          type: email.send
          mailbox: "mailbox:mb_support"
          to: "{to}"
          subject: "VIP ticket {{{{ record.id }}}}: {{{{ record.title }}}}"
          body: "{{{{ record.title }}}} ({{{{ record.priority }}}})"
    - id: tell-crm
      type: http.request
      method: POST
      url: "{url}"
      json: {{ticket: "{{{{ record.id }}}}", title: "{{{{ record.title }}}}"}}
    - {{id: flag, type: record.update, entity: ticket, record_id: "{{{{ record.id }}}}", set: {{escalated: true}}}}
    - {{id: done, type: set, vars: {{escalated: "{{{{ record.id }}}}"}}}}
"""


@contextmanager
def store_url(tmp: Path, db: str | None) -> Iterator[str]:
    """A SQLite file, or a fresh schema of ``db`` (PostgreSQL) dropped afterwards (tests/conftest.py's)."""
    if db is None:
        yield f"sqlite:///{tmp / 'store.db'}"
        return
    yield from _pg_schema_url(db)


def history(k: Kit, events: int) -> dict[str, int]:
    """``events`` tickets through RecordService, the engine run: real executions and filtered decisions."""
    records = RecordService(k.engine)
    for n in range(events):
        priority = "high" if n % 5 < 3 else ("medium" if n % 5 == 3 else "low")
        records.create("acme", "ticket", {"title": f"printer {n} on fire", "priority": priority, "vip": n % 2 == 0})
        k.clock.advance(seconds=5)
        if n % 50 == 49:
            k.engine.run_until_idle()
    k.engine.run_until_idle()
    return {"started": len(records.started)}


def rss_reset() -> None:
    """Reset this process's peak RSS (VmHWM) so that the next reading is the measurement's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def vm_hwm_mib(pid: int | str = "self") -> float:
    """A process's peak RSS so far (VmHWM), in MiB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def best(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def wfctl(repo: Path, url: str, bearer: str, events: int, profile_to: Path | None = None) -> tuple[int, float, str]:
    """The whole check process: exit code, peak RSS (MiB), stdout; under cProfile into ``profile_to``."""
    profiled = ["-m", "cProfile", "-o", str(profile_to)] if profile_to is not None else []
    argv = [sys.executable, *profiled, "-m", "controller", "--repo", str(repo), "check", "--base", "HEAD~1",
            "--controller", url, "--token", bearer, "--replay", str(events), "--format", "json"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        peak = 0.0
        while child.poll() is None:  # its rusage would not do: Linux carries the parent's peak over into it
            peak = max(peak, vm_hwm_mib(child.pid))
            time.sleep(0.01)
        out.seek(0), err.seek(0)
        if child.returncode not in (0, 1):
            raise SystemExit(f"wfctl check failed ({child.returncode}): {err.read()[-2000:]}")
        return child.returncode, peak, out.read()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (a schema of its own is made there)")
    parser.add_argument("--profile", action="store_true", help="the top functions of one replay under cProfile")
    args = parser.parse_args()
    logging.getLogger("waitress").setLevel(logging.ERROR)
    logging.getLogger("controller").setLevel(logging.WARNING)  # "generated the secret key ..." at start
    rows: list[tuple[str, int, float, float]] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = stack.enter_context(store_url(tmp, args.db))
        hook = stack.enter_context(http_server())
        k = stack.enter_context(kit(tmp, url))
        setup_start = time.perf_counter()
        k.directory(DIRECTORY.replace("permissions: [admin]}", "permissions: [admin]}" + LEAD))
        k.deploy({PATH: workflow(f"{hook.url}/crm")}, "escalate")
        made = history(k, args.events)
        setup_s = time.perf_counter() - setup_start
        with k.store.tx() as conn:
            bearers = {name: tokens.create(conn, "acme", "u_alice", permissions, k.clock.now(), name=name).bearer
                       for name, permissions in [("read", ["workflow.read"]),
                                                 ("replay", ["workflow.read", "workflow.replay"])]}
        settings = Settings(repo=str(k.path), data_dir=k.data_dir, database_url=url)
        server = start_server(create_app(settings, k.store, k.engine, environ={"WFC_SECRET_KEY": ""}), port=0)
        stack.callback(server.stop)
        proposed = workflow(f"{hook.url}/crm", when="{{ record.priority in ['high', 'medium'] }}", to="user:u_lead")
        k.commit({PATH: proposed}, "proposed: the lead, and medium tickets too")
        print(f"setup: {args.events} tickets, {made['started']} real executions, {len(hook.requests)} calls to the "
              f"listener, in {setup_s:.1f} s ({args.db and 'PostgreSQL' or 'SQLite'})")

        reports: dict[str, dict[str, Any]] = {}
        peaks: dict[str, float] = {}
        for token in ("replay", "read"):
            def post(token: str = token) -> dict[str, Any]:
                answer = requests.post(f"{server.url}/api/v1/workflows/acme/escalate/replay",
                                       json={"source": proposed, "path": PATH, "limit": args.events},
                                       headers={"Authorization": f"Bearer {bearers[token]}"}, timeout=300)
                answer.raise_for_status()
                return dict(answer.json())

            rss_reset()
            seconds, reports[token] = best(args.repeat, post)
            peaks[token] = vm_hwm_mib()
            label = "POST replay, workflow.replay (values)" if token == "replay" else "POST replay, workflow.read only"
            rows.append((label, reports[token]["replayed"], seconds, peaks[token]))
        rss_reset()
        seconds, (code, child_rss, _out) = best(args.repeat, lambda: wfctl(k.path, server.url, bearers["replay"],
                                                                           args.events))
        rows.append((f"wfctl check --replay {args.events} (process, exit {code})", reports["replay"]["replayed"],
                     seconds, vm_hwm_mib()))

        print(f"\n{'measure':<46} {'events':>7} {'s':>7} {'events/s':>9} {'ms/event':>9} {'peak RSS MiB':>13} "
              f"{'aim':>7}")
        for label, events, seconds, rss in rows:
            aim = "met" if seconds < AIM_SECONDS else "MISSED"  # the aim's figure is for 1,000 events
            print(f"{label:<46} {events:>7} {seconds:>7.2f} {events / seconds:>9.0f} {1000 * seconds / events:>9.2f} "
                  f"{rss:>13.0f} {aim:>7}")
        print(f"(peak RSS: of this process, which serves the controller; the wfctl check process itself peaked at "
              f"{child_rss:.0f} MiB)")
        full = reports["replay"]
        print(f"aim: under {AIM_SECONDS:g} s for 1,000 events; truncated (replay.budget): {full['truncated']}")
        print(f"headline: {full['headline']}")
        if args.profile:
            print("== one replay on the controller, in-process ==")
            print(profile(k, proposed, args.events))
            print("== the wfctl check process ==")
            wfctl(k.path, server.url, bearers["replay"], args.events, profile_to=tmp / "wfctl.prof")
            print(top_of(pstats.Stats(str(tmp / "wfctl.prof"), stream=io.StringIO())))


def profile(k: Kit, proposed: str, events: int) -> str:
    """One replay in-process (as the API calls it) under cProfile: the top functions by cumulative and own time."""
    asked = Request("acme/escalate", proposed, path=PATH, limit=events, values=True)
    profiler = cProfile.Profile()
    profiler.enable()
    replay(k.store, k.engine.config, asked, directory=directory_for(k.store, "acme"), now=k.clock.now,
           read_record=record_reader(k.store))
    profiler.disable()
    return top_of(pstats.Stats(profiler, stream=io.StringIO()))


def top_of(stats: pstats.Stats, top: int = 25) -> str:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


if __name__ == "__main__":
    main()
