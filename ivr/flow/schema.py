"""The JSON Schema of flow files, for editors (yaml-language-server) to complete and check.

Generated from the same models the loader validates with, so editor and server agree.
"""

from __future__ import annotations

from typing import Any

from ivr.flow.model import FlowDocument

SCHEMA_ID = "https://schemas.invalid/ivr/flow.schema.json"


def flow_json_schema() -> dict[str, Any]:
    schema = FlowDocument.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "IVR dialog flow",
    }
