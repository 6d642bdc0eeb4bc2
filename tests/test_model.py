"""The pydantic model of ``workflows/v1``: what parses, what is refused, and the messages it gives."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.model import (
    ACTION_TYPES,
    TRIGGER_TYPES,
    Workflow,
    field_path,
    iter_refs,
    json_schema,
    load_workflow,
    parse_duration,
    schema_text,
    validation_issues,
)

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "workflow.v1.schema.json"

TRIGGERS: dict[str, dict[str, Any]] = {
    "record": {
        "type": "record",
        "entity": "ticket",
        "events": ["created", "updated"],
        "when": "{{ record.x }}",
    },
    "schedule": {"type": "schedule", "cron": "*/15 * * * *", "timezone": "Europe/Berlin"},
    "webhook": {"type": "webhook"},
    "manual": {"type": "manual", "entities": ["ticket", "deal"]},
    "inactivity": {"type": "inactivity", "entity": "lead", "after": "30m"},
    "email": {"type": "email", "mailbox": "mailbox:mb_support", "when": "{{ 'x' in trigger.subject }}"},
}

ACTIONS: dict[str, dict[str, Any]] = {
    "email.send": {
        "id": "mail",
        "type": "email.send",
        "mailbox": "mailbox:mb_support",
        "to": ["user:u_alice", "bob@acme.test", "{{ record.email }}"],
        "cc": "Carol <carol@acme.test>",
        "subject": "Urgent: {{ record.title }}",
        "body": "...",
        "retry": {"attempts": 3, "backoff": "30s"},
    },
    "channel.post": {"id": "post", "type": "channel.post", "channel": "channel:C024BE91L", "text": "hi"},
    "record.create": {
        "id": "create",
        "type": "record.create",
        "entity": "object_type:ot_17",
        "set": {"a": [1]},
    },
    "record.update": {
        "id": "update",
        "type": "record.update",
        "entity": "ticket",
        "record_id": "{{ record.id }}",
        "set": {"escalated": True},
    },
    "http.request": {
        "id": "call",
        "type": "http.request",
        "method": "POST",
        "url": "https://crm.acme.test/hooks",
        "headers": {"X-Token": "t"},
        "json": {"ticket": "{{ record.id }}"},
        "expect_status": [200, 201],
        "timeout": "10s",
    },
    "wait": {"id": "pause", "type": "wait", "duration": "1h"},
    "if": {
        "id": "check",
        "type": "if",
        "condition": "{{ record.status != 'closed' }}",
        "then": [{"id": "inner", "type": "wait", "duration": "5m"}],
        "else": [{"id": "other", "type": "set", "vars": {"a": 1}}],
    },
    "workflow.call": {
        "id": "sub",
        "type": "workflow.call",
        "workflow": "notify-managers",
        "input": {"a": "b"},
    },
    "set": {"id": "remember", "type": "set", "vars": {"at": "{{ now }}"}},
}


def make(
    trigger: dict[str, Any] | None = None, actions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Raw data of a valid workflow, with the given trigger and actions."""
    return {
        "apiVersion": "workflows/v1",
        "kind": "Workflow",
        "metadata": {"name": "escalate-urgent-tickets", "labels": {"team": "support"}},
        "spec": {
            "trigger": copy.deepcopy(trigger or TRIGGERS["webhook"]),
            "actions": copy.deepcopy(actions or [ACTIONS["wait"]]),
        },
    }


def issues(data: Any) -> list[tuple[str, str]]:
    """``(field_path, message)`` for every problem in ``data``; [] when it is valid."""
    try:
        load_workflow(data)
    except ValidationError as error:
        return [(field_path(loc), message) for loc, message in validation_issues(error)]
    return []


def schedule(**fields: str) -> dict[str, Any]:
    """A workflow with a schedule trigger of ``fields``."""
    return make({"type": "schedule", **fields})


# -- what parses -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TRIGGER_TYPES)
def test_every_trigger_type_parses(kind: str) -> None:
    """Each of the six trigger types validates and keeps its type."""
    workflow = load_workflow(make(TRIGGERS[kind]))
    assert workflow.spec.trigger.type == kind


@pytest.mark.parametrize("kind", ACTION_TYPES)
def test_every_action_kind_parses(kind: str) -> None:
    """Each of the nine action kinds validates and keeps its type."""
    workflow = load_workflow(make(actions=[ACTIONS[kind]]))
    assert workflow.spec.actions[0].type == kind


def test_design_example_parses_and_round_trips() -> None:
    """A workflow with every action kind validates, and its normalized form validates to the same model."""
    workflow = load_workflow(make(TRIGGERS["record"], list(ACTIONS.values())))
    assert Workflow.model_validate(workflow.normalized()) == workflow
    assert json.loads(json.dumps(workflow.normalized())) == workflow.normalized()


def test_aliases_are_the_yaml_keys_in_dumps() -> None:
    """Dumps use rateLimit, json and else, never the Python attribute names."""
    data = make(actions=[ACTIONS["http.request"], ACTIONS["if"]])
    data["spec"]["rateLimit"] = {"max": 60, "per": "1m"}
    dumped = load_workflow(data).model_dump()
    assert dumped["spec"]["rateLimit"] == {"max": 60, "per": "1m"}
    assert dumped["spec"]["actions"][0]["json"] == {"ticket": "{{ record.id }}"}
    assert dumped["spec"]["actions"][1]["else"][0]["id"] == "other"
    assert "rate_limit" not in dumped["spec"]


# -- unknown and missing keys, types -------------------------------------------------------------


def _add(data: dict[str, Any], path: tuple[str | int, ...], key: str) -> dict[str, Any]:
    node: Any = data
    for part in path:
        node = node[part]
    node[key] = 1
    return data


@pytest.mark.parametrize(
    ("path", "where", "allowed"),
    [
        ((), "foo", "apiVersion, kind, metadata, spec"),
        (("spec", "trigger"), "spec.trigger.foo", "type"),
        (("spec", "actions", 0), "spec.actions[0].foo", "duration, id, retry, timeout, type"),
        (
            ("spec", "actions", 0, "then", 0),
            "spec.actions[0].then[0].foo",
            "duration, id, retry, timeout, type",
        ),
    ],
)
def test_unknown_key_is_named_at_its_place(path: tuple[str | int, ...], where: str, allowed: str) -> None:
    """An unknown key anywhere (top level, trigger, action, nested then-action) is reported at the key."""
    data = _add(make(actions=[ACTIONS["if"]] if "then" in path else None), path, "foo")
    assert issues(data) == [(where, f"unknown key 'foo' (allowed: {allowed})")]


def test_unknown_key_suggests_the_close_one() -> None:
    """A misspelt key gets a did-you-mean hint after the allowed keys."""
    action = dict(ACTIONS["email.send"])
    action["subjet"] = action.pop("subject")
    found = dict(issues(make(actions=[action])))
    assert found["spec.actions[0]"] == "missing required key 'subject'"
    assert found["spec.actions[0].subjet"].startswith("unknown key 'subjet' (allowed: bcc, body, cc, html, id, ")
    assert found["spec.actions[0].subjet"].endswith("; did you mean 'subject'?")


def test_discriminator_tags_are_not_in_locations() -> None:
    """The tag pydantic inserts for a tagged union is dropped: the loc is a path in the YAML data."""
    data = make(
        actions=[ACTIONS["set"], ACTIONS["set"] | {"id": "two"}, {"id": "p", "type": "wait", "duration": "x"}]
    )
    assert issues(data) == [("spec.actions[2].duration", "'x' is not a duration (use 30s, 15m, 1h, 2d)")]
    error = pytest.raises(ValidationError, load_workflow, data).value
    assert validation_issues(error)[0][0] == ("spec", "actions", 2, "duration")


def test_unknown_and_missing_types() -> None:
    """An unknown action or trigger type lists the types (and points at type); a missing type says so."""
    data = make({"type": "webhok"}, [{"id": "a", "type": "email.sned"}, {"id": "b"}])
    found = dict(issues(data))
    assert found["spec.trigger.type"] == (
        "unknown trigger type 'webhok' (use one of: record, schedule, webhook, manual, inactivity, email); "
        "did you mean 'webhook'?"
    )
    assert found["spec.actions[0].type"].startswith(
        "unknown action type 'email.sned' (use one of: email.send, channel.post, record.create, "
    )
    assert found["spec.actions[1]"].startswith("missing 'type' (use one of: email.send, ")


def test_literal_errors_list_the_allowed_values() -> None:
    """A value outside a fixed set names the allowed values; apiVersion and kind say the one allowed."""
    data = make({"type": "record", "entity": "widget", "events": ["created", "closed"]})
    data["apiVersion"], data["kind"] = "workflows/v2", "Pipeline"
    assert issues(data) == [
        ("apiVersion", "apiVersion must be 'workflows/v1' (got 'workflows/v2')"),
        ("kind", "kind must be 'Workflow' (got 'Pipeline')"),
        (
            "spec.trigger.entity",
            "'widget' is not one of: issue, ticket, task, lead, deal, opportunity, contact",
        ),
        ("spec.trigger.events[1]", "'closed' is not one of: created, updated, deleted"),
    ]


def test_wrong_types_are_not_coerced() -> None:
    """Strings are not booleans, and a list of actions must not be empty; messages carry no pydantic prefix."""
    data = make()
    data["spec"]["enabled"] = "yes"
    data["spec"]["actions"] = []
    data["metadata"]["name"] = "Escalate Tickets"
    assert issues(data) == [
        (
            "metadata.name",
            (
                "'Escalate Tickets' is not a valid name (use lowercase letters, digits and '-', "
                "at most 63 characters, starting with a letter or digit)"
            ),
        ),
        ("spec.enabled", "expected true or false, got a string ('yes')"),
        ("spec.actions", "must not be empty"),
    ]
    assert issues(None) == [("", "expected a mapping (key: value), got nothing")]


# -- cadence floors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "gap"),
    [
        ("* * * * *", "1 minute"),
        ("*/2 * * * *", "2 minutes"),
        ("0,3 9 * * 1", "3 minutes"),
        ("58,0 * * * *", "2 minutes"),  # 10:58 -> 11:00 wraps across the hour
        ("*/7 * * * *", "4 minutes"),  # 10:56 -> 11:00
        ("58,0 23,0 * * *", "2 minutes"),  # 23:58 -> 00:00 wraps across midnight
        ("58,0 0,5,6 * * *", "2 minutes"),  # the consecutive hours are not the first ones
    ],
)
def test_cron_below_the_floor_is_an_error(cron: str, gap: str) -> None:
    """A cron that can fire more often than every 5 minutes is refused, naming the gap and the floor."""
    assert issues(schedule(cron=cron)) == [
        ("spec.trigger.cron", f"cron {cron!r} fires every {gap}; the floor is 5 minutes")
    ]


@pytest.mark.parametrize(
    "cron", ["*/5 * * * *", "0 9 * * *", "58,0 9 * * *", "58,0 23,0 * * 1", "*/10 9-17 * * 1-5", "0 8 1 * *"]
)
def test_cron_at_or_above_the_floor_is_fine(cron: str) -> None:
    """Crons whose fires are never closer than 5 minutes are accepted, in any time zone."""
    assert issues(schedule(cron=cron)) == []
    assert issues(schedule(cron=cron, timezone="America/New_York")) == []


def test_every_floor() -> None:
    """``every: 4m`` is below the 5-minute floor; ``every: 5m`` is fine."""
    assert issues(schedule(every="4m")) == [
        ("spec.trigger.every", "every '4m' fires every 4 minutes; the floor is 5 minutes")
    ]
    assert issues(schedule(every="5m")) == []


def test_inactivity_floor() -> None:
    """An inactivity trigger needs at least 15 minutes."""
    trigger = {"type": "inactivity", "entity": "lead"}
    assert issues(make(trigger | {"after": "14m"})) == [
        ("spec.trigger.after", "after '14m' is too short for an inactivity trigger; the floor is 15 minutes")
    ]
    assert issues(make(trigger | {"after": "15m"})) == []


def test_schedule_needs_exactly_one_cadence() -> None:
    """A schedule has cron or every: neither is an error at the trigger, both is an error at every."""
    assert issues(schedule()) == [
        ("spec.trigger", "a schedule needs cron or every (e.g. cron: '0 9 * * 1-5', or every: 1h)")
    ]
    assert issues(schedule(cron="0 9 * * *", every="1h")) == [
        ("spec.trigger.every", "use either cron or every, not both")
    ]


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("*/15 * * *", "Wrong number of fields; got 4, expected 5"),
        ("61 * * * *", "the last value (61) is higher than the maximum value (59)"),
    ],
)
def test_bad_cron_says_how_to_write_one(cron: str, reason: str) -> None:
    """An unparseable cron names the expression, APScheduler's reason and the 5-field form."""
    [(where, message)] = issues(schedule(cron=cron))
    assert where == "spec.trigger.cron"
    assert message.startswith(f"{cron!r} is not a valid cron expression: ")
    assert reason in message
    assert message.endswith("(use 5 fields: minute hour day-of-month month day-of-week, e.g. '*/15 * * * *')")


def test_cron_that_never_fires() -> None:
    """A cron for a date that does not exist (30 February) is refused."""
    assert issues(schedule(cron="0 0 30 2 *")) == [
        ("spec.trigger.cron", "cron '0 0 30 2 *' never fires (check the day and month fields)")
    ]


@pytest.mark.parametrize("zone", ["Mars/Base", "Europe", "", "../etc/passwd", "utc"])
def test_bad_timezone(zone: str) -> None:
    """A time zone that is not an IANA name is refused at the timezone key."""
    assert issues(schedule(cron="0 9 * * *", timezone=zone)) == [
        (
            "spec.trigger.timezone",
            f"{zone!r} is not a time zone (use an IANA name such as UTC or Europe/Berlin)",
        )
    ]


# -- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["5 minutes", "0s", "1.5h", "15", "15M", "1w", "-5m", " 5m"])
def test_bad_duration_message(text: str) -> None:
    """A duration that is not digits plus s/m/h/d reads exactly the same message everywhere."""
    expected = f"{text!r} is not a duration (use 30s, 15m, 1h, 2d)"
    assert issues(make(actions=[{"id": "p", "type": "wait", "duration": text}])) == [
        ("spec.actions[0].duration", expected)
    ]
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_duration_that_is_a_number() -> None:
    """A bare YAML number is not a duration either."""
    assert issues(make(actions=[{"id": "p", "type": "wait", "duration": 15}])) == [
        ("spec.actions[0].duration", "15 is not a duration (use 30s, 15m, 1h, 2d)")
    ]


@given(count=st.integers(min_value=1, max_value=10**9), unit=st.sampled_from("smhd"))
def test_durations_round_trip(count: int, unit: str) -> None:
    """Any well-formed duration parses to count x unit seconds, and the model keeps the text as written."""
    text = f"{count}{unit}"
    assert parse_duration(text) == count * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    workflow = load_workflow(make(actions=[{"id": "p", "type": "wait", "duration": text}]))
    assert workflow.normalized()["spec"]["actions"][0]["duration"] == text


@given(st.text(max_size=8))
def test_arbitrary_text_is_a_duration_or_the_message(text: str) -> None:
    """Any text either parses to a positive number of seconds or raises the duration message."""
    try:
        assert parse_duration(text) > 0
    except ValueError as error:
        assert str(error) == f"{text!r} is not a duration (use 30s, 15m, 1h, 2d)"


# -- references --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "where", "message"),
    [
        (
            ACTIONS["email.send"] | {"mailbox": "mb_support"},
            "spec.actions[0].mailbox",
            "'mb_support' is not a mailbox reference (use mailbox:<id>)",
        ),
        (
            ACTIONS["channel.post"] | {"channel": "#oncall"},
            "spec.actions[0].channel",
            "'#oncall' is not a channel reference (use channel:<id>)",
        ),
        (
            ACTIONS["email.send"] | {"to": ["a@acme.test", "user:al ice"]},
            "spec.actions[0].to[1]",
            "'user:al ice' is not a user reference (use user:<id>)",
        ),
        (
            ACTIONS["email.send"] | {"cc": "alice"},
            "spec.actions[0].cc",
            "'alice' is not a recipient (use an e-mail address, a template or user:<id>)",
        ),
        (
            ACTIONS["record.create"] | {"entity": "object_type:"},
            "spec.actions[0].entity",
            "'object_type:' is not an object type reference (use object_type:<id>)",
        ),
        (
            ACTIONS["record.create"] | {"entity": "widget"},
            "spec.actions[0].entity",
            (
                "'widget' is not an entity (use one of: issue, ticket, task, lead, deal, opportunity, contact, "
                "or object_type:<id>)"
            ),
        ),
    ],
)
def test_bad_reference(action: dict[str, Any], where: str, message: str) -> None:
    """A malformed account reference says which kind was expected and the form to use."""
    assert issues(make(actions=[action])) == [(where, message)]


def test_bad_reference_in_trigger() -> None:
    """The email trigger's mailbox is a typed reference too."""
    assert issues(make({"type": "email", "mailbox": "mb_support"})) == [
        ("spec.trigger.mailbox", "'mb_support' is not a mailbox reference (use mailbox:<id>)")
    ]


def test_iter_refs_finds_every_reference_from_the_model() -> None:
    """iter_refs yields (field path, kind, id) for each reference, nested and in lists, and no plain text."""
    nested = {
        "id": "check",
        "type": "if",
        "condition": "{{ true }}",
        "then": [ACTIONS["channel.post"]],
        "else": [ACTIONS["email.send"] | {"cc": ["user:u_bob", "x@acme.test"]}],
    }
    workflow = load_workflow(make(TRIGGERS["email"], [ACTIONS["record.create"], nested]))
    assert iter_refs(workflow) == [
        ("spec.trigger.mailbox", "mailbox", "mb_support"),
        ("spec.actions[0].entity", "object_type", "ot_17"),
        ("spec.actions[1].then[0].channel", "channel", "C024BE91L"),
        ("spec.actions[1].else[0].mailbox", "mailbox", "mb_support"),
        ("spec.actions[1].else[0].to[0]", "user", "u_alice"),
        ("spec.actions[1].else[0].cc[0]", "user", "u_bob"),
    ]


def test_plain_text_that_looks_like_a_reference_is_not_one() -> None:
    """A 'user:...' string in free text or data is not a reference: only typed fields are."""
    action = ACTIONS["channel.post"] | {"text": "ask user:u_alice"}
    workflow = load_workflow(make(actions=[action, ACTIONS["set"] | {"vars": {"who": "user:u_bob"}}]))
    assert iter_refs(workflow) == [("spec.actions[0].channel", "channel", "C024BE91L")]


def test_schema_marks_references() -> None:
    """The JSON schema marks reference fields with x-wfc-ref, so tools find them without regexes."""
    defs = json_schema()["$defs"]
    assert defs["EmailTrigger"]["properties"]["mailbox"]["x-wfc-ref"] == "mailbox"
    assert defs["ChannelPostAction"]["properties"]["channel"]["x-wfc-ref"] == "channel"
    assert "object_type" in json.dumps(defs["RecordCreateAction"]["properties"]["entity"])


# -- workflow-level rules ----------------------------------------------------------------------


def test_duplicate_action_id_points_at_the_duplicate() -> None:
    """Action ids are unique across the workflow, if-branches included; the error is at the second id."""
    nested = ACTIONS["if"] | {"then": [{"id": "pause", "type": "wait", "duration": "5m"}]}
    assert issues(make(actions=[ACTIONS["wait"], nested])) == [
        (
            "spec.actions[1].then[0].id",
            (
                "duplicate action id 'pause' (first used at spec.actions[0].id; "
                "ids must be unique in the workflow, including if-branches)"
            ),
        )
    ]


def test_duplicate_action_id_at_top_level() -> None:
    """Two top-level actions with one id are refused at the second one."""
    [(where, message)] = issues(make(actions=[ACTIONS["wait"], ACTIONS["set"] | {"id": "pause"}]))
    assert where == "spec.actions[1].id"
    assert message.startswith("duplicate action id 'pause'")


@pytest.mark.parametrize(
    ("action", "where"),
    [
        (ACTIONS["email.send"] | {"subject": "Hi {{ record.title }"}, "spec.actions[0].subject"),
        (ACTIONS["record.create"] | {"set": {"a": {"b": ["ok", "{{ x + }}"]}}}, "spec.actions[0].set.a.b[1]"),
        (ACTIONS["http.request"] | {"headers": {"X": "{{ x }"}}, "spec.actions[0].headers.X"),
    ],
)
def test_bad_template_syntax(action: dict[str, Any], where: str) -> None:
    """A string with {{ that Jinja2 cannot parse is refused where it is, with Jinja2's reason."""
    [(found, message)] = issues(make(actions=[action]))
    assert found == where
    assert "is not a valid template: unexpected" in message


def test_conditions_must_be_templates() -> None:
    """A when/condition without {{ is a constant (always true), so it is refused."""
    assert issues(make(TRIGGERS["record"] | {"when": "record.priority == 'urgent'"})) == [
        (
            "spec.trigger.when",
            '"record.priority == \'urgent\'" is not a template (write the condition as "{{ ... }}")',
        )
    ]


def test_http_request_rules() -> None:
    """A URL must be http(s) or a template, and json and body exclude each other."""
    assert issues(make(actions=[ACTIONS["http.request"] | {"url": "ftp://x.test/a"}])) == [
        (
            "spec.actions[0].url",
            "'ftp://x.test/a' is not an http(s) URL (use http://, https:// or a template)",
        )
    ]
    assert issues(make(actions=[ACTIONS["http.request"] | {"body": "raw"}])) == [
        ("spec.actions[0].body", "use either json or body, not both")
    ]
    assert issues(make(actions=[ACTIONS["http.request"] | {"url": "{{ vars.base }}/x", "json": None}])) == []


def test_non_string_key_in_data() -> None:
    """A mapping key in set data must be a string, so that the values are JSON."""
    assert issues(make(actions=[ACTIONS["record.create"] | {"set": {1: "x"}}])) == [
        ("spec.actions[0].set.1", "key 1 must be a string (quote it)")
    ]


def test_data_values_become_json() -> None:
    """An unquoted YAML date in set data is kept as ISO text; a YAML set is refused."""
    action = ACTIONS["record.create"] | {"set": {"due": datetime.date(2026, 1, 5)}}
    workflow = load_workflow(make(actions=[action]))
    assert workflow.normalized()["spec"]["actions"][0]["set"] == {"due": "2026-01-05"}
    assert issues(make(actions=[ACTIONS["set"] | {"vars": {"x": {1, 2}}}])) == [
        ("spec.actions[0].vars.x", "set values are not allowed here (use strings, numbers, lists, maps)")
    ]


def test_calls_and_iter_actions_include_nested_actions() -> None:
    """calls() names every workflow.call target and iter_actions() walks depth-first into branches."""
    nested = ACTIONS["if"] | {
        "then": [ACTIONS["workflow.call"] | {"id": "a", "workflow": "page-on-call"}],
        "else": [ACTIONS["workflow.call"] | {"id": "b"}],
    }
    workflow = load_workflow(make(actions=[ACTIONS["workflow.call"], nested, ACTIONS["wait"]]))
    assert workflow.calls() == {"notify-managers", "page-on-call"}
    assert [action.id for action in workflow.iter_actions()] == ["sub", "check", "a", "b", "pause"]


def test_normalized_fills_defaults() -> None:
    """Writing a default explicitly (or an optional as null) normalizes equal to leaving it out."""
    request = {"id": "call", "type": "http.request", "url": "https://crm.acme.test/x"}
    bare_if = {"id": "c", "type": "if", "condition": "{{ x }}", "then": [ACTIONS["wait"]]}
    short = make(TRIGGERS["schedule"], [ACTIONS["email.send"], request, bare_if])
    long = copy.deepcopy(short)
    long["metadata"] |= {"description": None}
    long["spec"] |= {"enabled": True, "rateLimit": None}
    long["spec"]["trigger"] |= {"timezone": "Europe/Berlin"}
    long["spec"]["actions"][0] |= {"html": False, "timeout": None}
    long["spec"]["actions"][1] |= {"method": "GET", "headers": {}, "body": None, "json": None}
    long["spec"]["actions"][2] |= {"else": []}
    assert long != short
    assert load_workflow(short).normalized() == load_workflow(long).normalized()
    assert load_workflow(short).normalized()["spec"]["actions"][2]["else"] == []
    utc = make({"type": "schedule", "every": "1h"})
    assert load_workflow(utc).normalized() == load_workflow(schedule(every="1h", timezone="UTC")).normalized()


def test_field_path() -> None:
    """Locations print as dotted keys with list indices in brackets."""
    assert field_path(("spec", "actions", 2, "then", 0, "duration")) == "spec.actions[2].then[0].duration"
    assert field_path(()) == ""


def test_checked_in_schema_is_fresh() -> None:
    """schemas/workflow.v1.schema.json is exactly what the model generates (regenerate with schema_text())."""
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "the schema is stale: python -c 'from controller.model import schema_text; "
        'print(schema_text(), end="")\' > schemas/workflow.v1.schema.json'
    )
    schema = json_schema()
    assert schema["$schema"].endswith("2020-12/schema") and schema["$id"] and schema["title"]
