"""The reconciler (and `report`) at cluster scale, on the local API server, in one run.

    python -m bench.reconcile_scale            # 2,000 namespaces x 25 workloads (about 2 minutes)
    python -m bench.reconcile_scale --quick    # 200 namespaces x 25 workloads (CI)

Every namespace is opted in (audit mode, inject networkpolicy) and holds 20 Deployments, 3
StatefulSets and 2 CronJobs on two profiles, so a first pass creates three NetworkPolicies per
namespace. `egress-guard reconcile --once` runs as deployed (leader election on, its own process,
so its peak memory is its own) for: the first pass, a converged pass, and a pass after 1% of the
namespaces gained a workload on a third profile. Then, in this process and back to back on the
same cluster, a converged pass three ways: as shipped (paged cluster-wide lists per kind), with
one list per namespace per kind (the way it read before), and the floor: only paging through
the same lists, planning nothing.

Last, `egress-guard report -o json` inventories the whole cluster.

The goals: first pass under 60 s, converged pass under 5 s with API calls that follow the
number of kinds (and pages), not namespaces; the reconciler's peak memory under 200 MiB; the
report under 30 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from webhook.cluster.api_calls import pages
from webhook.cluster.client import api_client
from webhook.cluster.list_watch import LIST_TIMEOUT
from webhook.cluster.workload_lists import cluster_lister
from webhook.config.policy_file import PolicyStore
from webhook.core.network_policies import MANAGED_BY, MANAGED_BY_LABEL
from webhook.reconcile.reconciler import Reconciler

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
PROFILE = "egress-guard.io/profile"
MANAGED = {"egress-guard.io/mode": "audit", "egress-guard.io/inject": "networkpolicy"}
CHANGED_SHARE = 100
"""One namespace in this many gains a workload on a new profile before the third pass."""

LISTING_WAYS = (("cluster-wide lists (as shipped)", 10), ("per-namespace lists", 10**9))
"""Names and `per_namespace_lists_up_to`: 10 is the shipped threshold, far below 2,000."""

GOAL_REPORT_S = 30.0
GOAL_FIRST_S = 60.0
GOAL_CONVERGED_S = 5.0
GOAL_PEAK_MIB = 200.0


@dataclass
class Pass:
    name: str
    seconds: float
    """The pass itself, as the reconciler reports it (start-up not included)."""
    process_seconds: float
    """The whole `reconcile --once` process, from exec to exit."""
    api_calls: int
    reads: int
    writes: int
    created: int
    unchanged: int
    peak_mib: float
    exit_code: int


@dataclass
class ReportRun:
    seconds: float
    api_calls: int
    workloads: int
    exit_code: int


def run_report(api: Any, kubeconfig: Path, workdir: Path) -> ReportRun:
    """`egress-guard report -o json` over the whole cluster, in its own process."""
    api.reset_calls()
    print("report -o json ...", file=sys.stderr)
    out = workdir / "report.json"
    started = time.monotonic()
    with out.open("wb") as stdout:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "webhook",
                "report",
                "--kubeconfig",
                str(kubeconfig),
                "-o",
                "json",
            ],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    elapsed = time.monotonic() - started
    workloads = len(json.loads(out.read_text())["workloads"]) if done.returncode == 0 else 0
    return ReportRun(elapsed, len(api.calls), workloads, done.returncode)


@dataclass
class Way:
    name: str
    seconds: float
    api_calls: int


def deployment(name: str, profile: str) -> dict[str, Any]:
    labels = {"app": name, PROFILE: profile}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": f"registry.example/{name}:1.0"}]},
            },
        },
    }


def stateful_set(name: str, profile: str) -> dict[str, Any]:
    shape = deployment(name, profile)
    return {**shape, "kind": "StatefulSet", "spec": {**shape["spec"], "serviceName": name}}


def cron_job(name: str, profile: str) -> dict[str, Any]:
    template = deployment(name, profile)["spec"]["template"]
    job_template = {"spec": {"template": {**template, "spec": {**template["spec"]}}}}
    job_template["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {"schedule": "*/15 * * * *", "jobTemplate": job_template},
    }


def cluster_objects(namespaces: int) -> Iterator[dict[str, Any]]:
    """Namespaces and their 25 workloads, on the stripe and internal profiles."""
    for index in range(namespaces):
        namespace = f"team-{index:05d}"
        yield {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": dict(MANAGED)},
        }
        workloads = [
            *(deployment(f"api-{n}", ("stripe", "internal")[n % 2]) for n in range(20)),
            *(stateful_set(f"db-{n}", "internal") for n in range(3)),
            *(cron_job(f"sync-{n}", "stripe") for n in range(2)),
        ]
        for obj in workloads:
            yield {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}


@contextmanager
def local_api(namespaces: int) -> Iterator[Any]:
    sys.path.insert(0, str(TESTS))
    module = importlib.import_module("local_apiserver")  # test-suite code, untyped here
    with module.LocalApiServer(validate_schemas=False, max_lifetime_s=3600) as api:
        api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "egress-guard"}})
        started = time.monotonic()
        batch: list[dict[str, Any]] = []
        for obj in cluster_objects(namespaces):
            batch.append(obj)
            if len(batch) == 5000:
                api.seed(*batch)
                batch.clear()
        api.seed(*batch)
        print(
            f"seeded {namespaces} namespaces x 25 workloads in {time.monotonic() - started:.1f} s",
            file=sys.stderr,
        )
        yield api


PEAK_MEMORY_PROBE = """
import atexit, os, runpy, sys
def record_peak():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["EGRESS_GUARD_BENCH_PEAK"], "w") as out:
        out.write(peak)
atexit.register(record_peak)
sys.argv = ["egress-guard", *sys.argv[1:]]
runpy.run_module("webhook", run_name="__main__", alter_sys=True)
"""
"""Runs the command and records the process's own high-water mark (VmHWM) as it exits. Not
`wait4`'s ru_maxrss: Linux carries the parent's peak over into a child through vfork and exec,
and this process holds the local API server's 50,000 objects."""


def run_pass(api: Any, name: str, kubeconfig: Path, workdir: Path) -> Pass:
    """`egress-guard reconcile --once` in its own process, as deployed."""
    api.reset_calls()
    command = [
        *(sys.executable, "-c", PEAK_MEMORY_PROBE, "reconcile", "--once"),
        *("--kubeconfig", str(kubeconfig), "--identity", "bench"),
        *("--lease-namespace", "egress-guard"),  # and the log at info, as deployed
    ]
    log = workdir / f"reconcile-{name.split(maxsplit=1)[0]}.log"
    peak_file = workdir / "peak-kib"
    peak_file.unlink(missing_ok=True)
    print(f"reconcile --once: {name} ...", file=sys.stderr)
    started = time.monotonic()
    with log.open("wb") as out:
        env = {**os.environ, "EGRESS_GUARD_BENCH_PEAK": str(peak_file)}
        process = subprocess.run(command, stdout=out, stderr=out, env=env, check=False)
    elapsed = time.monotonic() - started
    calls = [call for call in api.calls if call.resource != "leases"]
    fields = _pass_fields(log)
    return Pass(
        name=name,
        seconds=fields["durationSeconds"],
        process_seconds=elapsed,
        api_calls=len(calls),
        reads=sum(call.verb == "list" for call in calls),
        writes=sum(call.is_write for call in calls),
        created=len(fields["created"]),
        unchanged=fields["unchanged"],
        peak_mib=int(peak_file.read_text()) / 1024 if peak_file.exists() else float("nan"),
        exit_code=process.returncode,
    )


def _pass_fields(log: Path) -> dict[str, Any]:
    """The fields of the pass's JSON log line (`"message": "reconcile pass: ..."`)."""
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"reconcile pass: ' in line:
            fields: dict[str, Any] = json.loads(line)
            return fields
    raise RuntimeError(f"no pass was logged: see {log}")


def add_changes(api: Any, namespaces: int) -> int:
    """A Pod on the web-via-proxy profile in one namespace out of CHANGED_SHARE."""
    changed = list(range(0, namespaces, CHANGED_SHARE))
    api.seed(
        *(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "tool",
                    "namespace": f"team-{index:05d}",
                    "labels": {PROFILE: "web-via-proxy"},
                },
                "spec": {"containers": [{"name": "tool", "image": "registry.example/tool:1"}]},
            }
            for index in changed
        )
    )
    return len(changed)


def converged_three_ways(api: Any, kubeconfig: Path) -> list[Way]:
    """A converged pass as shipped, one list per namespace per kind, and only paging."""
    kube = api_client("kubeconfig", kubeconfig=str(kubeconfig))
    try:
        policies = PolicyStore(None)
        ways: list[Way] = []
        for name, up_to in LISTING_WAYS:
            print(f"converged pass, {name} ...", file=sys.stderr)
            report = Reconciler(kube, policies, per_namespace_lists_up_to=up_to).run_once()
            if not report.complete or report.created or report.updated or report.deleted:
                raise RuntimeError(f"{name}: the cluster was not converged: {report.summary()}")
            ways.append(Way(name, report.duration_s, report.api_calls))
        print("floor: paging through the same lists ...", file=sys.stderr)
        ways.append(_page_through(kube, policies))
        return ways
    finally:
        kube.close()  # type: ignore[no-untyped-call]


def _page_through(kube: client.ApiClient, policies: PolicyStore) -> Way:
    started, calls = time.monotonic(), 0
    core, net = client.CoreV1Api(kube), client.NetworkingV1Api(kube)
    listers: list[tuple[Any, str | None]] = [
        (core.list_namespace, None),
        (net.list_network_policy_for_all_namespaces, f"{MANAGED_BY_LABEL}={MANAGED_BY}"),
    ]
    policy = policies.current()
    for kind in policy.reviewed_kinds:
        selector = policy.profile_label if kind.kind == "Pod" else None
        listers.append((cluster_lister(kube, kind), selector))
    for lister, selector in listers:
        for _ in pages(lister, timeout=LIST_TIMEOUT, label_selector=selector):
            calls += 1
    return Way("floor: paging only", time.monotonic() - started, calls)


def report(
    passes: list[Pass],
    ways: list[Way],
    inventory: ReportRun,
    *,
    namespaces: int,
    kinds: int,
    workloads: int,
    quick: bool,
) -> tuple[str, list[str]]:
    first, converged = passes[0], passes[1]
    lines = [
        f"# egress-guard reconciler at scale{' (quick)' if quick else ''}",
        "",
        f"{namespaces:,} namespaces x 25 workloads ({namespaces * 25:,}), local API server, "
        f"`reconcile --once` with leader election, {kinds} workload kinds listed.",
        "",
        "| pass | pass s | process s | API calls | lists | writes | created | in place "
        "| peak MiB | exit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {p.name} | {p.seconds:.1f} | {p.process_seconds:.1f} | {p.api_calls:,} | "
            f"{p.reads:,} | {p.writes:,} | {p.created:,} | {p.unchanged:,} | {p.peak_mib:.0f} "
            f"| {p.exit_code} |"
            for p in passes
        ),
        "",
        "Converged pass, side by side in this process:",
        "",
        "| way | s | API calls | x floor |",
        "|---|---:|---:|---:|",
        *(
            f"| {w.name} | {w.seconds:.2f} | {w.api_calls:,} | {w.seconds / ways[-1].seconds:.1f} |"
            for w in ways
        ),
        "",
        f"`egress-guard report -o json` over the whole cluster: {inventory.seconds:.1f} s, "
        f"{inventory.api_calls:,} API calls, {inventory.workloads:,} workloads, "
        f"exit {inventory.exit_code}.",
        "",
    ]
    missed: list[str] = []
    if inventory.exit_code != 0 or inventory.workloads != workloads:
        missed.append(f"report listed {inventory.workloads} workloads (exit {inventory.exit_code})")
    if any(p.exit_code != 0 for p in passes):
        missed.append("a pass exited non-zero")
    if converged.writes:
        missed.append("the converged pass wrote")
    page_bound = 2 + kinds * (1 + (namespaces * 20) // 500)
    if converged.api_calls > page_bound:
        missed.append(f"the converged pass made {converged.api_calls} calls (> {page_bound})")
    if not quick:
        if first.seconds > GOAL_FIRST_S:
            missed.append(f"first pass {first.seconds:.1f} s (goal {GOAL_FIRST_S:g} s)")
        if inventory.seconds > GOAL_REPORT_S:
            missed.append(f"report {inventory.seconds:.1f} s (goal {GOAL_REPORT_S:g} s)")
        if converged.seconds > GOAL_CONVERGED_S:
            missed.append(f"converged pass {converged.seconds:.1f} s (goal {GOAL_CONVERGED_S:g} s)")
        peak = max(p.peak_mib for p in passes)
        if peak > GOAL_PEAK_MIB:
            missed.append(f"peak memory {peak:.0f} MiB (goal {GOAL_PEAK_MIB:g} MiB)")
    lines.append("Goals: " + ("all met." if not missed else "; ".join(missed)))
    return "\n".join(lines) + "\n", missed


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reconcile_scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="200 namespaces (a smoke run)")
    parser.add_argument("--namespaces", type=int, help="namespaces [2000; quick: 200]")
    parser.add_argument("--out", type=Path, help="where results go [bench/results]")
    args = parser.parse_args()
    namespaces = args.namespaces or (200 if args.quick else 2000)
    out: Path = args.out or (HERE / "work" / "results" if args.quick else HERE / "results")
    workdir = HERE / "work" / "reconcile"
    workdir.mkdir(parents=True, exist_ok=True)
    kinds = len(PolicyStore(None).current().reviewed_kinds)
    with local_api(namespaces) as api:
        kubeconfig = api.kubeconfig(workdir / "kubeconfig")
        passes = [
            run_pass(api, "first (creates)", kubeconfig, workdir),
            run_pass(api, "converged", kubeconfig, workdir),
        ]
        changed = add_changes(api, namespaces)
        passes.append(run_pass(api, f"after {changed} namespaces changed", kubeconfig, workdir))
        ways = converged_three_ways(api, kubeconfig)
        inventory = run_report(api, kubeconfig, workdir)
    text, missed = report(
        passes,
        ways,
        inventory,
        namespaces=namespaces,
        kinds=kinds,
        workloads=namespaces * 25 + changed,
        quick=args.quick,
    )
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    stem = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M") + "-reconcile"
    stem += "-quick" if args.quick else ""
    (out / f"{stem}.md").write_text(text)
    document = {
        "namespaces": namespaces,
        "workloadsPerNamespace": 25,
        "kinds": kinds,
        "passes": [asdict(p) for p in passes],
        "converged": [asdict(w) for w in ways],
        "report": asdict(inventory),
        "missed": missed,
    }
    (out / f"{stem}.json").write_text(json.dumps(document, indent=2))
    print(f"results: {out / stem}.md", file=sys.stderr)
    if missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
