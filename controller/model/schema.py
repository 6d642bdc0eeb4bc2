"""The JSON Schema of ``workflows/v1``, generated from the model.

Editors use it (``# yaml-language-server: $schema=...``) and so do other tools; export/import finds
account references by the ``x-wfc-ref`` marker. The checked-in copy at
``schemas/workflow.v1.schema.json`` is exactly :func:`schema_text`; a test keeps it fresh.
"""

from __future__ import annotations

import inspect
import json
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic._internal._docs_extraction import extract_docstrings_from_cls
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from controller.model.workflow import Workflow

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://wfctl.example.com/schemas/workflow.v1.schema.json"


def json_schema() -> dict[str, Any]:
    """The schema of one workflow file, as a new dict each call."""
    schema = Workflow.model_json_schema(by_alias=True, schema_generator=_Documented)
    schema["$schema"] = SCHEMA_DIALECT
    schema["$id"] = SCHEMA_ID
    schema["title"] = "wfctl Workflow (apiVersion: workflows/v1)"
    return schema


def schema_text() -> str:
    """:func:`json_schema` as the text of the checked-in file (sorted keys, 2-space indent)."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"



class _Documented(GenerateJsonSchema):
    """Field docstrings become the fields' descriptions, read here rather than as each model class is made.

    That is what pydantic's ``use_attribute_docstrings`` does, but it parses every model's source at
    import, which every command that loads the model paid for (~15 ms); only the schema needs them.
    """

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        properties = json_schema.get("properties", {})
        cls: type[BaseModel] = schema["cls"]
        for name, field in cls.model_fields.items():
            key = next((k for k in (field.validation_alias, field.alias, name) if isinstance(k, str) and k in properties),
                       None)
            doc = _docstrings(_declaring(cls, name)).get(name)
            if key is not None and doc and field.description is None:
                properties[key]["description"] = doc
        return json_schema


def _declaring(cls: type[BaseModel], name: str) -> type:
    """The class whose body annotates field ``name``: a subclass inherits a field (and its docstring) unless it
    declares the field again."""
    return next(k for k in cls.__mro__ if name in inspect.get_annotations(k))


@cache
def _docstrings(cls: type) -> dict[str, str]:
    return extract_docstrings_from_cls(cls, use_inspect=True)
