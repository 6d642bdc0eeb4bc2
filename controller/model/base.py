"""The shared base of every model of the YAML contract, and the located-error helper.

Every model forbids unknown keys (a typo must never be ignored), is frozen (a validated definition
is a value), strict (``enabled: "yes"`` is a mistake, not a boolean) and reads and writes the YAML
key names (``rateLimit``, ``else``, ``json``), never the Python attribute names.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

#: The error type of :func:`located`; :mod:`controller.model.issues` recognises it.
LOCATED_ERROR = "wfc_located"


class ContractModel(BaseModel):
    """Base class of all models of ``apiVersion: workflows/v1``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        # Field docstrings are the schema's descriptions: controller.model.schema reads them when it is made.
    )


def located(message: str, *path: str | int) -> PydanticCustomError:
    """An error whose place is ``path`` below the value being validated.

    Pydantic locates a validator's error at the validated value itself; a model validator that
    finds a duplicate id three levels down, or a template error inside a ``set`` mapping, appends
    the rest of the way here so that :func:`~controller.model.issues.validation_issues` can point at
    the exact key.
    """
    # The message is passed through ctx rather than the template so that braces in it ("{{") are
    # never mistaken for placeholders by pydantic's formatting.
    return PydanticCustomError(
        LOCATED_ERROR, "{wfc_message}", {"wfc_path": tuple(path), "wfc_message": message}
    )
