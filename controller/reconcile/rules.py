"""Cross-file rules of an account (pure): every ``workflow.call`` target exists, no call cycles,
and, once the account's directory is loaded, every reference names an active directory entry.
No literal URL of an ``http.request`` (nor a referenced channel's webhook) is a cloud metadata
address: the outbound-call guard refuses those whatever the configuration allows, so such a
definition can never work (:func:`outbound_problems`).

Judged on the state of the account at one commit: the workflows whose file exists there (valid or
not) and their calls. A problem is reported on the workflow proposing the offending call or
reference, at that field.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from controller.errors import Problem
from controller.model import iter_refs
from controller.model.entries import DirectoryEntry, check_refs
from controller.outbound import METADATA, OutboundPolicy, OutboundRefused, static_refusal
from controller.reconcile.loader import Loaded, locate


def call_problems(
    account: str, graph: Mapping[str, tuple[str, ...]], proposals: Mapping[str, Loaded]
) -> dict[str, list[Problem]]:
    """Problems per proposed key; ``graph`` maps every present workflow name to its calls."""
    problems: dict[str, list[Problem]] = {}
    for key, loaded in proposals.items():
        if not loaded.ok:
            continue
        name = key.split("/", 1)[1]
        found: list[Problem] = []
        cycle = cycle_through(name, graph)
        for loc, target in call_sites(loaded.content):
            if target not in graph:
                message = f"calls workflow {account}/{target}, which does not exist in account {account!r}"
                found.append(locate(loaded, loc, message))
            elif cycle and cycle[1] == target:
                found.append(locate(loaded, loc, "call cycle: " + " -> ".join(cycle)))
        if found:
            problems[key] = found
    return problems


def ref_problems(account: str, entries: Mapping[str, DirectoryEntry], proposals: Mapping[str, Loaded]
                 ) -> dict[str, list[Problem]]:
    """Problems per proposed key for references missing from, or inactive in, the account's directory."""
    problems: dict[str, list[Problem]] = {}
    for key, loaded in proposals.items():
        if loaded.ok:
            assert loaded.workflow is not None, f"{key}: references are judged on the model (loaded without_model?)"
            refs = list(iter_refs(loaded.workflow))
            found = check_refs(refs, entries, account)
            found += [(path, f"{kind}:{ref_id}'s webhook_url: {message}") for path, kind, ref_id in refs
                      if kind == "channel" and (message := _never_allowed(_webhook(entries, f"{kind}:{ref_id}")))]
            if found:
                problems[key] = [locate(loaded, parse_field_path(path), message) for path, message in found]
    return problems


def outbound_problems(proposals: Mapping[str, Loaded]) -> tuple[dict[str, list[Problem]], dict[str, list[Problem]]]:
    """Per key, literal ``http.request`` URLs the outbound guard refuses: those it refuses whatever the
    configuration says (cloud metadata: problems), and those it refuses by default, which an account's
    ``outbound.allow`` could allow (``wfctl validate`` shows those as warnings).

    Judged without DNS, by the guard's own function: literal addresses in every spelling,
    ``localhost`` and the metadata names; a URL holding a placeholder is judged at run time.
    """
    never: dict[str, list[Problem]] = {}
    by_default: dict[str, list[Problem]] = {}
    for key, loaded in proposals.items():
        if not loaded.ok:
            continue
        for loc, action in actions(loaded.content):
            url = action.get("url")
            if action.get("type") != "http.request" or not isinstance(url, str) or "{{" in url:
                continue
            refused = _refusal(url)
            if refused is not None:
                found = never if refused.rule == METADATA else by_default
                found.setdefault(key, []).append(locate(loaded, (*loc, "url"), str(refused)))
    return never, by_default


def _refusal(url: str) -> OutboundRefused | None:
    """What the guard says of ``url`` under the default policy, from the URL alone."""
    return static_refusal(url, OutboundPolicy()) if url else None


def _webhook(entries: Mapping[str, DirectoryEntry], ref: str) -> str:
    entry = entries.get(ref)
    return str(entry.data.get("webhook_url") or "") if entry is not None else ""


def _never_allowed(url: str) -> str | None:
    refused = _refusal(url)
    return str(refused) if refused is not None and refused.rule == METADATA else None


def parse_field_path(path: str) -> tuple[str | int, ...]:
    """``spec.actions[3].then[0].channel`` -> ``("spec", "actions", 3, "then", 0, "channel")``."""
    return tuple(int(part) if part.isdigit() else part for part in re.findall(r"[^.\[\]]+", path))


def call_sites(content: Mapping[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """``(loc, target)`` of every ``workflow.call`` in a normalized definition, nested ones too."""
    for loc, action in actions(content):
        if action.get("type") == "workflow.call":
            yield (*loc, "workflow"), action["workflow"]


def actions(content: Mapping[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Mapping[str, Any]]]:
    """``(loc, action)`` of every action in a normalized definition, those in ``then``/``else`` too."""
    yield from _walk(content.get("spec", {}).get("actions", []), ("spec", "actions"))


def _walk(items: list[Any], loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Mapping[str, Any]]]:
    for index, action in enumerate(items):
        here = (*loc, index)
        yield here, action
        for branch in ("then", "else"):
            if isinstance(action.get(branch), list):
                yield from _walk(action[branch], (*here, branch))


def cycle_through(start: str, graph: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The shortest call path from ``start`` back to itself (``[a, b, a]``), or [] if none."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in graph.get(node, ()):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if target not in previous and target in graph:
                previous[target] = node
                queue.append(target)
    return []
