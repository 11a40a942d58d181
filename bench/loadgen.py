"""Load generators: wrk for throughput and latency at a fixed concurrency, hey for a paced rate."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unreadable latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def missing_tools() -> list[str]:
    return [tool for tool in ("wrk", "hey", "nginx", "taskset") if shutil.which(tool) is None]


def wrk(
    url: str, body: Path, *, connections: int, seconds: float, cpu: str, workdir: Path
) -> LoadResult:
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    command = [
        "taskset",
        "-c",
        cpu,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        env={"BENCH_BODY": str(body)},
        timeout=seconds + 30,
    ).stdout
    requests_match = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    if requests_match is None:
        raise RuntimeError(f"wrk printed no totals:\n{out}")
    seconds_taken = _ms(requests_match.group(2) + requests_match.group(3)) / 1000
    percentiles = {
        m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(\d+)%\s+(\S+)", out, re.M)
    }
    errors = 0
    if non_2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(non_2xx.group(1))
    if socket := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        errors += sum(int(x) for x in socket.groups())
    return LoadResult(
        requests=int(requests_match.group(1)),
        seconds=seconds_taken,
        errors=errors,
        p50_ms=percentiles.get("50", float("nan")),
        p90_ms=percentiles.get("90", float("nan")),
        p99_ms=percentiles.get("99", float("nan")),
    )


def hey_paced(
    url: str, body: Path, *, rate: int, connections: int, seconds: float, cpu: str
) -> LoadResult:
    """`rate` reviews/s in total, spread over `connections` (hey's -q is per connection).

    A count (-n), not a duration (-z): at the end of a duration hey cancels the requests in
    flight and counts them as errors.
    """
    per_connection = max(1, rate // connections)
    command = [
        "taskset",
        "-c",
        cpu,
        "hey",
        "-n",
        str(int(rate * seconds)),
        "-c",
        str(connections),
        "-q",
        str(per_connection),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-D",
        str(body),
        url,
    ]
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=3 * seconds + 30
    ).stdout
    total = re.search(r"Total:\s+([\d.]+) secs", out)
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    _, _, error_part = out.partition("Error distribution:")
    failed = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s", error_part, re.M))

    def percentile(p: str) -> float:
        match = re.search(rf"{p}% in ([\d.]+) secs", out)
        return float(match.group(1)) * 1000 if match else float("nan")

    return LoadResult(
        requests=sum(statuses.values()),
        seconds=float(total.group(1)) if total else seconds,
        errors=failed + sum(n for code, n in statuses.items() if code != 200),
        p50_ms=percentile("50"),
        p90_ms=percentile("90"),
        p99_ms=percentile("99"),
    )
