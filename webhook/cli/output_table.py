"""`check -o table`: one row per workload, kubectl-style, and a summary line.

Free text (the reasons) is the last column so the others stay aligned. In a pipe or a CI log each
row is printed whole. On a terminal too narrow for a row, the row keeps its first columns and
what it would get and why go under it, wrapped to the terminal's width, as `kubectl describe`
does: a denial's reason is always readable. Colour (denied red, warned yellow) only on a terminal.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import click

from webhook.cli.check_report import CheckReport, is_checked
from webhook.cli.offline_review import NotSent, WorkloadReview, as_on_a_cluster
from webhook.core.backends import generated_kind
from webhook.core.decision import Note, Verdict
from webhook.core.findings import Subject
from webhook.core.wording import sentence_about, shown_as_warnings

HEADERS = ("NAMESPACE", "KIND/NAME", "VERDICT", "INJECTED", "REASONS")
GAP = "   "
INDENT = "    "
COLOURS = {
    Verdict.DENIED.value: "red",
    Verdict.UNAVAILABLE.value: "red",
    Verdict.ERRORED.value: "red",
    Verdict.WARNED.value: "yellow",
    Verdict.AUDITED.value: "yellow",
    "unmanaged": "bright_black",
    "exempt": "bright_black",
    "skipped": "bright_black",
}


def injected_text(review: WorkloadReview) -> str:
    parts: list[str] = []
    by_kind: dict[str, list[str]] = {}
    for manifest in review.network_policies:
        short = generated_kind(manifest).short
        by_kind.setdefault(short, []).append(str(manifest["metadata"]["name"]))
    parts += [f"{short}: {', '.join(names)}" for short, names in by_kind.items()]
    if review.proxy_env:
        where = "" if review.is_pod else " (its pods)"
        parts.append(f"proxy env{where}: " + ", ".join(review.proxy_env))
    return "; ".join(parts) or "-"


def reason_lines(review: WorkloadReview) -> list[str]:
    """Why, one sentence each: the violations, else the warnings, else the note. A finding about
    the row's own workload is said without naming it again (the KIND/NAME column does)."""
    decision = as_on_a_cluster(review.decision)
    about = Subject(review.kind, review.name)
    if decision.violations:
        return [sentence_about(f, about) for f in decision.violations]
    warnings = [sentence_about(f, about) for f in shown_as_warnings(decision)]
    if warnings:
        return ["warning: " + warning for warning in warnings]
    if decision.note is Note.NOT_MANAGED:
        return [f"not checked: namespace not managed (labels from {review.labels.origin})"]
    if decision.note is Note.EXEMPT:
        return ["not checked: namespace exempt (the policy's exemptNamespaces)"]
    return [f"({decision.note.value})"] if decision.note else []


def reasons_text(review: WorkloadReview) -> str:
    """Why, in one cell."""
    lines = reason_lines(review)
    if lines and lines[0].startswith("warning: "):
        return "warning: " + "; ".join(line.removeprefix("warning: ") for line in lines)
    return "; ".join(lines) or "-"


def verdict_text(review: WorkloadReview) -> str:
    """The verdict; `unmanaged` or `exempt` for what the server would admit unchecked."""
    if not is_checked(review):
        return "exempt" if review.decision.note is Note.EXEMPT else "unmanaged"
    return review.decision.verdict.value


@dataclass(frozen=True, slots=True)
class Row:
    cells: tuple[str, ...]
    details: tuple[str, ...]
    """What goes under the row when it does not fit: `injected: ...`, then the reasons."""


def row(review: WorkloadReview) -> Row:
    injected = injected_text(review)
    details = ([f"injected: {injected}"] if injected != "-" else []) + reason_lines(review)
    return Row(
        (
            review.namespace,
            f"{review.kind}/{review.name}",
            verdict_text(review),
            injected,
            reasons_text(review),
        ),
        tuple(details),
    )


def not_sent_row(item: NotSent) -> Row:
    return Row(
        (item.namespace, f"{item.kind}/{item.name}", "skipped", "-", item.reason), (item.reason,)
    )


def _paint(text: str, verdict: str, colour: bool) -> str:
    fg = COLOURS.get(verdict)
    return click.style(text, fg=fg) if colour and fg else text


def _line(cells: Sequence[str], widths: Sequence[int], verdict: str, colour: bool) -> str:
    """Cells padded to their columns (the last one not padded), the verdict cell coloured."""
    parts = [cell.ljust(widths[i]) if i < len(cells) - 1 else cell for i, cell in enumerate(cells)]
    if len(cells) > 2:
        parts[2] = _paint(parts[2], verdict, colour)
    return GAP.join(parts).rstrip()


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def render_table(report: CheckReport, width: int | None = None, *, colour: bool = False) -> str:
    """The table and the summary line. `width` is a terminal's: rows wider than it keep their
    first three columns and put what they get and why under them, wrapped to fit."""
    rows = [
        *(row(review) for review in report.reviews),
        *(not_sent_row(item) for item in report.not_sent),
    ]
    lines: list[str] = []
    if rows:
        widths = [
            max(len(cells[column]) for cells in [HEADERS, *(r.cells for r in rows)])
            for column in range(len(HEADERS))
        ]
        whole = len(GAP.join(c.ljust(w) for c, w in zip(HEADERS, widths, strict=True)))
        if width is None or whole <= width:
            lines.append(_line(HEADERS, widths, "", colour))
            lines += [_line(r.cells, widths, r.cells[2], colour) for r in rows]
        else:
            lines += _wrapped(rows, widths, width, colour)
    lines.append(report.summary_line())
    return "\n".join(lines) + "\n"


def _wrapped(rows: list[Row], widths: list[int], width: int, colour: bool) -> list[str]:
    lines = [_cut(_line(HEADERS[:3], widths, "", colour), width)]
    for item in rows:
        head = _line(item.cells[:3], widths, item.cells[2], False)
        if len(head) > width:
            head = _cut(head, width)
        elif colour:
            head = _line(item.cells[:3], widths, item.cells[2], True)
        lines.append(head)
        for detail in item.details:
            lines += textwrap.wrap(
                detail,
                width=max(width, 40),
                initial_indent=INDENT,
                subsequent_indent=INDENT + "  ",
                break_on_hyphens=False,
                break_long_words=True,
            )
    return lines
