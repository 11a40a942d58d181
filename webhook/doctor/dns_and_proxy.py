"""Name resolution and the proxy: what default-deny policies and injected env depend on.

Every generated default-deny policy keeps egress to the policy file's DNS selector open. If that
selector matches no running DNS pod (another label, another namespace), or pods resolve through
NodeLocal DNSCache's link-local address without `dns.cidrs` saying so, default-deny cuts name
resolution. Injected proxy settings send traffic to a Service that must have ready endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from webhook.cluster.cluster_survey import ClusterSurvey, proxy_service_name
from webhook.core.policy import Policy
from webhook.doctor.results import CheckResult, Status, unknown
from webhook.doctor.webhooks import ready_endpoints

DNS, PROXY = "dns", "proxy"
NODE_LOCAL_DNS = "node-local-dns"


def _running_ready(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    ready: list[Mapping[str, Any]] = []
    for pod in pods:
        status = pod.get("status") or {}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or ()}
        if status.get("phase") == "Running" and conditions.get("Ready") == "True":
            ready.append(pod)
    return ready


def _declared_ports(pods: Iterable[Mapping[str, Any]]) -> set[int]:
    return {
        int(port["containerPort"])
        for pod in pods
        for container in (pod.get("spec") or {}).get("containers") or ()
        for port in container.get("ports") or ()
        if isinstance(port.get("containerPort"), int)
    }


def _selector_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def check_dns(survey: ClusterSurvey, policy: Policy, uses_network_policies: bool) -> CheckResult:
    dns = policy.dns
    selector = f"pods {_selector_text(dns.pod_selector)} in {dns.namespace}"
    if survey.dns_pods is None:
        return unknown(DNS, selector, survey.unreadable.get("dns pods", "not read"))
    node_local = [ds for ds in survey.daemon_sets or () if ds.name == NODE_LOCAL_DNS]
    if node_local and not dns.cidrs:
        where = f"DaemonSet {node_local[0].namespace}/{node_local[0].name}"
        return CheckResult(
            DNS,
            Status.PROBLEM if uses_network_policies else Status.WARNING,
            "NodeLocal DNSCache runs, and dns.cidrs is not set: pods resolve names through "
            "its node-local address, which default-deny policies do not open",
            (f"found {where}",),
            "Set dns.cidrs in the policy file to its address (usually 169.254.20.10/32).",
        )
    ready = _running_ready(survey.dns_pods)
    if not ready:
        found = len(survey.dns_pods)
        return CheckResult(
            DNS,
            Status.PROBLEM if uses_network_policies else Status.WARNING,
            f"the DNS selector matches no running, ready pod ({selector}: {found} found): "
            "default-deny policies would cut name resolution",
            fix="Set dns.namespace and dns.podSelector in the policy file to your DNS pods' "
            "(`kubectl get pods -A -l k8s-app=kube-dns` and its neighbours: coredns, "
            "kube-dns).",
        )
    declared = _declared_ports(ready)
    if declared and not declared & set(dns.ports):
        return CheckResult(
            DNS,
            Status.PROBLEM,
            f"the DNS pods listen on {', '.join(map(str, sorted(declared)))}, and the policy "
            f"file opens {', '.join(map(str, dns.ports))}",
            fix="Set dns.ports in the policy file to the port the DNS pods serve on.",
        )
    return CheckResult(DNS, Status.OK, f"{len(ready)} ready DNS pods match ({selector})")


def check_proxy(survey: ClusterSurvey, policy: Policy) -> CheckResult:
    proxy = policy.proxy
    if proxy is None:
        return CheckResult(PROXY, Status.OK, "no proxy in the policy file: nothing to check")
    service = proxy_service_name(proxy.url, proxy.namespace)
    for what in ("proxy pods", "proxy service", "proxy endpointslices"):
        if what in survey.unreadable:
            return unknown(PROXY, what, survey.unreadable[what])
    if service is not None:
        name, namespace = service
        if survey.proxy_service is None:
            return CheckResult(
                PROXY,
                Status.PROBLEM,
                f"the proxy URL names Service {namespace}/{name}, which does not exist: "
                "injected proxy settings lead nowhere",
                fix="Deploy the proxy, or correct proxy.url in the policy file.",
            )
        ready = ready_endpoints(survey.proxy_endpoint_slices or ())
        if ready == 0:
            return CheckResult(
                PROXY,
                Status.PROBLEM,
                f"the proxy Service {namespace}/{name} has no ready endpoint: workloads with "
                "injected proxy settings cannot reach anything outside",
                fix=f"Find why the proxy's pods are not ready: `kubectl -n {namespace} get pods`.",
            )
        return CheckResult(
            PROXY, Status.OK, f"the proxy Service {namespace}/{name} has {ready} ready endpoints"
        )
    ready_pods = _running_ready(survey.proxy_pods or ())
    if not ready_pods:
        return CheckResult(
            PROXY,
            Status.PROBLEM,
            f"no running, ready proxy pod matches {_selector_text(proxy.pod_selector)} in "
            f"{proxy.namespace}",
            fix="Deploy the proxy, or correct proxy.namespace and proxy.podSelector.",
        )
    return CheckResult(PROXY, Status.OK, f"{len(ready_pods)} ready proxy pods")
