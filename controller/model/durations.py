"""Durations as written in workflow files: ``30s``, ``15m``, ``1h``, ``2d``.

The model keeps the text as written (``60m`` stays ``60m``) so that a normalized definition is what
the author wrote; :func:`parse_duration` turns it into seconds where a number is needed.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import PlainValidator, WithJsonSchema

DURATION_PATTERN = r"^[1-9][0-9]*[smhd]$"
_DURATION = re.compile(DURATION_PATTERN)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_UNIT_NAMES = {86400: "day", 3600: "hour", 60: "minute", 1: "second"}


def duration_error(value: object) -> str:
    """The message for a value that is not a duration."""
    return f"{value!r} is not a duration (use 30s, 15m, 1h, 2d)"


def parse_duration(text: str) -> int:
    """The number of seconds in ``text`` (``"15m"`` -> 900); ValueError if it is not a duration."""
    if not isinstance(text, str) or not _DURATION.match(text):
        raise ValueError(duration_error(text))
    return int(text[:-1]) * _UNIT_SECONDS[text[-1]]


def describe_seconds(seconds: int) -> str:
    """Seconds in words for messages: ``120`` -> ``"2 minutes"``, ``90`` -> ``"90 seconds"``."""
    for size, name in _UNIT_NAMES.items():
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {name}" if count == 1 else f"{count} {name}s"
    raise AssertionError("every whole number of seconds is divisible by 1")  # pragma: no cover


def _validate(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(duration_error(value))  # noqa: TRY004  # pydantic reports only ValueError
    parse_duration(value)
    return value


Duration = Annotated[
    str,
    PlainValidator(_validate, json_schema_input_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a whole number and a unit (s, m, h, d), e.g. 30s, 15m, 1h, 2d",
            "examples": ["30s", "15m", "1h", "2d"],
        }
    ),
]
"""A duration as written: digits and one of the units s, m, h, d."""
