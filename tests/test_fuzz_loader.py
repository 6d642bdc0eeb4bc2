"""Property: whatever bytes a workflow file holds, the loader answers with a model or with located problems.

`loader.load` never raises and never crashes the process, for random bytes and text, for YAML built from
nested maps, lists and scalars (shared values become anchors and aliases), for a valid workflow with a
part replaced by such data, and for deep nesting written every way YAML allows. The text-only proof of
shallowness that lets normal files skip the measurement is checked against libyaml's own events.

The default run keeps the example count modest; ``pytest --hypothesis-profile=long`` goes deeper.
"""

from __future__ import annotations

import copy
import io
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.cyaml import CParser
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent

from controller.model import yamlfile
from controller.reconcile.loader import Loaded, WorkflowPath, load

WHERE = WorkflowPath("workflows.d/acme/fuzz.yaml", "acme", "fuzz")
BASE: dict[str, Any] = {
    "apiVersion": "workflows/v1",
    "kind": "Workflow",
    "metadata": {"name": "fuzz", "labels": {"team": "x"}},
    "spec": {
        "trigger": {"type": "record", "entity": "ticket", "events": ["created"]},
        "actions": [
            {"id": "a", "type": "set", "vars": {"v": 1}},
            {"id": "b", "type": "if", "condition": "{{ true }}", "then": [{"id": "c", "type": "wait", "duration": "1m"}]},
        ],
    },
}
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _answered(loaded: Loaded) -> None:
    """A valid model and no problems, or no model and problems that each say where (line and column >= 1)."""
    assert isinstance(loaded, Loaded)
    if loaded.workflow is not None:
        assert loaded.problems == () and loaded.content_hash
        return
    assert loaded.problems
    for problem in loaded.problems:
        assert problem.path == WHERE.path and problem.message
        assert problem.line >= 1 and problem.column >= 1, problem


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
                    st.sampled_from(["{{ record.id }}", "5m", "created", "ticket", "", "~", "-", "&a", "*a", "!!str"]))
keys = st.one_of(st.sampled_from(["id", "type", "then", "else", "vars", "actions", "spec", "name", "<<"]),
                 st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(keys, inner, max_size=4)), max_leaves=25)


def _dump(value: Any, flow: bool | None) -> str:
    yaml = YAML()
    yaml.default_flow_style = flow
    out = io.StringIO()
    yaml.dump(value, out)
    return out.getvalue()


@st.composite
def shared(draw: st.DrawFn) -> Any:
    """A value where one part appears several times: the dumper writes it once as an anchor, then aliases."""
    part = draw(st.one_of(st.lists(scalars, min_size=1, max_size=3), st.dictionaries(keys, scalars, min_size=1)))
    return draw(st.lists(st.one_of(st.just(part), values), min_size=2, max_size=6))


@st.composite
def mutated_workflow(draw: st.DrawFn) -> str:
    """The valid BASE with one part (a key, an action, a field) replaced by arbitrary or shared data."""
    document = copy.deepcopy(BASE)
    replacement = draw(st.one_of(values, shared()))
    target = draw(st.sampled_from(["metadata", "spec", "trigger", "action", "vars", "then", "root"]))
    if target == "root":
        document = replacement
    elif target in ("metadata", "spec"):
        document[target] = replacement
    elif target == "trigger":
        document["spec"]["trigger"] = replacement
    elif target == "action":
        document["spec"]["actions"][draw(st.integers(0, 1))] = replacement
    elif target == "vars":
        document["spec"]["actions"][0]["vars"] = {"v": replacement}
    else:
        document["spec"]["actions"][1]["then"] = replacement
    return _dump(document, draw(st.sampled_from([None, True, False])))


# Ways YAML nests: block lists and complex keys on one line, maps by indentation, flow brackets, mixed.
NESTERS = ["- ", "? ", "- ? ", "[", "{a: ", "- [", "? [", "{? ", "&x [", "!!seq [", "- &y ", "- !!map "]


@st.composite
def deep_text(draw: st.DrawFn) -> str:
    depth = draw(st.integers(1, 400))
    nester = draw(st.sampled_from([*NESTERS, "indent-map", "indent-seq", "crlf", "nel"]))
    if nester == "indent-map":
        body = "".join(" " * i + "k:\n" for i in range(depth)) + " " * depth + "x\n"
    elif nester == "indent-seq":
        body = "".join(" " * i + ("k:\n" if i % 2 == 0 else "-\n") for i in range(depth)) + " " * depth + "x\n"
    elif nester in ("crlf", "nel"):
        brk = "\r\n" if nester == "crlf" else "\x85"
        body = brk.join(" " * i + "- k:" for i in range(0, 2 * depth, 2)) + " x"
    else:
        body = nester * depth + "x" + draw(st.sampled_from(["", "]" * depth, "}" * depth]))
    prefix = draw(st.sampled_from(["", "spec:\n  actions:\n    - ", "\ufeff", "a: 1\r"]))
    return prefix + body


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_random_bytes_and_text_get_an_answer(data: bytes) -> None:
    """Random bytes and text: a model or located problems, never an exception."""
    _answered(load(WHERE, data))


@FUZZ
@given(st.one_of(values, shared()), st.sampled_from([None, True, False]))
def test_arbitrary_yaml_data_gets_an_answer(value: Any, flow: bool | None) -> None:
    """Nested maps, lists and scalars, with anchors and aliases, in block or flow style."""
    _answered(load(WHERE, _dump(value, flow).encode()))


@FUZZ
@given(mutated_workflow())
def test_a_workflow_with_a_part_replaced_gets_an_answer(text: str) -> None:
    """A real workflow with a key, an action or a value replaced by arbitrary data, aliases included."""
    _answered(load(WHERE, text.encode()))


@FUZZ
@given(deep_text())
def test_deep_nesting_written_any_way_gets_an_answer(text: str) -> None:
    """Up to 400 levels in every way YAML nests: refused at the limit or loaded, never a crash."""
    loaded = load(WHERE, text.encode())
    _answered(loaded)
    if _depth(text) > yamlfile.MAX_NESTING:
        assert loaded.workflow is None


@FUZZ
@given(st.one_of(deep_text(), mutated_workflow(), st.text(alphabet=" -?:[]{}\n\r\t&*!ak,#'\"|>", max_size=200)))
def test_the_text_only_proof_of_shallowness_never_lets_a_deep_file_through(text: str) -> None:
    """Whenever the cheap text check says a file is shallow, libyaml's events agree: at most MAX_NESTING levels."""
    if yamlfile._surely_shallow(text):
        assert _depth(text) <= yamlfile.MAX_NESTING


def _depth(text: str) -> int:
    """The deepest level libyaml's (flat) event stream reaches, up to a syntax error if there is one."""
    parser, depth, deepest = CParser(text), 0, 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, CollectionStartEvent):
                depth += 1
                deepest = max(deepest, depth)
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
    except YAMLError:
        pass
    finally:
        parser.dispose()
    return deepest
