"""The pydantic model of the YAML contract: ``apiVersion: workflows/v1``, ``kind: Workflow``.

Modules by concept, in dependency order: ``durations``, ``names``, ``templates``, ``refs``,
``entities``, ``cadence`` (cron and floors) -> ``triggers``, ``actions`` -> ``workflow`` ->
``issues`` (errors as located messages) and ``schema`` (the JSON Schema). Everything a caller needs
is re-exported here.
"""

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
