"""JSON Schema fragments generated from the registries, so ``bnn config-schema`` knows
every installed binarizer, model and dataset together with its options."""

from __future__ import annotations

from typing import Any

from bnn_core.params import params_model
from bnn_core.plugins import REGISTRIES


def registry_json_schema(kind: str) -> dict[str, Any]:
    """A schema accepting a registered ``kind`` name or ``{name: ..., <option>: value}``,
    with one variant per registered component listing its options."""
    registry = REGISTRIES[kind]
    variants: list[dict[str, Any]] = [{"type": "string", "enum": registry.names()}]
    for entry in registry.entries():
        try:
            options = params_model(entry.load()).model_json_schema()
        except Exception:  # an option type without a JSON form, or a broken import
            options = {}
        variants.append(
            {
                "type": "object",
                "title": entry.name,
                "description": entry.summary,
                "properties": {"name": {"const": entry.name}, **options.get("properties", {})},
                "required": ["name", *options.get("required", [])],
                "additionalProperties": options.get("additionalProperties", False),
            }
        )
    return {
        "description": f"A registered {kind}: its name, or its name and options",
        "anyOf": variants,
    }


class RegistrySchema:
    """Pydantic annotation that produces :func:`registry_json_schema` at schema time."""

    def __init__(self, kind: str, nullable: bool = False) -> None:
        self.kind = kind
        self.nullable = nullable

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = registry_json_schema(self.kind)
        if self.nullable:
            schema["anyOf"].append({"type": "null"})
        return schema
