"""Reading flow records for `egress-guard flows`: Hubble's JSON lines and a simple CSV, streamed.

Hubble: `hubble observe -o json` (or `-o jsonpb`) writes one object a line, either
`{"flow": {...}, "node_name": ..., "time": ...}` or, from other exporters (the Hubble exporter,
`-o json` of older versions), the flow object itself. Field names are the proto's
(cilium/cilium api/v1/flow/flow.proto): `source` and `destination` (`namespace`, `pod_name`,
`labels` as `"k8s:key=value"`, `workloads`), `IP.destination`, `l4.TCP|UDP|SCTP.destination_port`,
`destination_names`, `verdict`, `traffic_direction`, `is_reply` (the camelCase names protojson
uses by default are read too). Lines that are not flows (`node_status`, `lost_events`) are
skipped, and so are flows that are not egress from a pod: ingress, replies, and flows from the
host or the world.

CSV: a header line names the columns, else the six columns are, in order,
`namespace,pod,destination_ip,port,protocol,dns_name`. Optional columns by header: `labels` (the
source pod's labels, `key=value` separated by `;`), `profile` (the profile label's value,
shorter than `labels`), `workload`, `destination_namespace`, `destination_labels`, `verdict`.
`dns_name` may hold several names separated by `;`; an empty port is a flow without one (ICMP).

A line that cannot be read is reported as `file:line: what is wrong` and skipped; the rest is
still read (a line Hubble marks ingress or a reply is skipped before it is parsed). Files are read
a line at a time: memory follows the number of distinct pods and destinations, never the size of
the input.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from webhook.cli.input_files import InputProblem
from webhook.core.flow_matching import ObservedFlow, Peer, sorted_labels, workload_name

Format = Literal["auto", "hubble", "csv"]
FORMATS: tuple[Format, ...] = ("auto", "hubble", "csv")
STDIN = "-"
STDIN_NAME = "<stdin>"
PROBLEMS_KEPT = 20
"""Problems kept with their line (the first ones); the rest are only counted."""

NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."
"""Cilium adds the pod's namespace labels to its endpoint labels under this prefix."""

DROPPED_VERDICTS = frozenset({"DROPPED", "ERROR"})
"""Flows that did not leave. AUDIT (policy audit mode), REDIRECTED (to the L7 proxy), TRACED
and TRANSLATED flows did."""

CSV_DROPPED_VERDICTS = DROPPED_VERDICTS | {"REJECT", "DROP", "DENY", "DENIED"}
"""A CSV's verdict column: Hubble's words, or a flow log's (VPC flow logs say ACCEPT/REJECT)."""

CSV_COLUMNS = ("namespace", "pod", "destination_ip", "port", "protocol", "dns_name")
CSV_OPTIONAL = (
    "labels",
    "profile",
    "workload",
    "destination_namespace",
    "destination_labels",
    "verdict",
)
PROTOCOLS = frozenset({"TCP", "UDP", "SCTP", "ICMPV4", "ICMPV6", "ICMP"})
L4_PORTED = ("TCP", "UDP", "SCTP")
L4_PORTLESS = ("ICMPv4", "ICMPv6")

INGRESS = b'"traffic_direction":"INGRESS"'
REPLY = b'"is_reply":true'
"""Hubble's compact JSON for what is skipped anyway (about half of all flows are replies): such
a line is counted without being parsed. Inside a JSON string these bytes would be escaped, so
only the fields themselves match."""

Skip = str
"""Why a readable record is not counted: not egress, a reply, not from a pod, ..."""


class FlowFileError(Exception):
    """A file that cannot be read at all: one line, exit 2."""


class LineError(ValueError):
    """One line that cannot be read: reported with its file and line, then skipped."""


@dataclass(slots=True)
class ReadStats:
    """What reading found besides flows: records, skips by reason, problems (the first kept)."""

    files: int = 0
    records: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    problems: list[InputProblem] = field(default_factory=list)
    problem_count: int = 0

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def problem(self, problem: InputProblem) -> None:
        self.problem_count += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(problem)


def _split_label(text: str) -> tuple[str, str]:
    """`k8s:app=web` -> (app, web): the source before the first ':' of the key is dropped."""
    key, _, value = text.partition("=")
    source, colon, rest = key.partition(":")
    if colon and "/" not in source and "." not in source:
        key = rest
    return key, value


class HubbleReader:
    """Hubble flows, with the endpoints it has seen remembered: a pod's labels are parsed once,
    and every flow from it shares the same objects."""

    def __init__(self) -> None:
        self._sources: dict[tuple[Any, ...], tuple[Mapping[str, str], str]] = {}
        self._peers: dict[tuple[Any, ...], Peer] = {}
        self._names: dict[tuple[str, ...], tuple[str, ...]] = {}

    def flow(self, document: Any) -> ObservedFlow | Skip:
        if type(document) is not dict:
            raise LineError("not a JSON object")
        flow = document.get("flow")
        if flow is None:
            if "source" not in document and "IP" not in document and "verdict" not in document:
                if "node_status" in document or "lost_events" in document:
                    return "not a flow"
                raise LineError("not a Hubble flow (no flow, source, IP or verdict field)")
            flow = document
        elif type(flow) is not dict:
            raise LineError("flow is not an object")
        get = flow.get
        direction = get("traffic_direction")
        if direction is None:
            direction = get("trafficDirection")
        if direction != "EGRESS":
            return "not egress"
        reply = get("is_reply")
        if reply is True or (reply is None and get("isReply") is True):
            return "reply"
        source = get("source")
        if type(source) is not dict:
            return "not from a pod"
        namespace = source.get("namespace")
        pod = source.get("pod_name") or source.get("podName")
        if not namespace or not pod:
            return "not from a pod"
        labels, workload = self._source(namespace, pod, source)
        ip_section = get("IP")
        ip = ip_section.get("destination") if type(ip_section) is dict else None
        if not ip:
            return "no destination address"
        if type(ip) is not str:
            raise LineError("IP.destination is not a string")
        port, protocol = _l4(get("l4"))
        names = get("destination_names") or get("destinationNames") or ()
        if names:
            names = self._dns_names(names)
        destination = get("destination")
        peer = None
        if type(destination) is dict and destination.get("namespace"):
            peer = self._peer(destination)
        return ObservedFlow(
            namespace,
            pod,
            labels,
            ip,
            port,
            protocol,
            names,
            peer,
            get("verdict") in DROPPED_VERDICTS,
            workload,
        )

    def _source(
        self, namespace: str, pod: str, source: dict[str, Any]
    ) -> tuple[Mapping[str, str], str]:
        raw = source.get("labels") or ()
        if not isinstance(raw, list):
            raise LineError("source.labels is not a list")
        identity = source.get("identity")
        # Cilium's security identity stands for the labels: it changes when they do
        key = (namespace, pod, identity) if identity else (namespace, pod, *raw)
        known = self._sources.get(key)
        if known is None:
            if len(self._sources) > 100_000:
                self._sources.clear()
            labels = _labels(raw, "source.labels")
            owner = _owner(source.get("workloads"))
            known = self._sources[key] = (labels, workload_name(pod, labels, owner))
        return known

    def _peer(self, destination: dict[str, Any]) -> Peer:
        namespace = destination["namespace"]
        pod = destination.get("pod_name", destination.get("podName")) or ""
        raw = destination.get("labels") or ()
        if not isinstance(raw, list):
            raise LineError("destination.labels is not a list")
        identity = destination.get("identity")
        key = (namespace, pod, identity) if identity else (namespace, pod, *raw)
        peer = self._peers.get(key)
        if peer is None:
            if len(self._peers) > 100_000:
                self._peers.clear()
            if not isinstance(namespace, str):
                raise LineError("destination.namespace is not a string")
            everything = _labels(raw, "destination.labels")
            pod_labels = {}
            namespace_labels = {}
            for k, v in everything.items():
                if k.startswith(NAMESPACE_LABELS_PREFIX):
                    namespace_labels[k[len(NAMESPACE_LABELS_PREFIX) :]] = v
                elif not k.startswith(("io.kubernetes.", "io.cilium.")):
                    pod_labels[k] = v
            owner = _owner(destination.get("workloads"))
            workload = workload_name(pod, pod_labels, owner) if pod else owner or ""
            peer = self._peers[key] = Peer(
                namespace,
                sorted_labels(pod_labels),
                sorted_labels(namespace_labels) if namespace_labels else None,
                workload,
            )
        return peer

    def _dns_names(self, names: Any) -> tuple[str, ...]:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise LineError("destination_names is not a list of names")
        key = tuple(names)
        known = self._names.get(key)
        if known is None:
            if len(self._names) > 100_000:
                self._names.clear()
            known = self._names[key] = normal_names(names)
        return known


def normal_names(names: list[str]) -> tuple[str, ...]:
    """Lower case, without the trailing dot, each once, in order."""
    seen: dict[str, None] = {}
    for given in names:
        name = given.strip().lower().rstrip(".")
        if name:
            seen[name] = None
    return tuple(seen)


def _labels(raw: list[Any] | tuple[Any, ...], what: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, str):
            raise LineError(f"{what} holds {type(item).__name__}, not a 'key=value' string")
        key, value = _split_label(item)
        labels[key] = value
    return labels


def _owner(workloads: Any) -> str:
    if isinstance(workloads, list) and workloads and isinstance(workloads[0], dict):
        name = workloads[0].get("name")
        if isinstance(name, str):
            return name
    return ""


def _l4(l4: Any) -> tuple[int | None, str]:
    if not isinstance(l4, dict) or not l4:
        return None, "IP"
    for protocol in L4_PORTED:
        section = l4.get(protocol)
        if section is not None:
            if type(section) is not dict:
                raise LineError(f"l4.{protocol} is not an object")
            port = section.get("destination_port")
            if port is None:
                port = section.get("destinationPort")
            if type(port) is not int or not 0 < port < 65536:
                raise LineError(f"l4.{protocol}.destination_port is not a port number")
            return port, protocol
    for protocol in L4_PORTLESS:
        if protocol in l4:
            return None, protocol
    return None, "IP"


def _csv_labels(text: str, what: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for given in text.replace(",", ";").split(";"):
        item = given.strip()
        if not item:
            continue
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise LineError(f"{what}: {item!r} is not key=value")
        labels[key.strip()] = value.strip()
    return labels


class CsvReader:
    """Rows of the CSV, after its header (or the six columns in their order)."""

    def __init__(self, profile_label: str) -> None:
        self.profile_label = profile_label
        self.columns: dict[str, int] | None = None
        self._peers: dict[tuple[str, str], Peer] = {}

    def header(self, row: list[str]) -> bool:
        """Take the header if this row is one; else assume the six columns in order."""
        names = [cell.strip().lower().replace(" ", "_") for cell in row]
        if names and names[0] == "namespace":
            unknown = [n for n in names if n not in CSV_COLUMNS + CSV_OPTIONAL]
            if unknown:
                known = ", ".join(CSV_COLUMNS + CSV_OPTIONAL)
                raise LineError(f"unknown column {unknown[0]!r} (columns: {known})")
            missing = [n for n in CSV_COLUMNS[:5] if n not in names]
            if missing:
                raise LineError(f"the header has no {missing[0]} column")
            self.columns = {name: i for i, name in enumerate(names)}
            return True
        self.columns = {name: i for i, name in enumerate(CSV_COLUMNS)}
        return False

    def flow(self, row: list[str]) -> ObservedFlow | Skip:
        columns = self.columns
        assert columns is not None

        def cell(name: str) -> str:
            index = columns.get(name)
            return row[index].strip() if index is not None and index < len(row) else ""

        if len(row) < 5:
            raise LineError(f"{len(row)} columns, expected at least 5 ({', '.join(CSV_COLUMNS)})")
        namespace, pod, ip = cell("namespace"), cell("pod"), cell("destination_ip")
        if not namespace or not pod:
            return "not from a pod"
        if not ip:
            raise LineError("no destination_ip")
        protocol = cell("protocol").upper() or "TCP"
        if protocol not in PROTOCOLS:
            raise LineError(f"protocol {cell('protocol')!r} is not TCP, UDP, SCTP or ICMP")
        if protocol == "ICMP":
            protocol = "ICMPv6" if ":" in ip else "ICMPv4"
        elif protocol.startswith("ICMPV"):
            protocol = "ICMPv" + protocol[-1]
        port_text = cell("port")
        port: int | None = None
        if port_text:
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise LineError(f"port {port_text!r} is not a port number")
            port = int(port_text)
        labels = _csv_labels(cell("labels"), "labels")
        if cell("profile"):
            labels[self.profile_label] = cell("profile")
        names = normal_names(cell("dns_name").split(";")) if cell("dns_name") else ()
        peer = None
        destination_namespace = cell("destination_namespace")
        if destination_namespace:
            key = (destination_namespace, cell("destination_labels"))
            peer = self._peers.get(key)
            if peer is None:
                pod_labels = _csv_labels(key[1], "destination_labels")
                peer = self._peers[key] = Peer(
                    destination_namespace,
                    sorted_labels(pod_labels),
                    None,
                    workload_name("", pod_labels) if pod_labels else "",
                )
        return ObservedFlow(
            namespace=namespace,
            pod=pod,
            labels=labels,
            ip=ip,
            port=port,
            protocol=protocol,
            names=names,
            peer=peer,
            dropped=cell("verdict").upper() in CSV_DROPPED_VERDICTS,
            workload=cell("workload") or workload_name(pod, labels),
        )


@dataclass(frozen=True, slots=True)
class FlowSource:
    """A file to read (or standard input, `path` None), and how."""

    path: Path | None
    name: str


def open_sources(paths: tuple[str, ...]) -> list[FlowSource]:
    """Every path given, checked to be a readable file: else FlowFileError, one line."""
    sources: list[FlowSource] = []
    for given in paths:
        if given == STDIN:
            sources.append(FlowSource(None, STDIN_NAME))
            continue
        path = Path(given)
        if path.is_dir():
            raise FlowFileError(
                f"{given}: is a directory; give flow files (or - for standard input)"
            )
        if not path.exists():
            raise FlowFileError(f"{given}: no such file")
        try:
            with path.open("rb"):
                pass
        except OSError as err:
            raise FlowFileError(f"{given}: cannot be read: {err.strerror or err}") from None
        sources.append(FlowSource(path, given))
    return sources


def _binary_stream(source: FlowSource, stdin: IO[bytes] | None) -> IO[bytes]:
    if source.path is None:
        stream = stdin or sys.stdin.buffer
    else:
        stream = source.path.open("rb", buffering=1 << 20)
    head = stream.peek(2)[:2] if isinstance(stream, io.BufferedReader) else b""
    if head == b"\x1f\x8b":
        return gzip.open(stream, "rb")  # type: ignore[return-value]
    return stream


def read_flows(
    sources: list[FlowSource],
    stats: ReadStats,
    *,
    profile_label: str,
    fmt: Format = "auto",
    stdin: IO[bytes] | None = None,
) -> Iterator[ObservedFlow]:
    """The egress flows from pods in these files, one at a time; skips and problems go to
    `stats`. A file that turns out to be binary raises FlowFileError."""
    for source in sources:
        stats.files += 1
        stream = _binary_stream(source, stdin)
        try:
            yield from _read_one(source, stream, stats, profile_label, fmt)
        except OSError as err:
            raise FlowFileError(f"{source.name}: cannot be read: {err.strerror or err}") from None
        finally:
            if source.path is not None:
                stream.close()


def _read_one(
    source: FlowSource, stream: IO[bytes], stats: ReadStats, profile_label: str, fmt: Format
) -> Iterator[ObservedFlow]:
    lines = iter(stream)
    number = 0
    first = b""
    for first in lines:
        number += 1
        if b"\x00" in first:
            raise FlowFileError(f"{source.name}: is a binary file, not flow records")
        if first.strip():
            break
    else:
        stats.problem(InputProblem(source.name, None, "holds no flow records"))
        return
    kind = fmt
    if kind == "auto":
        csv_name = source.name.lower().endswith((".csv", ".csv.gz"))
        kind = "csv" if csv_name or not first.lstrip().startswith(b"{") else "hubble"
    if kind == "hubble":
        yield from _hubble_lines(source.name, first, number, lines, stats)
    else:
        yield from _csv_lines(source.name, first, number, lines, stats, profile_label=profile_label)


def _hubble_lines(
    name: str, first: bytes, number: int, lines: Iterator[bytes], stats: ReadStats
) -> Iterator[ObservedFlow]:
    reader = HubbleReader()
    loads = orjson.loads
    skipped = stats.skipped
    line = first
    while True:
        if INGRESS in line or REPLY in line:
            stats.records += 1
            reason = "not egress" if INGRESS in line else "reply"
            skipped[reason] = skipped.get(reason, 0) + 1
        elif line.strip():
            stats.records += 1
            try:
                found = reader.flow(loads(line))
            except orjson.JSONDecodeError as err:
                stats.problem(InputProblem(name, number, f"is not JSON: {err.msg}"))
            except LineError as err:
                stats.problem(InputProblem(name, number, str(err)))
            else:
                if isinstance(found, str):
                    stats.skip(found)
                else:
                    yield found
        line = next(lines, b"")
        if not line:
            return
        number += 1


def _decoded(
    name: str, first: bytes, number: int, lines: Iterator[bytes], stats: ReadStats
) -> Iterator[tuple[int, str]]:
    line = first
    while True:
        try:
            yield number, line.decode("utf-8-sig")
        except UnicodeDecodeError:
            stats.problem(InputProblem(name, number, "is not UTF-8 text"))
        line = next(lines, b"")
        if not line:
            return
        number += 1


def _csv_lines(
    name: str,
    first: bytes,
    number: int,
    lines: Iterator[bytes],
    stats: ReadStats,
    *,
    profile_label: str,
) -> Iterator[ObservedFlow]:
    reader = CsvReader(profile_label)
    for line_number, text in _decoded(name, first, number, lines, stats):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            row = next(csv.reader([text]))
        except csv.Error as err:
            stats.problem(InputProblem(name, line_number, f"is not CSV: {err}"))
            continue
        try:
            if reader.columns is None and reader.header(row):
                continue
            stats.records += 1
            found = reader.flow(row)
        except LineError as err:
            stats.problem(InputProblem(name, line_number, str(err)))
            continue
        if isinstance(found, str):
            stats.skip(found)
        else:
            yield found
