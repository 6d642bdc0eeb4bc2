"""Metrics over HTTP and the CLI: the metrics API, the feature flag, `wfctl metrics`, and Prometheus at /metrics.

/metrics is parsed with prometheus-client's own parser; the Grafana dashboard and the alert rules
in deploy/ use only names it exports; under gunicorn with two workers, multiprocess mode sums both.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner, Result
from httpkit import WF, Http, http_kit, wf
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML
from servers import free_port, until

from controller.cli import cli
from controller.metrics import prom, windows
from controller.security import secrets
from controller.security.signing import sign

API = "/api/v1"
ROOT = Path(__file__).resolve().parents[1]
OFF = "accounts:\n  acme:\n    features: {workflow_metrics: false}\n"
REFUSED = "metrics are disabled for account acme (feature flag workflow_metrics)"


@pytest.fixture
def http(tmp_path: Path, store_url: str) -> Iterator[Http]:
    with http_kit(tmp_path, store_url) as h:
        yield h


def scrape(http: Http, **headers: str) -> dict[str, Any]:
    """/metrics as {family name: family}, parsed by prometheus-client."""
    response = http.client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.content_type.startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    """The value of the sample named ``sample`` with these labels (0 when absent)."""
    family = families[re.sub(r"_(total|bucket|sum|count|created)$", "", sample)]
    found = [s.value for s in family.samples if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]
    return sum(found)


def test_workflow_metrics_api_answers_the_windows_figures(http: Http) -> None:
    for _ in range(3):
        http.kit.run("acme/greet")
    read = http.auth(http.token("workflow.read"))
    answer = http.client.get(f"{API}/workflows/acme/greet/metrics", headers=read)
    assert answer.status_code == 200, answer.json
    with http.kit.store.read() as conn:
        assert answer.json == windows.workflow_metrics(conn, "acme/greet", "24h", http.kit.clock.now())
    assert answer.json["current"]["executions"] == 3 and answer.json["current"]["success_rate"] == 1.0
    split = http.client.get(f"{API}/workflows/acme/greet/metrics?window=30d&by=version", headers=read).json
    assert split["window"] == "30d" and [v["version"] for v in split["versions"]] == [1]
    assert split["versions"][0]["summary"] == "add workflows"

    def error(path: str, headers: dict[str, str] = read) -> tuple[int, str]:
        response = http.client.get(path, headers=headers)
        return response.status_code, response.json["error"]["message"]

    assert error(f"{API}/workflows/acme/greet/metrics?window=1y") == (
        422, "unknown window '1y'; use one of 24h, 7d, 30d")
    assert error(f"{API}/workflows/acme/greet/metrics?by=day")[0] == 422
    assert error(f"{API}/workflows/acme/nope/metrics")[0] == 404
    assert error(f"{API}/workflows/globex/intake/metrics")[0] == 404  # another account's: as if it did not exist
    assert http.client.get(f"{API}/workflows/acme/greet/metrics").status_code == 401


def test_account_metrics_api_ranks_the_worst(http: Http) -> None:
    for i in range(12):
        http.hook("acme/contact-form", {"name": f"n{i}"})
    for i in range(3):
        http.hook("acme/limited", {"n": i})  # fails (template); over its limit of 2 per minute the third is dropped
    http.kit.engine.run_until_idle()
    read = http.auth(http.token("workflow.read"))
    overview = http.client.get(f"{API}/accounts/acme/metrics?min_executions=2", headers=read).json
    assert overview["window"] == "7d" and overview["min_executions"] == 2
    assert [r["workflow"] for r in overview["worst"]] == ["acme/limited"]
    assert overview["worst"][0]["failed"] == 2 and overview["worst"][0]["success_rate"] == 0.0
    assert [(r["workflow"], r["dropped"]) for r in overview["most_dropped"]] == [("acme/limited", 1)]
    assert overview["totals"]["executions"] == 14
    default = http.client.get(f"{API}/accounts/acme/metrics", headers=read).json
    assert default["worst"] == [] and default["min_executions"] == 10  # two failures are not enough to rank
    assert http.client.get(f"{API}/accounts/acme/metrics?min_executions=x", headers=read).status_code == 422
    assert http.client.get(f"{API}/accounts/globex/metrics", headers=read).status_code == 404


def test_the_flag_off_refuses_with_403_and_the_rollups_keep_being_written(http: Http) -> None:
    config = http.settings.data_dir / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(OFF)
    http.kit.run("acme/greet")  # while off
    read = http.auth(http.token("workflow.read"))
    for path in (f"{API}/workflows/acme/greet/metrics", f"{API}/accounts/acme/metrics"):
        refused = http.client.get(path, headers=read)
        assert refused.status_code == 403
        assert refused.json == {"error": {"code": "forbidden", "message": REFUSED}}
    config.write_text("features: {workflow_metrics: true}\n")
    on = http.client.get(f"{API}/workflows/acme/greet/metrics", headers=read).json
    assert on["current"]["executions"] == 1  # the history made while it was off


# -- the CLI ----------------------------------------------------------------------------------------


def wfctl(repo: Path, *args: str) -> Result:
    base = ["--repo", str(repo), "--data-dir", str(repo.parent / "data"), "--db", f"sqlite:///{repo.parent / 'wfctl.db'}"]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def test_wfctl_metrics_by_version_json_text_and_errors(tmp_path: Path) -> None:
    from gitutil import commit_files, make_repo

    repo = tmp_path / "repo"
    git = make_repo(repo)
    ok = wf("x", "{type: manual, entities: [ticket]}", "    - {id: note, type: set, vars: {n: 1}}\n")
    commit_files(git, {WF.format("acme", "x"): ok}, "first version")
    assert wfctl(repo, "sync").exit_code == 0
    for _ in range(3):
        assert wfctl(repo, "run", "acme/x", "--wait").exit_code == 0
    broken = ok.replace("{n: 1}", "{n: '{{ trigger.nothing.here }}'}")
    second = commit_files(git, {WF.format("acme", "x"): broken}, "read trigger.nothing")
    assert wfctl(repo, "sync").exit_code == 0
    assert wfctl(repo, "run", "acme/x", "--wait").exit_code == 1

    found = json.loads(wfctl(repo, "metrics", "acme/x", "--by", "version", "--json").stdout)
    assert [(v["version"], v["executions"], v["success_rate"]) for v in found["versions"]] == [(2, 1, 0.0), (1, 3, 1.0)]
    assert found["changes"] == [f"since v2 (commit {second[:7]}) the success rate fell from 100.0% to 0.0%"]
    text = wfctl(repo, "metrics", "acme/x", "--by", "version")
    assert text.exit_code == 0
    assert "success rate     75.0%" in text.stdout and "failures         template 1" in text.stdout
    assert f"since v2 (commit {second[:7]}) the success rate fell from 100.0% to 0.0%" in text.stdout
    account = json.loads(wfctl(repo, "metrics", "--account", "acme", "--window", "30d", "--min-executions", "1",
                               "--json").stdout)
    assert [r["workflow"] for r in account["worst"]] == ["acme/x"] and account["window"] == "30d"
    assert "worst (most failures, at least 10 executions):\n  none" in wfctl(repo, "metrics", "--account", "acme").stdout

    def one_line(result: Result, code: int, text: str) -> None:
        assert result.exit_code == code, result.output
        assert result.stderr == f"wfctl: error: {text}\n"

    one_line(wfctl(repo, "metrics"), 2, "give ACCOUNT/NAME or --account A (not both)")
    one_line(wfctl(repo, "metrics", "acme/x", "--account", "acme"), 2, "give ACCOUNT/NAME or --account A (not both)")
    one_line(wfctl(repo, "metrics", "--account", "acme", "--by", "version"), 2,
             "--by version is for one workflow (ACCOUNT/NAME)")
    one_line(wfctl(repo, "metrics", "acme/nope"), 2, "no workflow 'acme/nope'; see `wfctl status`")
    assert wfctl(repo, "metrics", "acme/x", "--window", "1y").exit_code == 2
    (tmp_path / "data" / "config.yaml").write_text(OFF)
    one_line(wfctl(repo, "metrics", "acme/x"), 3, REFUSED)
    one_line(wfctl(repo, "metrics", "--account", "acme"), 3, REFUSED)


# -- Prometheus -------------------------------------------------------------------------------------


EXPORTED = {"wfctl_executions", "wfctl_execution_duration_seconds", "wfctl_step_duration_seconds",
            "wfctl_webhook_requests", "wfctl_trigger_drops", "wfctl_reconcile_passes",
            "wfctl_reconcile_duration_seconds", *prom.GAUGES}


def test_metrics_endpoint_counts_what_happened_and_reads_the_store(http: Http) -> None:
    before = scrape(http)
    assert EXPORTED <= set(before)
    http.hook("acme/contact-form", {"name": "Ada"})
    http.hook("acme/contact-form", {"name": "Bob"}, secret="wrong")  # 401
    for i in range(3):
        http.hook("acme/limited", {"n": i})  # the third is over the limit: 429, dropped
    http.kit.engine.run_until_idle()
    http.kit.engine.start("acme/slow", {"type": "manual"})
    http.kit.engine.run_until_idle()  # waiting a day
    http.kit.engine.start("acme/greet", {"type": "manual"})  # queued, not run
    after = scrape(http)

    def grew(sample: str, **labels: str) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    assert grew("wfctl_executions_total", account="acme", workflow="contact-form", status="succeeded") == 1
    assert grew("wfctl_executions_total", account="acme", workflow="limited", status="failed") == 2
    assert grew("wfctl_execution_duration_seconds_count", account="acme", workflow="contact-form") == 1
    assert grew("wfctl_step_duration_seconds_count", action_type="set") == 3
    assert grew("wfctl_webhook_requests_total", code="202") == 3
    assert grew("wfctl_webhook_requests_total", code="401") == 1
    assert grew("wfctl_webhook_requests_total", code="429") == 1
    assert grew("wfctl_trigger_drops_total", account="acme", workflow="limited", trigger="webhook") == 1
    assert value(after, "wfctl_queue_depth") == 1
    assert value(after, "wfctl_executions_in_flight", state="waiting") == 1
    assert value(after, "wfctl_executions_in_flight", state="held") == 0
    head = http.kit.repo.head.commit.hexsha
    assert value(after, "wfctl_source_info", source="default", commit=head) == 1
    assert value(after, "wfctl_source_condition", source="default", type="Ready", status="True") == 1
    assert value(after, "wfctl_workflows", account="acme", sync="Synced") == 7
    assert value(after, "wfctl_store_up") == 1
    # Labels are bounded: no payload value reaches a label.
    assert "Ada" not in http.client.get("/metrics").text


def test_metrics_token_when_configured(tmp_path: Path, sqlite_url: str) -> None:
    with http_kit(tmp_path, sqlite_url, environ={prom.TOKEN_ENV: "scrape-me"}) as h:
        missing = h.client.get("/metrics")
        assert missing.status_code == 401 and missing.json["error"]["code"] == "unauthorized"
        assert h.client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert "wfctl_store_up" in scrape(h, Authorization="Bearer scrape-me")


def _expr_names(text: str) -> set[str]:
    return set(re.findall(r"\bwfctl_[a-z_]+", text))


def test_grafana_dashboard_and_alert_rules_use_only_exported_names(http: Http) -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/wfctl.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    rules = YAML(typ="safe").load((ROOT / "deploy/prometheus/alerts.yaml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = set().union(*(_expr_names(e) for e in exprs))
    http.kit.run("acme/greet")
    families = scrape(http)
    exported = set()
    for family in families.values():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
        exported |= {family.name + s for s in suffixes}
    assert used and used <= exported, sorted(used - exported)
    # The dashboard shows what the issue asks for.
    for needed in ("wfctl_executions_total", "wfctl_execution_duration_seconds_bucket", "wfctl_queue_depth",
                   "wfctl_trigger_drops_total", "wfctl_reconcile_passes_total"):
        assert needed in used
    assert {r["alert"] for g in rules["groups"] for r in g["rules"]} >= {
        "WfctlWorkflowFailureRate", "WfctlQueueStuck", "WfctlReconcileStalled"}


def test_gunicorn_with_two_workers_sums_both_in_multiprocess_mode(tmp_path: Path, sqlite_url: str) -> None:
    """Webhooks answered by either worker all count in the /metrics of either worker."""
    with http_kit(tmp_path, sqlite_url) as h:
        secret = h.secret("acme/contact-form")
        environ = {**os.environ, "WFC_REPO": str(h.kit.path), "WFC_DATA_DIR": str(h.kit.data_dir),
                   "WFC_DATABASE_URL": sqlite_url, secrets.KEY_ENV: h.environ[secrets.KEY_ENV],
                   "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
        (tmp_path / "prom").mkdir()
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
                                   "webhooks:from_environ()"], env=environ, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{port}"
        try:
            until(lambda: _answers(base))
            sent = 0
            for _ in range(10):  # until both workers have answered some (the kernel picks who accepts)
                sent += _burst(base, secret, 16)
                if _workers_with_counts(tmp_path / "prom") >= 2:
                    break
            assert _workers_with_counts(tmp_path / "prom") == 2
            for _ in range(4):  # whichever worker answers the scrape reports both
                families = {f.name: f for f in text_string_to_metric_families(requests.get(f"{base}/metrics",
                                                                                           timeout=10).text)}
                assert value(families, "wfctl_webhook_requests_total", code="202") == sent
                assert value(families, "wfctl_store_up") == 1
        finally:
            server.terminate()
            _, errors = server.communicate(timeout=30)
        assert b"Traceback" not in errors, errors.decode()[-2000:]


def _answers(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=2).status_code == 200
    except (requests.ConnectionError, requests.Timeout):  # gunicorn accepts before its workers have booted
        return False


def _burst(base: str, secret: str, n: int) -> int:
    """``n`` distinct signed webhooks from ``n`` threads at once, each on its own connection."""
    codes: list[int] = []

    def send(i: int) -> None:
        body = json.dumps({"name": f"n{i}", "nonce": os.urandom(8).hex()}).encode()
        at = int(time.time())
        headers = {"X-Wfc-Timestamp": str(at), "X-Wfc-Signature": sign(secret, at, body),
                   "Content-Type": "application/json", "Connection": "close"}
        codes.append(requests.post(f"{base}/hooks/acme/contact-form", data=body, headers=headers, timeout=30).status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [202] * n, codes
    return n


def _workers_with_counts(folder: Path) -> int:
    """How many worker processes have counted a 202 (one counter file per process)."""
    from prometheus_client.multiprocess import MultiProcessCollector

    busy = 0
    for path in folder.glob("counter_*.db"):
        for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
            if any(s.name == "wfctl_webhook_requests_total" and s.labels.get("code") == "202" and s.value
                   for s in metric.samples):
                busy += 1
    return busy
