"""Templates: native values, text rendering, strict errors that name the placeholder, the sandbox."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.engine.templating import Templates
from controller.errors import TemplateError


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates()


@pytest.fixture
def scope() -> dict[str, Any]:
    return {
        "record": {
            "id": "t_42",
            "title": "Printer on fire",
            "priority": "urgent",
            "tags": ["hardware", "fire"],
            "amount": 1200,
            "assignee": {"email": "alice@acme.test"},
            "items": ["toner"],
        },
        "trigger": {"event": "updated", "body": {"email": "  Bob@Example.COM "}},
        "steps": {"spam-check": {"output": {"status": 200, "json": {"score": 0.2}}}},
        "vars": {"first_name": "Bob"},
        "workflow": {"id": 7, "name": "escalate", "account": "acme", "version": 3},
        "account": "acme",
        "now": "2026-01-05T09:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ record.priority == 'urgent' }}", True),
        ("{{ record.amount }}", 1200),
        ("{{ record.amount / 1000 }}", 1.2),
        ("{{ record.tags }}", ["hardware", "fire"]),
        ("{{ record.assignee }}", {"email": "alice@acme.test"}),
        ("{{ none }}", None),
        ("  {{ record.amount > 1000 }}\n", True),
        ("{{- record.amount -}}", 1200),
        ("{{ record.tags | map('upper') }}", ["HARDWARE", "FIRE"]),
        ("{{ {'nested': {'a': [1, 2]}} }}", {"nested": {"a": [1, 2]}}),
    ],
)
def test_single_placeholder_gives_native_value(templates: Templates, scope: dict[str, Any], template: str,
                                               expected: Any) -> None:
    """A string that is exactly one placeholder yields the expression's own value, not its text."""
    assert templates.render(template, scope) == expected
    assert type(templates.render(template, scope)) is type(expected)


def test_mixed_text_renders_to_string(templates: Templates, scope: dict[str, Any]) -> None:
    """Text around placeholders, or several placeholders, renders to one string."""
    assert templates.render("Urgent: {{ record.title }}", scope) == "Urgent: Printer on fire"
    assert templates.render("{{ record.amount }} {{ record.id }}", scope) == "1200 t_42"
    assert templates.render("Body {{ record.id }}\n", scope) == "Body t_42\n"


def test_render_walks_dicts_and_lists(templates: Templates, scope: dict[str, Any]) -> None:
    """Dict values and list items are rendered; keys and non-strings stay as written."""
    value = {"title": "Check {{ record.title }}", "due": 1, "flags": [True, "{{ record.id }}"],
             "{{ key }}": None}
    assert templates.render(value, scope) == {
        "title": "Check Printer on fire", "due": 1, "flags": [True, "t_42"], "{{ key }}": None,
    }


def test_steps_with_dashed_ids(templates: Templates, scope: dict[str, Any]) -> None:
    """A step id with a dash is reached with subscript syntax, as the example workflows do."""
    assert templates.render("{{ steps['spam-check'].output.json.score < 0.5 }}", scope) is True


def test_filters_and_scope_names(templates: Templates, scope: dict[str, Any]) -> None:
    """Jinja filters work, and every name of the scope is reachable."""
    assert templates.render("{{ trigger.body.email | trim | lower }}", scope) == "bob@example.com"
    assert templates.render("{{ workflow.name }}@{{ account }} v{{ workflow.version }}", scope) == \
        "escalate@acme v3"
    assert templates.render("{{ now }}", scope) == "2026-01-05T09:00:00+00:00"
    assert templates.render("Hi {{ vars.first_name }}", scope) == "Hi Bob"


def test_record_field_named_like_a_dict_method(templates: Templates, scope: dict[str, Any]) -> None:
    """``record.items`` is the record's field, not dict.items, because records are data."""
    assert templates.render("{{ record.items }}", scope) == ["toner"]


def test_default_and_is_defined_work_with_strict_undefined(templates: Templates, scope: dict[str, Any]) -> None:
    """``default`` and ``is defined`` handle a missing value instead of failing."""
    assert templates.render("{{ record.owner_id | default('u_bob') }}", scope) == "u_bob"
    assert templates.render("{{ record.email is defined and record.email }}", scope) is False
    assert templates.render("{{ record.title is defined }}", scope) is True
    assert templates.evaluate("{{ record.priority == 'urgent' and record.email is not defined }}", scope) is True


def test_default_works_on_a_missing_record(templates: Templates, scope: dict[str, Any]) -> None:
    """Without a record (a schedule trigger), ``default`` still gives the fallback."""
    assert templates.render("{{ record.owner | default('nobody') }}", {**scope, "record": None}) == "nobody"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ record.reporter.name }}",
         "placeholder {{ record.reporter.name }}: 'dict object' has no attribute 'reporter'"),
        ("{{ record.assignee.phone }}",
         "placeholder {{ record.assignee.phone }}: 'dict object' has no attribute 'phone'"),
        ("{{ missing }}", "placeholder {{ missing }}: 'missing' is undefined"),
        ("Ticket {{ record.id }} by {{ record.reporter.name }}",
         ("placeholder {{ record.reporter.name }} in 'Ticket {{ record.id }} by {{ record.reporter.name }}': "
          "'dict object' has no attribute 'reporter'")),
        ("{{ [record.nope] }}", "placeholder {{ [record.nope] }}: 'dict object' has no attribute 'nope'"),
    ],
)
def test_undefined_names_the_placeholder(templates: Templates, scope: dict[str, Any], template: str,
                                         message: str) -> None:
    """A missing value is a TemplateError that names the placeholder and says what is missing."""
    with pytest.raises(TemplateError) as caught:
        templates.render(template, scope)
    assert str(caught.value) == message


def test_other_failures_are_template_errors(templates: Templates, scope: dict[str, Any]) -> None:
    """Any exception while evaluating (division by zero, syntax) becomes a TemplateError naming it."""
    with pytest.raises(TemplateError, match=r"placeholder \{\{ 1 / 0 \}\}: ZeroDivisionError"):
        templates.render("{{ 1 / 0 }}", scope)
    with pytest.raises(TemplateError, match="syntax error"):
        templates.render("{{ record.id }", scope)
    with pytest.raises(TemplateError, match="not data a step can hold"):
        templates.render("{{ namespace }}", scope)


def test_error_inside_a_block_names_the_template(templates: Templates, scope: dict[str, Any]) -> None:
    """Inside ``{% for %}`` the failing placeholder cannot be told alone, so the template is named."""
    with pytest.raises(TemplateError, match=r"^template '\{% for t in record.tags %\}.*has no attribute 'x'"):
        templates.render("{% for t in record.tags %}{{ t.x.y }}{% endfor %}", scope)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__ }}",
        "x {{ record.__class__.__init__.__globals__ }}",
        "{{ record.tags.append('x') }}",
        "{{ record.update({'id': 1}) }}",
        "{{ 2 ** 100000 }}",
        "{{ 'a' * 100000000 }}",
    ],
)
def test_sandbox_blocks_unsafe_access(templates: Templates, scope: dict[str, Any], template: str) -> None:
    """Dunder attributes, mutating methods and memory bombs raise TemplateError instead of running."""
    with pytest.raises(TemplateError):
        templates.render(template, scope)
    assert scope["record"]["tags"] == ["hardware", "fire"]


def test_record_data_is_never_rendered(templates: Templates, scope: dict[str, Any]) -> None:
    """A record field that looks like a template comes out literally, alone or inside text."""
    scope["record"]["title"] = "{{ 7*7 }}"
    scope["trigger"]["body"] = {"note": "{{ ''.__class__ }}"}
    assert templates.render("{{ record.title }}", scope) == "{{ 7*7 }}"
    assert templates.render("Re: {{ record.title }}", scope) == "Re: {{ 7*7 }}"
    assert templates.render({"n": "{{ trigger.body.note }}"}, scope) == {"n": "{{ ''.__class__ }}"}


def test_evaluate_gives_native_condition(templates: Templates, scope: dict[str, Any]) -> None:
    """``evaluate`` returns the condition's value (a bool for a comparison)."""
    assert templates.evaluate("{{ record.status != 'closed' if record.status is defined else true }}",
                              scope) is True
    assert templates.evaluate("{{ 'fire' in record.tags }}", scope) is True


def test_shared_by_threads(templates: Templates, scope: dict[str, Any]) -> None:
    """Several worker threads can render through one instance and each gets its own answer."""
    results: dict[int, Any] = {}

    def work(n: int) -> None:
        results[n] = [templates.render("{{ vars.n * 2 }}-{{ record.id }}", {**scope, "vars": {"n": n}})
                      for _ in range(50)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {n: [f"{n * 2}-t_42"] * 50 for n in range(8)}


@given(st.text().filter(lambda text: "{{" not in text))
def test_text_without_braces_is_unchanged(text: str) -> None:
    """Any string without ``{{`` comes back exactly as it went in, even with ``{%`` or ``}}``."""
    assert Templates().render(text, {}) == text
