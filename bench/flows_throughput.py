"""`egress-guard flows` throughput: a synthetic Hubble file, timed end to end and by stage.

    python -m bench.flows_throughput               # 1,000,000 flows (about 1.2 GB), 1 run
    python -m bench.flows_throughput --quick       # 100,000 flows (CI)
    python -m bench.flows_throughput --flows 2000000 --keep /tmp/flows.jsonl

The file is `hubble observe -o json` lines as the fixtures in tests/flows are: 300 source pods
in 30 namespaces on the example policy's profiles (and some without one), each reaching DNS,
the proxy and a dozen of 3,000 destinations (the world with DNS names, bare addresses, in-cluster
peers); one flow in 7 is a reply and one in 13 ingress (real captures hold more of both: every
connection is seen from both ends), one in 101 dropped.

The command runs as shipped, in its own process, and its peak memory is its own (a 1 GB input
must not be read into memory). Then, in this process, the same file through each stage alone,
to say what the time goes to: reading lines, orjson.loads, turning a document into a flow, and
the tally.

The goal: 200,000 flows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GOAL_FLOWS_PER_S = 200_000
HERE = Path(__file__).resolve().parent
PROFILES = ("stripe", "internal", "web-via-proxy", "none", None)


def _labels(namespace: str, labels: dict[str, str]) -> list[str]:
    return sorted(
        [f"k8s:{k}={v}" for k, v in labels.items()]
        + [
            f"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name={namespace}",
            "k8s:io.cilium.k8s.policy.cluster=bench",
            "k8s:io.cilium.k8s.policy.serviceaccount=default",
            f"k8s:io.kubernetes.pod.namespace={namespace}",
        ]
    )


def _sources(rng: random.Random) -> list[dict[str, Any]]:
    sources = []
    for n in range(300):
        namespace = f"team-{n % 30:02d}"
        app = f"app-{n // 30:02d}"
        template = f"{rng.getrandbits(40):010x}"[:10]
        labels = {"app": app, "pod-template-hash": template}
        profile = PROFILES[n % len(PROFILES)]
        if profile:
            labels["egress-guard.io/profile"] = profile
        sources.append(
            {
                "identity": 50000 + n,
                "namespace": namespace,
                "labels": _labels(namespace, labels),
                "pod_name": f"{app}-{template}-{rng.getrandbits(25):05x}"[:60],
                "workloads": [{"name": app, "kind": "Deployment"}],
            }
        )
    return sources


def _destinations(rng: random.Random) -> list[tuple[dict[str, Any], str, str, int, list[str]]]:
    """(endpoint, address, protocol, port, names)."""
    world = {"identity": 2, "labels": ["reserved:world"]}
    found: list[tuple[dict[str, Any], str, str, int, list[str]]] = []
    dns = {
        "identity": 102,
        "namespace": "kube-system",
        "labels": _labels("kube-system", {"k8s-app": "kube-dns"}),
        "pod_name": "coredns-5d78c9869d-wb7qz",
    }
    proxy = {
        "identity": 103,
        "namespace": "egress-system",
        "labels": _labels("egress-system", {"app": "egress-proxy"}),
        "pod_name": "egress-proxy-6c9f8b7d5-lq4tn",
    }
    found.append((dns, "10.244.0.10", "UDP", 53, []))
    found.append((proxy, "10.244.0.20", "TCP", 3128, []))
    for n in range(3000):
        kind = n % 4
        ip = f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{n % 250 + 1}"
        if kind == 0:
            found.append((world, ip, "TCP", 443, [f"svc-{n}.example.com"]))
        elif kind == 1:
            found.append((world, f"34.210.129.{n % 250 + 1}", "TCP", 443, ["api.stripe.com"]))
        elif kind == 2:
            found.append((world, ip, "TCP", rng.choice((80, 443, 5432, 6379)), []))
        else:
            namespace = f"team-{n % 30:02d}"
            peer = {
                "identity": 60000 + n,
                "namespace": namespace,
                "labels": _labels(namespace, {"app": f"svc-{n % 40}"}),
                "pod_name": f"svc-{n % 40}-7b5d9f6c48-{n:05d}",
            }
            found.append((peer, f"10.244.{n // 250}.{n % 250 + 1}", "TCP", 8080, []))
    return found


def write_flows(path: Path, count: int, seed: int = 13) -> int:
    """`count` Hubble lines; returns the file's size."""
    rng = random.Random(seed)
    sources = _sources(rng)
    destinations = _destinations(rng)
    with path.open("w") as out:
        for n in range(count):
            which = rng.randrange(len(sources))
            source = sources[which]
            # each pod talks to DNS, the proxy and its own dozen destinations, as services do
            pick = (
                0
                if n % 10 == 0
                else 1
                if n % 17 == 0
                else 2 + (which * 10 + rng.randrange(12)) % 3000
            )
            endpoint, ip, protocol, port, names = destinations[pick]
            l4: dict[str, Any] = {
                protocol: {"source_port": 32768 + n % 28000, "destination_port": port}
            }
            if protocol == "TCP":
                l4[protocol]["flags"] = {"SYN": True}
            flow: dict[str, Any] = {
                "time": f"2026-11-30T09:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z",
                "uuid": f"{n:08x}-1c7a-4f2e-9a51-0c1d2e3f4a5b",
                "verdict": "DROPPED" if n % 101 == 0 else "FORWARDED",
                "ethernet": {"source": "8a:1f:3c:22:9e:01", "destination": "5e:73:a9:0b:44:c2"},
                "IP": {"source": "10.244.1.21", "destination": ip, "ipVersion": "IPv4"},
                "l4": l4,
                "source": source,
                "destination": endpoint,
                "Type": "L3_L4",
                "node_name": "bench-worker",
                "event_type": {"type": 4},
                "traffic_direction": "INGRESS" if n % 13 == 0 else "EGRESS",
                "trace_observation_point": "TO_STACK",
                "is_reply": n % 7 == 0,
                "interface": {"index": 14, "name": "lxc9a1e3c5b7f2d"},
                "Summary": "TCP Flags: SYN",
            }
            if names:
                flow["destination_names"] = names
            out.write(
                json.dumps({"flow": flow, "node_name": "bench-worker"}, separators=(",", ":"))
            )
            out.write("\n")
    return path.stat().st_size


def run_command(path: Path) -> tuple[float, float, int]:
    """Seconds, peak RSS of the command in MiB, and its exit code."""
    command = [sys.executable, "-m", "webhook", "flows", "-f", str(path), "-o", "json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) / 1024, done.returncode


def stages(path: Path) -> dict[str, float]:
    """Seconds for each stage alone, cumulatively: lines; + loads; + to flows; + tally."""
    import orjson

    from webhook.cli.flow_input import HubbleReader, ReadStats, open_sources, read_flows
    from webhook.config.policy_file import load_policy
    from webhook.core.flow_matching import FlowAudit

    timings: dict[str, float] = {}

    def timed(name: str, work: Iterator[Any]) -> None:
        started = time.perf_counter()
        for _ in work:
            pass
        timings[name] = time.perf_counter() - started

    def lines() -> Iterator[bytes]:
        with path.open("rb", buffering=1 << 20) as stream:
            yield from stream

    def loaded() -> Iterator[Any]:
        loads = orjson.loads
        return (loads(line) for line in lines())

    def flows() -> Iterator[Any]:
        reader = HubbleReader()
        return (reader.flow(document) for document in loaded())

    def tallied() -> Iterator[None]:
        policy = load_policy(None)
        audit = FlowAudit(policy)
        for flow in read_flows(open_sources((str(path),)), ReadStats(), profile_label="x"):
            audit.add(flow)
            yield None

    timed("read lines", lines())
    timed("+ orjson.loads", loaded())
    timed("+ to flows", flows())
    timed("+ tally (everything but output)", tallied())
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 flows")
    parser.add_argument("--keep", type=Path, help="write the flow file here and keep it")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    count = 100_000 if args.quick else args.flows
    directory = tempfile.mkdtemp(prefix="egress-guard-flows-")
    path = args.keep or Path(directory) / "flows.jsonl"
    started = time.perf_counter()
    size = write_flows(path, count)
    print(
        f"wrote {count:,} flows ({size / 2**20:,.0f} MiB) in {time.perf_counter() - started:.1f} s"
    )
    try:
        elapsed, peak_mib, code = run_command(path)
        rate = count / elapsed
        print(
            f"egress-guard flows -o json: {elapsed:.2f} s, {rate:,.0f} flows/s "
            f"({size / 2**20 / elapsed:,.0f} MiB/s), peak RSS {peak_mib:,.0f} MiB, exit {code} "
            f"(goal {GOAL_FLOWS_PER_S:,}/s: {'met' if rate >= GOAL_FLOWS_PER_S else 'missed'})"
        )
        timings = stages(path)
        for name, seconds in timings.items():
            print(f"  {name:34} {seconds:6.2f} s  {count / seconds:>11,.0f} flows/s")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "flows": count,
                        "bytes": size,
                        "seconds": elapsed,
                        "flowsPerSecond": rate,
                        "peakRssMiB": peak_mib,
                        "exitCode": code,
                        "stages": timings,
                        "python": sys.version.split()[0],
                        "cpus": os.cpu_count(),
                    },
                    indent=2,
                )
                + "\n"
            )
    finally:
        if args.keep is None:
            path.unlink(missing_ok=True)
            Path(directory).rmdir()


if __name__ == "__main__":
    main()
