"""Render a Markdown reference of every CRD, as `docs/crd-reference.md`.

It walks the OpenAPI v3 schemas that `yurt_iot.api.crd` builds for `crds/`, not the pydantic models: those
schemas are what the API server enforces, so the defaults, enums, bounds, required fields and CEL rules shown
here are exactly the ones a manifest meets, and a schema keyword this module cannot render fails the build
instead of going missing from the page.

Regenerate with `python -m yurt_iot.api.reference > docs/crd-reference.md`; a test fails when the file is stale.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from yurt_iot.api.crd import build_crds

Schema = Mapping[str, Any]

REGENERATE = "python -m yurt_iot.api.reference > docs/crd-reference.md"

# Keywords that shape the tables themselves (types, nesting, the Required column) rather than a constraint.
_STRUCTURE = {
    "type",
    "format",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
}
_BOUNDS = {
    "minimum": ">= {}",
    "exclusiveMinimum": "> {}",
    "maximum": "<= {}",
    "exclusiveMaximum": "< {}",
    "multipleOf": "multiple of {}",
    "minLength": "length >= {}",
    "maxLength": "length <= {}",
    "minItems": "items >= {}",
    "maxItems": "items <= {}",
    "minProperties": "entries >= {}",
    "maxProperties": "entries <= {}",
}
_CONSTRAINTS = {"default", "enum", "pattern", *_BOUNDS, "x-kubernetes-list-type", "x-kubernetes-list-map-keys"}
_CONSTRAINTS |= {"x-kubernetes-map-type", "x-kubernetes-validations"}

_PREAMBLE = f"""\
# CRD reference

Every custom resource of yurt-iot, field by field. Generated from the models in `yurt_iot/api/` (through the
same OpenAPI schemas as `crds/`) by `{REGENERATE}`; do not edit by hand.

How to read the tables: a field path uses `[*]` for every item of a list and `.*` for every value of a map.
The API server refuses an object that lacks a required field or breaks a constraint, and fills in the defaults.
Rules are CEL expressions (`x-kubernetes-validations`) checked on create and update; a rule that uses `oldSelf`
compares with the stored object, so it only applies to updates. An object nested in a field has its own table,
linked from the field's type.
"""


def render_reference() -> str:
    """The whole reference: an index of kinds, then one chapter per served version of every CRD."""
    crds = list(build_crds())
    index = [
        (
            f"[{crd['spec']['names']['kind']}](#{_slug(crd, version['name'])})",
            _code(_api_version(crd, version)),
            crd["spec"]["scope"],
            ", ".join(_code(n) for n in crd["spec"]["names"].get("shortNames", [])),
        )
        for crd in crds
        for version in crd["spec"]["versions"]
    ]
    parts = [_PREAMBLE, _table(("Kind", "API version", "Scope", "Short names"), index)]
    parts.extend("\n".join(_chapter(crd, version)) for crd in crds for version in crd["spec"]["versions"])
    return "\n".join(parts)


def _chapter(crd: Schema, version: Schema) -> Iterator[str]:
    spec, names = crd["spec"], crd["spec"]["names"]
    schema: Schema = version["schema"]["openAPIV3Schema"]
    chapter = _slug(crd, version["name"])
    yield f'<a id="{chapter}"></a>\n\n## {names["kind"]} `{_api_version(crd, version)}`\n'
    if schema.get("description"):
        yield f"{schema['description']}\n"
    served = [f"{_code(v['name'])}{' (stored)' if v['storage'] else ''}" for v in spec["versions"]]
    facts = [
        ("CRD", _code(crd["metadata"]["name"])),
        ("Kind", f"{_code(names['kind'])} (list: {_code(names['listKind'])})"),
        ("Scope", spec["scope"]),
        ("Resource", f"{_code(names['plural'])} (singular {_code(names['singular'])})"),
        ("Short names", ", ".join(_code(n) for n in names.get("shortNames", []))),
        ("Categories", ", ".join(_code(c) for c in names.get("categories", []))),
        ("Versions served", ", ".join(served)),
        ("Subresources", ", ".join(_code(s) for s in version.get("subresources", {}))),
        ("Deprecated", version.get("deprecationWarning", "")),
    ]
    yield "".join(f"- **{key}**: {value}\n" for key, value in facts if value)
    columns = version.get("additionalPrinterColumns", [])
    if columns:
        yield "`kubectl get` columns:\n"
        rows = [
            (
                c["name"],
                c["type"],
                _code(c["jsonPath"]),
                c.get("description", ""),
                "with `-o wide`" if c.get("priority", 0) else "always",
            )
            for c in columns
        ]
        yield _table(("Column", "Type", "JSON path", "Description", "Shown"), rows)
    for path, node in _objects(schema, ""):
        yield from _section(chapter, names["kind"], path, node)


def _objects(node: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    """Every object with fields under `node` (itself included), parents before children, in field order."""
    if "properties" in node:
        yield path, node
        for name, child in node["properties"].items():
            yield from _objects(child, _join(path, name))
    elif "items" in node:
        yield from _objects(node["items"], f"{path}[*]")
    elif isinstance(node.get("additionalProperties"), Mapping):
        yield from _objects(node["additionalProperties"], f"{path}.*")


def _section(chapter: str, kind: str, path: str, node: Schema) -> Iterator[str]:
    if path:  # the top level shares the anchor and description of the chapter
        yield f'<a id="{_anchor(chapter, path)}"></a>\n\n### {_code(path)}\n'
        if node.get("description"):
            yield f"{node['description']}\n"
    else:
        yield f"### {kind} (top level)\n"
    rules = node.get("x-kubernetes-validations", [])
    if rules:
        yield "Rules:\n\n" + "".join(f"- {_rule(rule, path)}\n" for rule in rules)
    required = set(node.get("required", []))
    rows = []
    for name, child in node["properties"].items():
        field = _join(path, name)
        rows.append(
            (
                _code(field),
                _type(chapter, field, child),
                "yes" if name in required else "no",
                "; ".join(_constraints(chapter, field, child)),
                child.get("description", ""),
            )
        )
    yield _table(("Field", "Type", "Required", "Default and constraints", "Description"), rows)


def _type(chapter: str, path: str, node: Schema) -> str:
    """The type of a field as a reader says it; objects with fields link to their own table."""
    if "properties" in node:
        return f"[object](#{_anchor(chapter, path)})"
    if "items" in node:
        return f"list of {_type(chapter, f'{path}[*]', node['items'])}"
    if isinstance(node.get("additionalProperties"), Mapping):
        return f"map of string to {_type(chapter, f'{path}.*', node['additionalProperties'])}"
    kind = node.get("type", "any")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return "object (any fields)" if kind == "object" else "any"
    return f"{kind} ({node['format']})" if "format" in node else str(kind)


def _constraints(chapter: str, path: str, node: Schema) -> Iterator[str]:
    """What the API server checks or fills in for one field, its list items and map values included."""
    unknown = set(node) - _STRUCTURE - _CONSTRAINTS
    if unknown:
        raise ValueError(f"{path}: no rendering for schema keyword(s) {sorted(unknown)}")
    if "default" in node:
        yield f"default {_code(json.dumps(node['default'], ensure_ascii=False))}"
    if "enum" in node:
        yield "one of " + ", ".join(_code(json.dumps(value, ensure_ascii=False)) for value in node["enum"])
    if "pattern" in node:
        yield f"matches {_code(node['pattern'])}"
    yield from (text.format(node[key]) for key, text in _BOUNDS.items() if key in node)
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "map":
        keys = ", ".join(_code(k) for k in node.get("x-kubernetes-list-map-keys", []))
        yield f"items unique by {keys}"
    elif list_type == "set":
        yield "items unique"
    if "atomic" in (list_type, node.get("x-kubernetes-map-type")):
        yield "replaced as a whole by server-side apply"
    if "properties" in node:
        if node.get("x-kubernetes-validations"):
            yield f"rules in [its table](#{_anchor(chapter, path)})"
        return
    yield from (_rule(rule, path) for rule in node.get("x-kubernetes-validations", []))
    if "items" in node:
        yield from (f"each item: {c}" for c in _constraints(chapter, f"{path}[*]", node["items"]))
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from (f"each value: {c}" for c in _constraints(chapter, f"{path}.*", node["additionalProperties"]))


def _rule(rule: Schema, path: str) -> str:
    message = rule.get("message") or (
        f"message {_code(rule['messageExpression'])}" if "messageExpression" in rule else "refused"
    )
    text = f"rule {_code(rule['rule'])}: {message}"
    if "fieldPath" in rule:
        text += f" (reported at {_code(path + rule['fieldPath'])})"
    return text


def _api_version(crd: Schema, version: Schema) -> str:
    return f"{crd['spec']['group']}/{version['name']}"


def _slug(crd: Schema, version: str) -> str:
    return _anchor(f"{crd['spec']['names']['kind']}-{version}", "")


def _anchor(prefix: str, path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{prefix}-{path}".lower()).strip("-")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _code(text: str) -> str:
    """An inline code span that survives backticks in the text."""
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub table; a pipe in a cell (CEL's `||`, a pattern's alternatives) is escaped, even in code."""
    lines = [header, ["---"] * len(header), *rows]
    return "".join("| " + " | ".join(_cell(c) for c in line) + " |\n" for line in lines)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    sys.stdout.write(render_reference())
