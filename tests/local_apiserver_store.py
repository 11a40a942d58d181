"""What the local API server does to objects: the resource registry, the store and its write
semantics, selectors, patches, and errors as `Status` bodies. `local_apiserver.py` serves it.

The registry is `RESOURCES` (and whatever a server is started with) plus the versions the stored
CustomResourceDefinitions serve: storing, changing or deleting a CRD changes what is served (see
`local_apiserver_crds.py` for what is done to custom objects).
"""

from __future__ import annotations

import base64
import bisect
import copy
import datetime as dt
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import kubernetes_validate
from local_apiserver_crds import (
    CelUnsupported,
    ServedVersion,
    Validator,
    apply_defaults,
    crd_causes,
    prune,
    served_versions,
)

JsonObject = dict[str, Any]

SCHEMA_VERSION = "1.31.0"
EVENT_LOG_LENGTH = 2000
"""Watch events kept per resource type; a watch from an older resourceVersion gets 410 Gone."""


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
    ResourceType("", "v1", "configmaps", "ConfigMap", namespaced=True),
    ResourceType("", "v1", "secrets", "Secret", namespaced=True),
    ResourceType("", "v1", "services", "Service", namespaced=True, status=True),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", namespaced=True),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        generation=True,
        status=True,
    ),
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


# --- errors ---------------------------------------------------------------------------------------


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


def status_details(rt: ResourceType, name: str) -> JsonObject:
    details: JsonObject = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', status_details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{rt.qualified} "{name}" already exists', status_details(rt, name)
    )


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
        status_details(rt, name),
    )


_CAUSE_REASONS = (
    ("Required value", "FieldValueRequired"),
    ("Unsupported value", "FieldValueNotSupported"),
    ("Too many", "FieldValueTooMany"),
    ("Too long", "FieldValueTooLong"),
    ("Duplicate value", "FieldValueDuplicate"),
    ("Forbidden", "FieldValueForbidden"),
)


def _cause_reason(message: str) -> str:
    """The cause's reason, from the wording of its message (as Go's field.ErrorType writes it)."""
    if " in body must be of type " in message:
        return "FieldValueTypeInvalid"
    found = (reason for prefix, reason in _CAUSE_REASONS if message.startswith(prefix))
    return next(found, "FieldValueInvalid")


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str]]) -> ApiError:
    summary = ", ".join(f"{path}: {message}" for path, message in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    body = status_details(rt, name)
    body["kind"] = rt.kind
    body["causes"] = [
        {"reason": _cause_reason(message), "message": message, "field": path}
        for path, message in causes
    ]
    return ApiError(
        422, "Invalid", f'{rt.kind}.{rt.group or "core"} "{name}" is invalid: {summary}', body
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
    ordered: list[tuple[str, str]] | None = None
    """The keys in list order, kept until a key comes or goes: a paged list of a large
    collection finds its place by bisection instead of sorting everything for every page."""

    def keys_in_order(self) -> list[tuple[str, str]]:
        if self.ordered is None:
            self.ordered = sorted(self.objects)
        return self.ordered


class Store:
    """Objects by resource type and (namespace, name), with the API's write semantics."""

    def __init__(self, resources: tuple[ResourceType, ...], validate_schemas: bool) -> None:
        self.resources = resources
        """What is served: the types given, then the versions the stored CRDs serve."""
        self.validate_schemas = validate_schemas
        self._lock = threading.RLock()
        self.changed = threading.Condition(self._lock)
        self._rv = 0
        self._static = resources
        self._collections = {rt: _Collection() for rt in resources}
        self._served: dict[ResourceType, ServedVersion] = {}
        self._shared: dict[tuple[str, str], _Collection] = {}
        """Custom objects by (group, plural): every served version of a CRD reads one store."""
        self._crds = next(
            (rt for rt in resources if rt.plural == "customresourcedefinitions"), None
        )

    @property
    def namespaces(self) -> ResourceType:
        return next(rt for rt in self.resources if rt.plural == "namespaces" and not rt.group)

    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def served(self, rt: ResourceType) -> ServedVersion | None:
        """The CRD version serving `rt` (None for a type the server was started with)."""
        return self._served.get(rt)

    def serves(self, rt: ResourceType) -> bool:
        return rt in self.resources

    # reads

    def get(self, rt: ResourceType, namespace: str, name: str) -> JsonObject:
        with self._lock:
            obj = self._collections[rt].objects.get((namespace, name))
            if obj is None:
                raise not_found(rt, name)
            return self._view(rt, obj)

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
            collection = self._collections[rt]
            keys = collection.keys_in_order()
            first = 0
            if namespace is not None:
                first = bisect.bisect_left(keys, (namespace, ""))
            if start is not None:
                first = max(first, bisect.bisect_right(keys, start))
            items: list[JsonObject] = []
            more = False
            for index in range(first, len(keys)):
                key = keys[index]
                if namespace is not None and key[0] != namespace:
                    break
                obj = collection.objects[key]
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
            served = self._served.get(rt)
            return {
                "kind": served.list_kind if served else f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": metadata,
                "items": items,
            }

    # writes

    def create(
        self,
        rt: ResourceType,
        namespace: str,
        body: Any,
        *,
        dry_run: bool,
        strict: bool,
        warnings: list[str] | None = None,
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
            self._validate(rt, obj, strict, warnings=warnings)
            if (namespace, name) in self._collections[rt].objects:
                raise already_exists(rt, name)
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = _now()
            if rt.generation:
                metadata["generation"] = 1
            if rt.status:
                obj.pop("status", None)
            self._defaults_on_create(rt, obj)
            obj["apiVersion"] = self._storage_version(rt)
            if dry_run:
                metadata.pop("resourceVersion", None)
                return self._view(rt, obj)
            self._store(rt, (namespace, name), obj, "ADDED")
            return self._view(rt, obj)

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
        warnings: list[str] | None = None,
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
            return self._replace(rt, current, obj, dry_run, strict, subresource, warnings)

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
        warnings: list[str] | None = None,
    ) -> JsonObject:
        with self._lock:
            current = self._collections[rt].objects.get((namespace, name))
            if current is None:
                raise not_found(rt, name)
            base = self._view(rt, current)
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
            return self._replace(rt, current, obj, dry_run, strict, subresource, warnings)

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
            details = status_details(rt, name)
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
            events = [e for e in collection.events if e.resource_version > resource_version]
            if rt in self._served:
                events = [
                    WatchEvent(e.resource_version, e.type, e.key, self._view(rt, e.obj))
                    if e.obj.get("apiVersion") != rt.api_version
                    else e
                    for e in events
                ]
            return events, True

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
                self._view(rt, obj)
                for key, obj in sorted(self._collections[rt].objects.items())
                if namespace is None or key[0] == namespace
            ]

    # internals

    def _view(self, rt: ResourceType, obj: JsonObject) -> JsonObject:
        """A copy of a stored object as `rt`'s version shows it (custom objects are stored in
        their CRD's storage version; conversion `None` changes only apiVersion)."""
        view = copy.deepcopy(obj)
        if "apiVersion" in view:
            view["apiVersion"] = rt.api_version
        return view

    def _storage_version(self, rt: ResourceType) -> str:
        served = self._served.get(rt)
        return f"{served.group}/{served.storage_version}" if served else rt.api_version

    def _serve_crds(self) -> None:
        """Serve what the stored CRDs serve (a version the server was started with wins)."""
        if self._crds is None:
            return
        static = {(rt.group, rt.version, rt.plural) for rt in self._static}
        served: dict[ResourceType, ServedVersion] = {}
        for crd in self._collections[self._crds].objects.values():
            for version in served_versions(crd):
                if (version.group, version.version, version.plural) in static:
                    continue
                rt = ResourceType(
                    version.group,
                    version.version,
                    version.plural,
                    version.kind,
                    version.namespaced,
                    generation=True,
                    status=version.status,
                )
                served[rt] = version
                shared = self._shared.setdefault((version.group, version.plural), _Collection())
                self._collections[rt] = shared
        self._served = served
        self.resources = self._static + tuple(served)

    def _remove_custom_objects(self, crd_name: str) -> None:
        """What deleting a CRD does to its objects: all deleted (watchers see them go)."""
        for rt, version in list(self._served.items()):
            if version.crd == crd_name:
                for key in list(self._collections[rt].objects):
                    self._remove(rt, key)

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

    def _validate(
        self,
        rt: ResourceType,
        obj: JsonObject,
        strict: bool,
        old: JsonObject | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        served = self._served.get(rt)
        if served is not None:
            dropped = prune(obj, served.schema)
            if dropped and strict:
                raise bad_request(
                    "strict decoding error: "
                    + ", ".join(f'unknown field "{path}"' for path in dropped)
                )
            if warnings is not None:
                warnings.extend(f'unknown field "{path}"' for path in dropped)
            apply_defaults(obj, served.schema)
        elif rt is self._crds:
            _crd_defaults(obj)
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
        if not causes and served is not None and self.validate_schemas:
            try:
                causes.extend(Validator().validate(obj, served.schema, old))
            except CelUnsupported as err:
                raise ApiError(500, "InternalError", str(err)) from None
        elif not causes and self.validate_schemas:
            try:
                kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=strict)
            except kubernetes_validate.ValidationError as err:
                path = ".".join(str(part) for part in err.path)
                causes.append((path or "<object>", err.message))
            except kubernetes_validate.SchemaNotFoundError:
                pass
        if not causes and rt is self._crds:
            causes.extend(crd_causes(obj))
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
        elif rt is self._crds:
            obj["status"] = _crd_status(obj)

    def _replace(
        self,
        rt: ResourceType,
        current: JsonObject,
        obj: JsonObject,
        dry_run: bool,
        strict: bool,
        subresource: str,
        warnings: list[str] | None = None,
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
        self._validate(rt, new, strict, old=current, warnings=warnings)
        new["apiVersion"] = self._storage_version(rt)
        if new == current:
            return self._view(rt, current)
        if rt.generation and _content(new) != _content(current):
            new["metadata"]["generation"] = int(stored_meta.get("generation", 0)) + 1
        if dry_run:
            return self._view(rt, new)
        key = (stored_meta.get("namespace", ""), name)
        self._store(rt, key, new, "MODIFIED")
        return self._view(rt, new)

    def _store(self, rt: ResourceType, key: tuple[str, str], obj: JsonObject, kind: str) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        collection = self._collections[rt]
        if key not in collection.objects:
            collection.ordered = None
        collection.objects[key] = obj
        self._log(collection, WatchEvent(self._rv, kind, key, copy.deepcopy(obj)))
        if rt is self._crds:
            self._serve_crds()

    def _remove(self, rt: ResourceType, key: tuple[str, str]) -> None:
        if rt is self._crds:
            self._remove_custom_objects(key[1])
        collection = self._collections[rt]
        obj = collection.objects.pop(key)
        collection.ordered = None
        self._rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._log(collection, WatchEvent(self._rv, "DELETED", key, gone))
        if rt is self._crds:
            self._serve_crds()

    def _log(self, collection: _Collection, event: WatchEvent) -> None:
        if len(collection.events) == collection.events.maxlen:
            collection.oldest_event = collection.events[0].resource_version
        collection.events.append(event)
        self.changed.notify_all()


def _crd_defaults(crd: JsonObject) -> None:
    """What the API server fills in a CRD: names.singular and listKind, conversion None."""
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("conversion", {"strategy": "None"})


def _crd_status(crd: JsonObject) -> JsonObject:
    """A CRD's status once the API server has accepted its names and established it."""
    now = _now()
    versions = crd["spec"]["versions"]
    return {
        "acceptedNames": copy.deepcopy(crd["spec"]["names"]),
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": now,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": now,
            },
        ],
        "storedVersions": [v["name"] for v in versions if v.get("storage")],
    }
