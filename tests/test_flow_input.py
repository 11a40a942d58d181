"""Reading flow records: Hubble's two shapes (and protojson's camelCase), what is skipped, CSV
with and without a header, and lines that cannot be read."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from webhook.cli.flow_input import (
    FlowFileError,
    FlowSource,
    ReadStats,
    open_sources,
    read_flows,
)
from webhook.core.flow_matching import ObservedFlow, Peer

FLOWS = Path(__file__).parent / "flows"
PROFILE = "egress-guard.io/profile"


def read(path: Path, fmt: Any = "auto") -> tuple[list[ObservedFlow], ReadStats]:
    stats = ReadStats()
    found = list(read_flows(open_sources((str(path),)), stats, profile_label=PROFILE, fmt=fmt))
    return found, stats


def hubble_flow(**changes: Any) -> dict[str, Any]:
    flow: dict[str, Any] = {
        "time": "2026-11-30T09:00:01.007919Z",
        "verdict": "FORWARDED",
        "IP": {"source": "10.244.1.21", "destination": "140.82.112.3", "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 40100, "destination_port": 443, "flags": {"SYN": True}}},
        "source": {
            "identity": 50217,
            "namespace": "payments",
            "labels": [
                "k8s:app=checkout",
                f"k8s:{PROFILE}=stripe",
                "k8s:io.kubernetes.pod.namespace=payments",
                "k8s:pod-template-hash=7d4b9c8f6d",
            ],
            "pod_name": "checkout-7d4b9c8f6d-x2k9p",
        },
        "destination": {"identity": 2, "labels": ["reserved:world"]},
        "Type": "L3_L4",
        "destination_names": ["API.GitHub.com."],
        "traffic_direction": "EGRESS",
        "is_reply": False,
    }
    flow.update(changes)
    return flow


def lines(path: Path, *items: Any) -> Path:
    path.write_text(
        "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items)
    )
    return path


def test_the_wrapper_of_hubble_observe_and_a_bare_flow_read_alike(tmp_path: Path) -> None:
    path = lines(tmp_path / "f.jsonl", {"flow": hubble_flow(), "node_name": "n1"}, hubble_flow())
    (first, second), stats = read(path)
    assert first == second
    assert first.namespace == "payments" and first.pod == "checkout-7d4b9c8f6d-x2k9p"
    assert first.labels == {
        "app": "checkout",
        PROFILE: "stripe",
        "io.kubernetes.pod.namespace": "payments",
        "pod-template-hash": "7d4b9c8f6d",
    }
    assert first.workload == "checkout"
    assert (first.ip, first.port, first.protocol) == ("140.82.112.3", 443, "TCP")
    assert first.names == ("api.github.com",)
    assert first.peer is None and not first.dropped
    assert (stats.records, stats.skipped, stats.problems) == (2, {}, [])


def test_protojsons_camel_case_names_are_read_too(tmp_path: Path) -> None:
    flow = hubble_flow()
    flow["trafficDirection"] = flow.pop("traffic_direction")
    flow["isReply"] = flow.pop("is_reply")
    flow["destinationNames"] = flow.pop("destination_names")
    flow["source"]["podName"] = flow["source"].pop("pod_name")
    flow["l4"] = {"UDP": {"sourcePort": 1, "destinationPort": 123}}
    (found,), _ = read(lines(tmp_path / "f.jsonl", {"flow": flow}))
    assert (found.pod, found.port, found.protocol, found.names) == (
        "checkout-7d4b9c8f6d-x2k9p",
        123,
        "UDP",
        ("api.github.com",),
    )


def test_in_cluster_destinations_carry_pod_and_namespace_labels(tmp_path: Path) -> None:
    destination = {
        "namespace": "payments",
        "pod_name": "ledger-7b5d9f6c48-9wzrx",
        "labels": [
            "k8s:app=ledger",
            "k8s:io.cilium.k8s.namespace.labels.team=payments",
            "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=payments",
            "k8s:io.cilium.k8s.policy.serviceaccount=default",
            "k8s:io.kubernetes.pod.namespace=payments",
            "k8s:pod-template-hash=7b5d9f6c48",
        ],
        "workloads": [{"name": "ledger", "kind": "Deployment"}],
    }
    (found,), _ = read(lines(tmp_path / "f.jsonl", {"flow": hubble_flow(destination=destination)}))
    assert found.peer == Peer(
        "payments",
        (("app", "ledger"), ("pod-template-hash", "7b5d9f6c48")),
        (("kubernetes.io/metadata.name", "payments"), ("team", "payments")),
        "ledger",
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"traffic_direction": "INGRESS"}, "not egress"),
        ({"traffic_direction": "TRAFFIC_DIRECTION_UNKNOWN"}, "not egress"),
        ({"is_reply": True}, "reply"),
        ({"source": {"identity": 1, "labels": ["reserved:host"]}}, "not from a pod"),
        ({"IP": None}, "no destination address"),
    ],
)
def test_what_is_not_egress_from_a_pod_is_skipped(
    tmp_path: Path, changes: dict[str, Any], reason: str
) -> None:
    found, stats = read(lines(tmp_path / "f.jsonl", {"flow": hubble_flow(**changes)}))
    assert found == []
    assert stats.skipped == {reason: 1}


def test_verdicts_dropped_and_error_did_not_leave(tmp_path: Path) -> None:
    verdicts = ("FORWARDED", "DROPPED", "ERROR", "AUDIT", "REDIRECTED", "TRACED")
    path = lines(tmp_path / "f.jsonl", *({"flow": hubble_flow(verdict=v)} for v in verdicts))
    found, _ = read(path)
    assert [f.dropped for f in found] == [False, True, True, False, False, False]


def test_icmp_and_missing_l4(tmp_path: Path) -> None:
    path = lines(
        tmp_path / "f.jsonl",
        {"flow": hubble_flow(l4={"ICMPv4": {"type": 8}})},
        {"flow": hubble_flow(l4=None)},
    )
    found, _ = read(path)
    assert [(f.port, f.protocol) for f in found] == [(None, "ICMPv4"), (None, "IP")]


def test_malformed_lines_are_reported_with_their_line_and_skipped(tmp_path: Path) -> None:
    path = lines(
        tmp_path / "f.jsonl",
        {"flow": hubble_flow()},
        '{"flow": {"verdict": "FORWARDED", "IP": ',
        "",
        "[1, 2]",
        {"flow": hubble_flow(l4={"TCP": {"destination_port": 70000}})},
        {"flow": hubble_flow(source={"namespace": "a", "pod_name": "b", "labels": "app=x"})},
        {"flow": "x"},
        {"something": "else"},
        {"node_status": {"state_change": "NODE_CONNECTED"}},
        {"flow": hubble_flow()},
    )
    found, stats = read(path)
    assert len(found) == 2
    assert [str(p) for p in stats.problems] == [
        f"{path}:2: is not JSON: unexpected end of data",
        f"{path}:4: not a JSON object",
        f"{path}:5: l4.TCP.destination_port is not a port number",
        f"{path}:6: source.labels is not a list",
        f"{path}:7: flow is not an object",
        f"{path}:8: not a Hubble flow (no flow, source, IP or verdict field)",
    ]
    assert stats.skipped == {"not a flow": 1}
    assert stats.records == 9


def test_only_the_first_problems_are_kept(tmp_path: Path) -> None:
    path = lines(tmp_path / "f.jsonl", "{}", *(["nope"] * 30))
    _, stats = read(path)
    assert stats.problem_count == 31 and len(stats.problems) == 20


def test_gzipped_input(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl.gz"
    path.write_bytes(gzip.compress((json.dumps({"flow": hubble_flow()}) + "\n").encode()))
    found, _ = read(path)
    assert len(found) == 1


def test_csv_with_a_header_and_optional_columns() -> None:
    found, stats = read(FLOWS / "flows.csv")
    assert stats.problems == [] and stats.records == 11
    first = found[0]
    assert (first.namespace, first.workload, first.labels[PROFILE]) == (
        "payments",
        "checkout",
        "stripe",
    )
    assert first.names == ("api.stripe.com",)
    dns = found[5]
    assert dns.peer == Peer("kube-system", (("k8s-app", "kube-dns"),), None, "kube-dns")
    assert [(f.ip, f.port, f.protocol, f.dropped) for f in found[-3:]] == [
        ("192.0.2.44", 8443, "TCP", False),
        ("198.51.100.7", 22, "TCP", True),
        ("192.0.2.44", None, "ICMPv4", False),
    ]
    assert found[-1].workload == "legacy-batch"


def test_csv_without_a_header_is_the_six_columns(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(
        "shop,web-0,93.184.216.34,443,tcp,example.com;www.example.com\n"
        "shop,web-0,2001:db8::1,,icmp,\n"
    )
    (first, second), _ = read(path)
    assert (first.protocol, first.names, first.workload) == (
        "TCP",
        ("example.com", "www.example.com"),
        "web",
    )
    assert (second.port, second.protocol) == (None, "ICMPv6")


def test_csv_problems(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(
        "namespace,pod,destination_ip,port,protocol,dns_name\n"
        "shop,web-0,1.2.3.4,http,TCP,\n"
        "shop,web-0,1.2.3.4,443,GRE,\n"
        "shop,web-0\n"
        "shop,web-0,,443,TCP,\n"
        ",,1.2.3.4,443,TCP,\n"
        "shop,web-0,1.2.3.4,443,TCP,\n"
    )
    found, stats = read(path)
    assert len(found) == 1
    assert [str(p) for p in stats.problems] == [
        f"{path}:2: port 'http' is not a port number",
        f"{path}:3: protocol 'GRE' is not TCP, UDP, SCTP or ICMP",
        f"{path}:4: 2 columns, expected at least 5 (namespace, pod, destination_ip, port, "
        "protocol, dns_name)",
        f"{path}:5: no destination_ip",
    ]
    assert stats.skipped == {"not from a pod": 1}


def test_a_csv_header_with_an_unknown_column(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(
        "namespace,pod,destination_ip,port,protocol,bytes\nshop,web-0,1.2.3.4,443,TCP,9\n"
    )
    _, stats = read(path)
    assert str(stats.problems[0]).endswith(
        ":1: unknown column 'bytes' (columns: namespace, pod, "
        "destination_ip, port, protocol, dns_name, labels, profile, workload, "
        "destination_namespace, destination_labels, verdict)"
    )


def test_the_format_can_be_forced(tmp_path: Path) -> None:
    path = lines(tmp_path / "flows.csv", {"flow": hubble_flow()})
    assert len(read(path, "hubble")[0]) == 1
    assert read(path)[1].problem_count == 1


def test_files_that_cannot_be_read_at_all(tmp_path: Path) -> None:
    with pytest.raises(FlowFileError, match="no such file"):
        open_sources((str(tmp_path / "missing.jsonl"),))
    with pytest.raises(FlowFileError, match="is a directory"):
        open_sources((str(tmp_path),))
    binary = tmp_path / "flows.bin"
    binary.write_bytes(b"\x00\x01\x02garbage\n")
    with pytest.raises(FlowFileError, match="is a binary file"):
        read(binary)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    found, stats = read(empty)
    assert found == [] and [str(p) for p in stats.problems] == [f"{empty}: holds no flow records"]


def test_standard_input() -> None:
    stats = ReadStats()
    stdin = io.BytesIO((json.dumps(hubble_flow()) + "\n").encode())
    found = list(
        read_flows([FlowSource(None, "<stdin>")], stats, profile_label=PROFILE, stdin=stdin)
    )
    assert len(found) == 1 and stats.files == 1
