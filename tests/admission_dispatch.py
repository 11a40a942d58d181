"""A local stand-in for kube-apiserver's admission dispatch: which webhooks of the rendered
configurations a request reaches, the AdmissionReview each is sent, and what the API server makes
of their answers.

No real kube-apiserver runs here, so this double is what the end-to-end tests of the rules trust.
It keeps the semantics egress-guard relies on, from the Kubernetes documentation ("Dynamic
Admission Control": matching requests) and from a real v1.36 server
(`../shared/notes/kube-apiserver-behaviour.md`):

- `rules` match operation, API group, version and resource, subresources spelled `pods/status`
  (a rule for `pods` does not match `pods/status`), and scope;
- `namespaceSelector` is matched against the labels of the request's namespace; for a Namespace
  object itself, against the object's own labels as they are after the change (the old ones on
  DELETE), so an UPDATE removing a label is not matched by a selector on that label; for other
  cluster-scoped objects it always matches;
- `objectSelector` matches when the old *or* the new object matches; an absent object (the old
  one on CREATE, the new one on DELETE) never matches;
- `matchConditions` (CEL, via cel-python) all must be true; one that fails to evaluate applies
  the webhook's failurePolicy;
- `userInfo` names the caller as the API server does: a ServiceAccount is
  `system:serviceaccount:<ns>:<name>` in `system:serviceaccounts`,
  `system:serviceaccounts:<ns>` and `system:authenticated`;
- a webhook that cannot be reached applies its failurePolicy (`Fail` refuses, `Ignore` skips);
  mutating webhooks are called one after the other, each patch applied before the next, and a
  refusal ends the request; validating webhooks are called all (kube-apiserver calls them in
  parallel), and any refusal refuses it, with the first refusal's message.
"""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import celpy
import jsonpatch

Send = Callable[[str, dict[str, Any]], tuple[int, Any]]
"""POST a document to a webhook path; (HTTP status, decoded body). Raises OSError when the
webhook cannot be reached."""


@dataclass(frozen=True)
class Caller:
    """Who makes a request, as authentication names them."""

    username: str
    groups: tuple[str, ...] = ("system:authenticated",)

    @staticmethod
    def service_account(namespace: str, name: str) -> Caller:
        return Caller(
            f"system:serviceaccount:{namespace}:{name}",
            (
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
        )

    def as_user_info(self) -> dict[str, Any]:
        return {"username": self.username, "groups": list(self.groups)}


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool = True


PODS = Resource("", "v1", "pods", "Pod")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
DAEMONSETS = Resource("apps", "v1", "daemonsets", "DaemonSet")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
NETWORK_POLICIES = Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")


@dataclass
class Outcome:
    """What the API server answers the client, and which webhooks it called on the way."""

    allowed: bool
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    called: list[str] = field(default_factory=list)
    object: dict[str, Any] | None = None
    """The object after the mutating webhooks."""


def labels_of(obj: Mapping[str, Any] | None) -> dict[str, str] | None:
    if obj is None:
        return None
    return dict((obj.get("metadata") or {}).get("labels") or {})


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A label selector as the API server applies it (an absent selector selects everything)."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or ():
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _rule_matches(
    rule: Mapping[str, Any], operation: str, resource: Resource, subresource: str
) -> bool:
    def listed(values: Sequence[str], value: str) -> bool:
        return "*" in values or value in values

    name = f"{resource.resource}/{subresource}" if subresource else resource.resource
    resources = rule.get("resources") or []
    scope = rule.get("scope", "*")
    return (
        listed(rule.get("operations") or [], operation)
        and listed(rule.get("apiGroups") or [], resource.group)
        and listed(rule.get("apiVersions") or [], resource.version)
        and (name in resources or "*/*" in resources or (not subresource and "*" in resources))
        and scope in ("*", "Namespaced" if resource.namespaced else "Cluster")
    )


class AdmissionDispatch:
    """Sends requests through rendered webhook configurations, as kube-apiserver does."""

    def __init__(
        self,
        configurations: Sequence[Mapping[str, Any]],
        namespaces: Mapping[str, Mapping[str, str]],
        send: Send,
    ) -> None:
        mutating = [c for c in configurations if c["kind"] == "MutatingWebhookConfiguration"]
        validating = [c for c in configurations if c["kind"] == "ValidatingWebhookConfiguration"]
        self.webhooks = [(True, hook) for c in mutating for hook in c["webhooks"]] + [
            (False, hook) for c in validating for hook in c["webhooks"]
        ]
        self.namespaces = {name: dict(labels) for name, labels in namespaces.items()}
        self.send = send
        self._cel = celpy.Environment()

    def _namespace_matches(
        self,
        hook: Mapping[str, Any],
        resource: Resource,
        namespace: str,
        obj: Mapping[str, Any] | None,
        old: Mapping[str, Any] | None,
    ) -> bool:
        selector = hook.get("namespaceSelector")
        if resource.kind == "Namespace" and not resource.group:
            own = labels_of(obj) if obj is not None else labels_of(old)
            return selects(selector, own or {})
        if not resource.namespaced:
            return True
        labels = dict(self.namespaces.get(namespace, {}))
        labels.setdefault("kubernetes.io/metadata.name", namespace)
        return selects(selector, labels)

    @staticmethod
    def _object_matches(
        hook: Mapping[str, Any], obj: Mapping[str, Any] | None, old: Mapping[str, Any] | None
    ) -> bool:
        selector = hook.get("objectSelector")
        if not selector:
            return True
        return any(
            labels is not None and selects(selector, labels)
            for labels in (labels_of(obj), labels_of(old))
        )

    def _conditions(self, hook: Mapping[str, Any], request: Mapping[str, Any]) -> bool | None:
        """True when every condition holds, False when one does not, None when one fails."""
        activation = {
            "request": celpy.json_to_cel(
                {key: value for key, value in request.items() if key not in ("object", "oldObject")}
            ),
            "object": celpy.json_to_cel(request.get("object")),
            "oldObject": celpy.json_to_cel(request.get("oldObject")),
        }
        for condition in hook.get("matchConditions") or ():
            program = self._cel.program(self._cel.compile(condition["expression"]))
            try:
                result = program.evaluate(activation)
            except celpy.CELEvalError:
                return None
            if not isinstance(result, celpy.celtypes.BoolType):
                return None
            if not result:
                return False
        return True

    def request(
        self,
        caller: Caller,
        operation: str,
        resource: Resource,
        obj: dict[str, Any] | None,
        *,
        old: dict[str, Any] | None = None,
        namespace: str = "",
        subresource: str = "",
        dry_run: bool = False,
    ) -> Outcome:
        named = obj if obj is not None else old
        name = str(((named or {}).get("metadata") or {}).get("name") or "")
        current = copy.deepcopy(obj)
        outcome = Outcome(allowed=True)
        refusal: Outcome | None = None
        for mutating, hook in self.webhooks:
            if not any(
                _rule_matches(rule, operation, resource, subresource) for rule in hook["rules"]
            ):
                continue
            if not self._namespace_matches(hook, resource, namespace, current, old):
                continue
            if not self._object_matches(hook, current, old):
                continue
            review_request = {
                "uid": str(uuid.uuid4()),
                "kind": {
                    "group": resource.group,
                    "version": resource.version,
                    "kind": resource.kind,
                },
                "resource": {
                    "group": resource.group,
                    "version": resource.version,
                    "resource": resource.resource,
                },
                "subResource": subresource or None,
                "requestKind": {
                    "group": resource.group,
                    "version": resource.version,
                    "kind": resource.kind,
                },
                "name": name,
                "namespace": namespace if resource.namespaced else "",
                "operation": operation,
                "userInfo": caller.as_user_info(),
                "object": current,
                "oldObject": old,
                "dryRun": dry_run,
            }
            review_request = {
                k: v
                for k, v in review_request.items()
                if v is not None or k in ("object", "oldObject")
            }
            matched = self._conditions(hook, review_request)
            fail_closed = hook.get("failurePolicy", "Fail") == "Fail"
            failure = ""
            response: dict[str, Any] | None = None
            if matched is None:
                failure = f"matchCondition of {hook['name']} failed"
            elif not matched:
                continue
            else:
                outcome.called.append(hook["name"])
                path = hook["clientConfig"]["service"]["path"]
                document = {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "request": review_request,
                }
                try:
                    status, body = self.send(path, document)
                except OSError as err:
                    failure = f"failed calling webhook {hook['name']}: {err}"
                else:
                    if status == 200 and isinstance(body, dict) and "response" in body:
                        response = body["response"]
                    else:
                        failure = f"webhook {hook['name']} answered {status}"
            if response is None:
                if fail_closed:
                    refusal = refusal or Outcome(False, failure)
                    if mutating:
                        break
                continue
            assert response["uid"] == review_request["uid"], "the answer names the request"
            outcome.warnings.extend(response.get("warnings") or [])
            if not response["allowed"]:
                refusal = refusal or Outcome(
                    False, (response.get("status") or {}).get("message", "")
                )
                if mutating:
                    break
            elif mutating and response.get("patch"):
                ops = jsonpatch.JsonPatch.from_string(base64.b64decode(response["patch"]).decode())
                current = ops.apply(current)
        if refusal is not None:
            refusal.warnings, refusal.called = outcome.warnings, outcome.called
            return refusal
        outcome.object = current
        return outcome
