"""The words: every sentence egress-guard shows a person is made here, from findings.

The AdmissionResponse (its message, warnings and audit annotations), the decision log, denial
Events, and `check`'s table, JSON, YAML and JUnit and `explain` all read findings through these
functions, so a rewording happens in one place and no output parses another's text.

kubectl shows warnings as they come: the API server drops or cuts warnings past 120 characters,
and more than a handful is noise on a terminal, so at most six are sent, the last counting what
was left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import lru_cache
from types import MappingProxyType

from webhook.core.decision import Decision, Verdict
from webhook.core.findings import Finding, Severity, Subject
from webhook.core.policy import Mode

MAX_WARNING_CHARS = 120
"""The API server passes on warnings up to this length; longer ones are truncated or dropped."""

MAX_WARNINGS = 6
"""More warnings than this are noise on a terminal; the rest is summarised in the last one."""

PREFIX = "egress-guard: "
WARN_PREFIX = "egress-guard (warn): "
"""A violation admitted under warn mode: what enforce would refuse."""


def sentence(finding: Finding) -> str:
    """The finding as one sentence: subject, reason, and the fix."""
    text = f"{finding.subject} {finding.reason}" if finding.subject else finding.reason
    return f"{text}: {finding.hint}" if finding.hint else text


def sentence_about(finding: Finding, subject: Subject | None) -> str:
    """The finding as a line under a heading that already names `subject` (a table row about
    a workload): without the subject when it is that one."""
    if finding.subject is None or finding.subject != subject:
        return sentence(finding)
    return f"{finding.reason}: {finding.hint}" if finding.hint else finding.reason


def shorten(text: str, limit: int = MAX_WARNING_CHARS) -> str:
    """Cut text to `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def bounded_warnings(warnings: Iterable[str]) -> tuple[str, ...]:
    """At most MAX_WARNINGS warnings of at most MAX_WARNING_CHARS each, without repeats."""
    unique = tuple(dict.fromkeys(shorten(w) for w in warnings if w))
    if len(unique) <= MAX_WARNINGS:
        return unique
    kept = unique[: MAX_WARNINGS - 1]
    return (*kept, f"{PREFIX}{len(unique) - len(kept)} more warnings not shown")


@lru_cache(maxsize=4096)
def warning(finding: Finding, prefix: str = PREFIX) -> str:
    """One finding as a kubectl warning: the whole sentence where it fits, else with the short
    form of its fix. Memoised: a finding shared between reviews (a profile's host names, say) is
    worded once, not once per review."""
    text = prefix + sentence(finding)
    if len(text) > MAX_WARNING_CHARS and finding.short_hint:
        text = prefix + sentence(replace(finding, hint=finding.short_hint))
    return shorten(text)


def shown_as_warnings(decision: Decision) -> tuple[Finding, ...]:
    """The findings a decision's warnings tell: advice always; the violations too where they were
    admitted with warnings (under audit they go to the audit log instead, silently; a refusal
    says them in its message)."""
    if decision.verdict is Verdict.WARNED or not decision.violations:
        return decision.findings
    return tuple(f for f in decision.findings if f.severity is Severity.ADVICE)


def warnings(decision: Decision) -> tuple[str, ...]:
    """The warnings kubectl prints for a decision."""
    if not decision.findings:
        return ()
    return _said(decision)[1]


def message(decision: Decision) -> str:
    """Why a request was refused, every violation in one message (empty when allowed)."""
    if decision.allowed:
        return ""
    return _said(decision)[0]


def _said(decision: Decision) -> tuple[str, tuple[str, ...]]:
    """The decision's message and warnings, made once and kept on it."""
    said = decision.said
    if said is None:
        said = (joined([sentence(f) for f in decision.violations]), _warnings(decision))
        object.__setattr__(decision, "said", said)
    return said


def _warnings(decision: Decision) -> tuple[str, ...]:
    shown = shown_as_warnings(decision)
    if not shown:
        return ()
    prefix = WARN_PREFIX if decision.mode is Mode.WARN else PREFIX
    return bounded_warnings(
        warning(f, prefix if f.severity is Severity.VIOLATION else PREFIX) for f in shown
    )


_NONE: Mapping[str, str] = MappingProxyType({})


def joined(sentences: Iterable[str]) -> str:
    """Several reasons as one message."""
    return "; ".join(sentences)


def audit_annotations(decision: Decision) -> Mapping[str, str]:
    """What audit mode records (the API server prefixes each key with the webhook's name)."""
    if decision.verdict is not Verdict.AUDITED:
        return _NONE
    annotations = {
        "mode": Mode.AUDIT.value,
        "violation": joined(sentence(f) for f in decision.violations),
    }
    if decision.preexisting:
        annotations["preexisting"] = "true"
    return annotations
