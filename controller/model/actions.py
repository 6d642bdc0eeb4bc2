"""Actions: the steps of a workflow, run in order; ``type`` picks the shape, ``if`` nests.

Every action has an ``id`` (unique in its workflow, ``steps.<id>.output`` in templates) and may
have ``retry`` and ``timeout``. What an action *does* lives in ``controller.engine``; this module
only says what a well-formed one looks like.
"""

from __future__ import annotations

import typing
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from controller.model.base import ContractModel, located
from controller.model.durations import Duration
from controller.model.entities import RecordEntity
from controller.model.names import ActionId, WorkflowName
from controller.model.refs import ChannelRef, MailboxRef, Recipients
from controller.model.templates import Condition, JsonData, JsonMapping, Text


class Retry(ContractModel):
    """Retry a failed action: up to ``attempts`` runs in all, ``backoff`` apart."""

    attempts: int = Field(ge=1, le=10)
    """How many times to run the action in all, 1 to 10."""
    backoff: Duration
    """How long to wait between attempts, e.g. 30s."""


class ActionBase(ContractModel):
    """The keys every action has."""

    id: ActionId
    """Unique within the workflow; later steps read this step's output as steps.<id>.output."""
    type: str
    retry: Retry | None = None
    """Retry the action when it fails."""
    timeout: Duration | None = None
    """Give up on one attempt after this long, e.g. 30s."""


class EmailSendAction(ActionBase):
    """Send an e-mail from a shared mailbox of the account."""

    type: Literal["email.send"]
    mailbox: MailboxRef
    """The sending mailbox, mailbox:<id>."""
    to: Recipients
    """An address, a template or user:<id>, or a list of them."""
    cc: Recipients | None = None
    """Copies: an address, a template or user:<id>, or a list of them."""
    bcc: Recipients | None = None
    """Blind copies (not shown to the other recipients): an address, a template or user:<id>, or a list."""
    reply_to: Recipients | None = None
    """Where replies go (Reply-To): an address, a template or user:<id>, or a list of them."""
    subject: Text
    body: Text
    html: bool = False
    """Send the body as HTML rather than plain text."""


class ChannelPostAction(ActionBase):
    """Post a message to a chat channel of the account."""

    type: Literal["channel.post"]
    channel: ChannelRef
    """The channel, channel:<id>."""
    text: Text


class RecordCreateAction(ActionBase):
    """Create a record; its id is this step's output."""

    type: Literal["record.create"]
    entity: RecordEntity
    """A built-in entity type or object_type:<id>."""
    set: JsonMapping
    """The fields of the new record; values may be templates."""


class RecordUpdateAction(ActionBase):
    """Change fields of an existing record."""

    type: Literal["record.update"]
    entity: RecordEntity
    """A built-in entity type or object_type:<id>."""
    record_id: Text
    """The record to change, usually a template such as {{ record.id }}."""
    set: JsonMapping
    """The fields to change; values may be templates."""


class HttpRequestAction(ActionBase):
    """Call an HTTP endpoint; the status, headers and (JSON) body are this step's output."""

    type: Literal["http.request"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: Text
    """An http:// or https:// URL, or a template that gives one."""
    headers: dict[str, Text] = Field(default_factory=dict)
    json_body: JsonData = Field(default=None, alias="json")
    """A JSON body; strings in it may be templates. Not together with body."""
    body: Text | None = None
    """A text body. Not together with json."""
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(default=None, min_length=1)
    """The statuses that count as success; by default any 2xx."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if url.lstrip().startswith("{{"):
            return url  # the scheme comes from the template; the engine checks the result
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{url!r} is not an http(s) URL (use http://, https:// or a template)")
        return url

    @model_validator(mode="after")
    def _one_body(self) -> HttpRequestAction:
        if self.json_body is not None and self.body is not None:
            raise located("use either json or body, not both", "body")
        return self


class WaitAction(ActionBase):
    """Pause the execution; it resumes on time even across restarts."""

    type: Literal["wait"]
    duration: Duration
    """How long to wait, e.g. 1h."""


class IfAction(ActionBase):
    """Run ``then`` when the condition is true, otherwise ``else``."""

    type: Literal["if"]
    condition: Condition
    """A template, e.g. {{ record.status != 'closed' }}."""
    then: list[Action]
    """The actions to run when the condition is true."""
    else_: list[Action] = Field(default_factory=list, alias="else")
    """The actions to run otherwise."""


class WorkflowCallAction(ActionBase):
    """Run another workflow of the same account as a sub-workflow and wait for it."""

    type: Literal["workflow.call"]
    workflow: WorkflowName
    """The name of a workflow in the same account."""
    input: JsonMapping = Field(default_factory=dict)
    """Values the called workflow reads as trigger.input; values may be templates."""


class SetAction(ActionBase):
    """Set execution variables, read later as vars.<name>."""

    type: Literal["set"]
    vars: JsonMapping
    """Variable names and values (at least one); values may be templates."""

    @field_validator("vars")
    @classmethod
    def _not_empty(cls, values: dict[str, object]) -> dict[str, object]:
        if not values:
            raise ValueError("vars is empty (set at least one variable)")
        return values


Action = Annotated[
    EmailSendAction
    | ChannelPostAction
    | RecordCreateAction
    | RecordUpdateAction
    | HttpRequestAction
    | WaitAction
    | IfAction
    | WorkflowCallAction
    | SetAction,
    Field(discriminator="type"),
]
"""One step of a workflow; ``type`` picks the shape."""

IfAction.model_rebuild()

ACTION_TYPES: tuple[str, ...] = tuple(
    typing.get_args(cls.model_fields["type"].annotation)[0]
    for cls in typing.get_args(typing.get_args(Action)[0])
)
