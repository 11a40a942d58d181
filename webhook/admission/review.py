"""The AdmissionReview wire format: parse a request body, render a response body.

Only the fields egress-guard reads are extracted, by hand and without copying the object, so a
38 KB review costs little more than a 6 KB one. Anything that is not an AdmissionReview with a
request and a uid is a `ReviewError` (a 4xx); anything else gets an answer.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.core import wording
from webhook.core.decision import Decision
from webhook.core.request import AdmissionRequest

SUPPORTED_API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")

_STATUS_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class ReviewError(ValueError):
    """The body is not an AdmissionReview egress-guard can answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Review:
    api_version: str
    request: AdmissionRequest


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _object(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, dict) else None


def parse_review(body: bytes) -> Review:
    """Decode and check an AdmissionReview; raise ReviewError with a reason a person can act on."""
    if not body:
        raise ReviewError("empty body: expected an AdmissionReview")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise ReviewError(f"body is not valid JSON: {err}") from None
    return review_from_document(document)


def review_from_document(document: Any) -> Review:
    """Check a decoded AdmissionReview (as from JSON or YAML) and extract its request."""
    if not isinstance(document, dict):
        raise ReviewError("body is not a JSON object: expected an AdmissionReview")
    kind = document.get("kind")
    api_version = document.get("apiVersion")
    if kind != "AdmissionReview":
        raise ReviewError(f"kind is {kind!r}: expected AdmissionReview")
    if api_version not in SUPPORTED_API_VERSIONS:
        raise ReviewError(
            f"apiVersion {api_version!r} is not supported: use {SUPPORTED_API_VERSIONS[0]}"
        )
    raw = document.get("request")
    if not isinstance(raw, dict):
        raise ReviewError("the AdmissionReview has no request")
    uid = raw.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("request.uid is missing: the API server always sets it")
    return Review(api_version=api_version, request=request_from_dict(raw, uid))


def request_from_dict(raw: Mapping[str, Any], uid: str) -> AdmissionRequest:
    """The AdmissionRequest fields egress-guard reads, each tolerating a wrong type."""
    obj = _object(raw.get("object"))
    gvk = raw.get("kind")
    gvk = gvk if isinstance(gvk, dict) else {}
    kind = _str(gvk.get("kind")) or _str(obj.get("kind") if obj else None)
    user_info = raw.get("userInfo")
    user_info = user_info if isinstance(user_info, dict) else {}
    groups = user_info.get("groups")
    namespace = _str(raw.get("namespace"))
    if not namespace and obj is not None:
        metadata = obj.get("metadata")
        namespace = _str(metadata.get("namespace")) if isinstance(metadata, dict) else ""
    return AdmissionRequest(
        uid=uid,
        kind=kind,
        group=_str(gvk.get("group")),
        version=_str(gvk.get("version")),
        sub_resource=_str(raw.get("subResource")),
        operation=_str(raw.get("operation")),
        namespace=namespace,
        name=_str(raw.get("name")),
        dry_run=raw.get("dryRun") is True,
        object=obj,
        old_object=_object(raw.get("oldObject")),
        user=_str(user_info.get("username")),
        groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
    )


def response_document(api_version: str, uid: str, decision: Decision) -> dict[str, Any]:
    """The AdmissionReview that answers a request, as a dict (for YAML output and tests)."""
    response: dict[str, Any] = {"uid": uid, "allowed": decision.allowed}
    if not decision.allowed:
        response["status"] = {
            "status": "Failure",
            "code": decision.code,
            "reason": _STATUS_REASONS.get(decision.code, "Forbidden"),
            "message": wording.message(decision),
        }
    if decision.findings:  # the words are made only where there is something to say
        warnings = wording.warnings(decision)
        if warnings:
            response["warnings"] = list(warnings)
        annotations = wording.audit_annotations(decision)
        if annotations:
            response["auditAnnotations"] = dict(annotations)
    if decision.patch and decision.allowed:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(list(decision.patch))).decode()
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


def render_response(api_version: str, uid: str, decision: Decision) -> bytes:
    return orjson.dumps(response_document(api_version, uid, decision))
