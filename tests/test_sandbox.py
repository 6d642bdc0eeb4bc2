"""The template sandbox: known escapes refused, resource limits, a time budget that interrupts, in the
live engine, the dry run and worker threads; the cap on what a step keeps."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from enginekit import kit, read_store

from controller.engine.caps import STORED_LIMIT, capped
from controller.engine.dryrun import DryRunner, SyntheticDirectory
from controller.engine.templating import MAX_ITERATIONS, MAX_RANGE, MAX_TEXT, Templates, step_budget
from controller.errors import TemplateError
from controller.model.templates import RECURSIVE_LOOP, template_problem

# The payloads of the server-side template injection cheat sheets, Jinja2 section, and their variants.
ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{{ {}.__class__.__bases__[0].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ request.application.__globals__.__builtins__ }}",
    "{{ config.items() }}",
    "{{ config.__class__.__init__.__globals__['os'] }}",
    "{{ range.__class__ }}",
    "{{ range.__globals__ }}",
    "{{ '{0.__class__}'.format(record) }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '{0.__init__.__globals__}'.format(namespace) }}",
    "{{ record|attr('__class__') }}",
    "{{ ''|attr('__class__')|attr('__mro__') }}",
    "{{ '%s'|format(''.__class__) }}",
    "{{ '%s' % ''.__class__ }}",
    "{% set x = ''.__class__ %}{{ x }}",
    "{% set x = namespace %}{{ x.__init__ }}",
    "{% set g = self.__dict__ %}{{ g }}",
    "{{ record.__getitem__('id') }}",
    "{{ record['__class__'] }}",
    "{{ ''['__class__'] }}",
    "{{ dict.mro() }}",
    "{{ dict.__subclasses__() }}",
    "{{ record.tags.pop() }}",
    "{{ record.update({'id': 1}) }}",
    "{{ record.setdefault('x', 1) }}",
    "{{ ''.join.__self__ }}",
    "{{ namespace()._Namespace__attrs }}",
    "{{ 'x'.encode() }}",
    "{{ (1).to_bytes(4, 'big') }}",
    "{{ 'x'.translate({120: 'y'}) }}",
    "{% for x in [1] %}{{ loop.__class__.__init__.__globals__ }}{% endfor %}",
    "{% macro m() %}{% endmacro %}{{ m._func.__globals__ }}",
    "{{ range(1).__class__.__subclasses__() }}",
    "{% include 'x' %}{{ 1 }}",
    "{% import 'os' as os %}{{ os }}",
    "{% extends 'base' %}{{ 1 }}",
]
LEAKS = re.compile(r"<(class|function|built-in|module|bound method|method|generator)|object at 0x|popen|/usr/")


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates()


def record_scope() -> dict[str, Any]:
    return {"record": {"id": "t_1", "title": "Printer", "tags": ["a", "b"], "big": "a" * 200_000},
            "trigger": {}, "steps": {}, "vars": {}, "workflow": {"id": "acme/x"}, "account": "acme", "now": "n"}


@pytest.mark.parametrize("payload", ESCAPES)
def test_known_escapes_are_refused_and_nothing_leaks(templates: Templates, payload: str) -> None:
    """Each known payload is a TemplateError whose message names no object, and the scope is untouched."""
    scope = record_scope()
    with pytest.raises(TemplateError) as caught:
        templates.render(payload, scope)
    reason = str(caught.value).replace(payload.strip(), "")  # (the message quotes the template)
    assert not LEAKS.search(reason), reason
    assert scope == record_scope()


def test_there_are_thirty_known_escapes() -> None:
    """The list above keeps at least the 30 payloads the issue asks for."""
    assert len(set(ESCAPES)) >= 30


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ range(100000) }}", f"range\\(\\) of 100000 items is more than the limit of {MAX_RANGE}"),
        ("{% for a in range(9999) %}{% for b in range(9999) %}{{ a }}{% endfor %}{% endfor %}",
         f"loops ran more than {MAX_ITERATIONS} iterations"),
        ("{{ 'a' * 300000 }}", "repeating a text or list would reach 300,000 characters; the limit is 262,144"),
        ("{{ [record.big] * 100000 }}", "repeating a text or list would reach"),
        ("{{ record.big ~ record.big }}", "the text built with ~ would reach 400,000 characters"),
        ("{{ record.big + record.big }}", "the text or list built with \\+ would reach"),
        ("{{ record.big | replace('a', 'aa') }}", "the text after replace would reach 400,000"),
        ("{{ 'x' | center(10 ** 9) }}", "the width of center is 1,000,000,000"),
        ("{{ 'x'.center(10 ** 9) }}", "the width of center is 1,000,000,000"),
        ("{{ 'x'.ljust(10 ** 9) }}", "the width of ljust is"),
        ("{{ ('x' | e).center(10 ** 9) }}", "the width of center is"),
        ("{{ ('x' | safe).expandtabs(10 ** 9) }}", "calling Markup.expandtabs\\(\\) is not allowed"),
        ("{{ '%0999999999d' | format(1) }}", "a width in a % format is 999,999,999"),
        ("{{ '%*d' | format(10 ** 9, 1) }}", "a '\\*' width in a % format is not allowed"),
        ("{{ '%0999999999d' % 1 }}", "a width in a % format is"),
        ("{{ '{:>999999999}'.format(1) }}", "a width in a format spec is"),
        ("{{ '{:{w}}'.format(1, w=10 ** 9) }}", "a nested {} in a format spec is not allowed"),
        ("{{ '%s%s%s%s' % (record.big, record.big, record.big, record.big) }}", "the formatted text would reach"),
        ("{{ range(10000) | join(record.big) }}", "the joined text would reach"),
        ("{{ record.big.join(range(10000) | map('string')) }}", "the joined text would reach"),
        ("{{ ('a\n' * 100000) | indent(100) }}", "the indented text would reach"),
        ("{{ record.big | wordwrap(1) }}", "the text given to a filter that works word by word"),
        ("{{ [1] | batch(10 ** 10, 0) | list }}", "the size of a batch is 10,000,000,000"),
        ("{{ [1] | slice(10 ** 10) | list }}", "the number of slices is"),
        ("{{ [[1]] | sum(start=[]) }}", "sum adds numbers only"),
        ("{{ ([record.big] * 1) + ([record.big] * 1) }}", "the text or list built with \\+ would reach"),
        (("{% set ns = namespace(l=[]) %}{% for i in range(10000) %}{% set ns.l = ns.l + [record.big] %}"
         "{% endfor %}{{ ns.l | length }}"), "the text or list built with \\+ would reach"),
        (("{% set ns = namespace(s='') %}{% for i in range(10000) %}{% set ns.s = ns.s ~ 'abcdefghij' * 10 %}"
         "{% endfor %}{{ ns.s | length }}"), "the text built with ~ would reach"),
        ("{% set x %}{% for i in range(10000) %}{{ record.big }}{% endfor %}{% endset %}{{ x | length }}",
         "the rendered text would reach .* the limit is 1,048,576"),
        ("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "recursive loops are not allowed"),
        ("{{ 2 ** 100000 }}", "the exponent 100000 is too large"),
        ("{{ ((10 ** 1000) ** 1000) ** 1000 }}", "the number \\*\\* would have about"),
        ("{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ 1 }}",
         "the number \\* would have about"),
        ("{{ range(10000) | map('center', 200000) | list | length }}", "the items of the map filter would reach"),
        ("{{ range(1) | batch(10000, record.big) | list }}", "the items of the batch filter would reach"),
        ("{{ range(10000) | map('center', 200000) }}", "the items of the map filter would reach"),
        (("{% set ns = namespace(l=[]) %}{% for i in range(10000) %}"
         "{% set ns.l = ns.l + [(i ~ record.big) | select] %}{% endfor %}{{ 1 }}"),
         "the text or list built with \\+ would reach"),
    ],
)
def test_resource_limits_are_named_template_errors(templates: Templates, template: str, message: str) -> None:
    """Each way to build a huge value or loop for long stops at once with a TemplateError naming the limit."""
    began = time.perf_counter()
    with pytest.raises(TemplateError, match=message):
        templates.render(template, record_scope())
    assert time.perf_counter() - began < 1.0


def test_validate_refuses_a_recursive_loop_too() -> None:
    """A recursive loop is a definition problem at validation time, with the sandbox's own words."""
    problem = template_problem("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}")
    assert problem is not None and problem.endswith("is not a valid template: " + RECURSIVE_LOOP)
    assert template_problem("{% for x in [1] %}{{ x }}{% endfor %}") is None


def test_ordinary_templates_stay_within_the_limits(templates: Templates) -> None:
    """Loops, joins, formats, methods and lists built in a loop work as before when they are small."""
    scope = record_scope()
    assert templates.render("{% for t in record.tags %}{{ t | upper }}{% if not loop.last %}, {% endif %}"
                            "{% endfor %}", scope) == "A, B"
    assert templates.render("{{ range(3) | join('-') }} {{ '%05.1f' % 3.14159 }} {{ '{:>4}'.format(7) }}",
                            scope) == "0-1-2 003.1    7"
    assert templates.render("{% set ns = namespace(l=[]) %}{% for i in range(MAX) %}{% set ns.l = ns.l + [i] %}"
                            "{% endfor %}{{ ns.l | length }}".replace("MAX", str(MAX_RANGE)), scope) == str(MAX_RANGE)
    assert templates.render("{{ record.title.lower().split('i') }}", scope) == ["pr", "nter"]
    assert templates.render("{{ record.items() | list | length if false else record.title ~ '!' }}", scope) == \
        "Printer!"
    assert templates.render("{{ ', '.join(record.tags) }} {{ dict(a=1).get('a') }}", scope) == "a, b 1"
    assert len(templates.render("{{ record.big }}", scope)) == 200_000  # data passes through; it is not built
    assert len(templates.render("{{ 'x' * MAX }}".replace("MAX", str(MAX_TEXT)), scope)) == MAX_TEXT


SLOW = "{% for i in range(10000) %}{% for j in range(9) %}{{ record.big | replace('a', 'b') | length }}" \
       "{% endfor %}{% endfor %}"


def test_the_time_budget_interrupts_a_render() -> None:
    """A render that stays inside every size limit but takes long stops at its budget."""
    began = time.perf_counter()
    with pytest.raises(TemplateError, match=r"ran longer than its budget of 0.3 s"):
        Templates(budget=0.3).render(SLOW, record_scope())
    assert 0.3 <= time.perf_counter() - began < 0.8


def test_a_step_budget_is_never_more_than_its_timeout() -> None:
    """The budget is RENDER_BUDGET, or the step's timeout when shorter; a larger instance budget is capped."""
    assert step_budget(None) == 1.0 and step_budget("1s") == 1.0 and step_budget("30s") == 1.0
    began = time.perf_counter()
    with pytest.raises(TemplateError, match=r"budget of 1 s"):
        Templates(budget=5.0).render_step({"text": SLOW}, record_scope(), "1s")
    assert time.perf_counter() - began < 1.6


def test_the_budget_holds_in_worker_threads() -> None:
    """In a worker thread a runaway render stops at its budget, and another thread's renders are unaffected."""
    templates = Templates(budget=0.3)
    results: dict[str, Any] = {}

    def runaway() -> None:
        try:
            templates.render(SLOW, record_scope())
        except TemplateError as error:
            results["runaway"] = str(error)

    def steady() -> None:
        results["steady"] = [templates.render("{{ record.id }}", record_scope()) for _ in range(200)]

    threads = [threading.Thread(target=runaway), threading.Thread(target=steady)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert time.perf_counter() - began < 1.5
    assert "budget of 0.3 s" in results["runaway"] and results["steady"] == ["t_1"] * 200


NESTED = "{% for a in range(9999) %}{% for b in range(9999) %}{{ a }}{% endfor %}{% endfor %}"


def workflow(text: str, timeout: str = "1s") -> str:
    """A manual workflow (as JSON, which is YAML too) whose second step renders ``text``."""
    return json.dumps({
        "apiVersion": "workflows/v1", "kind": "Workflow", "metadata": {"name": "bomb"},
        "spec": {"trigger": {"type": "manual", "entities": ["ticket"]}, "actions": [
            {"id": "first", "type": "set", "vars": {"big": "{{ 'a' * 200000 }}"}},
            {"id": "spin", "type": "set", "timeout": timeout, "vars": {"out": text}},
        ]},
    })


def test_a_runaway_template_fails_its_step_in_the_live_engine(tmp_path: Path, store_url: str) -> None:
    """In the engine the nested loop and a slow loop each fail their step with the limit's message, in time."""
    with kit(tmp_path, store_url, templates=Templates(budget=5.0)) as k:
        k.deploy({"workflows.d/acme/bomb.yaml": workflow(NESTED)})
        execution = k.run("acme/bomb")
        shown = k.show(execution)
        assert shown["status"] == "failed", shown
        assert "step spin: template " in shown["error"] and "loops ran more than 100000" in shown["error"]
        assert k.steps(execution)["first"]["status"] == "succeeded"

        k.deploy({"workflows.d/acme/bomb.yaml": workflow(SLOW.replace("record.big", "vars.big"))}, "slow")
        began = time.perf_counter()
        execution = k.run("acme/bomb")
        assert time.perf_counter() - began < 2.5  # the step's timeout (1 s), not the instance's 5 s
        assert "ran longer than its budget of 1 s" in k.show(execution)["error"]
        assert k.steps(execution)["spin"]["status"] == "failed"


def dry_runner() -> DryRunner:
    return DryRunner(account="acme", directory=SyntheticDirectory(), definitions=lambda name: None,
                     now=lambda: datetime(2026, 12, 1, tzinfo=UTC))


def definition(vars_: dict[str, Any], timeout: str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"id": "spin", "type": "set", "vars": vars_}
    if timeout:
        step["timeout"] = timeout
    return {"spec": {"actions": [step]}}


def test_the_dry_run_gives_the_same_decision() -> None:
    """`wfctl check` and dry runs share the interpreter: the same failure, the same message, in time."""
    result = dry_runner().run("bomb", definition({"out": NESTED}), trigger={"type": "manual"})
    assert result.status == "failed" and result.error is not None
    assert "step spin: template" in result.error and "loops ran more than 100000" in result.error
    began = time.perf_counter()
    slow = dry_runner().run("bomb", definition({"out": SLOW}, "1s"), trigger={"type": "manual"},
                            record=record_scope()["record"])
    assert time.perf_counter() - began < 2.0
    assert slow.error is not None and "ran longer than its budget of 1 s" in slow.error


# -- what a step keeps --------------------------------------------------------------------------------


def test_capped_keeps_small_values_and_marks_cut_ones() -> None:
    """Small values are kept as they are; a big map keeps its keys with its largest values cut; others whole."""
    assert capped({"a": 1, "b": [1, 2]}) == {"a": 1, "b": [1, 2]}
    kept = capped({"status": 200, "json": {"items": list(range(100_000))}})
    assert kept["status"] == 200
    assert kept["json"]["truncated"] is True and kept["json"]["limit"] == STORED_LIMIT
    assert kept["json"]["size"] > STORED_LIMIT and kept["json"]["preview"].startswith('{"items": [0, 1, 2')
    whole = capped(["x" * 300_000])
    assert whole["truncated"] is True and whole["size"] == 300_004 and len(whole["preview"]) == 1024
    many = capped({f"k{i}": "y" * 40 for i in range(10_000)}, limit=1000)
    assert many["truncated"] is True and set(many) == {"truncated", "size", "limit", "preview"}


def test_stored_input_and_output_are_capped_in_the_engine_and_the_dry_run(tmp_path: Path, store_url: str) -> None:
    """A step that builds 400 KB keeps its keys, with the largest values marked, alike live and in a dry run."""
    big = "{{ 'x' * 200000 }}"
    vars_ = {"small": 1, "big": big, "other": big}
    text = ("apiVersion: workflows/v1\nkind: Workflow\nmetadata: {name: big}\nspec:\n  trigger: {type: manual, entities: [ticket]}\n"
            f"  actions:\n    - id: keep\n      type: set\n      vars: {{small: 1, big: \"{big}\", other: \"{big}\"}}\n")
    with kit(tmp_path, store_url) as k:
        k.deploy({"workflows.d/acme/big.yaml": text})
        execution = k.run("acme/big")
        step = k.steps(execution)["keep"]
        shown = k.show(execution)
    dry = dry_runner().run("big", {"spec": {"actions": [{"id": "keep", "type": "set", "vars": vars_}]}},
                           trigger={"type": "manual"})
    [dry_step] = dry.steps
    for output, stored_input in ((step["output"], step["input"]), (dry_step["output"], dry_step["input"])):
        assert output["small"] == 1
        assert output["big"] == {"truncated": True, "size": 200_002, "limit": STORED_LIMIT,
                                 "preview": '"' + "x" * 1023}
        assert output["other"] == "x" * 200_000
        assert stored_input["id"] == "keep" and stored_input["vars"]["truncated"] is True
    assert shown["status"] == "succeeded" and shown["output"]["big"]["truncated"] is True
    assert dry.output["big"]["truncated"] is True


# -- a real `wfctl serve` -----------------------------------------------------------------------------

SERVED = json.dumps({
    "apiVersion": "workflows/v1", "kind": "Workflow", "metadata": {"name": "spin"},
    "spec": {"trigger": {"type": "manual", "entities": ["ticket"]}, "actions": [
        {"id": "mark", "type": "record.create", "entity": "task", "set": {"title": "started"}},
        {"id": "spin", "type": "set", "vars": {"out": "{% set big = 'a' * 200000 %}"
                                                      + SLOW.replace("record.big", "big")}},
    ]},
})


@pytest.mark.parametrize("worker_processes", ["0", "1"])
def test_sigterm_stops_serve_while_a_template_runs_away(tmp_path: Path, worker_processes: str) -> None:
    """SIGTERM during a runaway render (in a worker thread, or a worker process): the render stops at its
    budget, the step fails with the budget's message, and serve exits 0 well inside its grace period."""
    import signal
    import subprocess
    import sys

    from gitutil import commit_files, make_repo
    from servers import until

    from controller.store import records as record_store
    from controller.store import views

    repo = tmp_path / "repo"
    commit_files(make_repo(repo), {"workflows.d/acme/spin.yaml": SERVED}, "add")
    db = f"sqlite:///{tmp_path / 'wfctl.db'}"
    base = [sys.executable, "-m", "controller", "--repo", str(repo), "--data-dir", str(tmp_path / "data"), "--db", db]
    server = subprocess.Popen([*base, "serve", "--interval", "0.5", "--workers", "1", "--port", "0",
                               "--worker-processes", worker_processes], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        until(lambda: read_store(db, lambda c: any(w["id"] == "acme/spin" for w in views.status(c)["workflows"])))
        started = subprocess.run([*base, "run", "acme/spin"], capture_output=True, text=True, check=True)
        execution = int(started.stdout.strip())
        until(lambda: read_store(db, lambda c: record_store.list_records(c, "acme", "task")), poll=0.01)
        began = time.monotonic()  # the step before the runaway one has committed: the render is running
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0
        elapsed = time.monotonic() - began
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert elapsed < 5.0  # the grace period is 9 s; the budget is 1 s
    shown = read_store(db, lambda c: views.execution(c, execution))
    assert shown["status"] == "failed" and "ran longer than its budget of 1 s" in shown["error"], shown
