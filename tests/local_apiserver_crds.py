"""CustomResourceDefinitions in the local API server: the resources a CRD serves, and what the API
server does to a custom object before it stores it (structural-schema semantics).

For each write of a custom object, in the API server's order:

1. pruning: fields the served version's `openAPIV3Schema` does not specify are dropped, except
   under `x-kubernetes-preserve-unknown-fields: true`; at the root only apiVersion, kind and
   metadata survive unspecified, and metadata keeps only ObjectMeta's fields. What was dropped is
   returned, so a `fieldValidation=Strict` write can be refused and any other write warned, as
   the API server does;
2. defaulting: `default` fills absent properties of objects that are present; a null where the
   schema is not `nullable` takes the default, or is dropped when there is none;
3. validation, every failure a `(field path, message)` cause in the API server's wording
   (`spec.egress[0].toPorts: Invalid value: ...`): `type` (with `nullable`,
   `x-kubernetes-int-or-string`), `required`, `enum`, `pattern` (Go regular expressions, compiled
   by RE2 through `google-re2`, the syntax Go's `regexp` implements: `\\PC` and the like work, and a
   pattern RE2 cannot compile refuses the CRD instead of going unchecked), `minLength`/`maxLength`
   (in characters), `minimum`/`maximum` (and exclusive), `multipleOf`, `minItems`/`maxItems`,
   `minProperties`/`maxProperties`, `x-kubernetes-list-type: set|map` uniqueness, `format` for
   date-time, byte, uuid, ipv4, ipv6 and cidr, `oneOf`/`anyOf`/`allOf`/`not`, and
   `x-kubernetes-validations` (CEL, evaluated with cel-python once the type and enum checks
   pass, as the API server does, which otherwise says some rules were not checked: `self`, and
   `oldSelf` on an update for transition rules, `message`/`messageExpression`/`fieldPath`/
   `reason`; the Kubernetes string extensions `substring`, `lowerAscii`, `upperAscii`, `trim`,
   `indexOf`, `lastIndexOf`, `replace`, `split`, `join` are provided).

Not checked: other `format`s (the API server checks a few more: hostname, email, mac...); CEL
rules with `optionalOldSelf`, and transition rules inside lists (their old value is not
correlated); a CEL rule calling a function cel-python lacks (the Kubernetes quantity, IP, URL or
`isSorted` libraries, for instance) is not passed over: the write fails with 500 InternalError
naming the rule, so a test meets the gap at once. CEL cost limits are not estimated. Conversion
between served versions is `None` (only apiVersion changes), whatever `spec.conversion` says.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import celpy
import re2
from celpy import celtypes

JsonObject = dict[str, Any]
Cause = tuple[str, str]

OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)


class CelUnsupported(Exception):
    """A CEL rule this local server cannot evaluate (a function cel-python does not have)."""


# --- the resources a CRD serves ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServedVersion:
    """One served version of a CRD: what discovery and routing need, and its schema."""

    crd: str
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    list_kind: str
    namespaced: bool
    status: bool
    storage_version: str
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    schema: Mapping[str, Any] = field(compare=False, hash=False)


def served_versions(crd: Mapping[str, Any]) -> list[ServedVersion]:
    """The versions a (valid) CRD serves."""
    spec = crd["spec"]
    names = spec["names"]
    versions = spec["versions"]
    storage = next(v["name"] for v in versions if v.get("storage"))
    return [
        ServedVersion(
            crd=crd["metadata"]["name"],
            group=spec["group"],
            version=v["name"],
            plural=names["plural"],
            singular=names.get("singular") or names["kind"].lower(),
            kind=names["kind"],
            list_kind=names.get("listKind") or f"{names['kind']}List",
            namespaced=spec.get("scope") == "Namespaced",
            status="status" in (v.get("subresources") or {}),
            storage_version=storage,
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            schema=(v.get("schema") or {}).get("openAPIV3Schema") or {},
        )
        for v in versions
        if v.get("served")
    ]


def crd_causes(crd: Mapping[str, Any]) -> list[Cause]:
    """What the API server refuses in a CRD beyond its OpenAPI schema: the name, the versions,
    and schemas it could not enforce (a pattern Go cannot compile, a CEL rule that does not
    parse)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    causes: list[Cause] = []
    name = (crd.get("metadata") or {}).get("name", "")
    expected = f"{names.get('plural', '')}.{spec.get('group', '')}"
    if name != expected:
        causes.append(
            ("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            (
                "spec.scope",
                f'Unsupported value: "{spec.get("scope")}": supported values: "Cluster", '
                '"Namespaced"',
            )
        )
    versions = spec.get("versions") or []
    if not versions:
        causes.append(("spec.versions", "Invalid value: null: must have exactly one version"))
    if sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            ("spec.versions", "Invalid value: ...: must have exactly one version marked as storage")
        )
    for index, version in enumerate(versions):
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        path = f"spec.versions[{index}].schema.openAPIV3Schema"
        if not isinstance(schema, dict):
            causes.append((path, "Required value: schemas are required"))
            continue
        causes.extend(_schema_causes(schema, path))
    return causes


def _schema_causes(schema: Mapping[str, Any], path: str) -> Iterator[Cause]:
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            _regexp(pattern)
        except re2.error as err:
            yield (
                f"{path}.pattern",
                f'Invalid value: "{pattern}": must be a valid regular expression, '
                f"but isn't: {err}",
            )
    for index, rule in enumerate(schema.get("x-kubernetes-validations") or []):
        try:
            _cel_program(str(rule.get("rule", "")))
        except celpy.CELParseError as err:
            yield (
                f"{path}.x-kubernetes-validations[{index}].rule",
                f"Invalid value: {json.dumps(rule.get('rule'))}: compilation failed: {err}",
            )
    for key in ("properties", "patternProperties"):
        for name, child in (schema.get(key) or {}).items():
            yield from _schema_causes(child, f"{path}.{key}[{name}]")
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            yield from _schema_causes(schema[key], f"{path}.{key}")
    for key in ("oneOf", "anyOf", "allOf"):
        for index, child in enumerate(schema.get(key) or []):
            yield from _schema_causes(child, f"{path}.{key}[{index}]")


# --- regular expressions and CEL -----------------------------------------------------------


@cache
def _regexp(pattern: str) -> Any:
    """A Go regular expression compiled by RE2 (Go's `regexp` is RE2's syntax)."""
    return re2.compile(pattern)


def _substring(text: Any, start: Any, end: Any = None) -> celtypes.StringType:
    return celtypes.StringType(str(text)[int(start) : None if end is None else int(end)])


def _index_of(text: Any, needle: Any, start: Any = 0) -> celtypes.IntType:
    return celtypes.IntType(str(text).find(str(needle), int(start)))


_CEL_EXTENSIONS: dict[str, Callable[..., Any]] = {
    "substring": _substring,
    "lowerAscii": lambda s: celtypes.StringType(
        "".join(c.lower() if c.isascii() else c for c in str(s))
    ),
    "upperAscii": lambda s: celtypes.StringType(
        "".join(c.upper() if c.isascii() else c for c in str(s))
    ),
    "trim": lambda s: celtypes.StringType(str(s).strip()),
    "indexOf": _index_of,
    "lastIndexOf": lambda s, n: celtypes.IntType(str(s).rfind(str(n))),
    "replace": lambda s, old, new, n=-1: celtypes.StringType(
        str(s).replace(str(old), str(new), int(n))
    ),
    "split": lambda s, sep: celtypes.ListType([celtypes.StringType(p) for p in str(s).split(sep)]),
    "join": lambda items, sep="": celtypes.StringType(str(sep).join(str(i) for i in items)),
}
"""The Kubernetes CEL string library's functions the corpus's rules (and their like) call."""

_CEL = celpy.Environment()


@cache
def _cel_program(rule: str) -> Any:
    return _CEL.program(_CEL.compile(rule), functions=_CEL_EXTENSIONS)


def _cel(rule: str, activation: Mapping[str, Any]) -> Any:
    program = _cel_program(rule)
    try:
        return program.evaluate({k: celpy.json_to_cel(v) for k, v in activation.items()})
    except celpy.CELEvalError as err:
        if "undeclared reference" in str(err):
            raise CelUnsupported(
                f"the local API server cannot evaluate the CEL rule {rule!r}: {err.args[0]}"
            ) from None
        raise


# --- pruning and defaulting -----------------------------------------------------------------


def prune(obj: JsonObject, schema: Mapping[str, Any]) -> list[str]:
    """Drop, in place, what `schema` does not specify; the dropped fields' paths."""
    dropped: list[str] = []
    properties = schema.get("properties") or {}
    for key in list(obj):
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata":
            metadata = obj["metadata"]
            if isinstance(metadata, dict):
                for meta_key in [k for k in metadata if k not in OBJECT_META_FIELDS]:
                    del metadata[meta_key]
                    dropped.append(f"metadata.{meta_key}")
            continue
        if key in properties:
            _prune(obj[key], properties[key], key, dropped)
        elif not schema.get("x-kubernetes-preserve-unknown-fields"):
            del obj[key]
            dropped.append(key)
    return dropped


def _prune(value: Any, schema: Mapping[str, Any], path: str, dropped: list[str]) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        for key in list(value):
            child = f"{path}.{key}"
            if properties is not None and key in properties:
                _prune(value[key], properties[key], child, dropped)
            elif isinstance(additional, dict):
                _prune(value[key], additional, f"{path}[{key}]", dropped)
            elif additional is True or preserve:
                continue
            else:
                del value[key]
                dropped.append(child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _prune(item, schema["items"], f"{path}[{index}]", dropped)


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> None:
    """Fill `default`s in place (and drop nulls the schema does not allow and cannot default)."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key in list(value):
            child = properties.get(key) or (additional if isinstance(additional, dict) else None)
            if child is None:
                continue
            if value[key] is None and not child.get("nullable"):
                if "default" in child:
                    value[key] = json.loads(json.dumps(child["default"]))
                else:
                    del value[key]
                    continue
            apply_defaults(value[key], child)
        for key, child in properties.items():
            if key not in value and "default" in child:
                value[key] = json.loads(json.dumps(child["default"]))
                apply_defaults(value[key], child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


# --- validation ------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A value in an error, as the API server quotes it (Go's %#v for scalars)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return json.dumps(value)
    return f'"{_type_of(value)}"'


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _type_ok(value: Any, schema: Mapping[str, Any]) -> bool:
    if value is None:
        return bool(schema.get("nullable"))
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    wanted = schema.get("type")
    if not wanted:
        return True
    actual = _type_of(value)
    if wanted == "number":
        return actual in ("integer", "number")
    if wanted == "integer" and isinstance(value, float):
        return value.is_integer()
    return bool(actual == wanted)


def _format_ok(value: str, fmt: str) -> bool:
    try:
        if fmt == "date-time":
            dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            return "T" in value.upper()
        if fmt == "byte":
            base64.b64decode(value, validate=True)
        elif fmt == "uuid":
            uuid.UUID(value)
        elif fmt == "ipv4":
            ipaddress.IPv4Address(value)
        elif fmt == "ipv6":
            ipaddress.IPv6Address(value)
        elif fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


_CHECKED_FORMATS = frozenset({"date-time", "byte", "uuid", "ipv4", "ipv6", "cidr"})


@dataclass(slots=True)
class Validator:
    """Validates one custom object against a served version's schema (after `prune` and
    `apply_defaults`); `old` is the stored object on an update (for CEL transition rules)."""

    causes: list[Cause] = field(default_factory=list)
    blocking: bool = False
    """A type or enum failure: the API server then leaves the CEL rules unchecked."""
    rules: list[tuple[Any, Mapping[str, Any], str, Any]] = field(default_factory=list)

    def validate(self, obj: JsonObject, schema: Mapping[str, Any], old: Any = None) -> list[Cause]:
        properties = schema.get("properties") or {}
        for key, child in properties.items():
            if key in obj and key not in ("apiVersion", "kind"):
                if key == "metadata":
                    self._metadata(obj["metadata"], child)
                else:
                    old_child = old.get(key) if isinstance(old, dict) else None
                    self._node(obj[key], child, key, old_child)
        for key in schema.get("required") or []:
            if key not in obj:
                self.causes.append((key, "Required value"))
        if schema.get("x-kubernetes-validations"):
            self.rules.append((obj, schema, "", old))
        if self.blocking and self.rules:
            self._fail(
                "",
                'Invalid value: "null": some validation rules were not checked because the '
                "object was invalid; correct the existing errors to complete validation",
            )
        else:
            for value, node, path, old_value in self.rules:
                self._rules(value, node, path, old_value)
        return self.causes

    def _metadata(self, metadata: Any, schema: Mapping[str, Any]) -> None:
        """Only name and generateName of metadata may be constrained by a CRD's schema."""
        for key in ("name", "generateName"):
            child = (schema.get("properties") or {}).get(key)
            if child is not None and isinstance(metadata, dict) and key in metadata:
                self._node(metadata[key], child, f"metadata.{key}", None)

    def _fail(self, path: str, message: str) -> None:
        self.causes.append((path or "<nil>", message))

    def _node(self, value: Any, schema: Mapping[str, Any], path: str, old: Any) -> None:
        if not _type_ok(value, schema):
            wanted = "integer or string" if schema.get("x-kubernetes-int-or-string") else None
            self.blocking = True
            self._fail(
                path,
                f'Invalid value: "{_type_of(value)}": {path} in body must be of type '
                f'{wanted or schema.get("type")}: "{_type_of(value)}"',
            )
            return
        if value is None:
            return
        if "enum" in schema and value not in schema["enum"]:
            supported = ", ".join(json.dumps(v) for v in schema["enum"])
            self.blocking = True
            self._fail(path, f"Unsupported value: {_show(value)}: supported values: {supported}")
        if isinstance(value, str):
            self._string(value, schema, path)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._number(value, schema, path)
        elif isinstance(value, list):
            self._array(value, schema, path)
        elif isinstance(value, dict):
            self._object(value, schema, path, old)
        self._combinators(value, schema, path)
        if schema.get("x-kubernetes-validations"):
            self.rules.append((value, schema, path, old))

    def _string(self, value: str, schema: Mapping[str, Any], path: str) -> None:
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            self._fail(path, f"Too long: may not be more than {schema['maxLength']} bytes")
        if "minLength" in schema and len(value) < schema["minLength"]:
            self._fail(
                path,
                f"Invalid value: {_show(value)}: {path} in body should be at least "
                f"{schema['minLength']} chars long",
            )
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and not _regexp(pattern).search(value):
            self._fail(
                path, f"Invalid value: {_show(value)}: {path} in body should match '{pattern}'"
            )
        fmt = schema.get("format")
        if fmt in _CHECKED_FORMATS and not _format_ok(value, fmt):
            self._fail(
                path,
                f"Invalid value: {_show(value)}: {path} in body must be of type {fmt}: "
                f"{json.dumps(value)}",
            )

    def _number(self, value: float, schema: Mapping[str, Any], path: str) -> None:
        shown = _show(value)
        if "maximum" in schema:
            limit = schema["maximum"]
            if schema.get("exclusiveMaximum") and value >= limit:
                self._fail(
                    path, f"Invalid value: {shown}: {path} in body should be less than {limit}"
                )
            elif value > limit:
                self._fail(
                    path,
                    f"Invalid value: {shown}: {path} in body should be less than or equal to "
                    f"{limit}",
                )
        if "minimum" in schema:
            limit = schema["minimum"]
            if schema.get("exclusiveMinimum") and value <= limit:
                self._fail(
                    path, f"Invalid value: {shown}: {path} in body should be greater than {limit}"
                )
            elif value < limit:
                self._fail(
                    path,
                    f"Invalid value: {shown}: {path} in body should be greater than or equal to "
                    f"{limit}",
                )
        step = schema.get("multipleOf")
        if step and (value / step) != int(value / step):
            self._fail(
                path, f"Invalid value: {shown}: {path} in body should be a multiple of {step}"
            )

    def _array(self, value: list[Any], schema: Mapping[str, Any], path: str) -> None:
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self._fail(
                path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items"
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            self._fail(
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minItems']} items",
            )
        list_type = schema.get("x-kubernetes-list-type")
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen: list[Any] = []
        for index, item in enumerate(value):
            identity = (
                {k: item.get(k) for k in keys}
                if list_type == "map" and isinstance(item, dict)
                else item
            )
            if list_type in ("set", "map") and identity in seen:
                self._fail(f"{path}[{index}]", f"Duplicate value: {json.dumps(identity)}")
            seen.append(identity)
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                self._node(item, items, f"{path}[{index}]", None)

    def _object(self, value: JsonObject, schema: Mapping[str, Any], path: str, old: Any) -> None:
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            self._fail(
                path,
                f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
            )
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            self._fail(
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minProperties']} properties",
            )
        for key in schema.get("required") or []:
            if key not in value:
                self._fail(f"{path}.{key}", "Required value")
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        old_map = old if isinstance(old, dict) else {}
        for key, item in value.items():
            if key in properties:
                self._node(item, properties[key], f"{path}.{key}", old_map.get(key))
            elif isinstance(additional, dict):
                self._node(item, additional, f"{path}[{key}]", old_map.get(key))

    def _combinators(self, value: Any, schema: Mapping[str, Any], path: str) -> None:
        def passes(sub: Mapping[str, Any]) -> bool:
            return not Validator()._sub(value, sub, path)

        if "oneOf" in schema and sum(passes(s) for s in schema["oneOf"]) != 1:
            self._fail(
                path,
                f"Invalid value: {_show(value)}: {path} in body must validate one and only one "
                "schema (oneOf)",
            )
        if "anyOf" in schema and not any(passes(s) for s in schema["anyOf"]):
            self._fail(
                path,
                f"Invalid value: {_show(value)}: {path} in body must validate at least one "
                "schema (anyOf)",
            )
        if "allOf" in schema and not all(passes(s) for s in schema["allOf"]):
            self._fail(
                path,
                f"Invalid value: {_show(value)}: {path} in body must validate all the schemas "
                "(allOf)",
            )
        if isinstance(schema.get("not"), dict) and passes(schema["not"]):
            self._fail(
                path,
                f"Invalid value: {_show(value)}: {path} in body must not validate the schema (not)",
            )

    def _sub(self, value: Any, schema: Mapping[str, Any], path: str) -> list[Cause]:
        """A value-validation-only schema (inside oneOf and the like) applied to `value`."""
        if "type" in schema or "x-kubernetes-int-or-string" in schema:
            self._node(value, schema, path, None)
        else:
            self._node(value, {**schema, "nullable": True}, path, None)
        return self.causes

    def _rules(self, value: Any, schema: Mapping[str, Any], path: str, old: Any) -> None:
        for rule in schema.get("x-kubernetes-validations") or []:
            text = str(rule.get("rule", ""))
            transition = "oldSelf" in text
            if rule.get("optionalOldSelf") or (transition and old is None):
                continue
            activation: dict[str, Any] = {"self": value}
            if transition:
                activation["oldSelf"] = old
            try:
                result = _cel(text, activation)
                ok = bool(result) if isinstance(result, celtypes.BoolType) else False
                error = "" if isinstance(result, celtypes.BoolType) else "not a boolean"
            except celpy.CELEvalError as err:
                ok, error = False, str(err.args[0])
            if ok:
                continue
            message = str(rule.get("message") or f"failed rule: {text}")
            if rule.get("messageExpression"):
                with contextlib.suppress(celpy.CELEvalError):
                    message = str(_cel(str(rule["messageExpression"]), activation))
            if error:
                message = f"{message} ({error})" if rule.get("message") else error
            where = path + str(rule.get("fieldPath") or "")
            reason = rule.get("reason") or "FieldValueInvalid"
            if reason == "FieldValueForbidden":
                self._fail(where, f"Forbidden: {message}")
            elif reason == "FieldValueRequired":
                self._fail(where, f"Required value: {message}")
            elif reason == "FieldValueDuplicate":
                self._fail(where, f"Duplicate value: {message}")
            else:
                self._fail(where, f'Invalid value: "{_type_of(value)}": {message}')
