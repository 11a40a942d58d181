"""What each CNI's installer leaves in the API, as its public install manifest writes it: the
DaemonSet (name, namespace, containers and the flags that matter) and the ConfigMap that turns
policy enforcement on or off. Trimmed to what identifies them; everything else is left out.

Sources: flannel's kube-flannel.yml, Calico's calico.yaml and canal.yaml, Cilium's Helm chart
(cilium-config), the AWS VPC CNI's aws-k8s-cni.yaml (aws-node with aws-eks-nodeagent), Antrea's
antrea.yml, kube-router's kubeadm-kuberouter.yaml, Weave Net's weave-daemonset-k8s.yaml and
NodeLocal DNSCache's nodelocaldns.yaml.
"""

from __future__ import annotations

from typing import Any


def container(name: str, image: str, *args: str, command: tuple[str, ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "image": image}
    if command:
        spec["command"] = list(command)
    if args:
        spec["args"] = list(args)
    return spec


def daemon_set(
    namespace: str, name: str, *containers: dict[str, Any], ready: int = 3, desired: int = 3
) -> dict[str, Any]:
    labels = {"k8s-app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"hostNetwork": True, "containers": list(containers)},
            },
        },
        "status": {
            "desiredNumberScheduled": desired,
            "numberReady": ready,
            "currentNumberScheduled": desired,
            "numberMisscheduled": 0,
        },
    }


def config_map(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


FLANNEL = [
    namespace("kube-flannel"),
    daemon_set(
        "kube-flannel",
        "kube-flannel-ds",
        container(
            "kube-flannel",
            "docker.io/flannel/flannel:v0.25.6",
            "--ip-masq",
            "--kube-subnet-mgr",
            command=("/opt/bin/flanneld",),
        ),
    ),
    config_map(
        "kube-flannel",
        "kube-flannel-cfg",
        {"net-conf.json": '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}'},
    ),
]

CALICO = [
    daemon_set(
        "kube-system", "calico-node", container("calico-node", "docker.io/calico/node:v3.28.1")
    ),
]

CANAL = [
    daemon_set(
        "kube-system",
        "canal",
        container("calico-node", "docker.io/calico/node:v3.28.1"),
        container(
            "kube-flannel",
            "quay.io/coreos/flannel:v0.15.1",
            "--ip-masq",
            "--kube-subnet-mgr",
            command=("/opt/bin/flanneld",),
        ),
    ),
]


def cilium(enable_policy: str = "default") -> list[dict[str, Any]]:
    return [
        daemon_set(
            "kube-system",
            "cilium",
            container(
                "cilium-agent",
                "quay.io/cilium/cilium:v1.16.3",
                "--config-dir=/tmp/cilium/config-map",
                command=("cilium-agent",),
            ),
        ),
        config_map(
            "kube-system",
            "cilium-config",
            {"enable-policy": enable_policy, "identity-allocation-mode": "crd"},
        ),
    ]


def aws_node(network_policy: bool) -> list[dict[str, Any]]:
    flag = "true" if network_policy else "false"
    return [
        daemon_set(
            "kube-system",
            "aws-node",
            container(
                "aws-node",
                "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.18.5",
            ),
            container(
                "aws-eks-nodeagent",
                "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon/aws-network-policy-agent:v1.1.3",
                "--enable-ipv6=false",
                f"--enable-network-policy={flag}",
                "--enable-cloudwatch-logs=false",
                "--metrics-bind-addr=:8162",
                "--health-probe-bind-addr=:8163",
            ),
        ),
        config_map(
            "kube-system",
            "amazon-vpc-cni",
            {"enable-network-policy-controller": flag, "enable-windows-ipam": "false"},
        ),
    ]


ANTREA = [
    daemon_set(
        "kube-system",
        "antrea-agent",
        container(
            "antrea-agent",
            "antrea/antrea-agent-ubuntu:v2.1.0",
            "--config=/etc/antrea/antrea-agent.conf",
            command=("antrea-agent",),
        ),
        container("antrea-ovs", "antrea/antrea-agent-ubuntu:v2.1.0", command=("start_ovs",)),
    ),
]


def kube_router(firewall: bool) -> list[dict[str, Any]]:
    return [
        daemon_set(
            "kube-system",
            "kube-router",
            container(
                "kube-router",
                "docker.io/cloudnativelabs/kube-router",
                "--run-router=true",
                f"--run-firewall={'true' if firewall else 'false'}",
                "--run-service-proxy=false",
                command=("/usr/local/bin/kube-router",),
            ),
        )
    ]


def weave(with_npc: bool) -> list[dict[str, Any]]:
    containers = [
        container("weave", "weaveworks/weave-kube:2.8.1", command=("/home/weave/launch.sh",))
    ]
    if with_npc:
        containers.append(container("weave-npc", "weaveworks/weave-npc:2.8.1"))
    return [daemon_set("kube-system", "weave-net", *containers)]


NODE_LOCAL_DNS = [
    daemon_set(
        "kube-system",
        "node-local-dns",
        container(
            "node-cache",
            "registry.k8s.io/dns/k8s-dns-node-cache:1.23.1",
            "-localip",
            "169.254.20.10,10.96.0.10",
            "-conf",
            "/etc/Corefile",
        ),
    ),
]

UNRELATED = [
    namespace("monitoring"),
    daemon_set(
        "monitoring",
        "node-exporter",
        container("node-exporter", "quay.io/prometheus/node-exporter:v1.8.2"),
    ),
]
