"""The whole document: ``apiVersion: workflows/v1``, ``kind: Workflow``, metadata and spec.

Rules that span actions (ids unique across nested branches) live here; rules that span files
(call targets exist, no call cycles, references resolve) belong to ``controller.reconcile``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, model_validator

from controller.model.actions import Action, IfAction, WorkflowCallAction
from controller.model.base import ContractModel, located
from controller.model.durations import Duration
from controller.model.entries import Email
from controller.model.names import Name
from controller.model.paths import Loc, field_path
from controller.model.templates import Text
from controller.model.triggers import Trigger

API_VERSION = "workflows/v1"
KIND = "Workflow"


class Metadata(ContractModel):
    """Who the workflow is: its name (the file stem) and what it is for."""

    name: Name
    """The workflow's name: the file stem, lowercase letters, digits and '-'."""
    description: Text | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    """Free-form key/value labels, e.g. team: support."""
    owner: Email | None = None
    """The e-mail address told when the controller suspends it; else the author of its current version's commit."""


class RateLimit(ContractModel):
    """At most ``max`` executions ``per`` period; triggers beyond it are dropped and counted."""

    max: int = Field(ge=1)
    per: Duration


class Concurrency(ContractModel):
    """At most ``limit`` executions running or waiting at once; ``behavior`` says what a trigger beyond it does."""

    limit: int = Field(ge=1)
    """How many executions of the workflow may be running or waiting at once."""
    behavior: Literal["queue", "drop", "cancel-oldest"] = "queue"
    """Over the limit: queue (the new execution starts when one ends), drop (the trigger is dropped and
    counted, as over a rate limit) or cancel-oldest (the oldest execution is terminated to make room)."""


class Spec(ContractModel):
    """What starts the workflow and what it does."""

    enabled: bool = True
    """A disabled workflow is applied and versioned but its trigger does not fire."""
    trigger: Trigger
    rate_limit: RateLimit | None = Field(default=None, alias="rateLimit")
    """Optional; the account default applies otherwise."""
    concurrency: Concurrency | None = None
    """Optional; without it any number of executions run at once."""
    actions: list[Action] = Field(min_length=1)
    """The steps, run in order."""


def _walk(actions: list[Action], loc: Loc) -> Iterator[tuple[Loc, Action]]:
    for index, action in enumerate(actions):
        here = (*loc, index)
        yield here, action
        if isinstance(action, IfAction):
            yield from _walk(action.then, (*here, "then"))
            yield from _walk(action.else_, (*here, "else"))


class Workflow(ContractModel):
    """One business-automation workflow, as written in ``workflows.d/<account>/<name>.yaml``."""

    api_version: Literal["workflows/v1"] = Field(alias="apiVersion")
    kind: Literal["Workflow"]
    metadata: Metadata
    spec: Spec

    @model_validator(mode="after")
    def _unique_action_ids(self) -> Workflow:
        first: dict[str, Loc] = {}
        for loc, action in self.iter_actions_with_loc():
            if action.id in first:
                raise located(
                    f"duplicate action id {action.id!r} (first used at {field_path((*first[action.id], 'id'))}; "
                    "ids must be unique in the workflow, including if-branches)",
                    *loc,
                    "id",
                )
            first[action.id] = loc
        return self

    @property
    def name(self) -> str:
        """``metadata.name``."""
        return self.metadata.name

    def iter_actions_with_loc(self) -> Iterator[tuple[Loc, Action]]:
        """Every action, depth-first in document order, with its place (``('spec', 'actions', 2, 'then', 0)``)."""
        return _walk(self.spec.actions, ("spec", "actions"))

    def iter_actions(self) -> Iterator[Action]:
        """Every action depth-first in document order: an ``if``, then its ``then``, then its ``else``."""
        return (action for _, action in self.iter_actions_with_loc())

    def calls(self) -> set[str]:
        """The names of the workflows this one calls with ``workflow.call``, nested ones included."""
        return {a.workflow for a in self.iter_actions() if isinstance(a, WorkflowCallAction)}

    def normalized(self) -> dict[str, Any]:
        """The definition as plain JSON data with every default filled and unset optionals left out.

        Two files that differ only in writing a default explicitly, in key order or in quoting
        normalize equal, so they are the same version.
        """
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
