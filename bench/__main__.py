"""Benchmark egress-guard as it runs in production, beside an nginx floor, in one run.

    python -m bench            # full run (about 4 minutes), results in bench/results/
    python -m bench --quick    # a short smoke run of every scenario (CI)

The server is pinned to core 0 with one gunicorn worker (gthread, TLS, keep-alive, decision logs
on, as deployed); the load generator to core 1. Server CPU per review is read from /proc.
Figures that matter are ratios taken side by side in this run: machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.availability import StartUp, stalled_connections, time_to_ready, worker_rss_mib
from bench.cluster import LocalCluster, local_cluster
from bench.floor import start_nginx
from bench.loadgen import LoadResult, hey_paced, missing_tools, wrk
from bench.payloads import Payload, write
from bench.procstat import sample

HERE = Path(__file__).resolve().parent
SERVER_CPU, LOAD_CPU = "0", "1"

COLUMNS = (
    "target",
    "payload",
    "conc.",
    "reviews/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "errors",
    "CPU µs/review",
    "RSS MiB",
)
CONCURRENCIES = (1, 8, 32)
ROUNDS = 3
BUDGET_RATE = 3000.0
BUDGET_P99_MS = 10.0
BUDGET_CPU_RATIO = 25.0
BUDGET_SIZE_RATIO = 1.5
BUDGET_STALLED_P99_MS = 50.0
STALLED = 200
STARTUP_NAMESPACES = 2000


@dataclass
class Row:
    target: str
    payload: str
    concurrency: int
    rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_review: float
    rss_mib: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_tools() -> None:
    missing = missing_tools()
    if not missing:
        return
    packages = {"wrk": "wrk", "hey": "hey", "nginx": "nginx-light", "taskset": "util-linux"}
    wanted = sorted({packages[tool] for tool in missing})
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(wanted)} with apt-get ...", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", *wanted]
        if subprocess.run(install, stdout=subprocess.DEVNULL, env=env, check=False).returncode:
            # Package lists older than the mirror: refresh them once and try again.
            subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL, check=False)
            subprocess.run(install, stdout=subprocess.DEVNULL, env=env, check=True)
        if not missing_tools():
            return
    sys.exit(f"the benchmark needs {', '.join(missing)}: apt-get install {' '.join(wanted)}")


def wait_ready(url: str, ca: Path, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready in {timeout} s")


def start_egress_guard(
    workdir: Path, port: int, threads: int | None, kubeconfig: Path | None
) -> subprocess.Popen[bytes]:
    """`egress-guard serve` as deployed, one worker, on the server core."""
    command = [
        *("taskset", "-c", SERVER_CPU, sys.executable, "-m", "webhook", "serve"),
        *("--config", str(workdir / "policy.yaml"), "--cert-dir", str(workdir / "certs")),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *(("--threads", str(threads)) if threads else ()),
        *("--cluster", "kubeconfig" if kubeconfig else "none"),
    ]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)} if kubeconfig else None
    with (workdir / "egress-guard.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
    wait_ready(f"https://127.0.0.1:{port}/healthz", workdir / "certs" / "ca.crt", process)
    return process


def warm_up(port: int, ca: Path, payloads: list[tuple[Payload, Path]]) -> None:
    """Every payload once: first admissions ensure their NetworkPolicies, later ones need none."""
    context = ssl.create_default_context(cafile=str(ca))
    for payload, body in payloads:
        request = urllib.request.Request(
            f"https://127.0.0.1:{port}{payload.path}",
            data=body.read_bytes(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as reply:
            answer = json.loads(reply.read())["response"]
        expected = payload.name != "denied-6k"
        if answer["allowed"] is not expected:
            raise RuntimeError(f"warm-up: {payload.name} answered {answer}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def measure(
    *,
    target: str,
    pid: int,
    url: str,
    body: Path,
    payload: str,
    concurrency: int,
    seconds: float,
    workdir: Path,
) -> Row:
    wrk(
        url, body, connections=concurrency, seconds=min(1.0, seconds), cpu=LOAD_CPU, workdir=workdir
    )
    before = sample(pid)
    result = wrk(url, body, connections=concurrency, seconds=seconds, cpu=LOAD_CPU, workdir=workdir)
    after = sample(pid)
    return row(
        target=target,
        payload=payload,
        concurrency=concurrency,
        result=result,
        cpu_s=after.cpu_s - before.cpu_s,
        rss=after.rss,
    )


def row(
    *, target: str, payload: str, concurrency: int, result: LoadResult, cpu_s: float, rss: int
) -> Row:
    return Row(
        target=target,
        payload=payload,
        concurrency=concurrency,
        rate=result.rate,
        p50_ms=result.p50_ms,
        p90_ms=result.p90_ms,
        p99_ms=result.p99_ms,
        errors=result.errors,
        cpu_us_per_review=cpu_s / result.requests * 1e6 if result.requests else float("nan"),
        rss_mib=rss / 2**20,
    )


def machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": subprocess.run(
            ["nginx", "-v"], capture_output=True, text=True, check=False
        ).stderr.strip(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def find(rows: list[Row], target: str, payload: str, concurrency: int) -> Row:
    return next(
        r for r in rows if (r.target, r.payload, r.concurrency) == (target, payload, concurrency)
    )


def report(run: Run, info: dict[str, str], quick: bool) -> str:
    rows, paced = run.rows, run.paced
    lines = [
        f"# egress-guard benchmark{' (quick)' if quick else ''}",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        "Server pinned to core 0 (one gunicorn gthread worker, TLS, keep-alive, decision log on);",
        "load generator (wrk) pinned to core 1. CPU is the server's user+system time per review.",
        f"Cluster: {info['cluster']} (local: the test suite's local API server on core 1; every "
        "payload sent once before measuring, so first admissions have ensured their policies).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---:|" * (len(COLUMNS) - 2),
    ]
    for r in rows:
        lines.append(
            f"| {r.target} | {r.payload} | {r.concurrency} | {r.rate:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p90_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {r.cpu_us_per_review:,.0f} | "
            f"{r.rss_mib:.0f} |"
        )
    eg8 = find(rows, "egress-guard", "deploy-6k", 8)
    eg1, ng1 = find(rows, "egress-guard", "deploy-6k", 1), find(rows, "nginx", "deploy-6k", 1)
    cpu_ratio = statistics.median(r.floor_ratio for r in run.rounds)
    size_ratio = statistics.median(r.size_ratio for r in run.rounds)
    lines += [
        "",
        "Side by side (c=8, three runs back to back per round; budget figures are the medians):",
        "",
        "| round | 6 KB µs | 38 KB µs | nginx µs | 6 KB / nginx | 38 KB / 6 KB |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {i} | {r.small:,.0f} | {r.large:,.0f} | {r.floor:,.0f} | {r.floor_ratio:.1f}x "
            f"| {r.size_ratio:.2f}x |"
            for i, r in enumerate(run.rounds, 1)
        ),
    ]
    checks = [
        (
            "reviews/s, 6 KB Deployment, c=8",
            f"{eg8.rate:,.0f}",
            f">= {BUDGET_RATE:,.0f}",
            eg8.rate >= BUDGET_RATE,
        ),
        (
            "p99, 6 KB Deployment, c=8",
            f"{eg8.p99_ms:.2f} ms",
            f"< {BUDGET_P99_MS:g} ms",
            eg8.p99_ms < BUDGET_P99_MS,
        ),
        (
            "CPU per review vs nginx, c=8 (median of rounds)",
            f"{cpu_ratio:.1f}x",
            f"<= {BUDGET_CPU_RATIO:g}x",
            cpu_ratio <= BUDGET_CPU_RATIO,
        ),
        (
            "CPU per review, 38 KB vs 6 KB (median of rounds)",
            f"{size_ratio:.2f}x",
            f"<= {BUDGET_SIZE_RATIO:g}x",
            size_ratio <= BUDGET_SIZE_RATIO,
        ),
        ("p50 at c=1 vs nginx", f"{eg1.p50_ms / ng1.p50_ms:.1f}x", "(reported)", True),
        (
            f"paced {paced.rate:,.0f} reviews/s (hey), p99",
            f"{paced.p99_ms:.2f} ms",
            f"errors {paced.errors}",
            paced.errors == 0,
        ),
    ]
    if run.api_calls_measured is not None:
        # Background threads call too: the watches of namespaces and of generated policies
        # (re-listing when a watch expires) and denial Events. Everything else would be a call
        # made while a review waits.
        background = {
            k: n
            for k, n in run.api_calls_measured.items()
            if k in ("create events", "list namespaces", "list networkpolicies")
            or k.startswith("watch ")
        }
        on_path = {k: n for k, n in run.api_calls_measured.items() if k not in background}
        checks += [
            (
                "Kubernetes API calls on the review path while measuring",
                ", ".join(f"{n} {k}" for k, n in on_path.items()) or "0",
                "0",
                not on_path,
            ),
            (
                "API calls of background threads (watch, Events)",
                ", ".join(f"{n} {k}" for k, n in background.items()) or "0",
                "",
                True,
            ),
        ]
    calm, stalled = run.stalled
    idle, soaked = run.memory_mib
    lines += [
        "",
        "Availability (6 KB Deployment, c=8, side by side):",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---:|" * (len(COLUMNS) - 2),
        *(
            f"| {r.target} | {r.payload} | {r.concurrency} | {r.rate:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p90_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {r.cpu_us_per_review:,.0f} | "
            f"{r.rss_mib:.0f} |"
            for r in run.stalled
        ),
        "",
        f"Memory of the serving worker: {idle:.0f} MiB at idle, {soaked:.0f} MiB after the soak.",
    ]
    if run.startup is not None:
        lines.append(
            f"Start-up: {run.startup.seconds:.2f} s from process start to /readyz 200 with "
            f"{run.startup.namespaces:,} namespaces on the local API server."
        )
    checks.append(
        (
            f"p99 with {run.stalled_count} stalled connections",
            f"{stalled.p99_ms:.2f} ms",
            f"< {BUDGET_STALLED_P99_MS:g} ms",
            stalled.p99_ms < BUDGET_STALLED_P99_MS and stalled.errors == 0,
        )
    )
    checks.append(
        (
            "CPU per review with stalled connections vs without",
            f"{stalled.cpu_us_per_review / calm.cpu_us_per_review:.2f}x",
            "(reported)",
            True,
        )
    )
    lines += ["", "| budget | measured | goal | |", "|---|---:|---:|---|"]
    lines += [
        f"| {name} | {value} | {goal} | {'ok' if ok else 'MISSED'} |"
        for name, value, goal, ok in checks
    ]
    return "\n".join(lines) + "\n"


def generate_certs(directory: Path) -> None:
    subprocess.run(
        [
            *(sys.executable, "-m", "webhook", "certs", "generate", "--out", str(directory)),
            *("--dns", "localhost", "--ip", "127.0.0.1"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@dataclass
class Round:
    """CPU µs per review at c=8: the 6 KB and 38 KB Deployments and the nginx floor, in a row."""

    small: float
    large: float
    floor: float

    @property
    def floor_ratio(self) -> float:
        return self.small / self.floor

    @property
    def size_ratio(self) -> float:
        return self.large / self.small


@dataclass
class Run:
    rows: list[Row]
    paced: LoadResult
    rounds: list[Round]
    """The ratios, each from three runs back to back: drift cannot come between them."""
    api_calls_measured: dict[str, int] | None
    """Kubernetes API calls made while measuring (after warm-up), by verb and resource; None
    without a cluster."""
    stalled: list[Row]
    """The 6 KB Deployment at c=8 without, then with, connections stalled against the server."""
    stalled_count: int
    memory_mib: tuple[float, float]
    """The serving worker's resident memory: at idle after start-up, and after the soak."""
    startup: StartUp | None


def run_scenarios(
    workdir: Path,
    payloads: list[tuple[Payload, Path]],
    *,
    seconds: float,
    threads: int | None,
    cluster: LocalCluster | None,
    stalled: int = STALLED,
) -> Run:
    rows: list[Row] = []
    port, nginx_port = free_port(), free_port()
    certs = workdir / "certs"
    server = start_egress_guard(workdir, port, threads, cluster.kubeconfig if cluster else None)
    nginx = start_nginx(workdir, nginx_port, certs / "tls.crt", certs / "tls.key", SERVER_CPU)
    deploy = next(body for payload, body in payloads if payload.name == "deploy-6k")
    try:
        idle_mib = worker_rss_mib(server.pid)
        warm_up(port, certs / "ca.crt", payloads)
        calls_before = cluster.calls() if cluster else {}
        for payload, body in payloads:
            for concurrency in CONCURRENCIES:
                targets = [("egress-guard", server.pid, f"https://127.0.0.1:{port}{payload.path}")]
                if body == deploy:  # the floor, measured right beside it
                    targets.append(("nginx", nginx.pid, f"https://127.0.0.1:{nginx_port}/validate"))
                for target, pid, url in targets:
                    print(f"{target} {payload.name} c={concurrency} ...", file=sys.stderr)
                    rows.append(
                        measure(
                            target=target,
                            pid=pid,
                            url=url,
                            body=body,
                            payload=payload.name,
                            concurrency=concurrency,
                            seconds=seconds,
                            workdir=workdir,
                        )
                    )
        large = next(body for payload, body in payloads if payload.name == "deploy-38k")
        rounds = []
        for index in range(ROUNDS):
            print(f"side by side, round {index + 1} of {ROUNDS} ...", file=sys.stderr)
            cpu = [
                measure(
                    target=target,
                    pid=pid,
                    url=url,
                    body=body,
                    payload="",
                    concurrency=8,
                    seconds=seconds,
                    workdir=workdir,
                ).cpu_us_per_review
                for target, pid, url, body in (
                    ("egress-guard", server.pid, f"https://127.0.0.1:{port}/validate", deploy),
                    ("egress-guard", server.pid, f"https://127.0.0.1:{port}/validate", large),
                    ("nginx", nginx.pid, f"https://127.0.0.1:{nginx_port}/validate", deploy),
                )
            ]
            rounds.append(Round(*cpu))
        print("egress-guard paced 1,000 reviews/s ...", file=sys.stderr)
        paced = hey_paced(
            f"https://127.0.0.1:{port}/validate",
            deploy,
            rate=1000,
            connections=8,
            seconds=seconds,
            cpu=LOAD_CPU,
        )
        calls = None
        if cluster is not None:
            after = cluster.calls()
            calls = {k: n - calls_before.get(k, 0) for k, n in after.items()}
            calls = {k: n for k, n in calls.items() if n}
        url = f"https://127.0.0.1:{port}/validate"
        stalled_rows = []
        for count in (0, stalled):
            print(f"egress-guard deploy-6k c=8 with {count} stalled ...", file=sys.stderr)
            with stalled_connections(port, certs / "ca.crt", count):
                stalled_rows.append(
                    measure(
                        target="egress-guard",
                        pid=server.pid,
                        url=url,
                        body=deploy,
                        payload=f"deploy-6k, {count} stalled",
                        concurrency=8,
                        seconds=seconds,
                        workdir=workdir,
                    )
                )
        soaked_mib = worker_rss_mib(server.pid)
    finally:
        stop(server)
        stop(nginx)
    return Run(rows, paced, rounds, calls, stalled_rows, stalled, (idle_mib, soaked_mib), None)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per scenario (a smoke run)")
    parser.add_argument("--seconds", type=float, help="seconds per scenario [10; quick: 2]")
    parser.add_argument("--threads", type=int, help="gunicorn threads per worker [serve's default]")
    parser.add_argument(
        "--cluster",
        choices=["local", "none"],
        default="local",
        help="local: the test suite's local API server, as in production [default]; "
        "none: no cluster (NetworkPolicies reported in a warning)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where results go [bench/results; quick runs: bench/work/results, not kept]",
    )
    args = parser.parse_args()
    out: Path = args.out or (HERE / "work" / "results" if args.quick else HERE / "results")
    if (os.cpu_count() or 1) < 2:
        sys.exit("the benchmark pins server and load generator to two different cores: need 2")
    ensure_tools()
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # this process (and the local API server) off core 0
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    workdir = HERE / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    payloads = write(workdir)
    generate_certs(workdir / "certs")
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(local_cluster(workdir)) if args.cluster == "local" else None
        run = run_scenarios(
            workdir,
            payloads,
            seconds=seconds,
            threads=args.threads,
            cluster=cluster,
            stalled=20 if args.quick else STALLED,
        )
    print("start-up beside a large cluster ...", file=sys.stderr)
    startup = time_to_ready(workdir, 200 if args.quick else STARTUP_NAMESPACES)
    run = dataclasses.replace(run, startup=startup)
    info = {**machine(), "cluster": args.cluster}
    text = report(run, info, args.quick)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    stem = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M") + ("-quick" if args.quick else "")
    (out / f"{stem}.md").write_text(text)
    document = {
        "machine": info,
        "rows": [asdict(r) for r in run.rows],
        "paced": asdict(run.paced),
        "rounds": [asdict(r) for r in run.rounds],
        "apiCallsMeasured": run.api_calls_measured,
        "stalled": [asdict(r) for r in run.stalled],
        "stalledConnections": run.stalled_count,
        "workerMemoryMiB": {"idle": run.memory_mib[0], "afterSoak": run.memory_mib[1]},
        "startUp": asdict(run.startup) if run.startup else None,
    }
    (out / f"{stem}.json").write_text(json.dumps(document, indent=2))
    print(f"results: {out / stem}.md", file=sys.stderr)


if __name__ == "__main__":
    main()
