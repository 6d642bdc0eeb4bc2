"""End to end: signed webhooks into a real `wfctl serve`, each executed and recorded.

    python tests/bench/bench_e2e.py [--connections 16] [--seconds 20] [--db URL] [--client wrk|python]
                                    [--serve-args "--worker-processes 2"]

What it measures is what a user runs: `wfctl serve` started as its own process (the README's
command, SQLite in its data directory unless ``--db``), on a repository whose webhook workflow is
``set -> if -> set``, with the default workers. The load generator is another process: ``wrk`` with
a Lua script when it is installed (every request a distinct delivery, signed beforehand), else a
pool of Python client processes. Keep-alive connections send back to back for ``--seconds``.

Reported: requests/s and p50/p90/p99 latency of the answers, executions finished per second while
the load ran and until the queue drained, and the peak RSS of the serve process (and of its worker
processes, summed). Then it checks that every 202 became exactly one succeeded execution with its
three steps: no delivery executed twice, none lost. Not part of the default test run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORKFLOW = """apiVersion: workflows/v1
kind: Workflow
metadata: {name: contact-form}
spec:
  trigger: {type: webhook}
  actions:
    - {id: note, type: set, vars: {email: "{{ trigger.body.email }}"}}
    - id: route
      type: if
      condition: "{{ trigger.body.priority == 'high' }}"
      then:
        - {id: urgent, type: set, vars: {queue: urgent}}
      else:
        - {id: normal, type: set, vars: {queue: "normal-{{ trigger.body.n % 4 }}"}}
"""
KEY = "acme/contact-form"
STEPS = 3  # note, route, and one branch

LUA = r"""
-- Each wrk thread sends its own slice of the pre-signed deliveries, one after the other.
local threads, counter = {}, 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  nthreads = tonumber(args[2])
  reqs, i = {}, 0
  local n = 0
  for line in io.lines(args[1]) do
    if n % nthreads == id then
      local ts, sig, body = line:match("^(%d+) (%S+) (.*)$")
      reqs[#reqs + 1] = wrk.format("POST", "/hooks/acme/contact-form",
        {["Content-Type"] = "application/json", ["X-Wfc-Timestamp"] = ts, ["X-Wfc-Signature"] = sig}, body)
    end
    n = n + 1
  end
  accepted, other = 0, 0
end
function request()
  i = i + 1
  if i > #reqs then i = 1 end  -- (a repeat would be refused as a replay and counted below)
  return reqs[i]
end
function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local a, o = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("accepted"); o = o + t:get("other") end
  io.write(string.format("RESULT {\"requests\": %d, \"seconds\": %f, \"accepted\": %d, \"other\": %d, " ..
    "\"p50\": %f, \"p90\": %f, \"p99\": %f, \"max\": %f, \"errors\": %d}\n",
    summary.requests, summary.duration / 1e6, a, o, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def deliveries(secret: str, count: int) -> list[tuple[int, str, bytes]]:
    from controller.security.signing import sign

    now = int(time.time())
    out = []
    for n in range(count):
        body = json.dumps({"n": n, "email": f"c{n}@example.com", "priority": "high" if n % 3 == 0 else "low",
                           "message": "hello " * 10}, separators=(",", ":")).encode()
        out.append((now, sign(secret, now, body), body))
    return out


def wfctl(env: dict[str, str], *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller", *args], env=env, text=True, capture_output=True,
                          check=True, **kwargs)


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of ``pid`` and of its children, in MB."""
    from servers import children

    total = 0
    try:
        pids = [pid, *children(pid)]
    except OSError:  # serve has ended
        pids = [pid]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def python_client(port: int, lines: list[tuple[int, str, bytes]], seconds: float, ready: Any, go: Any,
                  out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies, statuses = [], {}
    ready.put(None)
    go.wait()  # (the clock starts once every client process is up: spawning 16 takes seconds)
    until = time.perf_counter() + seconds
    for ts, sig, body in lines:
        if time.perf_counter() >= until:
            break
        started = time.perf_counter()
        conn.request("POST", f"/hooks/{KEY}", body=body, headers={
            "Content-Type": "application/json", "X-Wfc-Timestamp": str(ts), "X-Wfc-Signature": sig})
        answer = conn.getresponse()
        answer.read()
        latencies.append(time.perf_counter() - started)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    out.put((latencies, statuses))


def run_python(port: int, signed: list[tuple[int, str, bytes]], connections: int, seconds: float) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    out, ready, go = context.Queue(), context.Queue(), context.Event()
    procs = [context.Process(target=python_client, args=(port, signed[n::connections], seconds, ready, go, out))
             for n in range(connections)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get()
    began = time.perf_counter()
    go.set()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for _ in procs:
        lat, st = out.get()
        latencies += lat
        for k, v in st.items():
            statuses[k] = statuses.get(k, 0) + v
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"requests": len(latencies), "seconds": elapsed, "accepted": statuses.get(202, 0),
            "other": len(latencies) - statuses.get(202, 0), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
            "max": latencies[-1] * 1000, "errors": 0}


def run_wrk(port: int, signed: list[tuple[int, str, bytes]], connections: int, seconds: float,
            tmp: Path) -> dict[str, Any]:
    data = tmp / "deliveries.txt"
    data.write_text("".join(f"{ts} {sig} {body.decode()}\n" for ts, sig, body in signed))
    script = tmp / "deliveries.lua"
    script.write_text(LUA)
    threads = 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s",
                          "-s", str(script), f"http://127.0.0.1:{port}", "--", str(data), str(threads)],
                         capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def record_profile(pid: int, out: str, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy recording process ``pid`` (and its children) into ``out`` for ``seconds``: speedscope for
    ``.json``, a flame graph for ``.svg``, else raw collapsed stacks; ``PYSPY_ARGS`` adds options."""
    fmt = {".json": "speedscope", ".svg": "flamegraph"}.get(Path(out).suffix, "raw")
    return subprocess.Popen(["py-spy", "record", "--subprocesses", "-o", out, "-f", fmt, "-d", str(int(seconds)),
                             "-p", str(pid), *shlex.split(os.environ.get("PYSPY_ARGS", ""))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: SQLite in the data directory)")
    parser.add_argument("--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--serve-args", default="", help="extra options for `wfctl serve`")
    parser.add_argument("--rate", type=int, default=4000, help="deliveries signed per second of load (upper bound)")
    parser.add_argument("--profile", default=None, help="py-spy record the serve process into this file")
    args = parser.parse_args()

    from bench_webhooks import own_schema
    from cryptography.fernet import Fernet
    from gitutil import commit_files, make_repo

    with tempfile.TemporaryDirectory() as name, own_schema(args.db) as url:
        tmp = Path(name)
        commit_files(make_repo(tmp / "repo"), {"workflows.d/acme/contact-form.yaml": WORKFLOW}, "add")
        env = {**os.environ, "WFC_REPO": str(tmp / "repo"), "WFC_DATA_DIR": str(tmp / "data"),
               "WFC_SECRET_KEY": Fernet.generate_key().decode(), "PYTHONPATH": str(Path(__file__).parents[2])}
        if url:
            env["WFC_DATABASE_URL"] = url
        wfctl(env, "sync")
        secret = wfctl(env, "webhook", "rotate", KEY).stdout.strip()
        with __import__("socket").socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = (tmp / "serve.log").open("w")  # (a pipe nobody reads would fill and block serve's logging)
        serve = subprocess.Popen([sys.executable, "-m", "controller", "serve", "--port", str(port),
                                  *shlex.split(args.serve_args)], env=env, stderr=log, text=True)
        try:  # a bench that fails on the way must not leave serve running (holding the caller's pipe)
            deadline = time.monotonic() + 60
            while True:
                try:
                    probe_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    probe_conn.request("GET", "/readyz")
                    if probe_conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or serve.poll() is not None:
                    sys.exit(f"wfctl serve did not get ready: {(tmp / 'serve.log').read_text()}")
                time.sleep(0.2)

            signed = deliveries(secret, int(args.rate * args.seconds))
            # Warm-up (not counted in the figures, counted in the check): connections, caches, first compiles.
            warm = run_python(port, signed[-200:], 4, 2.0)
            signed = signed[:-200]
            spy = record_profile(serve.pid, args.profile, args.seconds) if args.profile else None
            from sqlalchemy import func, select

            from controller.store import open_store
            from controller.store.tables import execution_steps, executions

            store = open_store(url or f"sqlite:///{tmp / 'data' / 'wfctl.db'}")

            def finished() -> int:
                with store.read() as conn:
                    return int(conn.execute(select(func.count()).select_from(executions)
                                            .where(executions.c.finished_at.is_not(None))).scalar_one())

            done_before = finished()
            began = time.perf_counter()
            result = (run_wrk(port, signed, args.connections, args.seconds, tmp) if args.client == "wrk"
                      else run_python(port, signed, args.connections, args.seconds))
            load_seconds = time.perf_counter() - began
            done_during = finished() - done_before
            drained_at = None
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                with store.read() as conn:
                    open_ = conn.execute(select(func.count()).select_from(executions)
                                         .where(executions.c.finished_at.is_(None))).scalar_one()
                if not open_:
                    drained_at = time.perf_counter()
                    break
                time.sleep(0.05)
        except BaseException:
            serve.kill()
            raise
        rss = peak_rss_mb(serve.pid)
        if spy is not None:
            spy.wait(60)
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()

        log.close()
        if os.environ.get("BENCH_KEEP_LOG"):  # serve's log, for a look afterwards
            shutil.copy(tmp / "serve.log", os.environ["BENCH_KEEP_LOG"])
        with store.read() as conn:
            e, s = executions.c, execution_steps.c
            by_status = dict(conn.execute(select(e.status, func.count()).group_by(e.status)).all())
            total = sum(by_status.values())
            distinct = conn.execute(select(func.count(func.distinct(e.trigger["body"]["n"].as_integer())))).scalar_one()
            steps = dict(conn.execute(select(s.execution_id, func.count()).group_by(s.execution_id)).all())
            attempts = conn.execute(select(func.max(s.attempts))).scalar_one()
        store.close()

        total_done = finished_total = total
        drain_seconds = (drained_at - began) if drained_at else float("nan")
        accepted = result["accepted"] + warm["accepted"]
        db = "PostgreSQL" if url and url.startswith("postgresql") else "SQLite"
        print(f"wfctl serve end to end: {db}, `wfctl serve {args.serve_args}`, {args.connections} keep-alive "
              f"connections, {args.seconds:g}s, client {args.client}")
        print(f"  {'requests':<22} {result['requests']} ({result['accepted']} answered 202, {result['other']} other, "
              f"{result['errors']} socket errors)")
        print(f"  {'throughput':<22} {result['requests'] / result['seconds']:.0f} requests/s")
        print(f"  {'latency':<22} p50 {result['p50']:.1f} ms  p90 {result['p90']:.1f} ms  p99 {result['p99']:.1f} ms  "
              f"max {result['max']:.1f} ms")
        print(f"  {'executed during load':<22} {done_during / load_seconds:.0f} executions/s finished "
              f"({done_during} in {load_seconds:.1f}s)")
        print(f"  {'executed to drain':<22} {total_done / drain_seconds:.0f} executions/s "
              f"({total_done} finished {drain_seconds:.1f}s after the load began, warm-up included)")
        print(f"  {'peak RSS':<22} {rss:.0f} MB (serve and its worker processes)")
        problems = []
        if by_status.get("succeeded", 0) != finished_total:
            problems.append(f"not all succeeded: {by_status}")
        # Requests in flight when the load stopped may have been accepted without the client counting the 202.
        if not accepted <= total <= accepted + args.connections + 4:
            problems.append(f"{total} executions for {accepted} answers 202")
        if distinct != total:
            problems.append(f"{total - distinct} deliveries executed more than once")
        if any(n != STEPS for n in steps.values()) or len(steps) != total:
            problems.append(f"executions without their {STEPS} steps")
        if attempts != 1:
            problems.append(f"a step ran {attempts} times")
        print(f"  {'check':<22} {total} executions for {accepted} answers 202 (warm-up included): "
              + ("; ".join(problems) if problems else f"each succeeded once with its {STEPS} steps"))
        if problems:
            sys.exit(1)


if __name__ == "__main__":
    main()
