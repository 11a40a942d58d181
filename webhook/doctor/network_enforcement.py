"""Is there anything enforcing NetworkPolicies? The CNI, told from what the API shows.

The API server accepts a NetworkPolicy whether or not anything enforces it. Which CNI runs is
seen in its DaemonSet (by name, in whichever namespace its installer uses) and, for some, in a
ConfigMap that turns policy enforcement off. A CNI that is not recognised is `unknown`, never
`ok`: only `--probe` can tell for sure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from webhook.cluster.cluster_survey import ClusterSurvey, DaemonSetSummary
from webhook.cluster.enforcement_probe import ProbeOutcome
from webhook.doctor.results import CheckResult, Status, unknown

CHECK = "network-policy-enforcement"
PROBE = "network-policy-probe"
PROBE_FIX = "`egress-guard doctor --probe` tests for real that a default-deny policy blocks egress."

CNI_NAMESPACES = frozenset(
    {"kube-system", "kube-flannel", "calico-system", "cilium", "tigera-operator"}
)
"""Where CNI installers put their DaemonSets. A DaemonSet of the same name elsewhere is a
tenant's, and says nothing about the cluster's network: anyone with the `edit` role could make
a `calico-node` of their own to turn a problem into `ok`."""

EVIDENCE_CRDS = {
    "ciliumnetworkpolicies.cilium.io": "Cilium",
    "networkpolicies.crd.projectcalico.org": "Calico",
    "felixconfigurations.crd.projectcalico.org": "Calico",
    "policyendpoints.networking.k8s.aws": "the AWS VPC CNI network policy controller",
    "antreaagentinfos.crd.antrea.io": "Antrea",
}


@dataclass(frozen=True, slots=True)
class Cni:
    """A CNI found running, and whether it enforces NetworkPolicies (None: cannot tell)."""

    name: str
    where: str
    enforces: bool | None
    why: str
    ready: bool = True


def _args(daemon_set: DaemonSetSummary, container: str | None = None) -> list[str]:
    found: list[str] = []
    for spec in daemon_set.containers:
        if container is None or spec.get("name") == container:
            found += [str(arg) for arg in (*spec.get("command", ()), *spec.get("args", ()))]
    return found


def _container_names(daemon_set: DaemonSetSummary) -> set[str]:
    return {str(spec.get("name")) for spec in daemon_set.containers}


def _flag(args: Iterable[str], name: str) -> str | None:
    """The value of `--name=value` (or a bare `--name`: "true")."""
    for arg in args:
        if arg == f"--{name}":
            return "true"
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1].strip().lower()
    return None


ConfigMaps = Mapping[tuple[str, str], Mapping[str, str]]


def identify(daemon_sets: Iterable[DaemonSetSummary], config_maps: ConfigMaps) -> list[Cni]:
    """The CNIs among the DaemonSets, each with whether its settings enforce NetworkPolicies."""
    found: list[Cni] = []
    for ds in daemon_sets:
        if ds.namespace not in CNI_NAMESPACES or ds.desired == 0:
            continue  # a tenant's namesake, or one that runs on no node, enforces nothing
        where = f"DaemonSet {ds.namespace}/{ds.name}"
        ready = ds.ready >= ds.desired
        containers = _container_names(ds)
        name = ds.name
        if name in ("cilium", "anetd"):
            setting = (config_maps.get(("kube-system", "cilium-config")) or {}).get(
                "enable-policy", "default"
            )
            enforces = setting.strip().lower() != "never"
            found.append(Cni("Cilium", where, enforces, f"cilium-config enable-policy: {setting}"))
        elif name == "canal" or {"calico-node", "kube-flannel"} <= containers:
            found.append(Cni("Canal (flannel with Calico policy)", where, True, "calico-node"))
        elif name == "calico-node":
            found.append(Cni("Calico", where, True, "calico-node enforces NetworkPolicies"))
        elif name.startswith("kube-flannel"):
            found.append(
                Cni("flannel", where, False, "flannel routes pods but enforces no NetworkPolicy")
            )
        elif name == "aws-node":
            agent = _flag(_args(ds), "enable-network-policy")  # the aws-eks-nodeagent container
            setting = (config_maps.get(("kube-system", "amazon-vpc-cni")) or {}).get(
                "enable-network-policy-controller", ""
            )
            on = agent == "true" or setting.strip().lower() == "true"
            why = (
                "the VPC CNI's network policy agent is enabled"
                if on
                else "the VPC CNI without its network policy agent enabled "
                "(aws-eks-nodeagent --enable-network-policy=true)"
            )
            found.append(Cni("AWS VPC CNI", where, on, why))
        elif name == "antrea-agent":
            found.append(Cni("Antrea", where, True, "antrea-agent enforces NetworkPolicies"))
        elif name == "kube-router":
            firewall = _flag(_args(ds), "run-firewall")
            on = firewall != "false"
            why = f"kube-router --run-firewall={firewall or 'true (default)'}"
            found.append(Cni("kube-router", where, on, why))
        elif name == "weave-net":
            on = "weave-npc" in containers
            why = "weave-npc enforces NetworkPolicies" if on else "no weave-npc container"
            found.append(Cni("Weave Net", where, on, why))
        elif name == "azure-npm":
            found.append(Cni("Azure NPM", where, True, "azure-npm enforces NetworkPolicies"))
        else:
            continue
        if not ready:
            found[-1] = Cni(found[-1].name, where, found[-1].enforces, found[-1].why, ready=False)
    return found


def check(survey: ClusterSurvey, uses_network_policies: bool) -> CheckResult:
    """`uses_network_policies`: some namespace enforces with generated NetworkPolicies."""
    if survey.daemon_sets is None:
        return unknown(
            CHECK,
            "DaemonSets",
            survey.unreadable.get("daemonsets", "not read"),
            "Run doctor with credentials that may list daemonsets (apps) in all namespaces.",
        )
    cnis = identify(survey.daemon_sets, survey.config_maps)
    crds = sorted(
        f"{crd} ({owner})" for crd, owner in EVIDENCE_CRDS.items() if crd in (survey.crds or ())
    )
    details = tuple(f"{cni.name}: {cni.why} ({cni.where})" for cni in cnis) + tuple(
        f"CustomResourceDefinition {crd}" for crd in crds
    )
    enforcing = [cni for cni in cnis if cni.enforces]
    if enforcing:
        not_ready = [cni for cni in enforcing if not cni.ready]
        if not_ready:
            return CheckResult(
                CHECK,
                Status.WARNING,
                f"{not_ready[0].name} enforces NetworkPolicies, but not every node runs it ready",
                details,
                f"Find why {not_ready[0].where} is not ready on every node: pods on those "
                "nodes may run without enforcement.",
            )
        names = ", ".join(sorted({cni.name for cni in enforcing}))
        return CheckResult(CHECK, Status.OK, f"{names} enforces NetworkPolicies", details)
    if cnis:
        status = Status.PROBLEM if uses_network_policies else Status.WARNING
        where = (
            "namespaces that enforce with NetworkPolicies are not protected"
            if uses_network_policies
            else "no namespace relies on NetworkPolicies yet"
        )
        names = ", ".join(sorted({cni.name for cni in cnis}))
        return CheckResult(
            CHECK,
            status,
            f"nothing enforces NetworkPolicies ({names}): {where}",
            details,
            "Run a CNI that enforces NetworkPolicies (Calico beside flannel as Canal, Cilium "
            "with enable-policy default, the VPC CNI's network policy agent), or use "
            f"inject: proxy only. {PROBE_FIX}",
        )
    return CheckResult(
        CHECK,
        Status.UNKNOWN,
        "no known CNI found: whether NetworkPolicies are enforced cannot be told from the API",
        details,
        PROBE_FIX,
    )


def probe_result(outcome: ProbeOutcome) -> CheckResult:
    """What `--probe` found, as a result of its own beside what the API suggested."""
    details: tuple[str, ...] = ()
    if not outcome.cleaned_up:
        details = (f"namespace {outcome.namespace} could not be deleted: delete it",)
    if outcome.enforced is True:
        return CheckResult(PROBE, Status.OK, outcome.detail, details)
    if outcome.enforced is False:
        return CheckResult(
            PROBE,
            Status.PROBLEM,
            outcome.detail,
            details,
            "Run a CNI that enforces NetworkPolicies, or turn its policy enforcement on.",
        )
    return CheckResult(PROBE, Status.UNKNOWN, outcome.detail, details)
