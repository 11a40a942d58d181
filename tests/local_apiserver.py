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
- custom resources: a stored CustomResourceDefinition (refused with 422 when its name is not
  `<plural>.<group>`, it has no single storage version, or a schema's pattern or CEL rule cannot
  be compiled) is established at once and serves its served versions, namespaced or cluster-wide
  per `spec.scope`, with a `status` subresource when the version has one; discovery lists them
  (`/apis` with Kubernetes' version order, `/apis/<group>/<version>`); every version reads one
  store, each in its own apiVersion. Before the CRD, and after it is deleted (which deletes its
  objects, watchers see them go and their watch ends), the resource's paths answer 404 NotFound
  "the server could not find the requested resource" with empty details, as for any unknown path.
  Custom objects are pruned of fields their schema does not specify (a `Warning` header names
  them; `fieldValidation=Strict` refuses them with 400), defaulted, and validated against the
  served version's `openAPIV3Schema` (422 Invalid, causes naming field paths; CEL rules through
  cel-python, Go patterns through RE2): see `local_apiserver_crds.py` for what is checked and what
  is not. `install_crds` (or `crds=` when starting) installs CRDs from YAML files such as
  ../shared/corpus/crds/*.yaml. A type passed in `resources` is served from the start, without a
  CRD or a schema, and wins over a CRD that would serve the same group, version and plural.

Simplifications, none of which egress-guard relies on: no admission, no defaulting beyond the
above, deletion is immediate (a namespace takes its objects with it, a CRD its objects: no
finalizers), no server-side apply, no field managers, no conversion webhooks (conversion between a
CRD's versions only changes apiVersion), no `scale` subresource, no TLS (kubeconfig points at
http://127.0.0.1).

For tests and benchmarks it records every call (`calls`, `count`), can be taken down and brought
back on the same port (`go_down`/`come_up`: connection refused), and injects faults (`Fault`:
delays, forced error statuses, dropped connections) matched by verb, resource and name. It stops
by itself after `max_lifetime_s`, so a forgotten server never outlives the test run.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from local_apiserver_store import (
    RESOURCES,
    ApiError,
    JsonObject,
    ResourceType,
    Store,
    bad_request,
    field_matcher,
    label_matcher,
    status_details,
)

__all__ = ["RESOURCES", "ApiError", "Call", "Fault", "LocalApiServer", "ResourceType", "Store"]

MAX_WATCH_S = 60.0
WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})
CrdSource = Path | str | Mapping[str, Any] | Iterable[Mapping[str, Any]]
"""A YAML file of CRDs (the corpus's, for one), one CRD, or several."""


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


def _unrouted(method: str, path: str, user: str) -> Call:
    """A request for a resource the server does not serve, as far as its path says (answered
    404): `/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>]`."""
    match = re.fullmatch(
        r"/(?:api/[^/]+|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?"
        r"/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/.*)?",
        path,
    )
    parts = match.groupdict() if match else {}
    name = parts.get("name") or ""
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    return Call(
        verb=verbs.get(method, "get" if name else "list"),
        group=parts.get("group") or "",
        resource=parts.get("plural") or path,
        namespace=parts.get("ns") or "",
        name=name,
        user=user,
        status=404,
    )


@dataclass(slots=True)
class Fault:
    """Something to do instead of (or before) answering matching calls.

    Unset match fields match anything. `delay_s` holds the answer back; `status` answers with that
    error instead of handling the call; `raw` answers with these bytes as they are (status `status`,
    else 200: what a proxy's error page looks like); `drop_connection` closes the connection
    without an answer. `times` is how many calls it applies to (None: until removed).
    `retry_after_s` goes with an error status as API Priority and Fairness sends it on a 429: a
    `Retry-After` header and `details.retryAfterSeconds` in the Status.
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
    raw: bytes | None = None
    retry_after_s: int | None = None
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


def unknown_resource() -> ApiError:
    """A path the server does not serve (a resource whose CRD is not installed, for one), as the
    API server answers it: Go's NewGenericServerResponse for 404, details empty."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def crd_documents(source: CrdSource) -> list[JsonObject]:
    """The CustomResourceDefinitions in `source` (other documents of a YAML file are left out)."""
    if isinstance(source, Path | str):
        documents: list[Any] = list(yaml.safe_load_all(Path(source).read_text()))
    elif isinstance(source, Mapping):
        documents = [source]
    else:
        documents = list(source)
    return [
        copy.deepcopy(dict(d))
        for d in documents
        if isinstance(d, Mapping) and d.get("kind") == "CustomResourceDefinition"
    ]


_VERSION = re.compile(r"v(\d+)(?:(alpha|beta)(\d+))?")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' order of versions (CompareKubeAwareVersionStrings): GA before beta before
    alpha, higher numbers first, then anything else alphabetically. Sorts ascending."""
    match = _VERSION.fullmatch(version)
    if not match:
        return (3, 0, 0, version)
    major, stage, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0), version)


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
    extra_headers: dict[str, str]
    """Headers for the next answer only (a fault's Retry-After)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the call log instead."""

    def setup(self) -> None:
        super().setup()
        self.extra_headers = {}
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
        crds: Iterable[CrdSource] = (),
    ) -> None:
        """`resources` are served from the start, without a schema beyond kubernetes-validate's;
        `crds` (YAML files, or CRD objects) are installed as `install_crds` does."""
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
        self.server_version = (1, 31)
        """(major, minor) that /version answers."""
        self._writes_in_flight = 0
        self.peak_writes_in_flight = 0
        """The most write calls being answered at once (reset by `reset_calls`)."""
        self._stopping = threading.Event()
        self._lifetime: threading.Timer | None = None
        self.install_crds(*crds)

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
            self.peak_writes_in_flight = 0

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

    def install_crds(self, *sources: CrdSource) -> list[JsonObject]:
        """Create the CustomResourceDefinitions in `sources` (YAML files such as
        ../shared/corpus/crds/*.yaml, or CRD objects), as a POST to
        /apis/apiextensions.k8s.io/v1/customresourcedefinitions does: validated (422 Invalid for
        a CRD the API server refuses), established at once, their versions served. No call is
        recorded and no fault or authorizer applies. Returns the CRDs as stored."""
        return [self.store.seed(crd) for source in sources for crd in crd_documents(source)]

    def uninstall_crd(self, name: str) -> None:
        """Delete a CRD (`ciliumnetworkpolicies.cilium.io`) as a DELETE does: its resources are
        no longer served and its objects are gone. No call is recorded."""
        rt = self.resource("customresourcedefinitions")
        self.store.delete(rt, "", name, None, dry_run=False)

    def set_status(
        self, resource: str, name: str, namespace: str, status: JsonObject
    ) -> JsonObject:
        """Write an object's status, as its controller or the kubelet does (no call recorded)."""
        rt = self.resource(resource)
        obj = self.store.get(rt, namespace if rt.namespaced else "", name)
        obj["status"] = status
        return self.store.update(
            rt, namespace, name, obj, dry_run=False, strict=False, subresource="status"
        )

    def get(self, resource: str, name: str, namespace: str = "") -> JsonObject | None:
        rt = self.resource(resource)
        try:
            return self.store.get(rt, namespace if rt.namespaced else "", name)
        except ApiError:
            return None

    def objects(self, resource: str, namespace: str | None = None) -> list[JsonObject]:
        return self.store.all_objects(self.resource(resource), namespace)

    def resource(self, plural: str, group: str | None = None) -> ResourceType:
        """The type served as `plural` (of `group`, when given); a CRD's storage version first."""
        found = [
            rt
            for rt in self.store.resources
            if rt.plural == plural and (group is None or rt.group == group)
        ]
        for rt in found:
            served = self.store.served(rt)
            if served is not None and served.version == served.storage_version:
                return rt
        if not found:
            raise KeyError(f"{plural} is not served")
        return found[0]

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
        discovery = self._discovery(split.path.rstrip("/") or "/")
        if discovery is not None and method == "GET":
            self._send_json(handler, 200, discovery)
            return
        route = self._route(split.path)
        if route is None:
            with self._lock:  # asked all the same: a client counting its calls counts this one
                self._calls.append(_unrouted(method, split.path, self._user(handler) or ""))
            self._send_json(handler, 404, unknown_resource().status())
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
        with self._lock:
            if call.is_write:
                self._writes_in_flight += 1
                self.peak_writes_in_flight = max(self.peak_writes_in_flight, self._writes_in_flight)
        try:
            status, body, stream = self._answer(handler, method, route, call, query, raw, user)
        finally:
            with self._lock:
                if call.is_write:
                    self._writes_in_flight -= 1
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
            if fault.raw is not None:
                self._send(handler, fault.status or 200, fault.raw, "text/html")
                return fault.status or 200, None, None
            if fault.status is not None:
                details = None
                if fault.retry_after_s is not None:
                    details = {"retryAfterSeconds": fault.retry_after_s}
                    handler.extra_headers = {"Retry-After": str(fault.retry_after_s)}
                error = ApiError(fault.status, fault.reason, fault.message, details)
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
            status_details(route.rt, call.name),
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
        warnings: list[str] | None = [] if query.get("fieldValidation") != "Ignore" else None
        try:
            return self._write_or_read(method, route, call, query, raw, handler, strict, warnings)
        finally:
            if warnings:
                handler.extra_headers["Warning"] = ", ".join(
                    f"299 - {json.dumps(w)}" for w in warnings
                )

    def _write_or_read(
        self,
        method: str,
        route: Route,
        call: Call,
        query: dict[str, str],
        raw: bytes,
        handler: _Handler,
        strict: bool,
        warnings: list[str] | None,
    ) -> tuple[int, JsonObject, None]:
        rt, namespace = route.rt, route.namespace or ""
        if route.subresource and route.subresource != "status":
            raise unknown_resource()
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
            created = store.create(
                rt, namespace, body, dry_run=call.dry_run, strict=strict, warnings=warnings
            )
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
                warnings=warnings,
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
                warnings=warnings,
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
                if not store.serves(rt):
                    return  # its CRD was deleted: the API server ends the watch
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
            major, minor = self.server_version
            return {"major": str(major), "minor": str(minor), "gitVersion": f"v{major}.{minor}.0"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for rt in resources:
                if rt.group:
                    groups.setdefault(rt.group, [])
                    if rt.version not in groups[rt.group]:
                        groups[rt.group].append(rt.version)
            listed_groups = []
            for group, versions in sorted(groups.items()):
                ordered = sorted(versions, key=version_priority)
                listed_groups.append(
                    {
                        "name": group,
                        "versions": [
                            {"groupVersion": f"{group}/{v}", "version": v} for v in ordered
                        ],
                        "preferredVersion": {
                            "groupVersion": f"{group}/{ordered[0]}",
                            "version": ordered[0],
                        },
                    }
                )
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": listed_groups}
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
            "resources": [self._discovered(rt, verbs) for rt in listed],
        }

    def _discovered(self, rt: ResourceType, verbs: list[str]) -> JsonObject:
        entry: JsonObject = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": verbs,
        }
        served = self.store.served(rt)
        if served is not None:
            entry["singularName"] = served.singular
            if served.short_names:
                entry["shortNames"] = list(served.short_names)
            if served.categories:
                entry["categories"] = list(served.categories)
        return entry

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
            for header, value in handler.extra_headers.items():
                handler.send_header(header, value)
            handler.extra_headers = {}
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            handler.close_connection = True
