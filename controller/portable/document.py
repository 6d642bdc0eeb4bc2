"""Export and import documents (pure): definitions with every account reference made a binding.

Where it sits: ``wfctl export``/``GET …/export`` read applied definitions and the directory from the
store and call :func:`export`; ``wfctl import``/``promote`` and ``POST …/imports/validate`` read a
document, the target account's directory and its existing workflows, and call :func:`plan`; the
CLI then writes the plan's files (:mod:`controller.portable.files`). Nothing here does I/O.

A reference is found from the model's typed fields (:func:`controller.model.iter_refs`) and each
``workflow.call`` target (:func:`controller.reconcile.rules.call_sites`), never by text search, and
is replaced by ``{"$binding": "<kind>-<n>"}``, numbered by first use, so the same definitions
always give the same bytes and no name carries a source id. What a binding was is kept only as a
``hint`` from the directory (a mailbox's address, a user's, channel's or object type's name).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.errors import UsageError
from controller.model import yamlfile
from controller.model.entries import DirectoryEntry
from controller.reconcile.rules import call_sites, cycle_through, parse_field_path

FORMAT = "wfctl.export/v1"
KINDS = ("user", "mailbox", "channel", "object_type", "workflow")
DROPPED_METADATA = ("owner",)  # an address of the source account: the importer sets its own


def export(definitions: Mapping[str, Mapping[str, Any]], entries: Mapping[str, DirectoryEntry],
           dependencies: bool) -> dict[str, Any]:
    """The document for ``definitions`` (name -> normalized definition, the exported one first, then
    its called workflows when ``dependencies``); ``entries`` is the source account's directory."""
    from controller.model import Workflow, iter_refs

    names: dict[tuple[str, str], str] = {}  # (kind, id) -> binding name
    bindings: dict[str, dict[str, Any]] = {}
    workflows = []
    for wf_name in sorted(definitions, key=lambda n: (n != next(iter(definitions)), n)):
        content = copy.deepcopy(dict(definitions[wf_name]))
        metadata = content.setdefault("metadata", {})
        for key in DROPPED_METADATA:
            metadata.pop(key, None)
        found = list(iter_refs(Workflow.model_validate(definitions[wf_name])))
        found += [(_path(loc), "workflow", target) for loc, target in call_sites(definitions[wf_name])
                  if not dependencies or target not in definitions]
        for path, kind, ref_id in found:
            name = names.get((kind, ref_id))
            if name is None:
                name = names[(kind, ref_id)] = f"{kind.replace('_', '-')}-{sum(k == kind for k, _ in names) + 1}"
                bindings[name] = {"name": name, "kind": kind, "hint": _hint(kind, ref_id, entries), "used_by": []}
            bindings[name]["used_by"].append(f"{wf_name}: {path}")
            _replace(content, parse_field_path(path), {"$binding": name})
        workflows.append(content)
    return {"format": FORMAT, "workflows": workflows, "bindings": list(bindings.values())}


def dumps(document: Mapping[str, Any]) -> str:
    """The document's bytes: the same definitions always give the same text."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def parse(text: str, source: str) -> dict[str, Any]:
    """A document read from ``source``; UsageError for anything that is not one (nested past the parser
    limits included: checked on the text before ``json`` recurses into it)."""
    too_deep = yamlfile.shape_problem(text, source)
    if too_deep is not None:
        raise UsageError(str(too_deep))
    try:
        document = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{source}: not a wfctl export: {e}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise UsageError(f"{source}: not a wfctl export (format {found!r}; expected {FORMAT!r})")
    workflows, bindings = document.get("workflows"), document.get("bindings")
    if not isinstance(workflows, list) or not workflows or not isinstance(bindings, list):
        raise UsageError(f"{source}: a {FORMAT} document needs a non-empty list 'workflows' and a list 'bindings'")
    for item in workflows:
        name = (item.get("metadata") or {}).get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise UsageError(f"{source}: every workflow needs metadata.name")
    for b in bindings:
        if not isinstance(b, dict) or not isinstance(b.get("name"), str) or b.get("kind") not in KINDS:
            raise UsageError(f"{source}: every binding needs a name and a kind ({', '.join(KINDS)})")
    return document


# -- import ----------------------------------------------------------------------------------------


@dataclass
class Resolution:
    """How one binding was resolved: ``target`` (``kind:id``, or a workflow name) and ``how``."""

    name: str
    kind: str
    hint: str
    target: str | None = None
    how: str = ""  # --bind, --bindings, --match name
    problem: str | None = None


@dataclass
class Plan:
    """What an import would write: file name -> definition, and every binding's resolution."""

    account: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    resolutions: list[Resolution] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.target and not r.problem for r in self.resolutions)

    def view(self) -> dict[str, Any]:
        return {"account": self.account, "ok": self.ok, "files": sorted(self.files),
                "bindings": [{"name": r.name, "kind": r.kind, "hint": r.hint, "target": r.target, "how": r.how,
                              "problem": r.problem} for r in self.resolutions],
                "problems": self.problems}


def plan(document: Mapping[str, Any], account: str, *, entries: Mapping[str, DirectoryEntry],
         existing: Mapping[str, Sequence[str]], given: Mapping[str, tuple[str, str]],
         match_names: bool = False, renames: Mapping[str, str] | None = None) -> Plan:
    """Plan the import of ``document`` into ``account``.

    ``entries`` is the target account's directory (ref -> entry), ``existing`` its workflows (name ->
    the names they call), ``given`` the explicit bindings (name -> (target, how)), ``renames`` old ->
    new workflow names. Every problem is collected (bindings open or invalid, clashes, cycles);
    nothing is decided by the first one.
    """
    renames = dict(renames or {})
    result = Plan(account)
    imported = {wf["metadata"]["name"]: wf for wf in document["workflows"]}
    unknown = sorted(set(renames) - set(imported))
    if unknown:
        result.problems.append(f"--rename {', '.join(unknown)}: no such workflow in the document "
                               f"(it has {', '.join(sorted(imported))})")
    final = {name: renames.get(name, name) for name in imported}
    for binding in document["bindings"]:
        result.resolutions.append(_resolve(binding, entries, existing, given, match_names))
    by_name = {r.name: r for r in result.resolutions}
    for old, new in final.items():
        if new in existing:
            result.problems.append(f"{new}: a workflow of that name exists in account {account!r}; import it under "
                                   f"another name with --rename {old}=NEW")
        content = copy.deepcopy(imported[old])
        content["metadata"]["name"] = new
        content.setdefault("spec", {})["enabled"] = False  # reviewed before it runs
        _bind(content, by_name, final)
        result.files[f"{new}.yaml"] = content
    graph = {**{name: tuple(calls) for name, calls in existing.items()},
             **{final[old]: tuple(target for _, target in call_sites(result.files[f"{final[old]}.yaml"])
                                  if isinstance(target, str))  # (an open binding calls nothing yet)
                for old in imported}}
    for new in final.values():
        cycle = cycle_through(new, graph)
        if cycle:
            result.problems.append(f"the import would make a workflow.call cycle: {' -> '.join(cycle)}")
            break
    return result


def _resolve(binding: Mapping[str, Any], entries: Mapping[str, DirectoryEntry],
             existing: Mapping[str, Sequence[str]], given: Mapping[str, tuple[str, str]], match: bool) -> Resolution:
    name, kind, hint = binding["name"], binding["kind"], str(binding.get("hint") or "")
    found = Resolution(name, kind, hint)
    if name in given:
        found.target, found.how = given[name]
    elif match:
        candidates = sorted(ref for ref, e in entries.items() if e.kind == kind and hint and hint in _labels(e))
        if kind == "workflow":
            candidates = [n for n in existing if n == hint]
        if len(candidates) == 1:
            found.target, found.how = candidates[0], "--match name"
        elif candidates:
            found.problem = f"{hint!r} matches {', '.join(candidates)}; choose one with --bind {name}=..."
    if found.target is None:
        found.problem = found.problem or f"open: bind it with --bind {name}={kind}:ID (hint: {hint or 'none'})"
        return found
    if kind == "workflow":
        target = found.target.removeprefix("workflow:")
        found.target = target
        if target not in existing:
            found.problem = f"{target}: no such workflow in the target account"
        return found
    ref_kind = found.target.partition(":")[0]
    entry = entries.get(found.target)
    if ref_kind != kind:
        found.problem = f"{found.target} is a {ref_kind}, not a {kind}"
    elif entry is None:
        found.problem = f"{found.target} is not in the target account's directory"
    elif not entry.active:
        found.problem = f"{found.target} is {entry.status} in the target account"
    return found


def _bind(content: Any, bindings: Mapping[str, Resolution], final: Mapping[str, str]) -> None:
    """Replace every ``{"$binding": name}`` by its target (``kind:id``; a workflow name for calls)."""

    def resolved(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"$binding"}:
            resolution = bindings.get(value["$binding"])
            return resolution.target if resolution and resolution.target else value
        _bind(value, bindings, final)
        return value

    if isinstance(content, dict):
        for key, value in list(content.items()):
            content[key] = resolved(value)
        if content.get("type") == "workflow.call" and isinstance(content.get("workflow"), str):
            content["workflow"] = final.get(content["workflow"], content["workflow"])
    elif isinstance(content, list):
        for index, value in enumerate(content):
            content[index] = resolved(value)


def _replace(content: Any, loc: tuple[str | int, ...], binding: dict[str, str]) -> None:
    """Put ``binding`` where ``loc`` points (a field holding ``kind:id``, or a call's workflow name)."""
    parent = content
    for part in loc[:-1]:
        parent = parent[part]
    parent[loc[-1]] = binding


def _path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _hint(kind: str, ref_id: str, entries: Mapping[str, DirectoryEntry]) -> str:
    if kind == "workflow":
        return ref_id
    entry = entries.get(f"{kind}:{ref_id}")
    if entry is None:
        return ""
    if kind == "mailbox":
        return str(entry.data.get("address") or entry.name)
    return entry.name


def _labels(entry: DirectoryEntry) -> set[str]:
    return {entry.name, str(entry.data.get("address") or ""), str(entry.data.get("email") or "")} - {""}
