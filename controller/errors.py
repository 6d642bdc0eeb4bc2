"""The one exception tree of wfctl.

Every error a user can cause or meet derives from :class:`WfcError`, carries its context as
attributes, and its message says what went wrong and what to do about it::

    WfcError
    +-- UsageError          a bad argument or setting (CLI exit 2)
    |   +-- PayloadError    a request body that is not what the endpoint takes (HTTP 400)
    +-- SourceError         git: cannot open, clone, fetch or read the repository (exit 2)
    +-- DefinitionError     a workflow file is invalid: path:line:col: message (exit 1)
    +-- StoreError          the SQL store cannot be reached, migrated or written (exit 2)
    |   +-- ConflictError   another writer got there first; the caller may retry
    +-- NotFoundError       a workflow, version or execution that does not exist (exit 2)
    +-- GuardError          refused by a guard or a feature flag (exit 3)
    |   +-- RateLimited     over a workflow's spec.rateLimit: dropped and counted (HTTP 429)
    |   +-- FeatureDisabled a feature flag is off for the account (HTTP 403)
    |   +-- UnverifiedCommit    a commit failed --verify-commits: not applied
    +-- AuthError           missing or invalid credentials: API token, webhook signature (HTTP 401)
    |   +-- PermissionDenied    valid credentials without the permission needed (HTTP 403)
    +-- ExecutionError      a step failed: bad template, failed call, timeout (fails the step)
        +-- TemplateError   a placeholder could not be evaluated (names it)
        +-- TransientError  worth retrying (connection refused, 5xx, timeout)

The CLI maps the type to an exit code; the API maps it to an HTTP status. Callers catch at any
level.
"""

from __future__ import annotations

from dataclasses import dataclass


class WfcError(Exception):
    """Base of every wfctl error; ``str(error)`` is one readable line."""

    exit_code = 2

    def __init__(self, message: str, *, workflow: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.message = message
        self.workflow = workflow
        self.commit = commit

    def __str__(self) -> str:
        return self.message


class UsageError(WfcError):
    """A bad argument, option or setting."""


class PayloadError(UsageError):
    """A request body that is not what the endpoint takes: malformed JSON, a wrong shape."""


class SourceError(WfcError):
    """The git source cannot be opened, cloned, fetched or read."""


class StoreError(WfcError):
    """The SQL store cannot be reached, migrated or written."""


class ConflictError(StoreError):
    """Another writer changed the store since this one read it; retrying is safe."""


class NotFoundError(WfcError):
    """A workflow, version or execution that does not exist."""


class GuardError(WfcError):
    """Refused by a guard (work in flight) or a feature flag."""

    exit_code = 3


class RateLimited(GuardError):
    """Over a workflow's ``spec.rateLimit``; the trigger was dropped and counted.

    ``retry_after`` is the number of seconds until the window has room again.
    """

    def __init__(self, message: str, *, workflow: str, retry_after: int):
        super().__init__(message, workflow=workflow)
        self.retry_after = retry_after


class FeatureDisabled(GuardError):
    """A feature flag is off for the account: ``<what> is|are disabled for account A (feature flag F)``."""

    def __init__(self, message: str, *, flag: str):
        super().__init__(message)
        self.flag = flag


class UnverifiedCommit(GuardError):
    """A commit that ``--verify-commits`` refuses (unsigned, unknown key, not an account's signer); ``commit``
    names it, ``reason`` is the ``SourceVerified`` condition's reason. Nothing of the pass is applied."""

    def __init__(self, message: str, *, commit: str, reason: str):
        super().__init__(message, commit=commit)
        self.reason = reason


class AuthError(WfcError):
    """Credentials are missing or not valid: an API token, a webhook signature or its timestamp."""


class PermissionDenied(AuthError):
    """Valid credentials that lack the permission an operation needs; ``permission`` names it."""

    def __init__(self, message: str, *, permission: str, workflow: str | None = None):
        super().__init__(message, workflow=workflow)
        self.permission = permission


class ExecutionError(WfcError):
    """A step failed; the message is what the execution's trace shows. Not retried by default.

    ``failure`` is its class (a :class:`controller.model.statuses.Failure` value) for metrics:
    given where the error is raised, else the class's default.
    """

    exit_code = 1
    default_failure = "action"

    def __init__(self, message: str, *, failure: str | None = None, workflow: str | None = None):
        super().__init__(message, workflow=workflow)
        self.failure = failure or self.default_failure


class TemplateError(ExecutionError):
    """A ``{{ … }}`` placeholder could not be evaluated; the message names the placeholder."""

    default_failure = "template"


class TransientError(ExecutionError):
    """A failure worth retrying (connection refused, timeout, HTTP 429/5xx) under ``retry``."""

    default_failure = "network"


@dataclass(frozen=True)
class Problem:
    """One located problem in a workflow file: ``path:line:col: message``.

    ``line`` and ``column`` are 1-based; 0 means the whole file (no better place is known).
    ``field`` is the dotted field path (``spec.actions[2].duration``) or "" for the file itself.
    """

    path: str
    line: int
    column: int
    message: str
    field: str = ""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.column}" if self.line else self.path
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {what}"


class DefinitionError(WfcError):
    """One or more workflow files are invalid; each problem is located in its file."""

    exit_code = 1

    def __init__(self, problems: list[Problem], *, workflow: str | None = None, commit: str | None = None):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in problems), workflow=workflow, commit=commit)
