"""Request-body validation against the vendored Graph v1.0 JSON Schemas (``contract/``).

Owns loading the schema files with ``importlib.resources``, the ``referencing`` registry that resolves their relative
``$ref``s, and turning the first violation into a readable message for a Graph ``BadRequest`` error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["SchemaCatalog", "catalog"]

_TYPE_PREFIX = "#microsoft.graph."


class SchemaCatalog:
    """All vendored schemas, addressable by type name (``call``) or action (``call.answer``)."""

    def __init__(self, types: dict[str, dict[str, Any]], actions: dict[str, dict[str, Any]]) -> None:
        self._types = types
        self._actions = actions
        resources_ = [
            (schema["$id"], Resource.from_contents(schema, default_specification=DRAFT202012))
            for schema in (*types.values(), *actions.values())
        ]
        self._registry: Registry[Any] = Registry().with_resources(resources_)
        self._validators: dict[str, Draft202012Validator] = {}

    @classmethod
    def load(cls) -> SchemaCatalog:
        """Read every schema shipped in ``mediabot/sandbox/contract``."""
        root = resources.files("mediabot.sandbox") / "contract"
        types: dict[str, dict[str, Any]] = {}
        actions: dict[str, dict[str, Any]] = {}
        for entry in root.iterdir():
            if entry.name.startswith("microsoft.graph.") and entry.name.endswith(".json"):
                types[entry.name.removeprefix("microsoft.graph.").removesuffix(".json")] = json.loads(
                    entry.read_text("utf-8")
                )
        for entry in (root / "actions").iterdir():
            if entry.name.endswith(".json"):
                actions[entry.name.removesuffix(".json")] = json.loads(entry.read_text("utf-8"))
        return cls(types, actions)

    def has_type(self, name: str) -> bool:
        """Whether a schema exists for ``microsoft.graph.<name>``."""
        return name in self._types

    def has_action(self, name: str) -> bool:
        """Whether a schema exists for the bound action ``<binding>.<action>``."""
        return name in self._actions

    def _validator(self, key: str, schema: dict[str, Any]) -> Draft202012Validator:
        validator = self._validators.get(key)
        if validator is None:
            validator = Draft202012Validator(schema, registry=self._registry)
            self._validators[key] = validator
        return validator

    def type_errors(self, name: str, instance: object) -> list[str]:
        """Violations of ``instance`` against the type ``microsoft.graph.<name>`` (empty when valid)."""
        return self._errors(f"type:{name}", self._types[name], instance)

    def action_errors(self, name: str, instance: object) -> list[str]:
        """Violations of an action body against ``actions/<name>.json`` (empty when valid)."""
        if not isinstance(instance, dict):
            return ["the request body must be a JSON object"]
        return self._errors(f"action:{name}", self._actions[name], instance)

    def _errors(self, key: str, schema: dict[str, Any], instance: object) -> list[str]:
        messages = [_describe(error) for error in self._validator(key, schema).iter_errors(instance)]
        # Graph types are polymorphic through @odata.type; the CSDL schema of an abstract base (mediaConfig) cannot
        # say which derived type applies, so every annotated object is also checked against its own type.
        for path, node, type_name in _annotated_objects(instance, ""):
            if type_name in self._types:
                for error in self._validator(f"type:{type_name}", self._types[type_name]).iter_errors(node):
                    messages.append(_describe(error, prefix=path))
        return messages


def _annotated_objects(instance: object, path: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    if isinstance(instance, dict):
        odata_type = instance.get("@odata.type")
        if isinstance(odata_type, str) and odata_type.startswith(_TYPE_PREFIX) and path:
            yield path, instance, odata_type.removeprefix(_TYPE_PREFIX)
        for key, value in instance.items():
            yield from _annotated_objects(value, f"{path}.{key}" if path else key)
    elif isinstance(instance, list):
        for index, value in enumerate(instance):
            yield from _annotated_objects(value, f"{path}[{index}]")


def _describe(error: ValidationError, prefix: str = "") -> str:
    where = prefix
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return f"{where or 'body'}: {error.message}"


@cache
def catalog() -> SchemaCatalog:
    """The process-wide schema catalog, loaded on first use."""
    return SchemaCatalog.load()
