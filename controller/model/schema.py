"""The JSON Schema of ``workflows/v1``, generated from the model.

Editors use it (``# yaml-language-server: $schema=...``) and so do other tools; export/import finds
account references by the ``x-wfc-ref`` marker. The checked-in copy at
``schemas/workflow.v1.schema.json`` is exactly :func:`schema_text`; a test keeps it fresh.
"""

from __future__ import annotations

import json
from typing import Any

from controller.model.workflow import Workflow

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://wfctl.example.com/schemas/workflow.v1.schema.json"


def json_schema() -> dict[str, Any]:
    """The schema of one workflow file, as a new dict each call."""
    schema = Workflow.model_json_schema(by_alias=True)
    schema["$schema"] = SCHEMA_DIALECT
    schema["$id"] = SCHEMA_ID
    schema["title"] = "wfctl Workflow (apiVersion: workflows/v1)"
    return schema


def schema_text() -> str:
    """:func:`json_schema` as the text of the checked-in file (sorted keys, 2-space indent)."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
