"""`check -o table`: one row per workload, kubectl-style, and a summary line.

Free text (the reasons) is the last column so the others stay aligned; on a terminal it is cut to
the terminal's width, in a pipe or a CI log it is printed whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from webhook.cli.check_report import CheckReport
from webhook.cli.offline_review import NotSent, WorkloadReview, as_on_a_cluster
from webhook.core.findings import Subject
from webhook.core.wording import sentence_about, shown_as_warnings

HEADERS = ("NAMESPACE", "KIND/NAME", "VERDICT", "INJECTED", "REASONS")


def injected_text(review: WorkloadReview) -> str:
    parts: list[str] = []
    if review.network_policies:
        parts.append("netpol: " + ", ".join(review.network_policy_names))
    if review.proxy_env:
        where = "" if review.is_pod else " (its pods)"
        parts.append(f"proxy env{where}: " + ", ".join(review.proxy_env))
    return "; ".join(parts) or "-"


def reasons_text(review: WorkloadReview) -> str:
    """Why, in one cell: the violations, else the warnings, else the note. A finding about the
    row's own workload is said without naming it again (the KIND/NAME column does)."""
    decision = as_on_a_cluster(review.decision)
    about = Subject(review.kind, review.name)
    if decision.violations:
        return "; ".join(sentence_about(f, about) for f in decision.violations)
    warnings = [sentence_about(f, about) for f in shown_as_warnings(decision)]
    if warnings:
        return "warning: " + "; ".join(warnings)
    return f"({decision.note.value})" if decision.note else "-"


def row(review: WorkloadReview) -> tuple[str, ...]:
    return (
        review.namespace,
        f"{review.kind}/{review.name}",
        review.decision.verdict.value,
        injected_text(review),
        reasons_text(review),
    )


def not_sent_row(item: NotSent) -> tuple[str, ...]:
    return (item.namespace, f"{item.kind}/{item.name}", "skipped", "-", item.reason)


def render_table(report: CheckReport, width: int | None = None) -> str:
    """The table and the summary line; `width` cuts each line (a terminal's width), or not."""
    rows: list[Sequence[str]] = [
        HEADERS,
        *(row(review) for review in report.reviews),
        *(not_sent_row(item) for item in report.not_sent),
    ]
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
