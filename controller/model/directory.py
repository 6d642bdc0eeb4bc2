"""The account directory file: ``wfctl directory load FILE --account A`` (YAML or JSON).

The host application owns the directory (users, mailboxes, channels, custom object types and their
status); this file is how it is pushed into the store. :func:`parse_directory` turns the text into
:class:`~controller.model.entries.DirectoryEntry` values or raises
:class:`~controller.errors.DefinitionError` with every problem located at ``path:line:col``, the
way workflow files are reported.

Every section is optional, but a file without a single entry is refused: replacing an account's
directory with nothing is almost always a truncated file, not an intent.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from controller.errors import DefinitionError, Problem
from controller.model import yamlfile
from controller.model.base import located
from controller.model.entries import DirectoryEntry, Email
from controller.model.paths import Loc
from controller.model.refs import REF_ID_PATTERN

__all__ = ["Channel", "DirectoryFile", "Mailbox", "ObjectType", "Smtp", "User", "parse_directory"]

SECTIONS = {"users": "user", "mailboxes": "mailbox", "channels": "channel", "object_types": "object_type"}
"""File section -> the directory kind its entries have."""

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_ENV_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def _check_id(value: str) -> str:
    if not value or not set(value) <= _ID_CHARS or len(value) > 200:
        raise ValueError(f"{value!r} is not an id (use 1-200 of: letters, digits, '_', '.', '-'; "
                         f"pattern {REF_ID_PATTERN})")
    return value


def _check_url(value: str) -> str:
    if not value.startswith(("https://", "http://")) or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not a webhook URL (use https://...)")
    return value


def _check_env(value: str) -> str:
    if not value or not set(value) <= _ENV_CHARS or value[0].isdigit():
        raise ValueError(f"{value!r} is not an environment variable name (use e.g. ACME_SMTP_PASSWORD)")
    return value


def _check_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Id = Annotated[str, AfterValidator(_check_id)]
Status = Literal["active", "deactivated", "deleted", "disconnected"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Entry(_Model):
    id: Id
    name: str = ""
    status: Status = "active"


class User(_Entry):
    """``user:<id>``: someone mail can go to (``to: user:u_alice``) and who may run workflows."""

    email: Email
    permissions: list[str] = Field(default_factory=list)


class Smtp(_Model):
    """How a ``kind: smtp`` mailbox sends. The password is read from ``password_env`` at send time."""

    host: Annotated[str, AfterValidator(_check_text)]
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False  # implicit TLS (usually port 465); turns starttls off unless it is set
    username: str | None = None
    password_env: Annotated[str, AfterValidator(_check_env)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _ssl_implies_no_starttls(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("ssl") is True and "starttls" not in data:
            return {**data, "starttls": False}
        return data

    @model_validator(mode="after")
    def _one_tls_mode(self) -> Smtp:
        if self.ssl and self.starttls:
            raise located("use either ssl: true (implicit TLS, port 465) or starttls: true (port 587), "
                          "not both", "ssl")
        return self


class Mailbox(_Entry):
    """``mailbox:<id>``: a shared mailbox; ``kind: outbox`` writes .eml files instead of sending."""

    address: Email
    kind: Literal["smtp", "outbox"] = "smtp"
    smtp: Smtp | None = None

    @model_validator(mode="after")
    def _smtp_iff_kind_smtp(self) -> Mailbox:
        if self.kind == "smtp" and self.smtp is None:
            raise located("kind smtp needs an smtp block (host, port, ...); or use kind: outbox to write "
                          ".eml files under the data directory")
        if self.kind == "outbox" and self.smtp is not None:
            raise located("an outbox mailbox does not send: remove the smtp block or set kind: smtp", "smtp")
        return self


class Channel(_Entry):
    """``channel:<id>``: a chat channel, posted to through its incoming-webhook URL."""

    webhook_url: Annotated[str, AfterValidator(_check_url)]


class ObjectType(_Entry):
    """``object_type:<id>``: a custom record type of the account."""


class DirectoryFile(_Model):
    """The whole file: one list per kind, ids unique within a kind."""

    users: list[User] = Field(default_factory=list)
    mailboxes: list[Mailbox] = Field(default_factory=list)
    channels: list[Channel] = Field(default_factory=list)
    object_types: list[ObjectType] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> DirectoryFile:
        for section in SECTIONS:
            seen: dict[str, int] = {}
            for index, entry in enumerate(getattr(self, section)):
                if entry.id in seen:
                    raise located(f"duplicate id {entry.id!r} (already used by {section}[{seen[entry.id]}]); "
                                  f"ids must be unique per kind", section, index, "id")
                seen[entry.id] = index
        return self

    def entries(self) -> list[DirectoryEntry]:
        """Every entry, users first, in file order; ``data`` is all but id, name and status."""
        return [_entry(kind, item) for kind, item in self._items()]

    def _items(self) -> Iterator[tuple[str, _Entry]]:
        for section, kind in SECTIONS.items():
            for item in getattr(self, section):
                yield kind, item


def _entry(kind: str, item: _Entry) -> DirectoryEntry:
    data = item.model_dump(mode="json", exclude={"id", "name", "status"}, exclude_none=True)
    return DirectoryEntry(kind=kind, id=item.id, name=item.name, status=item.status, data=data)


# -- parsing -----------------------------------------------------------------------------------


def parse_directory(text: str, path: str) -> list[DirectoryEntry]:
    """The entries of a directory file, or DefinitionError with every problem at ``path:line:col``.

    ``.json`` files are read as JSON, everything else as YAML.
    """
    raw = yamlfile.parse(text, path)
    if raw is None or raw == {}:
        raise DefinitionError([Problem(path, 1, 1, _EMPTY)])
    if not isinstance(raw, dict):
        raise DefinitionError([Problem(path, 1, 1, f"expected a mapping with {_KEYS}, the file is a "
                                                   f"{type(raw).__name__}")])
    try:
        entries = DirectoryFile.model_validate(raw).entries()
    except ValidationError as e:
        raise DefinitionError(yamlfile.problems(path, text, e, _unknown_key)) from None
    if not entries:
        raise DefinitionError([Problem(path, 1, 1, _EMPTY)])
    return entries


_KEYS = ", ".join(SECTIONS)
_EMPTY = f"the directory file has no entries (give at least one of: {_KEYS})"




# -- pydantic errors as messages ---------------------------------------------------------------





def _unknown_key(loc: Loc) -> str:
    model = _model_at(loc[:-1])
    key = str(loc[-1])
    if model is None:
        return f"unknown key {key!r}"
    allowed = sorted(model.model_fields)
    message = f"unknown key {key!r} (allowed: {', '.join(allowed)})"
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"{message}; did you mean {close[0]!r}?" if close else message


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` (list indices are skipped)."""
    model: type[BaseModel] | None = DirectoryFile
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        model = _inner_model(field.annotation) if field else None
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found:
            return found
    return None


