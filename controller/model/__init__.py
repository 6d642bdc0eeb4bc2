"""The pydantic model of the YAML contract: ``apiVersion: workflows/v1``, ``kind: Workflow``.

Modules by concept, in dependency order: ``durations``, ``names``, ``templates``, ``refs``,
``entities``, ``cadence`` (cron and floors) -> ``triggers``, ``actions`` -> ``workflow`` ->
``issues`` (errors as located messages) and ``schema`` (the JSON Schema). Everything a caller needs
is re-exported here.

The names load lazily (PEP 562): ``from controller.model import parse_duration`` imports only
``durations``, so a command that needs one small part (``wfctl --help``, the statuses) does not pay
for pydantic and every model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller import lazy

_WHERE = {
    "ACTION_TYPES": "controller.model.actions",
    "API_VERSION": "controller.model.workflow",
    "Action": "controller.model.actions",
    "ActionId": "controller.model.names",
    "ChannelPostAction": "controller.model.actions",
    "ChannelRef": "controller.model.refs",
    "Duration": "controller.model.durations",
    "ENTITY_TYPES": "controller.model.entities",
    "EmailSendAction": "controller.model.actions",
    "EmailTrigger": "controller.model.triggers",
    "EntityType": "controller.model.entities",
    "HttpRequestAction": "controller.model.actions",
    "INACTIVITY_FLOOR_SECONDS": "controller.model.cadence",
    "IfAction": "controller.model.actions",
    "InactivityTrigger": "controller.model.triggers",
    "KIND": "controller.model.workflow",
    "Loc": "controller.model.paths",
    "MailboxRef": "controller.model.refs",
    "ManualTrigger": "controller.model.triggers",
    "Metadata": "controller.model.workflow",
    "Name": "controller.model.names",
    "ObjectTypeRef": "controller.model.refs",
    "REF_KINDS": "controller.model.refs",
    "RateLimit": "controller.model.workflow",
    "Recipients": "controller.model.refs",
    "RecordCreateAction": "controller.model.actions",
    "RecordEntity": "controller.model.entities",
    "RecordTrigger": "controller.model.triggers",
    "RecordUpdateAction": "controller.model.actions",
    "RefField": "controller.model.refs",
    "Retry": "controller.model.actions",
    "SCHEDULE_FLOOR_SECONDS": "controller.model.cadence",
    "ScheduleTrigger": "controller.model.triggers",
    "SetAction": "controller.model.actions",
    "Spec": "controller.model.workflow",
    "TRIGGER_TYPES": "controller.model.triggers",
    "Trigger": "controller.model.triggers",
    "UserRef": "controller.model.refs",
    "WaitAction": "controller.model.actions",
    "WebhookTrigger": "controller.model.triggers",
    "Workflow": "controller.model.workflow",
    "WorkflowCallAction": "controller.model.actions",
    "WorkflowName": "controller.model.names",
    "cron_min_gap": "controller.model.cadence",
    "field_path": "controller.model.paths",
    "iter_refs": "controller.model.refs",
    "json_schema": "controller.model.schema",
    "load_workflow": "controller.model.issues",
    "parse_duration": "controller.model.durations",
    "schema_text": "controller.model.schema",
    "template_problem": "controller.model.templates",
    "validation_issues": "controller.model.issues",
}

__all__ = [
    "ACTION_TYPES",
    "API_VERSION",
    "ENTITY_TYPES",
    "INACTIVITY_FLOOR_SECONDS",
    "KIND",
    "REF_KINDS",
    "SCHEDULE_FLOOR_SECONDS",
    "TRIGGER_TYPES",
    "Action",
    "ActionId",
    "ChannelPostAction",
    "ChannelRef",
    "Duration",
    "EmailSendAction",
    "EmailTrigger",
    "EntityType",
    "HttpRequestAction",
    "IfAction",
    "InactivityTrigger",
    "Loc",
    "MailboxRef",
    "ManualTrigger",
    "Metadata",
    "Name",
    "ObjectTypeRef",
    "RateLimit",
    "Recipients",
    "RecordCreateAction",
    "RecordEntity",
    "RecordTrigger",
    "RecordUpdateAction",
    "RefField",
    "Retry",
    "ScheduleTrigger",
    "SetAction",
    "Spec",
    "Trigger",
    "UserRef",
    "WaitAction",
    "WebhookTrigger",
    "Workflow",
    "WorkflowCallAction",
    "WorkflowName",
    "cron_min_gap",
    "field_path",
    "iter_refs",
    "json_schema",
    "load_workflow",
    "parse_duration",
    "schema_text",
    "template_problem",
    "validation_issues",
]


__getattr__ = lazy.exports(__name__, _WHERE)


if TYPE_CHECKING:
    from controller.model.actions import (
        ACTION_TYPES,
        Action,
        ChannelPostAction,
        EmailSendAction,
        HttpRequestAction,
        IfAction,
        RecordCreateAction,
        RecordUpdateAction,
        Retry,
        SetAction,
        WaitAction,
        WorkflowCallAction,
    )
    from controller.model.cadence import INACTIVITY_FLOOR_SECONDS, SCHEDULE_FLOOR_SECONDS, cron_min_gap
    from controller.model.durations import Duration, parse_duration
    from controller.model.entities import ENTITY_TYPES, EntityType, RecordEntity
    from controller.model.issues import load_workflow, validation_issues
    from controller.model.names import ActionId, Name, WorkflowName
    from controller.model.paths import Loc, field_path
    from controller.model.refs import (
        REF_KINDS,
        ChannelRef,
        MailboxRef,
        ObjectTypeRef,
        Recipients,
        RefField,
        UserRef,
        iter_refs,
    )
    from controller.model.schema import json_schema, schema_text
    from controller.model.templates import template_problem
    from controller.model.triggers import (
        TRIGGER_TYPES,
        EmailTrigger,
        InactivityTrigger,
        ManualTrigger,
        RecordTrigger,
        ScheduleTrigger,
        Trigger,
        WebhookTrigger,
    )
    from controller.model.workflow import API_VERSION, KIND, Metadata, RateLimit, Spec, Workflow
