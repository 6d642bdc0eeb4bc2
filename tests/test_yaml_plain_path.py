"""Property: the plain fast path of :mod:`controller.model.yamlfile` gives what ruamel's safe loader gives.

``_plain_load`` builds plain YAML straight from libyaml's events and leaves everything else to
ruamel. For any text within the limits it either declines (``_NOT_PLAIN``) or returns a value equal
to ruamel's, type for type (``1`` is not ``True``, ``1.0`` is not ``1``); where ruamel raises, it
declines. Checked on data dumped every way, on a workflow with a part replaced, on text drawn from
YAML's indicators, and on the corner cases by name (1.1 booleans, octals, timestamps, merge keys,
tags, anchors, directives, duplicate and non-scalar keys, several documents).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML
from test_fuzz_loader import FUZZ, _dump, mutated_workflow, shared, values
from wfyaml import workflow

from controller.model import yamlfile


def _typed(value: Any) -> Any:
    """``value`` with every scalar's type spelled out, so that equal means the same data."""
    if isinstance(value, dict):
        return ("map", [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("seq", [_typed(v) for v in value])
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    return (type(value).__name__, value)


def _agrees(text: str) -> None:
    if yamlfile.shape_problem(text, "t.yaml") is not None:
        return  # over a limit: neither loader sees it
    fast = yamlfile._plain_load(text)
    try:
        expected = YAML(typ="safe", pure=False).load(text)
    except Exception:  # noqa: BLE001 - whatever ruamel raises, the fast path must leave it to ruamel
        assert fast is yamlfile._NOT_PLAIN, text
        return
    if fast is not yamlfile._NOT_PLAIN:
        assert _typed(fast) == _typed(expected), text


CORNERS = [
    "", "# only a comment\n", "---\n", "---\n...\n", "~", "null", "a:\n", "a: ~\nb: null\nc: Null\nd: NULL\n",
    "a: yes\nb: no\nc: on\nd: off\ne: y\nf: True\ng: FALSE\nh: tRue\n",
    "a: 010\nb: 0o10\nc: 0x1F\nd: 0b101\ne: 1_000\nf: -0\ng: +12\nk: '12'\nl: -0o17\nm: 0_7\n", "h: 0x_\n", "i: 0o_\n",
    "j: 0b_\n", "j: _\n", "j: -_\n",
    "a: 1.0\nb: 1e3\nc: .5\nd: -.inf\ne: .NaN\nf: 1_0.5\ng: 6.8523015e+5\nh: 190:20:30.15\ni: 1.\n",
    "a: 2025-01-03\nb: 2001-12-14t21:59:43.10-05:00\nc: 2025-1-3\n",
    "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", "a: &x 1\nb: *x\n", "<<: {a: 1}\n", "= : 1\na: =\n",
    "a: !!str 1\nb: !!int '2'\nc: ! 3\nd: !custom x\n", "!!map {a: 1}\n", "%YAML 1.1\n---\na: yes\nb: 010\n",
    "%YAML 1.2\n---\na: 1\n", "%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n",
    "a: 1\na: 2\n", "1: a\ntrue: b\n", "1: a\n1.0: b\n", ".nan: a\n.nan: b\n", "? [a, b]\n: c\n", "? {a: 1}\n: c\n",
    "[a, b]: c\n", "a: 1\n---\nb: 2\n", "--- 1\n--- 2\n", "- a\n- - b\n  - {c: [d, {e: f}]}\n",
    "a: |\n  text\n  more\nb: >-\n  folded\n  text\nc: 'single ''q'''\nd: \"double \\u00e9 \\n\"\n",
    "\ufeffa: 1\n", "a: 1\r\nb: 2\r\n", "a: [1, 2\n", "a: b: c\n", "a:\n- 1\n - 2\n", "'a': \"b\"\n",
    "? a\n? b\n", "{a, b: }\n", "[a: 1, ? b]\n", "- !!binary aGk=\n", "- !!timestamp 2025-01-03\n", "a: -\n",
    "&a [*a]\n", "*unknown\n", "a: 1 # comment\n# tail\n", "a: 'x' # c\n", "k: \"\\x00\"\n", "k: 0o8\n", "k: 09\n",
]


@pytest.mark.parametrize("text", CORNERS)
def test_the_fast_path_agrees_with_ruamel_on_the_corner_cases(text: str) -> None:
    _agrees(text)


@FUZZ
@given(values, st.sampled_from([None, True, False]))
def test_the_fast_path_agrees_on_data_dumped_any_way(value: Any, flow: bool | None) -> None:
    _agrees(_dump(value, flow))


@FUZZ
@given(st.one_of(mutated_workflow(), shared().map(lambda value: _dump(value, None))))
def test_the_fast_path_agrees_on_workflows_with_a_part_replaced_and_on_aliases(text: str) -> None:
    _agrees(text)


@FUZZ
@given(st.lists(st.sampled_from(["a", "1", "0o7", "1.5", "yes", "~", ":", ": ", "- ", "\n", "  ", "[", "]", "{", "}",
                                 ",", "?", "&x ", "*x", "!!str ", "<<", "'", '"', "#", "|", ">", "---\n", "=",
                                 "2025-01-03", "%YAML 1.1\n", "\t", "\r"]), max_size=30).map("".join))
def test_the_fast_path_agrees_on_text_made_of_yaml_indicators(text: str) -> None:
    _agrees(text)


def test_a_workflow_file_takes_the_fast_path() -> None:
    text = workflow("fast")
    assert yamlfile.shape_problem(text, "t.yaml") is None
    loaded = yamlfile._plain_load(text)
    assert loaded is not yamlfile._NOT_PLAIN
    assert _typed(loaded) == _typed(YAML(typ="safe", pure=False).load(text))
