"""Property: checking a template block by block answers as parsing the whole string does.

:func:`controller.model.templates.template_problem` accepts a string of plain text and brace-free
``{{ ... }}`` blocks when each block parses alone, and parses the whole string otherwise. For text
built from Jinja's own pieces (blocks, statements, comments, quotes, stray braces, line breaks) the
answer, message included, is the one a parse of the whole string gives.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.model import templates


def _whole(text: str) -> str | None:
    """The answer before blocks were checked one by one: a string without "{{" is text, else it is parsed."""
    return templates._parse_problem.__wrapped__(text) if "{{" in text else None


PIECES = ["{{", "}}", "{{ ", " }}", "{%", "%}", "{#", "#}", "{", "}", "record.id", "x", " ", "\n", "'", '"', "(", ")",
          "[", "]", "|", " | default('')", "upper", "~", "+", "-", "not", "if", "for", "in", "and", "1", ".", ",", ":",
          "loop", "recursive", "endfor", "Hello ", "{{ record.title }}", "{{ steps['a'].output }}", "{{ x }", "{{ }}"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=14).map("".join))
def test_block_by_block_answers_as_the_whole_parse(text: str) -> None:
    assert templates.template_problem(text) == _whole(text)


@pytest.mark.parametrize("text", [
    "{{ 'a }} b' }}", "{{ (a }} b) }}", "{{{ x }}", "{ {{ x }}", "a }} b {{ c }}", "{{ x }}{%", "{# c #}{{ x }}",
    "{{ x }}\n{{ y + }}", "{{- x -}}", "{{ not }}", "{{ for }}", '{{ "}}" }}', "{{ {'a': 1} }}", "{{ }}",
])
def test_the_corner_cases_answer_as_the_whole_parse(text: str) -> None:
    assert templates.template_problem(text) == _whole(text)


def test_a_common_template_is_valid_block_by_block() -> None:
    assert templates._valid_by_blocks("Re: {{ record.title }} ({{ vars.count | default(0) }})")
    assert not templates._valid_by_blocks("{% if x %}{{ y }}{% endif %}")
