"""A local stand-in implementing the subset of the Kubernetes API egress-guard calls.

Tests start it on a free loopback port and drive it through the real `kubernetes` client (with a
kubeconfig it writes), so the cluster layer is exercised down to the HTTP requests it sends. It is
generic over a small registry of resource types (`RESOURCES`) and keeps the API's semantics where
egress-guard's correctness depends on them:

- objects: create (POST), get, list (labelSelector, fieldSelector on metadata.name/namespace,
  limit/continue), replace (PUT), patch (JSON merge patch, JSON patch, and strategic merge patch
  for the lists egress-guard and its tests patch), delete (preconditions on uid/resourceVersion),
  the `status` subresource, and watch (chunked JSON lines, resuming from a resourceVersion);
- errors as the API server writes them: `Status` bodies with reason and details, 404 NotFound,
  409 AlreadyExists, 409 Conflict on a stale resourceVersion, 422 Invalid (names, labels and the
  OpenAPI schema, checked with kubernetes-validate), 400 BadRequest, 415 for server-side apply;
- `dryRun=All` validates and answers as if written, and writes nothing;
- bookkeeping: a global resourceVersion bumped on every write (and not on a no-op update), uid and
  creationTimestamp on create, `metadata.generation` that moves only when the content does, the
  `kubernetes.io/metadata.name` label on namespaces, list items without kind/apiVersion.

Simplifications, none of which egress-guard relies on: no admission, no defaulting beyond the
above, deletion is immediate (a namespace takes its objects with it), no server-side apply, no
field managers, no TLS (kubeconfig points at http://127.0.0.1).

For tests and benchmarks it records every call (`calls`, `count`), can be taken down and brought
back on the same port (`go_down`/`come_up`: connection refused), and injects faults (`Fault`:
delays, forced error statuses, dropped connections) matched by verb, resource and name. It stops
by itself after `max_lifetime_s`, so a forgotten server never outlives the test run.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import json
import re
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonpatch
import kubernetes_validate
import yaml

JsonObject = dict[str, Any]

SCHEMA_VERSION = "1.31.0"
EVENT_LOG_LENGTH = 2000
"""Watch events kept per resource type; a watch from an older resourceVersion gets 410 Gone."""
MAX_WATCH_S = 60.0
WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One resource the server serves, as discovery describes it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    generation: bool = False
    """metadata.generation starts at 1 and moves when anything outside metadata/status changes."""
    status: bool = False
    """Has a status subresource: writes to the object itself leave status alone."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """The resource as the API server names it in messages: `leases.coordination.k8s.io`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def singular(self) -> str:
        return self.kind.lower()


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, status=True),
    ResourceType("", "v1", "pods", "Pod", namespaced=True, status=True),
    ResourceType("", "v1", "events", "Event", namespaced=True),
    ResourceType(
        "", "v1", "replicationcontrollers", "ReplicationController", True, True, status=True
    ),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True),
    ResourceType("apps", "v1", "deployments", "Deployment", True, True, status=True),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, True, status=True),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, True, status=True),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, True, status=True),
    ResourceType("batch", "v1", "jobs", "Job", True, True, status=True),
    ResourceType("batch", "v1", "cronjobs", "CronJob", True, True, status=True),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        namespaced=False,
        generation=True,
    ),
    ResourceType(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        namespaced=False,
        generation=True,
    ),
)

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# --- calls, faults, errors -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One API request as the server understood it (and, once answered, its status code)."""

    verb: str
    """Kubernetes' verb: get, list, watch, create, update, patch, delete."""
    group: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    dry_run: bool = False
    user: str = ""
    status: int = 0

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


@dataclass(slots=True)
class Fault:
    """Something to do instead of (or before) answering matching calls.

    Unset match fields match anything. `delay_s` holds the answer back; `status` answers with that
    error instead of handling the call; `drop_connection` closes the connection without an answer.
    `times` is how many calls it applies to (None: until removed).
    """

    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    delay_s: float = 0.0
    status: int | None = None
    reason: str = "InternalError"
    message: str = "injected fault"
    drop_connection: bool = False
    times: int | None = 1
    hits: int = 0

    def matches(self, call: Call) -> bool:
        return (
            (self.verb is None or self.verb == call.verb)
            and (self.resource is None or self.resource == call.resource)
            and (self.namespace is None or self.namespace == call.namespace)
            and (self.name is None or self.name == call.name)
            and (self.times is None or self.hits < self.times)
        )


class ApiError(Exception):
    """An answer in the shape of a Kubernetes `Status` with a failure."""

    def __init__(
        self, code: int, reason: str, message: str, details: JsonObject | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JsonObject:
        body: JsonObject = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(rt: ResourceType, name: str) -> JsonObject:
    details: JsonObject = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{rt.qualified} "{name}" already exists', _details(rt, name)
    )


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
        _details(rt, name),
    )


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str]]) -> ApiError:
    summary = ", ".join(f"{path}: {message}" for path, message in causes)
    details = _details(rt, name)
    details["kind"] = rt.kind
    details["causes"] = [
        {"reason": "FieldValueInvalid", "message": message, "field": path}
        for path, message in causes
    ]
    return ApiError(
        422, "Invalid", f'{rt.kind}.{rt.group or "core"} "{name}" is invalid: {summary}', details
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


# --- selectors and patches -------------------------------------------------------------------


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current.strip())
    return terms


def label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """A predicate for a labelSelector string (equality- and set-based, as kubectl writes them)."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _split_terms(selector):
        set_based = re.fullmatch(r"([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)", term)
        if set_based:
            key, op, raw = set_based.groups()
            values = {v.strip() for v in raw.split(",") if v.strip()}
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
            continue
        equality = re.fullmatch(r"([^\s!=]+)\s*(==|=|!=)\s*([^\s!=]*)", term)
        if equality:
            key, op, value = equality.groups()
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
            continue
        exists = re.fullmatch(r"(!?)([^\s!=(),]+)", term)
        if exists:
            negated, key = exists.groups()
            if negated:
                checks.append(lambda labels, k=key: k not in labels)
            else:
                checks.append(lambda labels, k=key: k in labels)
            continue
        raise bad_request(f"unable to parse requirement: {term!r} in labelSelector {selector!r}")
    return lambda labels: all(check(labels) for check in checks)


def field_matcher(selector: str) -> Callable[[JsonObject], bool]:
    """fieldSelector on metadata.name and metadata.namespace, the fields every type supports."""
    checks: list[Callable[[JsonObject], bool]] = []
    for term in _split_terms(selector):
        match = re.fullmatch(r"(metadata\.name|metadata\.namespace)\s*(==|=|!=)\s*(\S*)", term)
        if not match:
            raise bad_request(f'field label not supported: "{term}"')
        path, op, value = match.groups()
        key = path.split(".")[1]

        def check(obj: JsonObject, k: str = key, v: str = value, neg: bool = op == "!=") -> bool:
            return (obj["metadata"].get(k, "") == v) != neg

        checks.append(check)
    return lambda obj: all(c(obj) for c in checks)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_MERGE_KEY_SUFFIXES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("spec", "containers"), "name"),
    (("spec", "initContainers"), "name"),
    (("spec", "ephemeralContainers"), "name"),
    (("spec", "volumes"), "name"),
    (("spec", "imagePullSecrets"), "name"),
    (("containers", "env"), "name"),
    (("initContainers", "env"), "name"),
    (("ephemeralContainers", "env"), "name"),
    (("containers", "ports"), "containerPort"),
    (("initContainers", "ports"), "containerPort"),
    (("containers", "volumeMounts"), "mountPath"),
    (("initContainers", "volumeMounts"), "mountPath"),
    (("metadata", "ownerReferences"), "uid"),
)
"""Lists that strategic merge patch merges by key (patchStrategy=merge in the Go types)."""
_TOP_LEVEL_MERGE_KEYS = {("webhooks",): "name"}
_SET_LISTS = {("metadata", "finalizers")}


def _merge_key(path: tuple[str, ...]) -> str | None:
    if path in _TOP_LEVEL_MERGE_KEYS:
        return _TOP_LEVEL_MERGE_KEYS[path]
    for suffix, key in _MERGE_KEY_SUFFIXES:
        if path[-len(suffix) :] == suffix:
            return key
    return None


def strategic_merge_patch(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Strategic merge patch for the lists in `_MERGE_KEY_SUFFIXES` (merged by key, `$patch:
    delete` honoured); every other list is replaced, as the Go types without a strategy say."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            continue
        child = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and _merge_key(child) and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, _merge_key(child) or "", child)
        elif isinstance(value, list) and child in _SET_LISTS and isinstance(result.get(key), list):
            result[key] = [*result[key], *(v for v in value if v not in result[key])]
        else:
            result[key] = strategic_merge_patch(result.get(key), value, child)
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/") and isinstance(value, list):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [v for v in result[name] if v not in value]
    return result


def _merge_list(current: list[Any], patch: list[Any], key: str, path: tuple[str, ...]) -> list[Any]:
    merged = [copy.deepcopy(item) for item in current]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise bad_request(f"map in {'.'.join(path)} is missing the merge key {key!r}")
        index = next(
            (i for i, existing in enumerate(merged) if existing.get(key) == item[key]), None
        )
        if item.get("$patch") == "delete":
            if index is not None:
                merged.pop(index)
        elif index is None:
            merged.append({k: v for k, v in item.items() if not k.startswith("$")})
        else:
            merged[index] = strategic_merge_patch(merged[index], item, path)
    return merged


# --- the store -------------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _content(obj: JsonObject) -> JsonObject:
    """What metadata.generation tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


@dataclass(slots=True)
class WatchEvent:
    resource_version: int
    type: str
    key: tuple[str, str]
    obj: JsonObject


@dataclass(slots=True)
class _Collection:
    objects: dict[tuple[str, str], JsonObject] = field(default_factory=dict)
    events: deque[WatchEvent] = field(default_factory=lambda: deque(maxlen=EVENT_LOG_LENGTH))
    oldest_event: int = 0


class Store:
    """Objects by resource type and (namespace, name), with the API's write semantics."""

    def __init__(self, resources: tuple[ResourceType, ...], validate_schemas: bool) -> None:
        self.resources = resources
        self.validate_schemas = validate_schemas
        self._lock = threading.RLock()
        self.changed = threading.Condition(self._lock)
        self._rv = 0
        self._collections = {rt: _Collection() for rt in resources}

    @property
    def namespaces(self) -> ResourceType:
        return next(rt for rt in self.resources if rt.plural == "namespaces" and not rt.group)

    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    # reads

    def get(self, rt: ResourceType, namespace: str, name: str) -> JsonObject:
        with self._lock:
            obj = self._collections[rt].objects.get((namespace, name))
            if obj is None:
                raise not_found(rt, name)
            return copy.deepcopy(obj)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: str = "",
        fields: str = "",
        limit: int = 0,
        continue_token: str = "",
    ) -> JsonObject:
        label_ok = label_matcher(labels) if labels else (lambda _labels: True)
        field_ok = field_matcher(fields) if fields else (lambda _obj: True)
        start: tuple[str, str] | None = None
        if continue_token:
            try:
                start = tuple(json.loads(base64.urlsafe_b64decode(continue_token))["after"])  # type: ignore[assignment]
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid") from None
        with self._lock:
            keys = sorted(self._collections[rt].objects)
            items: list[JsonObject] = []
            more = False
            for key in keys:
                if namespace is not None and key[0] != namespace:
                    continue
                if start is not None and key <= start:
                    continue
                obj = self._collections[rt].objects[key]
                if not (label_ok(obj["metadata"].get("labels") or {}) and field_ok(obj)):
                    continue
                if limit and len(items) == limit:
                    more = True
                    break
                item = copy.deepcopy(obj)
                item.pop("apiVersion", None)
                item.pop("kind", None)
                items.append(item)
            metadata: JsonObject = {"resourceVersion": str(self._rv)}
            if more:
                last = items[-1]["metadata"]
                token = json.dumps({"after": [last.get("namespace", ""), last["name"]]})
                metadata["continue"] = base64.urlsafe_b64encode(token.encode()).decode()
            return {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": metadata,
                "items": items,
            }

    # writes

    def create(
        self, rt: ResourceType, namespace: str, body: Any, *, dry_run: bool, strict: bool
    ) -> JsonObject:
        obj = self._decoded(rt, body)
        metadata = obj["metadata"]
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = f"{metadata['generateName']}{uuid.uuid4().hex[:5]}"
        name = str(metadata.get("name") or "")
        self._check_namespace_field(rt, namespace, metadata)
        if metadata.get("resourceVersion"):
            raise ApiError(
                500, "InternalError", "resourceVersion should not be set on objects to be created"
            )
        with self._lock:
            if rt.namespaced and not self._exists_namespace(namespace):
                raise not_found(self.namespaces, namespace)
            self._validate(rt, obj, strict)
            if (namespace, name) in self._collections[rt].objects:
                raise already_exists(rt, name)
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = _now()
            if rt.generation:
                metadata["generation"] = 1
            if rt.status:
                obj.pop("status", None)
            self._defaults_on_create(rt, obj)
            if dry_run:
                metadata.pop("resourceVersion", None)
                return obj
            self._store(rt, (namespace, name), obj, "ADDED")
            return copy.deepcopy(obj)

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        dry_run: bool,
        strict: bool,
        subresource: str = "",
    ) -> JsonObject:
        obj = self._decoded(rt, body)
        metadata = obj["metadata"]
        if metadata.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({metadata.get('name')}) does not match the name on "
                f"the URL ({name})"
            )
        metadata["name"] = name
        self._check_namespace_field(rt, namespace, metadata)
        with self._lock:
            current = self._collections[rt].objects.get((namespace, name))
            if current is None:
                raise not_found(rt, name)
            return self._replace(rt, current, obj, dry_run, strict, subresource)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch: Any,
        content_type: str,
        *,
        dry_run: bool,
        strict: bool,
        subresource: str = "",
    ) -> JsonObject:
        with self._lock:
            current = self._collections[rt].objects.get((namespace, name))
            if current is None:
                raise not_found(rt, name)
            base = copy.deepcopy(current)
            if content_type == "application/merge-patch+json":
                if not isinstance(patch, dict):
                    raise bad_request("a merge patch must be a JSON object")
                patched = merge_patch(base, patch)
            elif content_type == "application/strategic-merge-patch+json":
                if not isinstance(patch, dict):
                    raise bad_request("a strategic merge patch must be a JSON object")
                patched = strategic_merge_patch(base, patch)
            elif content_type == "application/json-patch+json":
                if not isinstance(patch, list):
                    raise bad_request("a JSON patch must be a list of operations")
                try:
                    patched = jsonpatch.JsonPatch(patch).apply(base)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
                    raise ApiError(
                        422,
                        "Invalid",
                        "the server rejected our request due to an error in our request",
                        {"causes": [{"message": str(err)}]},
                    ) from None
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format ({content_type}) - "
                    "accepted media types include: application/json-patch+json, "
                    "application/merge-patch+json, application/strategic-merge-patch+json "
                    "(server-side apply is not implemented by this local server)",
                )
            if not isinstance(patched, dict):
                raise bad_request("the patch does not leave an object")
            patched.setdefault("metadata", {})
            if patched["metadata"].get("name", name) != name:
                raise bad_request("a patch may not change metadata.name")
            obj = self._decoded(rt, patched)
            return self._replace(rt, current, obj, dry_run, strict, subresource)

    def delete(
        self, rt: ResourceType, namespace: str, name: str, options: Any, *, dry_run: bool
    ) -> JsonObject:
        preconditions = options.get("preconditions") if isinstance(options, dict) else None
        with self._lock:
            current = self._collections[rt].objects.get((namespace, name))
            if current is None:
                raise not_found(rt, name)
            metadata = current["metadata"]
            if isinstance(preconditions, dict):
                for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                    wanted = preconditions.get(key)
                    if wanted and wanted != metadata.get(key):
                        raise conflict(
                            rt,
                            name,
                            f"Precondition failed: {label} in precondition: {wanted}, "
                            f"{label} in object meta: {metadata.get(key)}",
                        )
            details = _details(rt, name)
            details["uid"] = metadata["uid"]
            if not dry_run:
                self._remove(rt, (namespace, name))
                if rt is self.namespaces:
                    for other in self.resources:
                        if other.namespaced:
                            for key in [
                                k for k in self._collections[other].objects if k[0] == name
                            ]:
                                self._remove(other, key)
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }

    def events_since(
        self, rt: ResourceType, resource_version: int
    ) -> tuple[list[WatchEvent], bool]:
        """Events after `resource_version`, and False when that version is too old to resume."""
        with self._lock:
            collection = self._collections[rt]
            if resource_version < collection.oldest_event:
                return [], False
            return [e for e in collection.events if e.resource_version > resource_version], True

    def seed(self, obj: JsonObject) -> JsonObject:
        """Create an object directly (tests' fixtures): full create semantics, no call recorded."""
        rt = self.type_of(obj)
        namespace = obj.get("metadata", {}).get("namespace", "") if rt.namespaced else ""
        return self.create(rt, namespace, copy.deepcopy(obj), dry_run=False, strict=False)

    def type_of(self, obj: Mapping[str, Any]) -> ResourceType:
        for rt in self.resources:
            if rt.api_version == obj.get("apiVersion") and rt.kind == obj.get("kind"):
                return rt
        raise KeyError(f"no resource type for {obj.get('apiVersion')} {obj.get('kind')}")

    def all_objects(self, rt: ResourceType, namespace: str | None = None) -> list[JsonObject]:
        with self._lock:
            return [
                copy.deepcopy(obj)
                for key, obj in sorted(self._collections[rt].objects.items())
                if namespace is None or key[0] == namespace
            ]

    # internals

    def _exists_namespace(self, name: str) -> bool:
        return ("", name) in self._collections[self.namespaces].objects

    def _decoded(self, rt: ResourceType, body: Any) -> JsonObject:
        if not isinstance(body, dict):
            raise bad_request(f"the body of the request must be a {rt.kind} object")
        obj = copy.deepcopy(body)
        for key, expected in (("apiVersion", rt.api_version), ("kind", rt.kind)):
            given = obj.get(key)
            if given not in (None, "", expected):
                raise bad_request(
                    f"the {key} in the data ({given}) does not match the expected {key} "
                    f"({expected})"
                )
            obj[key] = expected
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        return obj

    def _check_namespace_field(
        self, rt: ResourceType, namespace: str, metadata: JsonObject
    ) -> None:
        given = metadata.get("namespace")
        if rt.namespaced:
            if given not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)

    def _validate(self, rt: ResourceType, obj: JsonObject, strict: bool) -> None:
        metadata = obj["metadata"]
        name = str(metadata.get("name") or "")
        causes: list[tuple[str, str]] = []
        if not name:
            causes.append(("metadata.name", "Required value: name or generateName is required"))
        elif rt is self.namespaces and (len(name) > 63 or not _DNS1123_LABEL.match(name)):
            causes.append(("metadata.name", f'Invalid value: "{name}": not a DNS-1123 label'))
        elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
            causes.append(("metadata.name", f'Invalid value: "{name}": not a DNS-1123 subdomain'))
        labels = metadata.get("labels") or {}
        if not isinstance(labels, dict):
            causes.append(("metadata.labels", "Invalid value: must be a map"))
        else:
            for key, value in labels.items():
                prefix, _, label = str(key).rpartition("/")
                if (prefix and not _DNS1123_SUBDOMAIN.match(prefix)) or not _LABEL_NAME.match(
                    label
                ):
                    causes.append(("metadata.labels", f'Invalid value: "{key}": bad label key'))
                if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                    causes.append(("metadata.labels", f'Invalid value: "{value}": bad label value'))
        if not causes and self.validate_schemas:
            try:
                kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=strict)
            except kubernetes_validate.ValidationError as err:
                path = ".".join(str(part) for part in err.path)
                causes.append((path or "<object>", err.message))
            except kubernetes_validate.SchemaNotFoundError:
                pass
        if causes:
            raise invalid(rt, name, causes)

    def _defaults_on_create(self, rt: ResourceType, obj: JsonObject) -> None:
        metadata = obj["metadata"]
        if rt is self.namespaces:
            labels = metadata.setdefault("labels", {})
            labels["kubernetes.io/metadata.name"] = metadata["name"]
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
        elif rt.plural == "pods" and not rt.group:
            obj["status"] = {"phase": "Pending"}

    def _replace(
        self,
        rt: ResourceType,
        current: JsonObject,
        obj: JsonObject,
        dry_run: bool,
        strict: bool,
        subresource: str,
    ) -> JsonObject:
        metadata = obj["metadata"]
        stored_meta = current["metadata"]
        name = stored_meta["name"]
        wanted_rv = metadata.get("resourceVersion")
        if wanted_rv and wanted_rv != stored_meta["resourceVersion"]:
            raise conflict(
                rt,
                name,
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        if subresource == "status":
            new = copy.deepcopy(current)
            new["status"] = copy.deepcopy(obj.get("status"))
        else:
            new = obj
            for key in ("uid", "creationTimestamp", "generation"):
                if key in stored_meta:
                    metadata[key] = stored_meta[key]
                else:
                    metadata.pop(key, None)
            if rt.status:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
            if rt is self.namespaces:
                new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        new["metadata"]["resourceVersion"] = stored_meta["resourceVersion"]
        self._validate(rt, new, strict)
        if new == current:
            return copy.deepcopy(current)
        if rt.generation and _content(new) != _content(current):
            new["metadata"]["generation"] = int(stored_meta.get("generation", 0)) + 1
        if dry_run:
            return copy.deepcopy(new)
        key = (stored_meta.get("namespace", ""), name)
        self._store(rt, key, new, "MODIFIED")
        return copy.deepcopy(new)

    def _store(self, rt: ResourceType, key: tuple[str, str], obj: JsonObject, kind: str) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        collection = self._collections[rt]
        collection.objects[key] = obj
        self._log(collection, WatchEvent(self._rv, kind, key, copy.deepcopy(obj)))

    def _remove(self, rt: ResourceType, key: tuple[str, str]) -> None:
        collection = self._collections[rt]
        obj = collection.objects.pop(key)
        self._rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._log(collection, WatchEvent(self._rv, "DELETED", key, gone))

    def _log(self, collection: _Collection, event: WatchEvent) -> None:
        if len(collection.events) == collection.events.maxlen:
            collection.oldest_event = collection.events[0].resource_version
        collection.events.append(event)
        self.changed.notify_all()


# --- HTTP ------------------------------------------------------------------------------------


def _name_in(raw: bytes) -> str:
    """The name a create names in its body (what an audit log records for it)."""
    try:
        metadata = json.loads(raw).get("metadata") or {}
    except (ValueError, AttributeError):
        return ""
    return str(metadata.get("name") or "")


@dataclass(frozen=True, slots=True)
class Route:
    rt: ResourceType
    namespace: str | None
    name: str
    subresource: str


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    owner: LocalApiServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the call log instead."""

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold every answer back ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._connections.add(self.connection)

    def finish(self) -> None:
        self.server.owner._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self.server.owner._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.owner._handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.owner._handle(self, "PUT")

    def do_PATCH(self) -> None:
        self.server.owner._handle(self, "PATCH")

    def do_DELETE(self) -> None:
        self.server.owner._handle(self, "DELETE")


class LocalApiServer:
    """The local API server: `with LocalApiServer() as api:` serves on `api.url` until the block
    ends (or `max_lifetime_s` passes)."""

    def __init__(
        self,
        *,
        resources: tuple[ResourceType, ...] = RESOURCES,
        validate_schemas: bool = True,
        users: Mapping[str, str] | None = None,
        authorizer: Callable[[Call], bool] | None = None,
        max_lifetime_s: float = 300.0,
    ) -> None:
        self.store = Store(resources, validate_schemas)
        self.users = dict(users or {})
        """Bearer token -> user name. When set, any other token is 401 Unauthorized; when not,
        every token is accepted and names its own user."""
        self.authorizer = authorizer
        """Decides each call (after authentication); False answers 403 Forbidden."""
        self.max_lifetime_s = max_lifetime_s
        self.host = "127.0.0.1"
        self.port = 0
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._faults: list[Fault] = []
        self._stopping = threading.Event()
        self._lifetime: threading.Timer | None = None

    # lifecycle

    def __enter__(self) -> LocalApiServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._listen()
        self._lifetime = threading.Timer(self.max_lifetime_s, self.stop)
        self._lifetime.daemon = True
        self._lifetime.start()

    def stop(self) -> None:
        self._stopping.set()
        with self.store.changed:
            self.store.changed.notify_all()
        self._close_listener()
        if self._lifetime is not None:
            self._lifetime.cancel()

    def go_down(self) -> None:
        """Stop listening and cut open connections: clients get connection refused."""
        self._close_listener()

    def come_up(self) -> None:
        """Listen again on the same port, with the same objects."""
        if self._server is None:
            self._listen(self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _listen(self, port: int = 0) -> None:
        server = _HttpServer((self.host, port), _Handler)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # test and benchmark hooks

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def count(
        self,
        verb: str | None = None,
        resource: str | None = None,
        *,
        namespace: str | None = None,
        writes: bool | None = None,
    ) -> int:
        """Calls recorded so far that match (writes=True: create/update/patch/delete only)."""
        return sum(
            1
            for call in self.calls
            if (verb is None or call.verb == verb)
            and (resource is None or call.resource == resource)
            and (namespace is None or call.namespace == namespace)
            and (writes is None or call.is_write == writes)
        )

    def counts(self) -> Counter[tuple[str, str]]:
        """Calls per (verb, resource)."""
        return Counter((call.verb, call.resource) for call in self.calls)

    def seed(self, *objects: JsonObject) -> list[JsonObject]:
        return [self.store.seed(obj) for obj in objects]

    def get(self, resource: str, name: str, namespace: str = "") -> JsonObject | None:
        rt = self.resource(resource)
        try:
            return self.store.get(rt, namespace if rt.namespaced else "", name)
        except ApiError:
            return None

    def objects(self, resource: str, namespace: str | None = None) -> list[JsonObject]:
        return self.store.all_objects(self.resource(resource), namespace)

    def resource(self, plural: str) -> ResourceType:
        return next(rt for rt in self.store.resources if rt.plural == plural)

    def kubeconfig(self, path: Path, token: str = "local-admin") -> Path:
        """Write a kubeconfig whose current context is this server, authenticating with `token`."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": self.url}}],
            "users": [{"name": "local", "user": {"token": token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "local"}}],
            "current-context": "local",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # request handling

    def _route(self, path: str) -> Route | None:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace: str | None = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (len(rest) == 3 and rest[2] in ("status", "finalize") and not group)
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        plural, name, subresource = rest[0], rest[1] if len(rest) > 1 else "", ""
        if len(rest) == 3:
            subresource = rest[2]
        for rt in self.store.resources:
            if rt.group == group and rt.version == version and rt.plural == plural:
                if namespace is not None and not rt.namespaced:
                    return None
                if namespace is None and rt.namespaced and name:
                    return None
                return Route(rt, namespace, name, subresource)
        return None

    def _user(self, handler: _Handler) -> str | None:
        auth = handler.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if not self.users:
            return token or "system:anonymous"
        return self.users.get(token)

    def _handle(self, handler: _Handler, method: str) -> None:
        split = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if split.path in ("/healthz", "/readyz", "/livez"):
            self._send(handler, 200, b"ok", "text/plain")
            return
        discovery = self._discovery(split.path)
        if discovery is not None and method == "GET":
            self._send_json(handler, 200, discovery)
            return
        route = self._route(split.path)
        if route is None:
            error = ApiError(404, "NotFound", "the server could not find the requested resource")
            self._send_json(handler, 404, error.status())
            return
        verb = self._verb(method, route, query)
        user = self._user(handler)
        call = Call(
            verb=verb,
            group=route.rt.group,
            resource=route.rt.plural,
            namespace=route.namespace or "",
            name=route.name or (_name_in(raw) if verb == "create" else ""),
            subresource=route.subresource,
            dry_run=query.get("dryRun") == "All",
            user=user or "",
        )
        status, body, stream = self._answer(handler, method, route, call, query, raw, user)
        with self._lock:
            self._calls.append(replace(call, status=status))
        if stream is not None:
            self._stream(handler, stream)
        elif body is not None:
            self._send_json(handler, status, body)

    def _answer(
        self,
        handler: _Handler,
        method: str,
        route: Route,
        call: Call,
        query: dict[str, str],
        raw: bytes,
        user: str | None,
    ) -> tuple[int, JsonObject | None, Iterator[JsonObject] | None]:
        fault = self._fault_for(call)
        if fault is not None:
            if fault.delay_s:
                self._stopping.wait(fault.delay_s)
            if fault.drop_connection:
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)
                handler.close_connection = True
                return 0, None, None
            if fault.status is not None:
                error = ApiError(fault.status, fault.reason, fault.message)
                return fault.status, error.status(), None
        try:
            if user is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            if self.authorizer is not None and not self.authorizer(call):
                raise self._forbidden(call, route)
            if call.verb == "watch":
                return 200, None, self._watch(route, query)
            return self._perform(method, route, call, query, raw, handler)
        except ApiError as err:
            return err.code, err.status(), None

    def _forbidden(self, call: Call, route: Route) -> ApiError:
        where = (
            f' in the namespace "{call.namespace}"' if call.namespace else " at the cluster scope"
        )
        subject = f'{route.rt.qualified} "{call.name}"' if call.name else route.rt.qualified
        return ApiError(
            403,
            "Forbidden",
            f'{subject} is forbidden: User "{call.user}" cannot {call.verb} resource '
            f'"{route.rt.plural}" in API group "{route.rt.group}"{where}',
            _details(route.rt, call.name),
        )

    @staticmethod
    def _verb(method: str, route: Route, query: dict[str, str]) -> str:
        if method == "GET":
            if query.get("watch") in ("true", "1"):
                return "watch"
            return "get" if route.name else "list"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]

    def _fault_for(self, call: Call) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(call):
                    fault.hits += 1
                    return fault
        return None

    def _perform(
        self,
        method: str,
        route: Route,
        call: Call,
        query: dict[str, str],
        raw: bytes,
        handler: _Handler,
    ) -> tuple[int, JsonObject, None]:
        dry_run_value = query.get("dryRun")
        if dry_run_value not in (None, "All"):
            raise bad_request(f'unsupported dry run directive "{dry_run_value}"')
        strict = query.get("fieldValidation") == "Strict"
        rt, namespace = route.rt, route.namespace or ""
        if route.subresource and route.subresource != "status":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method in ("POST", "PUT", "PATCH") or (method == "DELETE" and raw):
            try:
                body = json.loads(raw) if raw else None
            except ValueError as err:
                raise bad_request(f"the body is not valid JSON: {err}") from None
        else:
            body = None
        store = self.store
        if method == "GET" and call.verb == "list":
            if route.subresource:
                raise ApiError(405, "MethodNotAllowed", "list does not take a subresource")
            listing = store.list(
                rt,
                route.namespace if rt.namespaced else None,
                labels=query.get("labelSelector", ""),
                fields=query.get("fieldSelector", ""),
                limit=int(query.get("limit") or 0),
                continue_token=query.get("continue", ""),
            )
            return 200, listing, None
        if method == "GET":
            return 200, store.get(rt, namespace, route.name), None
        if method == "POST":
            if route.name:
                raise ApiError(405, "MethodNotAllowed", "POST names a collection, not an object")
            created = store.create(rt, namespace, body, dry_run=call.dry_run, strict=strict)
            return 201, created, None
        if not route.name:
            raise ApiError(405, "MethodNotAllowed", f"{method} needs an object name")
        if method == "PUT":
            updated = store.update(
                rt,
                namespace,
                route.name,
                body,
                dry_run=call.dry_run,
                strict=strict,
                subresource=route.subresource,
            )
            return 200, updated, None
        if method == "PATCH":
            content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip()
            patched = store.patch(
                rt,
                namespace,
                route.name,
                body,
                content_type,
                dry_run=call.dry_run,
                strict=strict,
                subresource=route.subresource,
            )
            return 200, patched, None
        deleted = store.delete(rt, namespace, route.name, body, dry_run=call.dry_run)
        return 200, deleted, None

    def _watch(self, route: Route, query: dict[str, str]) -> Iterator[JsonObject]:
        """Events as the API streams them: the current objects first (no resourceVersion given),
        then changes, until timeoutSeconds, MAX_WATCH_S or the server stops."""
        rt = route.rt
        namespace = route.namespace if rt.namespaced else None
        label_ok = (
            label_matcher(query.get("labelSelector", "")) if query.get("labelSelector") else None
        )
        field_ok = (
            field_matcher(query.get("fieldSelector", "")) if query.get("fieldSelector") else None
        )
        timeout = min(float(query.get("timeoutSeconds") or MAX_WATCH_S), MAX_WATCH_S)
        store = self.store

        def visible(obj: JsonObject) -> bool:
            if namespace is not None and obj["metadata"].get("namespace") != namespace:
                return False
            if label_ok is not None and not label_ok(obj["metadata"].get("labels") or {}):
                return False
            return field_ok is None or field_ok(obj)

        def events() -> Iterator[JsonObject]:
            deadline = time.monotonic() + timeout
            raw_rv = query.get("resourceVersion", "")
            if raw_rv in ("", "0"):
                with store.changed:
                    since = store.resource_version()
                    initial = store.all_objects(rt, namespace)
                for obj in initial:
                    if visible(obj):
                        yield {"type": "ADDED", "object": obj}
            else:
                try:
                    since = int(raw_rv)
                except ValueError:
                    yield {"type": "ERROR", "object": bad_request("bad resourceVersion").status()}
                    return
            while not self._stopping.is_set():
                pending, resumable = store.events_since(rt, since)
                if not resumable:
                    gone = ApiError(410, "Expired", f"too old resource version: {since}")
                    yield {"type": "ERROR", "object": gone.status()}
                    return
                for event in pending:
                    since = event.resource_version
                    if visible(event.obj):
                        yield {"type": event.type, "object": copy.deepcopy(event.obj)}
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                with store.changed:
                    if not store.events_since(rt, since)[0]:
                        store.changed.wait(min(remaining, 0.5))

        return events()

    def _stream(self, handler: _Handler, events: Iterator[JsonObject]) -> None:
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for event in events:
                line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
                handler.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True

    def _discovery(self, path: str) -> JsonObject | None:
        resources = self.store.resources
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0-local"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups: dict[str, set[str]] = {}
            for rt in resources:
                if rt.group:
                    groups.setdefault(rt.group, set()).add(rt.version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": group,
                        "versions": [
                            {"groupVersion": f"{group}/{v}", "version": v} for v in sorted(vs)
                        ],
                        "preferredVersion": {
                            "groupVersion": f"{group}/{sorted(vs)[-1]}",
                            "version": sorted(vs)[-1],
                        },
                    }
                    for group, vs in sorted(groups.items())
                ],
            }
        match = re.fullmatch(r"/api/(v1)|/apis/([^/]+)/([^/]+)", path)
        if not match:
            return None
        group = match.group(2) or ""
        version = match.group(1) or match.group(3)
        listed = [rt for rt in resources if rt.group == group and rt.version == version]
        if not listed:
            return None
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": listed[0].api_version,
            "resources": [
                {
                    "name": rt.plural,
                    "singularName": rt.singular,
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": verbs,
                }
                for rt in listed
            ],
        }

    def _send_json(self, handler: _Handler, status: int, body: JsonObject) -> None:
        self._send(handler, status, json.dumps(body, separators=(",", ":")).encode())

    @staticmethod
    def _send(
        handler: _Handler, status: int, payload: bytes, content_type: str = "application/json"
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            handler.close_connection = True
