"""The result of `egress-guard flows` as data, a table, and suggested profiles as YAML.

As with `check`: the JSON/YAML document has sorted keys and nothing that changes from one run
to the next; the table has one row per workload and a summary line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from webhook.cli.errors import EXIT_DENIED, EXIT_OK, EXIT_USAGE
from webhook.cli.flow_input import ReadStats
from webhook.config import yaml_text
from webhook.core.flow_matching import FlowAudit, Suggestion, Tally, Target, WorkloadTally, suggest

HEADERS = ("NAMESPACE", "WORKLOAD", "PROFILE", "FLOWS", "UNDECLARED")
SHOWN_PER_ROW = 8
"""Undeclared destinations named in a table cell, most flows first; the rest are counted."""


def _count(n: int, what: str, plural: str | None = None) -> str:
    return f"{n:,} {what if n == 1 else plural or what + 's'}"


@dataclass(slots=True)
class FlowsReport:
    audit: FlowAudit
    stats: ReadStats

    @property
    def workloads(self) -> list[WorkloadTally]:
        return self.audit.sorted_workloads()

    @property
    def undeclared_workloads(self) -> int:
        return sum(1 for t in self.audit.workloads.values() if t.undeclared)

    @property
    def exit_code(self) -> int:
        """1 when any undeclared egress was seen (dropped attempts too), even if some input
        could not be read; otherwise 2 for unreadable input; otherwise 0."""
        if self.audit.undeclared_destinations:
            return EXIT_DENIED
        if self.stats.problem_count:
            return EXIT_USAGE
        return EXIT_OK

    def skipped(self) -> dict[str, int]:
        skipped = dict(self.stats.skipped)
        for reason, count in self.audit.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + count
        return dict(sorted(skipped.items()))

    def summary(self) -> dict[str, Any]:
        workloads = self.audit.workloads.values()
        return {
            "files": self.stats.files,
            "records": self.stats.records,
            "egressFlows": self.audit.flows,
            "droppedFlows": sum(t.dropped for t in workloads),
            "undeclaredFlows": sum(t.undeclared_flows for t in workloads),
            "workloads": len(self.audit.workloads),
            "workloadsWithUndeclared": self.undeclared_workloads,
            "workloadsWithoutProfile": sum(1 for t in workloads if t.needs_profile),
            "undeclaredDestinations": self.audit.undeclared_destinations,
            "skipped": self.skipped(),
            "inputErrors": self.stats.problem_count,
            "exitCode": self.exit_code,
        }

    def summary_line(self) -> str:
        s = self.summary()
        line = (
            f"{_count(s['records'], 'flow record')} in {_count(s['files'], 'file')}: "
            f"{_count(s['egressFlows'], 'egress flow')} from {_count(s['workloads'], 'workload')}"
        )
        if s["undeclaredDestinations"]:
            line += (
                f"; {_count(s['undeclaredDestinations'], 'undeclared destination')} in "
                f"{_count(s['workloadsWithUndeclared'], 'workload')} "
                f"({_count(s['undeclaredFlows'], 'flow')})"
            )
        else:
            line += "; all declared"
        if s["workloadsWithoutProfile"]:
            line += f"; {_count(s['workloadsWithoutProfile'], 'workload')} without a profile"
        if s["droppedFlows"]:
            line += f"; {_count(s['droppedFlows'], 'flow')} dropped"
        skipped = s["skipped"]
        if skipped:
            reasons = ", ".join(f"{reason} {count:,}" for reason, count in skipped.items())
            line += f"; {sum(skipped.values()):,} skipped ({reasons})"
        if s["inputErrors"]:
            line += f"; {_count(s['inputErrors'], 'input error')}"
        return line

    def document(self) -> dict[str, Any]:
        return {
            "items": [workload_document(t) for t in self.workloads],
            "inputErrors": [problem.as_dict() for problem in self.stats.problems],
            "summary": self.summary(),
        }


def _most_flows(undeclared: dict[Target, Tally]) -> list[tuple[Target, Tally]]:
    return sorted(undeclared.items(), key=lambda item: (-item[1].flows, item[0].sort_key))


def target_document(target: Target, tally: Tally) -> dict[str, Any]:
    document: dict[str, Any] = {
        "destination": str(target),
        "kind": target.kind,
        "port": target.port,
        "protocol": target.protocol,
        "flows": tally.flows,
        "dropped": tally.dropped,
        "reason": tally.why,
    }
    if target.kind == "host":
        document["host"] = target.value
    elif target.kind == "ip":
        document["ip"] = target.value
    elif target.kind == "peer":
        document["namespace"] = target.namespace
        document["workload"] = target.value.partition("/")[2]
        document["podSelector"] = dict(target.selector)
    return document


def workload_document(tally: WorkloadTally) -> dict[str, Any]:
    return {
        "namespace": tally.namespace,
        "workload": tally.workload,
        "profile": tally.profile,
        "profileKnown": tally.profile_known,
        "flows": tally.flows,
        "droppedFlows": tally.dropped,
        "declaredFlows": tally.declared_flows,
        "undeclaredFlows": tally.undeclared_flows,
        "declared": [
            {"rule": rule, "flows": t.flows, "dropped": t.dropped}
            for rule, t in sorted(tally.declared.items())
        ],
        "undeclared": [target_document(t, c) for t, c in _most_flows(tally.undeclared)],
    }


def _profile_cell(tally: WorkloadTally) -> str:
    if tally.profile is None:
        return "<none>"
    return tally.profile if tally.profile_known else f"{tally.profile} (not in policy)"


def _undeclared_cell(tally: WorkloadTally) -> str:
    if not tally.undeclared:
        return "-"
    ordered = _most_flows(tally.undeclared)
    cells = []
    for target, counts in ordered[:SHOWN_PER_ROW]:
        if counts.dropped == counts.flows:
            cells.append(f"{target} ({counts.flows:,}, dropped)")
        elif counts.dropped:
            cells.append(f"{target} ({counts.flows:,}, {counts.dropped:,} dropped)")
        else:
            cells.append(f"{target} ({counts.flows:,})")
    if len(ordered) > SHOWN_PER_ROW:
        cells.append(f"... {len(ordered) - SHOWN_PER_ROW:,} more (-o json)")
    return ", ".join(cells)


def render_table(report: FlowsReport, width: int | None = None) -> str:
    """One row per workload (undeclared destinations last, most flows first), then a summary
    line; `width` cuts each row to a terminal's width."""
    rows: list[Sequence[str]] = [HEADERS]
    for tally in report.workloads:
        rows.append(
            (
                tally.namespace,
                tally.workload,
                _profile_cell(tally),
                f"{tally.flows:,}",
                _undeclared_cell(tally),
            )
        )
    lines: list[str] = []
    if len(rows) > 1:
        widths = [max(len(r[column]) for r in rows) for column in range(len(HEADERS) - 1)]
        for cells in rows:
            line = "   ".join(
                [cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])] + [cells[-1]]
            ).rstrip()
            if width is not None and len(line) > width:
                line = line[: max(width - 3, 0)] + "..."
            lines.append(line)
    lines.append(report.summary_line())
    return "\n".join(lines) + "\n"


def suggestions(report: FlowsReport) -> list[Suggestion]:
    """One per workload without a profile (or with one the policy file lacks) that was seen
    reaching anything but DNS; names made unique."""
    found: list[Suggestion] = []
    taken: set[str] = set(report.audit.policy.profiles)
    for tally in report.workloads:
        if not tally.needs_profile or not tally.undeclared:
            continue
        suggestion = suggest(tally)
        name, n = suggestion.name, 2
        while name in taken:
            name, n = f"{suggestion.name[:60]}-{n}", n + 1
        taken.add(name)
        found.append(replace(suggestion, name=name))
    return found


def suggestions_document(found: list[Suggestion]) -> dict[str, Any]:
    return {"profiles": {s.name: s.profile for s in found}}


def suggestions_yaml(found: list[Suggestion], profile_label: str) -> str:
    """`profiles:` with one suggested profile per workload, each under a comment that says
    which workload it is for and what was left out: policy-file YAML to paste."""
    if not found:
        return "# every workload seen has a profile of the policy file: nothing to suggest\n"
    lines = [
        "# Profiles for workloads without one, the smallest that allow what each was seen doing.",
        "# Paste them under `profiles:` in the policy file, then set the label",
        f"# {profile_label} on each workload's pods (spec.template.metadata.labels).",
        "# A host name is reached through the proxy: the workload must use HTTP(S)_PROXY.",
        "profiles:",
    ]
    for suggestion in found:
        lines.append(
            f"  # {suggestion.namespace}/{suggestion.workload}: "
            f"{_count(suggestion.flows, 'flow')}; label its pods {profile_label}={suggestion.name}"
        )
        for target, tally in suggestion.left_out:
            lines.append(
                f"  # left out, only ever dropped: {target} ({_count(tally.flows, 'flow')})"
            )
        body = yaml_text.dump({suggestion.name: suggestion.profile})
        lines.extend(f"  {line}" for line in body.rstrip("\n").splitlines())
    return "\n".join(lines) + "\n"
