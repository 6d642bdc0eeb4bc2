"""The states of executions and steps, the decisions of admission, and the sets they fall into.

One module, so that "is it finished?" and "is it in flight?" are asked the same way everywhere
(the engine, the restore guard, the API filters, the CLI choices). The members are ``StrEnum``s:
they compare equal to the strings the store keeps, and go into SQL and JSON as those strings.
"""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    """``queued -> running -> (waiting <-> running) -> succeeded | failed | terminated``."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TERMINATED = "terminated"


class StepStatus(StrEnum):
    RUNNING = "running"
    WAITING = "waiting"  # a durable wait, a retry back-off or a called workflow
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Decision(StrEnum):
    """What admission made of a trigger (the record timeline shows these)."""

    STARTED = "started"  # admitted: an execution was queued
    FILTERED = "filtered"  # the trigger's ``when`` was false (or could not be evaluated)
    DROPPED = "dropped"  # over the rate limit: dropped and counted
    REFUSED = "refused"  # a guard said no: unknown, deleted, no valid version, disabled, suspended


class Failure(StrEnum):
    """Why an execution did not succeed: a small closed set, so metrics can count by it.

    Derived from the error where it is raised (:class:`controller.errors.ExecutionError.failure`),
    never by reading its message.
    """

    TEMPLATE = "template"  # a {{ … }} placeholder could not be evaluated
    HTTP_4XX = "http_4xx"  # an HTTP call or channel post answered 4xx (or a status outside expect_status)
    HTTP_5XX = "http_5xx"  # it answered 429 or 5xx (after the retries)
    TIMEOUT = "timeout"  # a call timed out
    NETWORK = "network"  # a call could not connect (refused, DNS, TLS)
    SMTP = "smtp"  # the mail server refused, or could not be reached
    GUARD = "guard"  # refused by a guard: an inactive directory entry, a call not admitted, a disabled workflow
    ACTION = "action"  # the action could not do its job with its inputs (no recipient, no such record, bad URL)
    CALL = "call"  # a called workflow did not succeed
    CANCELLED = "cancelled"  # terminated by an operator
    INTERNAL = "internal"  # a bug: an action raised something unexpected


FINAL: frozenset[ExecutionStatus] = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.TERMINATED})
IN_FLIGHT: frozenset[ExecutionStatus] = frozenset({ExecutionStatus.RUNNING, ExecutionStatus.WAITING})
ACTIVE: frozenset[ExecutionStatus] = IN_FLIGHT | {ExecutionStatus.QUEUED}  # not finished yet
ORDER: tuple[ExecutionStatus, ...] = tuple(ExecutionStatus)  # lifecycle order, for listings
NAMES: tuple[str, ...] = tuple(s.value for s in ORDER)  # as plain strings: CLI choices, API filters


def ordered(statuses: frozenset[ExecutionStatus]) -> tuple[ExecutionStatus, ...]:
    """The set in lifecycle order (stable SQL ``IN`` lists and messages)."""
    return tuple(s for s in ORDER if s in statuses)
