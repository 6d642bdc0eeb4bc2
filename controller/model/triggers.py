"""Triggers: what starts an execution. A workflow has exactly one; ``type`` picks the shape.

Floors are part of validation, not of the scheduler: a schedule that can fire more often than every
5 minutes, or an inactivity period under 15 minutes, is an invalid workflow.
"""

from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from controller.model.base import ContractModel, located
from controller.model.cadence import check_cron, check_every, check_inactivity, time_zone
from controller.model.durations import Duration, parse_duration
from controller.model.entities import EntityType
from controller.model.refs import MailboxRef
from controller.model.templates import Condition

RecordEvent = Literal["created", "updated", "deleted"]


def _no_duplicates(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise located(f"{what} {value!r} is listed twice", index)
        seen.add(value)
    return values


class RecordTrigger(ContractModel):
    """Runs when a record of one entity type is created, updated or deleted."""

    type: Literal["record"]
    entity: EntityType
    """The record type to watch."""
    events: list[RecordEvent] = Field(min_length=1)
    """Which changes start a run: created, updated, deleted."""
    when: Condition | None = None
    """Only run when this template is true, e.g. {{ record.priority == 'urgent' }}."""

    @field_validator("events")
    @classmethod
    def _events_once(cls, events: list[str]) -> list[str]:
        return _no_duplicates(events, "event")


class ScheduleTrigger(ContractModel):
    """Runs on a schedule: a 5-field crontab or a fixed interval; at most every 5 minutes."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["cron"]}, {"required": ["every"]}]})

    type: Literal["schedule"]
    cron: str | None = None
    """A 5-field crontab (minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5'."""
    every: Duration | None = None
    """A fixed interval instead of cron, e.g. 15m."""
    timezone: str = "UTC"
    """The IANA time zone the cron fields are read in, e.g. Europe/Berlin."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        time_zone(name)
        return name

    @model_validator(mode="after")
    def _one_cadence_above_floor(self) -> ScheduleTrigger:
        if self.cron is None and self.every is None:
            raise located("a schedule needs cron or every (e.g. cron: '0 9 * * 1-5', or every: 1h)")
        if self.cron is not None and self.every is not None:
            raise located("use either cron or every, not both", "every")
        try:
            if self.cron is not None:
                check_cron(self.cron, self.timezone)
            elif self.every is not None:
                check_every(self.every, parse_duration(self.every))
        except ValueError as error:
            raise located(str(error), "cron" if self.cron is not None else "every") from None
        return self


class WebhookTrigger(ContractModel):
    """Runs on an HMAC-signed POST to /hooks/<account>/<name>; the JSON body is the trigger payload."""

    type: Literal["webhook"]


class ManualTrigger(ContractModel):
    """Runs when a user presses "Run workflow" on a record of one of these types."""

    type: Literal["manual"]
    entities: list[EntityType] = Field(min_length=1)
    """The record types whose pages offer the workflow."""

    @field_validator("entities")
    @classmethod
    def _entities_once(cls, entities: list[str]) -> list[str]:
        return _no_duplicates(entities, "entity")


class InactivityTrigger(ContractModel):
    """Runs when a record has not changed for a while; at least 15 minutes."""

    type: Literal["inactivity"]
    entity: EntityType
    """The record type to watch."""
    after: Duration
    """How long a record must stay unchanged, e.g. 30m; at least 15m."""
    when: Condition | None = None
    """Only run when this template is true."""

    @field_validator("after")
    @classmethod
    def _above_floor(cls, after: str) -> str:
        check_inactivity(after, parse_duration(after))
        return after


class EmailTrigger(ContractModel):
    """Runs for each message that arrives in a shared mailbox of the account."""

    type: Literal["email"]
    mailbox: MailboxRef
    """The mailbox to watch, mailbox:<id>."""
    when: Condition | None = None
    """Only run when this template is true, e.g. {{ 'invoice' in trigger.subject | lower }}."""


Trigger = Annotated[
    RecordTrigger | ScheduleTrigger | WebhookTrigger | ManualTrigger | InactivityTrigger | EmailTrigger,
    Field(discriminator="type"),
]
"""Exactly one trigger; ``type`` picks the shape."""

TRIGGER_TYPES: tuple[str, ...] = tuple(
    typing.get_args(cls.model_fields["type"].annotation)[0]
    for cls in typing.get_args(typing.get_args(Trigger)[0])
)
