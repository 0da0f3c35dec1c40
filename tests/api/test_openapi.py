"""The OpenAPI schema against seed 003, field for field, parsed from the seed's TypeScript.

`seeds/003_integrations_data_structures.txt` is a verbatim copy of the seed
(`/work/shared/seeds/003_*.txt`). Its TypeScript is what a host application codes
against, so every seed type must be a schema component of the same name, every field
present with the same type, the same requiredness and the same description, and every
string union the same enum. `WorkspaceIntegration` may add only SPEC §4's two sync-view
details and SPEC §11's lateness flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from api.schemas import IntegrationProvider, IntegrationStatus
from models.status import ApiStatus, Provider
from tests.api.conftest import Api

SEED: Final = Path(__file__).parent / "seeds" / "003_integrations_data_structures.txt"
# SPEC §4: the API view is seed 003's WorkspaceIntegration plus two sync-view details;
# SPEC §11 adds the lateness flag beside the status.
ALLOWED_EXTRAS: Final = {"WorkspaceIntegration": {"setupStatus", "qaStatus", "lateness"}}
SCALARS: Final = {"string": "string", "boolean": "boolean", "number": "number"}

_INTERFACE = re.compile(r"interface (\w+) \{(.*?)\}", re.S)
_FIELD = re.compile(r"/\*\* (.*?) \*/\s*(\w+)(\??): ([\w |\"]+);")
_UNION = re.compile(r"type (\w+) = ((?:\"\w+\"(?: \| )?)+);")


@dataclass(frozen=True)
class SeedField:
    name: str
    type: str
    optional: bool
    description: str


def seed_interfaces() -> dict[str, list[SeedField]]:
    """Each interface of the seed's TypeScript (the first of its two copies) and its fields."""
    found: dict[str, list[SeedField]] = {}
    for name, body in _INTERFACE.findall(SEED.read_text()):
        fields = [SeedField(f, t.strip(), o == "?", d) for d, f, o, t in _FIELD.findall(body)]
        found.setdefault(name, fields)
    return found


def seed_unions() -> dict[str, list[str]]:
    return {
        name: re.findall(r"\"(\w+)\"", values) for name, values in _UNION.findall(SEED.read_text())
    }


@pytest.fixture
def components(api: Api) -> dict[str, Any]:
    schemas: dict[str, Any] = api.client.get("/openapi.json").json()["components"]["schemas"]
    return schemas


def test_the_seed_parses_into_its_four_types() -> None:
    assert set(seed_interfaces()) == {"WorkspaceIntegration", "IntegrationActionResult"}
    assert set(seed_unions()) == {"IntegrationProvider", "IntegrationStatus"}
    assert len(seed_interfaces()["WorkspaceIntegration"]) == 8


@pytest.mark.parametrize("name", ["WorkspaceIntegration", "IntegrationActionResult"])
def test_each_seed_interface_is_a_component_field_for_field(
    components: dict[str, Any], name: str
) -> None:
    schema = components[name]
    seed = seed_interfaces()[name]

    assert set(schema["properties"]) == {f.name for f in seed} | ALLOWED_EXTRAS.get(name, set())
    for field in seed:
        prop = schema["properties"][field.name]
        assert (field.name in schema.get("required", [])) is not field.optional, field.name
        assert types_of(prop) == expected_types(field), field.name
        assert prop["description"] == field.description, field.name
        if field.description.startswith("ISO 8601 timestamp"):
            assert prop["format"] == "date-time", field.name


@pytest.mark.parametrize("name", ["IntegrationProvider", "IntegrationStatus"])
def test_each_seed_union_is_an_enum_component_with_the_same_values(
    components: dict[str, Any], name: str
) -> None:
    assert components[name]["type"] == "string"
    assert components[name]["enum"] == seed_unions()[name]


def test_the_wire_enums_are_the_models_enums() -> None:
    assert [p.value for p in IntegrationProvider] == [p.value for p in Provider]
    assert [s.value for s in IntegrationStatus] == [s.value for s in ApiStatus]


def types_of(prop: dict[str, Any]) -> set[str]:
    """A property's types: JSON types, and component names for references."""
    options = prop.get("anyOf", [prop])
    return {
        option["$ref"].rsplit("/", 1)[1] if "$ref" in option else option["type"]
        for option in options
    }


def expected_types(field: SeedField) -> set[str]:
    """What a seed field's TypeScript type may be in the schema: an optional one may be null."""
    wanted = {SCALARS.get(part.strip(), part.strip()) for part in field.type.split("|")}
    return wanted | {"null"} if field.optional else wanted
