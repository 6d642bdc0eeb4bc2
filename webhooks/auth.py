"""Bearer tokens on the JSON API: who calls, with which permissions, in which account.

``@requires("workflow.read")`` authenticates the request (401 without a valid token), checks the
permission (403 naming it; any one of several when more are given) and leaves the token in
:func:`caller`. :func:`own` keeps a token inside its account: another account's workflows,
executions and records answer 404, exactly as if they did not exist.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request

from controller.errors import NotFoundError
from controller.security import tokens
from controller.security.tokens import Token
from webhooks.context import services

View = TypeVar("View", bound=Callable[..., Any])


def requires(*permissions: str) -> Callable[[View], View]:
    """Decorate a view: a valid token with one of ``permissions``; the OpenAPI document reads them."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authenticate().require(*permissions)
            return view(*args, **kwargs)

        wrapper.permissions = permissions  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def authenticate() -> Token:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    bearer = value.strip() if scheme.lower() == "bearer" else None
    with services().store.read() as conn:
        token = tokens.verify(conn, bearer)
    g.wfc_token = token
    return token


def caller() -> Token:
    token: Token = g.wfc_token
    return token


def own(account: str, what: str | None = None) -> None:
    """NotFoundError unless ``account`` is the caller's; ``what`` is the message a missing thing gets."""
    token = caller()
    if account != token.account:
        raise NotFoundError(what or f"no account {account!r} here: this token belongs to account {token.account!r}")


def actor() -> str:
    """The audit trail's name for the caller."""
    token = caller()
    return f"{token.user} (API token {token.name or token.id})"
