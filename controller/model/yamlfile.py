"""YAML (or JSON) files read with every problem at ``path:line:col``, and the limits every such file meets.

Small files (the directory, the configuration) are parsed here with the fast safe loader; only when
pydantic refuses the content is the text parsed again with the round-trip loader, to place each
problem (as the workflow loader does).

Every reader of a file someone else wrote (workflows, their tests, directory, configuration, bindings)
goes through :func:`decode` and :func:`shape_problem` before the C parser sees the text. The C
composer recurses once per level without any guard, so a 30,000-deep list overflows the stack and
kills the process; and aliases let a few hundred bytes stand for billions of nodes, which whatever
walks the result afterwards (validation, hashing, the engine) would expand. Both are refused from
the text and the C parser's event stream, which is flat: neither recurses nor expands aliases.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.cyaml import CBaseLoader, CParser
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from controller.errors import DefinitionError, Problem
from controller.model.base import LOCATED_ERROR
from controller.model.issues import describe
from controller.model.paths import Loc, field_path, node_position

UnknownKey = Callable[[Loc], str]

MAX_FILE_BYTES = 1 << 20  # 1 MiB, a definition (workflow, tests): the largest real workflow is a few KiB
MAX_DATA_FILE_BYTES = 25 << 20  # a data file (directory, configuration): what the API accepts as a body
MAX_NESTING = 100  # levels of lists and maps; a workflow needs about ten
MAX_ALIAS_NODES = 10_000  # nodes that aliases may add to a file once expanded


def parse(text: str, path: str, *, max_bytes: int = MAX_DATA_FILE_BYTES) -> Any:
    """The data in ``text`` (``.json`` files as JSON, the rest as YAML); DefinitionError on a syntax error
    or a limit (size, nesting, aliases)."""
    _check_size(text, path, max_bytes)
    if path.lower().endswith(".json"):
        problem = shape_problem(text, path)  # JSON is YAML's flow style: the same depth and the same limit
        if problem is not None:
            raise DefinitionError([problem])
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DefinitionError([Problem(path, e.lineno, e.colno, f"JSON syntax error: {e.msg}")]) from None
        except RecursionError:  # the json module guards its recursion: an error, not a crash
            raise DefinitionError([Problem(path, 1, 1, _nesting_message())]) from None
    try:
        return safe_load(text, path)
    except MarkedYAMLError as e:
        raise DefinitionError([syntax_problem(path, e)]) from None
    except YAMLError as e:
        raise DefinitionError([Problem(path, 1, 1, f"YAML error: {e}")]) from None


def syntax_problem(path: str, error: MarkedYAMLError) -> Problem:
    """A YAML syntax error at its place, in words."""
    mark = error.problem_mark or error.context_mark
    what = error.problem or "YAML syntax error"
    if error.context and error.context not in what:
        what = f"{what} ({error.context})"
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return Problem(path, line, col, f"YAML syntax error: {what}")


# -- limits ------------------------------------------------------------------------------------

_fast_yaml = YAML(typ="safe", pure=False)


def decode(data: bytes, path: str, *, max_bytes: int = MAX_FILE_BYTES) -> str:
    """A file's bytes as text; DefinitionError when it is too large, binary, or not UTF-8.

    The size is checked before anything is decoded, so a huge file costs nothing more than its read.
    """
    _check_size(data, path, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _place_of(data, e.start)
        what = "binary, not text" if b"\0" in data else "not UTF-8 text"
        raise DefinitionError([Problem(path, line, col, f"the file is {what} ({e.reason} at byte {e.start}); "
                                                        f"save it as UTF-8 YAML, or move it out of the folder")]) from None
    if "\0" in text:
        line, col = _place_of(data, data.index(b"\0"))
        raise DefinitionError([Problem(path, line, col, "the file is binary, not text (a NUL byte); save it as "
                                                        "UTF-8 YAML, or move it out of the folder")])
    return text


def safe_load(text: str, path: str) -> Any:
    """``text`` through the C safe loader once :func:`shape_problem` finds it safe to give it.

    DefinitionError for a limit; ruamel's YAMLError (to be located by the caller) for a syntax error.
    """
    problem = shape_problem(text, path)
    if problem is not None:
        raise DefinitionError([problem])
    data = _plain_load(text)
    if data is not _NOT_PLAIN:
        return data
    try:
        return _fast_yaml.load(text)
    except RecursionError:  # a last guard (nothing within the limits gets here): fail this file only
        raise DefinitionError([Problem(path, 1, 1, _nesting_message())]) from None
    except TypeError as e:  # ruamel's constructor hashing a key that holds a map: "unhashable type: 'dict'"
        raise DefinitionError([Problem(path, 1, 1, f"YAML error: a key is a map, or a list holding one ({e}); "
                                                   f"use a plain string as the key")]) from None
    except ValueError as e:  # a tagged value the constructor cannot build (!!timestamp, !!int, !!binary ...)
        raise DefinitionError([Problem(path, 1, 1, f"YAML error: {e}; write the value as plain text")]) from None


# -- the plain fast path -----------------------------------------------------------------------
#
# ruamel's "C" safe loader parses in C but resolves and builds every node in Python, through a
# versioned resolver that looks its YAML version up again for each scalar: about 0.6 ms of a
# workflow file's 0.7 ms. Most files use plain YAML only (maps, lists, untagged scalars, no
# anchors, no directives), and those :func:`_plain_load` builds straight from the C parser's
# events: the same resolver table, the same scalar constructors, about four times faster. Anything
# else (a tag, an anchor or alias, a %YAML or %TAG directive, a merge key, a timestamp, a duplicate
# or non-scalar key, a second document, any error) makes it give up, and ruamel's own loader
# decides, with its own result and its own error.

_NOT_PLAIN: Any = object()  # what :func:`_plain_load` returns for text it leaves to ruamel
_TAG = "tag:yaml.org,2002:"
# A loader built as `_fast_yaml` builds one for each file: its resolver table and its scalar
# constructors (which ask the loader for the YAML version, 1.2) are the ones a real load uses.
_reference, _reference_parser = YAML(typ="safe", pure=False).get_constructor_parser("")
_reference_parser.dispose()
_RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    first: [(str(tag), regexp) for tag, regexp in pairs] for first, pairs in _reference.versioned_resolver.items()
}
_SCALARS: dict[str, Callable[[ScalarNode], Any]] = {
    f"{_TAG}null": _reference.construct_yaml_null,
    f"{_TAG}bool": _reference.construct_yaml_bool,
    f"{_TAG}int": _reference.construct_yaml_int,
    f"{_TAG}float": _reference.construct_yaml_float,
}
# ruamel adds the resolvers listed under None to every scalar's; its 1.2 table has none, which
# lets a scalar be resolved by its first character alone.
assert None not in _RESOLVERS


class _NotPlain(Exception):
    """The text uses YAML beyond the plain subset; ruamel's loader reads it."""


def _plain_scalar(value: str) -> Any:
    """An untagged plain scalar as ruamel resolves and builds it (str, None, bool, int or float)."""
    for tag, regexp in _RESOLVERS.get(value[:1], ()):
        if regexp.match(value):
            build = _SCALARS.get(tag)
            if build is None:  # a merge key, a timestamp, '='
                raise _NotPlain
            return build(ScalarNode(tag, value))
    return value


def _plain_load(text: str) -> Any:
    """``text`` as ruamel's safe loader would give it, or :data:`_NOT_PLAIN` when the text is not plain.

    Only for text that passed :func:`shape_problem`; builds flat, from the events, without recursion.
    """
    parser = CParser(text)
    try:
        parser.get_event()  # the stream's start
        event = parser.get_event()
        if type(event) is StreamEndEvent:
            return None
        if event.version is not None or event.tags is not None:
            raise _NotPlain
        open_: list[Any] = []  # the collections being built, innermost last
        keys: list[Any] = []  # per open collection: a map's key awaiting its value, else _NOT_PLAIN
        root = None
        while True:
            event = parser.get_event()
            kind = type(event)
            if kind is ScalarEvent:
                if event.anchor is not None or event.tag is not None:
                    raise _NotPlain
                value = _plain_scalar(event.value) if event.implicit[0] else event.value
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.anchor is not None or event.tag is not None or (open_ and keys[-1] is _NOT_PLAIN
                                                                         and type(open_[-1]) is dict):
                    raise _NotPlain  # (the last: a map or list as a key)
                open_.append({} if kind is MappingStartEvent else [])
                keys.append(_NOT_PLAIN)
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                value = open_.pop()
                keys.pop()
            elif kind is DocumentEndEvent:
                break
            else:  # an alias
                raise _NotPlain
            if not open_:
                root = value
            elif type(open_[-1]) is list:
                open_[-1].append(value)
            elif keys[-1] is _NOT_PLAIN:
                if value in open_[-1]:
                    raise _NotPlain  # a duplicate key: ruamel's error
                keys[-1] = value
            else:
                open_[-1][keys[-1]] = value
                keys[-1] = _NOT_PLAIN
        if type(parser.get_event()) is not StreamEndEvent:
            raise _NotPlain  # a second document: ruamel's error
        return root
    except Exception:  # noqa: BLE001 - _NotPlain, a syntax error, a scalar its constructor refuses
        return _NOT_PLAIN
    finally:
        parser.dispose()


def shape_problem(text: str, path: str) -> Problem | None:
    """The nesting or alias limit ``text`` breaks, at its place; None when the C loader may have it.

    Cheap for a normal file (a few microseconds): when the text alone proves it nests less than
    :data:`MAX_NESTING` and defines no anchor, nothing more is done. Otherwise the C parser's events
    (flat: no recursion, no alias expansion) measure the exact depth and what the aliases expand to.
    """
    if _surely_shallow(text) and not ("&" in text and _ANCHOR.search(text)):
        return None
    return _measure(text, path)


def _surely_shallow(text: str) -> bool:
    """Whether the text alone bounds its depth by MAX_NESTING.

    Flow collections nest at most as deep as there are ``{``, and twice the ``[`` (``[a: 1]`` and
    ``[? a]`` are a list holding a map of one pair). A block collection sits at least one column
    right of its parent, except a list that is a map's value, which may share the map's column: so a
    node ``c`` columns in has at most ``2c + 3`` block collections around it, and ``c`` is at most
    the longest run of spaces and indicators (``-``, ``?``, ``:``) opening a line.
    """
    budget = MAX_NESTING - 2 * text.count("[") - text.count("{") - 3
    if budget < 0 or _other_line_breaks(text):
        return False
    deep_line = _line_prefix(budget // 2 + 1)
    return deep_line.search(text) is None and deep_line.search("\n" + text[:budget]) is None


@lru_cache(maxsize=MAX_NESTING)
def _line_prefix(columns: int) -> re.Pattern[str]:
    # Led by a literal "\n", which the regex engine finds fast (a class of breaks would cost 4x).
    return re.compile(rf"\n[ \t?:\-\ufeff]{{{columns}}}")


def _other_line_breaks(text: str) -> bool:
    """Whether lines also break where ``\n`` does not (libyaml breaks at a lone \r, NEL, LS and PS)."""
    return ("\r" in text and _LONE_CR.search(text) is not None) or any(b in text for b in "\x85\u2028\u2029")


_LONE_CR = re.compile(r"\r(?!\n)")
# An anchor opens a node: after a line start, a space, a flow indicator or a tag. ``&`` elsewhere
# (``?a=1&b=2`` in a URL) is text. Quoted ``"x &y"`` matches too, which only costs a measurement.
_ANCHOR = re.compile(r"(?:^|[\s\[{,:>\ufeff])&", re.MULTILINE)


def _measure(text: str, path: str) -> Problem | None:
    parser = CParser(text)
    open_sizes: list[list[Any]] = []  # per open collection: [nodes so far, its anchor]
    sizes: dict[str, int] = {}  # anchor -> the nodes it stands for
    added = 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if not isinstance(event, NodeEvent | CollectionEndEvent):
                continue
            if isinstance(event, CollectionStartEvent):
                if len(open_sizes) >= MAX_NESTING:
                    return _at(path, event, _nesting_message())
                open_sizes.append([1, event.anchor])
                continue
            if isinstance(event, CollectionEndEvent):
                size, anchor = open_sizes.pop()
            elif isinstance(event, AliasEvent):
                if any(anchor == event.anchor for _, anchor in open_sizes):
                    return _at(path, event, f"the alias *{event.anchor} is inside its own anchor &{event.anchor} "
                                            f"(a structure that contains itself); write the value out")
                size, anchor = sizes.get(event.anchor, 1), None
                added += size
                if added > MAX_ALIAS_NODES:
                    return _at(path, event, f"YAML aliases expand this file by more than {MAX_ALIAS_NODES} "
                                            f"values (the limit, against 'billion laughs' files); write the "
                                            f"values out, or alias smaller ones")
            else:
                size, anchor = 1, event.anchor
            if anchor is not None:
                sizes[anchor] = size
            if open_sizes:
                open_sizes[-1][0] += size
    except YAMLError:
        return None  # the loader reports the syntax error; no deeper than measured up to it
    finally:
        parser.dispose()
    return None


def _nesting_message() -> str:
    return f"the file nests deeper than {MAX_NESTING} levels (the limit); flatten it (real files need about ten)"


def _at(path: str, event: Any, message: str) -> Problem:
    return Problem(path, event.start_mark.line + 1, event.start_mark.column + 1, message)


def _check_size(data: str | bytes, path: str, max_bytes: int) -> None:
    size = len(data) if isinstance(data, bytes) else _utf8_length(data, max_bytes)
    if size > max_bytes:
        raise DefinitionError([Problem(path, 1, 1, f"the file is {size} bytes, over the limit of {max_bytes} "
                                                   f"bytes ({max_bytes / (1 << 20):g} MiB); split it into "
                                                   f"smaller files")])


def _utf8_length(text: str, limit: int) -> int:
    # At most 4 bytes a character: most texts are decided without encoding them.
    return len(text) if len(text) * 4 <= limit else len(text.encode("utf-8", "surrogatepass"))


def _place_of(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of the byte at ``offset``."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def problems(path: str, text: str, error: ValidationError, unknown_key: UnknownKey | None = None) -> list[Problem]:
    """Each of pydantic's errors as a located problem with a plain message."""
    return locate(path, text, [issue(err, unknown_key) for err in error.errors(include_url=False)])


def locate(path: str, text: str, issues: list[tuple[Loc, str]]) -> list[Problem]:
    tree = round_trip(text)
    found: list[Problem] = []
    for loc, message in issues:
        line, col = node_position(tree, loc)
        problem = Problem(path, line, col, message, field_path(loc))
        if problem not in found:
            found.append(problem)
    return found


def round_trip(text: str) -> Any:
    """``text`` through the round-trip loader, which keeps each node's ``.lc`` position (JSON is YAML too);
    None when it cannot build the tree.

    Only for text that passed :func:`shape_problem` and failed validation: slow, and stricter than the C
    loader in places (a map used as a key is a TypeError there), so any failure means "no positions".
    """
    try:
        return YAML().load(text)
    except (YAMLError, TypeError, ValueError, RecursionError):
        return None


def key_position(text: str, loc: Loc) -> tuple[int, int]:
    """1-based line and column of the key or item at ``loc`` (or its deepest existing part), from the C
    composer's nodes: about 15 times faster than :func:`round_trip` on a large file, and builds no values.

    Only for text that passed :func:`shape_problem` (the C composer recurses per level).
    """
    loader = CBaseLoader(text)
    try:
        node = loader.get_single_node()
    except YAMLError:
        return 1, 1
    finally:
        loader.dispose()
    line, col = 1, 1
    for part in loc:
        if isinstance(node, MappingNode):
            pair = next(((k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == part), None)
            if pair is None:
                break
            mark, node = pair[0].start_mark, pair[1]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            mark = node.start_mark
        else:
            break
        line, col = mark.line + 1, mark.column + 1
    return line, col


def issue(error: ErrorDetails, unknown_key: UnknownKey | None = None) -> tuple[Loc, str]:
    loc, kind, ctx, value = tuple(error["loc"]), error["type"], error.get("ctx") or {}, error["input"]
    if kind == LOCATED_ERROR:
        return (*loc, *ctx["wfc_path"]), str(ctx["wfc_message"])
    if kind in ("value_error", "assertion_error"):
        return loc, str(ctx["error"])
    if kind == "extra_forbidden":
        return loc, unknown_key(loc) if unknown_key else f"unknown key {str(loc[-1])!r}"
    if kind == "missing":
        return loc[:-1], f"missing required key {loc[-1]!r}"
    if kind == "literal_error":
        return loc, f"{value!r} is not one of: {ctx.get('expected', '')}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return loc, f"expected a mapping (key: value), got {describe(value)}"
    if kind in PLAIN:
        return loc, PLAIN[kind].format(got=describe(value), **ctx)
    return loc, error["msg"]


PLAIN = {
    "string_type": "expected a string, got {got} (quote it)",
    "int_type": "expected a whole number, got {got}",
    "int_parsing": "not a whole number, got {got}",
    "bool_type": "expected true or false, got {got}",
    "bool_parsing": "not a boolean (use true or false), got {got}",
    "list_type": "expected a list, got {got}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
}
