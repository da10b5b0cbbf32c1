"""OpenAI's published OpenAPI document as JSON Schema validators, for checking what toolwire sends.

``validator("CreateChatCompletionResponse")`` validates against ``#/components/schemas/<name>`` of
``shared/openai-openapi/openapi.json``; ``assert_valid(name, instance)`` raises ``AssertionError`` listing
every error with its JSON path. The document is read and converted once (``functools.cache``); ``$ref``s are
resolved inside it through a ``referencing`` registry.

The document says ``openapi: 3.1.0``, so its schemas are JSON Schema draft 2020-12 (the OAS 3.1 base
dialect), and they are validated with ``Draft202012Validator``. It still carries a few things that
draft 2020-12 does not understand, and that would otherwise be silently ignored, making validation
wrong. What is converted, and why:

- ``nullable`` (an OpenAPI 3.0 keyword, used 110 times here, e.g. a stream chunk's ``choices[].logprobs``,
  ``choices[].finish_reason`` and ``usage``). JSON Schema ignores it, so ``null`` would be rejected where the
  spec means to allow it. ``nullable: true`` becomes: ``null`` added to ``type`` (and to ``enum`` when there
  is one, since an enum without ``null`` would still reject it) when the schema is a plain typed schema;
  otherwise (``$ref``, ``anyOf``/``oneOf``/``allOf``, or no ``type``) the schema becomes
  ``{"anyOf": [<the schema without nullable>, {"type": "null"}]}``. ``nullable: false`` (the default) is dropped.
- ``$recursiveAnchor`` / ``$recursiveRef`` (draft 2019-09 keywords, replaced in 2020-12; used by
  ``CompoundFilter`` and ``BetaCompoundFilter``). Draft 2020-12 ignores them, so the recursive branch would
  accept anything; ``$recursiveRef: "#"`` cannot simply become ``$ref: "#"`` either, because ``#`` would be the
  whole OpenAPI document. It becomes ``$ref`` to the component that holds the anchor
  (``#/components/schemas/CompoundFilter``), and the anchor is dropped.

- Boolean ``exclusiveMinimum`` / ``exclusiveMaximum`` (the OpenAPI 3.0 / draft 4 form, beside ``minimum`` /
  ``maximum``; in the fine-tuning hyperparameter schemas). In 2020-12 these keywords take the bound itself, and
  Python's ``True == 1`` would make ``exclusiveMinimum: true`` mean "greater than 1". ``exclusiveMinimum: true``
  with ``minimum: m`` becomes ``exclusiveMinimum: m`` (likewise for the maximum); ``false`` is dropped.
- ``required`` lists with a name twice (``ContainerResource``): deduplicated, so the schema passes the
  2020-12 metaschema (``required`` must hold unique names); it means the same.

Left as they are, because they are annotations that do not change which instances are valid:
``discriminator`` (OpenAPI: a hint for picking the ``oneOf``/``anyOf`` branch; the branches' own ``enum``s on
the property do the actual selection), ``example``, ``deprecated``, ``x-*`` extensions (``x-stainless-const``
marks one-value ``enum``s, which already validate as constants), and ``format`` (annotation-only in 2020-12;
the values here, such as ``unixtime`` and ``double``, are OpenAPI/vendor formats, so no format checker is
used). ``$ref`` siblings need nothing: in OAS 3.1 / 2020-12 they apply alongside the ``$ref`` (here they
are annotations, apart from ``nullable``, handled above). Three misspelt keywords (``optional``,
``min_items``, ``max_items``; in ``CreateTranscriptionResponseJson`` and ``GraderScoreModel``, none of which
toolwire sends) are not keywords in any draft and are ignored, as any validator of the published document
would.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[3] / "shared" / "openai-openapi" / "openapi.json"
SPEC_URI = "urn:openai-openapi"
_SCHEMAS_POINTER = "#/components/schemas/"

# Keywords whose value is one subschema / a list of subschemas / a map of name -> subschema.
_ONE = (
    "items",
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "if",
    "then",
    "else",
    "contentSchema",
)
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")
_COMPOSITE = ("$ref", "anyOf", "oneOf", "allOf", "not", "const")


@functools.cache
def spec() -> dict[str, Any]:
    """The OpenAPI document with ``components.schemas`` converted to plain draft 2020-12 (see the module doc)."""
    document = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    converted = copy.deepcopy(document)
    schemas = converted["components"]["schemas"]
    for name, schema in schemas.items():
        schemas[name] = _convert(schema, component=name)
    return converted


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(SPEC_URI, Resource(contents=spec(), specification=DRAFT202012))


@functools.cache
def validator(schema_name: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<schema_name>``, with every ``$ref`` resolved in the document."""
    schemas = spec()["components"]["schemas"]
    if schema_name not in schemas:
        raise KeyError(f"no schema {schema_name!r} in {SPEC_PATH} (components.schemas has {len(schemas)})")
    Draft202012Validator.check_schema(schemas[schema_name])
    root = {"$ref": f"{SPEC_URI}{_SCHEMAS_POINTER}{schema_name}"}
    return Draft202012Validator(root, registry=_registry())


def errors(schema_name: str, instance: Any) -> list[str]:
    """Every validation error, one line each: ``<JSON path>: <message> [schema: <keyword path>]``."""
    found = sorted(validator(schema_name).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [line for error in found for line in _describe(error, depth=0)]


def assert_valid(schema_name: str, instance: Any) -> None:
    """Raise ``AssertionError`` listing every way ``instance`` breaks ``schema_name``, each with its JSON path."""
    problems = errors(schema_name, instance)
    if problems:
        shown = json.dumps(instance, ensure_ascii=False)
        if len(shown) > 2000:
            shown = shown[:2000] + "..."
        raise AssertionError(
            f"{len(problems)} problem(s) against OpenAI's {schema_name}:\n  "
            + "\n  ".join(problems)
            + f"\ninstance: {shown}"
        )


def _describe(error: ValidationError, depth: int) -> list[str]:
    schema_path = "/".join(map(str, error.relative_schema_path))  # jsonschema leaves "$ref" hops out
    lines = [f"{'    ' * depth}{error.json_path}: {error.message} [schema: {schema_path}]"]
    # anyOf/oneOf say only "not valid under any of the given schemas": list why each branch failed.
    for sub in sorted(error.context or (), key=lambda e: list(map(str, e.schema_path))):
        lines.extend(_describe(sub, depth + 1))
    return lines


def _convert(schema: Any, *, component: str) -> Any:
    """One schema, with its subschemas, rewritten as plain draft 2020-12 (see the module docstring)."""
    if not isinstance(schema, dict):
        return schema  # boolean schemas
    out = dict(schema)
    for key in _ONE:
        if key in out:
            out[key] = _convert(out[key], component=component)
    for key in _MANY:
        if key in out:
            out[key] = [_convert(sub, component=component) for sub in out[key]]
    for key in _MAP:
        if key in out:
            out[key] = {name: _convert(sub, component=component) for name, sub in out[key].items()}

    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(exclusive), bool) and out.pop(exclusive) and bound in out:
            out[exclusive] = out.pop(bound)
    if "required" in out:
        out["required"] = list(dict.fromkeys(out["required"]))

    out.pop("$recursiveAnchor", None)
    if "$recursiveRef" in out:
        target = out.pop("$recursiveRef")
        if target != "#":
            raise ValueError(f"{component}: unexpected $recursiveRef {target!r}")
        out["$ref"] = _SCHEMAS_POINTER + component

    if "nullable" not in out:
        return out
    nullable = out.pop("nullable")
    if nullable is not True:
        return out
    kind = out.get("type")
    if kind is not None and not any(key in out for key in _COMPOSITE):
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if "null" not in kinds:
            out["type"] = [*kinds, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [out, {"type": "null"}]}
