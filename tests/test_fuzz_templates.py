"""Property: record data never escapes the sandbox. Whatever a record holds (nested maps, lists, numbers and
text full of ``{{ }}``, ``{% %}``, ``__class__`` and line breaks), the templates of a workflow give it
back as data: a placeholder's value equals the field, text around a placeholder holds the field's text
verbatim (nothing in it is evaluated), ``tojson`` round-trips, and the only failure there can be is a
TemplateError. The same holds through the interpreter in a dry run. And templates built as bombs from
operators, filters and methods over such data stop in time with a TemplateError.

The default run keeps the example count modest; ``pytest --hypothesis-profile=long`` goes deeper.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.engine.dryrun import DryRunner, SyntheticDirectory
from controller.engine.templating import Templates
from controller.errors import TemplateError

INJECTIONS = ["{{ 7*7 }}", "{% for x in range(9) %}x{% endfor %}", "{{ ''.__class__.__mro__ }}", "__class__",
              "{{", "}}", "{%", "%}", "{#", "#}", "{{ record }}", "{{ lipsum }}", "\r\nBcc: e@e.test", "'", '"',
              "\\", "\x00", "\u2028", "{{ steps }}", "{% raw %}", "{% endraw %}", "${x}", "%s", "{0}"]
TEXT = st.lists(st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=8)), max_size=6).map("".join)
DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)
RECORDS = st.fixed_dictionaries({"title": TEXT, "data": DATA, "extra": st.dictionaries(TEXT, DATA, max_size=3)})
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEMPLATES = Templates()

# The kinds of template a workflow writes over a record: native values, text, filters, loops, tojson.
TEXT_TEMPLATES = [
    "Re: {{ record.title }}",
    "{{ record.title | string | upper }}|{{ record.title | lower }}|{{ record.title | length }}",
    "{{ record.title ~ '!' }} {{ record.title | replace('{', '(') | trim }}",
    "{% for k, v in record.extra | dictsort %}{{ k }}={{ v }};{% endfor %}",
    ("{% for item in (record.data if record.data is iterable and record.data is not string else []) %}"
    "[{{ item }}]{% endfor %}"),
    "{{ record.data | tojson }} {{ record.extra | default({}) | length }}",
    "{% if record.title %}{{ record.title | truncate(20) }}{% else %}none{% endif %}",
    "{{ record.title | e }} {{ record.title | wordcount }} {{ record.title | indent(2) }}",
]


def scope(record: dict[str, Any]) -> dict[str, Any]:
    return {"record": record, "trigger": {"type": "manual"}, "steps": {}, "vars": {}, "workflow": {"id": "acme/f"},
            "account": "acme", "now": "2026-12-01T00:00:00+00:00"}


def as_json(value: Any) -> Any:
    """What a step holds of a value: its JSON (mapping keys are text)."""
    return json.loads(json.dumps(value))


@FUZZ
@given(RECORDS)
def test_record_data_comes_out_as_data(record: dict[str, Any]) -> None:
    """Placeholders give the fields back as they are; text around them holds the text verbatim."""
    assert TEMPLATES.render("{{ record.data }}", scope(record)) == as_json(record["data"])
    assert TEMPLATES.render({"t": "{{ record.title }}", "x": ["{{ record.extra }}"]}, scope(record)) == \
        {"t": record["title"], "x": [as_json(record["extra"])]}
    assert TEMPLATES.render("Re: {{ record.title }}.", scope(record)) == f"Re: {record['title']}."
    assert json.loads(TEMPLATES.render("{{ record | tojson }}", scope(record))) == as_json(record)
    pairs = sorted(record["extra"].items(), key=lambda pair: pair[0].lower())  # (dictsort ignores case)
    assert TEMPLATES.render("{% for k, v in record.extra | dictsort %}{{ k }}={{ v }};{% endfor %}",
                            scope(record)) == "".join(f"{key}={value};" for key, value in pairs)


@FUZZ
@given(RECORDS, st.sampled_from(TEXT_TEMPLATES))
def test_templates_over_any_record_give_text_or_a_template_error(record: dict[str, Any], template: str) -> None:
    """Filters, loops and tests over any record data render to text; nothing but a TemplateError is raised."""
    try:
        rendered = TEMPLATES.render(template, scope(record))
    except TemplateError:
        return
    assert isinstance(rendered, str)


@FUZZ
@given(RECORDS)
def test_a_dry_run_keeps_record_data_as_data(record: dict[str, Any]) -> None:
    """Through the interpreter (a dry run), set and record.create steps hold the record's data unchanged."""
    definition = {"spec": {"actions": [
        {"id": "keep", "type": "set", "vars": {"copy": "{{ record.data }}", "text": "T {{ record.title }}",
                                               "json": "{{ record.extra | tojson }}"}},
        {"id": "task", "type": "record.create", "entity": "task", "set": {"title": "{{ record.title }}",
                                                                         "data": "{{ vars.copy }}"}},
    ]}}
    runner = DryRunner(account="acme", directory=SyntheticDirectory(), definitions=lambda name: None,
                       now=lambda: datetime(2026, 12, 1, tzinfo=UTC))
    result = runner.run("f", definition, trigger={"type": "manual"}, record=record)
    assert result.status == "succeeded", result.error
    assert result.output["copy"] == as_json(record["data"]) and result.output["text"] == "T " + record["title"]
    assert json.loads(result.output["json"]) == as_json(record["extra"])
    [intent] = result.intents
    assert intent.fields["set"] == {"title": record["title"], "data": as_json(record["data"])}


# -- hostile templates --------------------------------------------------------------------------------

ATOMS = ["'ab'", "record.big", "range(10000)", "[record.big]", "(10 ** 100)", "200000", "record.tags", "'%s%s'",
         "'{0}{0}'", "ns.l", "'\\n'"]
FILTERS = ["list", "join(record.big)", "map('center', 200000)", "string", "tojson", "replace('a', record.big)",
           "center(200000)", "indent(100000)", "batch(10000, record.big)", "slice(10000, record.big)", "sum",
           "unique", "sort", "first", "e", "format(record.big)", "wordwrap(1)", "reverse", "select",
           "map('replace', '1', record.big)", "length", "truncate(100000)", "urlencode", "title", "max"]
OPERATORS = ["~", "+", "*", "%", "**", "//"]
EXPRESSIONS = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(OPERATORS), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, st.sampled_from(FILTERS)).map(lambda t: f"({t[0]} | {t[1]})"),
        st.tuples(inner, st.sampled_from(["join", "replace", "center", "split", "format", "ljust"]), inner)
        .map(lambda t: f"{t[0]}.{t[1]}({t[2]})"),
    ),
    max_leaves=6,
)
SHAPES = ["{{ %s }}", "x{{ %s }}", "{%% for i in range(10000) %%}{{ %s }}{%% endfor %%}",
          ("{%% set ns = namespace(l=[]) %%}{%% for i in range(10000) %%}{%% set ns.l = ns.l + [%s] %%}{%% endfor %%}"
          "{{ ns.l | length }}")]
HOSTILE = Templates(budget=0.05)


@FUZZ
@given(EXPRESSIONS, st.sampled_from(SHAPES))
def test_hostile_templates_stop_in_time_with_a_template_error(expression: str, shape: str) -> None:
    """Operators, filters and methods built into bombs and loops render or fail with a TemplateError, in time."""
    began = time.perf_counter()
    try:
        HOSTILE.render(shape % expression, scope({"big": "a" * 200_000, "tags": ["x", "y"]}))
    except TemplateError:
        pass
    # The budget, plus the longest step that cannot be interrupted (walking a 200,000-item value: ~0.3 s on a
    # busy 2-core machine); a template that escaped the limits would run for minutes.
    assert time.perf_counter() - began < 2.0
