"""`doctor --probe`: whether a default-deny NetworkPolicy really blocks egress, tested with pods.

What the API shows only suggests enforcement; this tests it. In a scratch namespace of its own:
a target pod serves HTTP; a control pod, which no policy selects, must reach it (else nothing can
be told: the network or the image is the problem); then a default-deny egress policy selecting
the probe pod is created before the probe pod, which must fail to reach the same target. The
namespace (and with it everything in it) is deleted afterwards, whatever happened, and the whole
probe is bounded in time.

It needs, beyond doctor's reads: create and delete on namespaces, create and get on pods, and
create on networkpolicies (in the scratch namespace, which a Role cannot name in advance: a
ClusterRole bound to whoever runs it).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from webhook.cluster.api_calls import ApiRejected, ApiUnreachable, call_json
from webhook.core.raw_object import JsonObject

PROBE_TIMEOUT_S = 120.0
PROBE_IMAGE = "busybox:1.36"
CALL_TIMEOUT = (1.0, 10.0)
TARGET_PORT = 8080
MANAGED_BY = {"app.kubernetes.io/managed-by": "egress-guard-doctor"}


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    enforced: bool | None
    """True: the probe pod was blocked and the control pod was not. None: cannot be told."""
    detail: str
    namespace: str
    cleaned_up: bool


class _Timeout(Exception):
    pass


def _restricted_security() -> dict[str, Any]:
    """Fit for the `restricted` Pod Security level, so that a cluster enforcing it admits the
    probe."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod(name: str, role: str, image: str, command: list[str], restart: str) -> JsonObject:
    """A probe pod; /www is a scratch volume (the target serves a page from it)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"role": role, **MANAGED_BY}},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "volumes": [{"name": "www", "emptyDir": {}}],
            "containers": [
                {
                    "name": role,
                    "image": image,
                    "command": command,
                    "securityContext": _restricted_security(),
                    "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                }
            ],
        },
    }


TARGET_COMMAND = [
    "sh",
    "-c",
    f"echo ok > /www/index.html && exec httpd -f -p {TARGET_PORT} -h /www",
]
"""busybox httpd answers 404 (and wget fails) without a page to serve."""
SETTLE_S = 5
"""How long the probe pod waits before its first try: some CNIs program a new pod's policy a
moment after it starts, and a try in that moment would wrongly say nothing is enforced."""


def _reach(address: str, *, settle_s: int = 0) -> list[str]:
    """Exit 0 as soon as the target answers, non-zero after five tries (the target may still be
    starting to listen)."""
    url = f"http://{address}:{TARGET_PORT}/"
    tries = f"for i in 1 2 3 4 5; do wget -q -T 3 -O /dev/null {url} && exit 0; sleep 1; done"
    return ["sh", "-c", f"sleep {settle_s}; {tries}; exit 1"]


class EnforcementProbe:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        image: str = PROBE_IMAGE,
        timeout_s: float = PROBE_TIMEOUT_S,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_progress: Callable[[str], None] = lambda _message: None,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._net = client.NetworkingV1Api(api)
        self._image = image
        self._timeout_s = timeout_s
        self._poll_s = poll_s
        self._clock = clock
        self._sleep = sleep
        self._progress = on_progress

    def run(self) -> ProbeOutcome:
        namespace = f"egress-guard-probe-{secrets.token_hex(3)}"
        deadline = self._clock() + self._timeout_s
        try:
            self._progress(f"probe: creating namespace {namespace}")
            call_json(
                self._core.create_namespace,
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace, "labels": dict(MANAGED_BY)},
                },
                timeout=CALL_TIMEOUT,
            )
        except (ApiRejected, ApiUnreachable) as err:
            return ProbeOutcome(None, f"could not create a scratch namespace: {err}", "", True)
        outcome = ProbeOutcome(None, "the probe was interrupted", namespace, False)
        try:
            outcome = self._probe(namespace, deadline)
        except _Timeout as err:
            outcome = ProbeOutcome(None, str(err), namespace, False)
        except (ApiRejected, ApiUnreachable) as err:
            outcome = ProbeOutcome(None, f"the probe failed: {err}", namespace, False)
        finally:  # whatever happened, Ctrl-C included: nothing of the probe is left behind
            cleaned = self._clean_up(namespace)
        return _cleaned(outcome, cleaned)

    def _probe(self, namespace: str, deadline: float) -> ProbeOutcome:
        target = _pod("target", "target", self._image, TARGET_COMMAND, "Always")
        self._create_pod(namespace, target)
        self._progress("probe: waiting for the target pod")
        address = self._wait(namespace, "target", deadline, _running_address)
        control = _pod("control", "control", self._image, _reach(address), "Never")
        self._create_pod(namespace, control)
        self._progress("probe: the control pod (no policy) reaches the target?")
        control_phase = self._wait(namespace, "control", deadline, _finished)
        if control_phase != "Succeeded":
            return ProbeOutcome(
                None,
                f"the control pod, under no policy, could not reach the target at {address}: "
                "the network or the image is in the way, so enforcement cannot be told",
                namespace,
                False,
            )
        call_json(
            self._net.create_namespaced_network_policy,
            namespace,
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "deny-egress", "labels": dict(MANAGED_BY)},
                "spec": {
                    "podSelector": {"matchLabels": {"role": "probe"}},
                    "policyTypes": ["Egress"],
                },
            },
            timeout=CALL_TIMEOUT,
        )
        probe = _pod("probe", "probe", self._image, _reach(address, settle_s=SETTLE_S), "Never")
        self._create_pod(namespace, probe)
        self._progress("probe: the probe pod (default-deny egress) is blocked?")
        probe_phase = self._wait(namespace, "probe", deadline, _finished)
        blocked = probe_phase == "Failed"
        detail = (
            "a default-deny egress policy blocked the probe pod, and the control pod reached "
            "the same target: NetworkPolicies are enforced"
            if blocked
            else "the probe pod reached the target despite a default-deny egress policy: "
            "NetworkPolicies are not enforced on this cluster"
        )
        return ProbeOutcome(blocked, detail, namespace, False)

    def _create_pod(self, namespace: str, pod: JsonObject) -> None:
        call_json(self._core.create_namespaced_pod, namespace, pod, timeout=CALL_TIMEOUT)

    def _wait(
        self, namespace: str, name: str, deadline: float, ready: Callable[[JsonObject], str | None]
    ) -> str:
        while True:
            pod = call_json(self._core.read_namespaced_pod, name, namespace, timeout=CALL_TIMEOUT)
            value = ready(pod)
            if value is not None:
                return value
            if self._clock() >= deadline:
                raise _Timeout(
                    f"pod {namespace}/{name} did not get there within {self._timeout_s:g} s "
                    f"(phase {(pod.get('status') or {}).get('phase', 'unknown')}): "
                    "enforcement cannot be told"
                )
            self._sleep(self._poll_s)

    def _clean_up(self, namespace: str) -> bool:
        self._progress(f"probe: deleting namespace {namespace}")
        try:
            call_json(self._core.delete_namespace, namespace, timeout=CALL_TIMEOUT)
        except ApiRejected as err:
            return err.not_found
        except ApiUnreachable:
            return False
        return True


def _running_address(pod: JsonObject) -> str | None:
    status = pod.get("status") or {}
    address = status.get("podIP")
    if status.get("phase") == "Running" and isinstance(address, str) and address:
        return address
    return None


def _finished(pod: JsonObject) -> str | None:
    phase = (pod.get("status") or {}).get("phase")
    return phase if phase in ("Succeeded", "Failed") else None


def _cleaned(outcome: ProbeOutcome, cleaned: bool) -> ProbeOutcome:
    return ProbeOutcome(outcome.enforced, outcome.detail, outcome.namespace, cleaned)
