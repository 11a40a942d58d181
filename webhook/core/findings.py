"""What egress-guard finds about a request, as data: which check, about what, why, the fix, and
how serious it is.

Everything egress-guard has to say about a review is a `Finding`: a check's violation, advice
worth a warning, a namespace label it had to interpret, a cluster that did not answer. Text is
made from findings in one place (`wording.py`), for the AdmissionResponse, the decision log,
Events and every output of the offline commands, so rewording a message never changes what a
program reading the findings sees. Each finding names a check id registered once here, as Pod
Security Admission registers its checks: ids are a stable, documented vocabulary (`check -o
json`, the decision log), and two places claiming the same id is a mistake caught at import.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """A violation denies under enforce (and warns under warn); advice only ever warns."""

    VIOLATION = "violation"
    ADVICE = "advice"


@dataclass(frozen=True, slots=True)
class Subject:
    """What a finding is about: a Kubernetes object (`Deployment "web"`), or a part of one or of
    the policy file (`container "app"`, `profile "stripe"`)."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f'{self.kind} "{self.name}"'


DetailValue = str | int | bool | tuple[str, ...]
Detail = tuple[tuple[str, DetailValue], ...]
"""Machine-readable facts of a finding, as (key, value) pairs: immutable and hashable, so a
finding can be shared between reviews (memoised) and used as a key."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing egress-guard found.

    `reason` continues the subject as a sentence (`has no egress profile`), or stands alone when
    there is no subject; `hint` says what to do about it, and `short_hint` says it in fewer words
    for a kubectl warning, which has 120 characters. None carries the subject or any prefix:
    `wording` composes them.
    """

    check: str
    severity: Severity
    subject: Subject | None
    reason: str
    hint: str = ""
    detail: Detail = ()
    short_hint: str = ""

    @property
    def is_violation(self) -> bool:
        return self.severity is Severity.VIOLATION

    def details(self) -> dict[str, DetailValue | list[str]]:
        """The detail as a JSON-ready mapping (tuples as lists)."""
        return {key: list(v) if isinstance(v, tuple) else v for key, v in self.detail}

    def get(self, key: str) -> DetailValue | None:
        """One detail value, or None."""
        for name, value in self.detail:
            if name == key:
                return value
        return None


def detail(**values: DetailValue | None) -> Detail:
    """Detail pairs from keyword arguments, leaving out the ones that are None."""
    return tuple((key, value) for key, value in values.items() if value is not None)


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """A registered check id and what it is about, for documentation and `explain`."""

    id: str
    title: str
    workload_check: bool
    """Run on every workload (the checks in `checks/`), as opposed to raised where something
    happens (a namespace label read, the cluster not answering)."""


_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_REGISTRY: dict[str, CheckInfo] = {}


class DuplicateCheck(ValueError):
    """Two registrations of one check id."""


def register(check_id: str, title: str, *, workload_check: bool = False) -> str:
    """Register a check id once; a second registration of the same id is refused."""
    if not _ID.match(check_id):
        raise ValueError(f"check id {check_id!r} must be lower-case words joined by '-'")
    if check_id in _REGISTRY:
        raise DuplicateCheck(f"check id {check_id!r} is registered twice")
    _REGISTRY[check_id] = CheckInfo(check_id, title, workload_check)
    return check_id


def registered() -> Mapping[str, CheckInfo]:
    """Every registered check id, in registration order."""
    return dict(_REGISTRY)


# Ids raised outside the workload checks, where what they are about happens. The workload checks
# register theirs in their own modules (checks/).
NAMESPACE_LABELS = register("namespace-labels", "a namespace label egress-guard had to interpret")
NOT_NETWORK_ENFORCED = register(
    "not-network-enforced",
    "an enforcing namespace whose inject creates no NetworkPolicies: labels only",
)
PREEXISTING = register(
    "preexisting", "an update allowed because the object lacked a valid profile before it too"
)
DEFINED_PROFILES = register("defined-profiles", "the profiles the policy file defines")
HOST_NAMES = register("host-names", "host names in a profile, which no NetworkPolicy can express")
BACKEND_LIMITS = register(
    "backend-limits", "what a backend (Cilium, Istio) cannot render of a profile, left out"
)
PROXY_ENV = register("proxy-env", "proxy variables not injected into a container, and why")
NETWORK_POLICIES_REPORTED = register(
    "network-policies-reported",
    "NetworkPolicies that would be ensured, where none are (dry run, no cluster)",
)
NETWORK_POLICIES_NOT_ENSURED = register(
    "network-policies-not-ensured", "NetworkPolicies that could not be ensured through the API"
)
NAMESPACE_UNAVAILABLE = register(
    "namespace-unavailable", "a namespace whose labels could not be read through the API"
)
MUTATION_SKIPPED = register(
    "mutation-skipped", "a Pod admitted without proxy variables because mutation failed"
)
NAMESPACE_PREVIEW = register(
    "namespace-preview", "what a namespace's new mode means for the workloads already in it"
)
MALFORMED_OBJECT = register(
    "malformed-object", "a workload review whose object is not an object (null, a list, a string)"
)
INTERNAL_ERROR = register("internal-error", "a review egress-guard failed to evaluate")
