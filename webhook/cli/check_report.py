"""The result of `egress-guard check` as data: counts, exit code, and the JSON/YAML document.

The document is the stable, machine-readable form: keys sorted, items in input order, nothing
that changes from one run to the next (no timings, no random ids).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from webhook.cli.errors import EXIT_DENIED, EXIT_OK, EXIT_USAGE
from webhook.cli.input_files import InputProblem
from webhook.cli.offline_review import NotSent, WorkloadReview
from webhook.config import yaml_text
from webhook.core.backends import NETWORK_POLICY, generated_kind
from webhook.core.decision import Note, Verdict
from webhook.core.findings import Finding
from webhook.core.wording import sentence

VERDICT_ORDER = (
    Verdict.ALLOWED,
    Verdict.DENIED,
    Verdict.WARNED,
    Verdict.AUDITED,
    Verdict.UNAVAILABLE,
    Verdict.ERRORED,
)
SAID_WHEN_NONZERO = frozenset({Verdict.UNAVAILABLE, Verdict.ERRORED})
"""Verdicts the summary line names only when some workload got them."""
NOT_CHECKED = frozenset({Note.NOT_MANAGED, Note.EXEMPT})
"""Notes of the reviews that checked nothing: the namespace is not managed, or exempt."""


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 workload`, `2 workloads`, `0 NetworkPolicies`."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def objects_noun(reviews: list[WorkloadReview]) -> str:
    """`3 workloads`, or `3 objects` when some are NetworkPolicies."""
    if any(review.kind == "NetworkPolicy" for review in reviews):
        return plural(len(reviews), "object")
    return plural(len(reviews), "workload")


def is_checked(review: WorkloadReview) -> bool:
    """Whether the server would have checked the object at all (a managed namespace)."""
    return review.decision.note not in NOT_CHECKED


@dataclass(slots=True)
class CheckReport:
    """Everything one `check` run found."""

    reviews: list[WorkloadReview] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    """Objects that are not workloads, by kind."""
    not_sent: list[NotSent] = field(default_factory=list)
    """Workloads skipped because the API server would never send them (kind outside the rules)."""
    namespaces: int = 0
    """Namespace objects read (they supply labels; they are not reviewed)."""
    problems: list[InputProblem] = field(default_factory=list)
    files: int = 0
    require_managed: bool = False
    """`--require-managed`: a workload in a namespace that is not managed is an error (CI)."""

    @property
    def verdicts(self) -> Counter[Verdict]:
        """The verdicts of what was checked (not of the objects in unmanaged or exempt
        namespaces, which the server admits unchecked)."""
        return Counter(review.decision.verdict for review in self.reviews if is_checked(review))

    @property
    def unmanaged(self) -> list[WorkloadReview]:
        """Objects in namespaces that are not managed: admitted without a check."""
        return [r for r in self.reviews if r.decision.note is Note.NOT_MANAGED]

    @property
    def exempt(self) -> list[WorkloadReview]:
        """Objects in exempt namespaces: never touched."""
        return [r for r in self.reviews if r.decision.note is Note.EXEMPT]

    @property
    def unmanaged_namespaces(self) -> list[str]:
        return sorted({review.namespace for review in self.unmanaged})

    @property
    def refused(self) -> int:
        """Workloads the API server would refuse (denied, or not decidable)."""
        return sum(1 for review in self.reviews if not review.decision.allowed)

    @property
    def exit_code(self) -> int:
        """1 when anything is refused, even if some input could not be read (both fail a build,
        and a denial is the more useful news); otherwise 2 for unreadable input, or (with
        `require_managed`) for objects in unmanaged namespaces; otherwise 0."""
        if self.refused:
            return EXIT_DENIED
        if self.problems or (self.require_managed and self.unmanaged):
            return EXIT_USAGE
        return EXIT_OK

    @property
    def not_sent_kinds(self) -> Counter[str]:
        return Counter(item.qualified_kind for item in self.not_sent)

    @property
    def network_policies(self) -> int:
        """How many of the reviews are of NetworkPolicies (the rest are of workloads)."""
        return sum(1 for review in self.reviews if review.kind == "NetworkPolicy")

    def summary(self) -> dict[str, Any]:
        verdicts = self.verdicts
        skipped = sum(self.skipped.values()) + len(self.not_sent)
        return {
            "files": self.files,
            "objects": len(self.reviews) + self.namespaces + skipped,
            "workloads": len(self.reviews) - self.network_policies,
            "networkPolicies": self.network_policies,
            **{verdict.value: verdicts.get(verdict, 0) for verdict in VERDICT_ORDER},
            "namespaces": self.namespaces,
            "notManaged": len(self.unmanaged),
            "notManagedNamespaces": self.unmanaged_namespaces,
            "exempt": len(self.exempt),
            "skipped": skipped,
            "skippedKinds": dict(sorted(self.skipped.items())),
            "notSent": dict(sorted(self.not_sent_kinds.items())),
            "inputErrors": len(self.problems),
            "exitCode": self.exit_code,
        }

    def summary_line(self) -> str:
        """One sentence a person reads at the end of the table."""
        verdicts = self.verdicts
        counts = ", ".join(
            f"{verdicts.get(verdict, 0)} {verdict.value}"
            for verdict in VERDICT_ORDER
            if verdict not in SAID_WHEN_NONZERO or verdicts.get(verdict)
        )
        workloads = len(self.reviews) - self.network_policies
        reviewed = plural(workloads, "workload")
        if self.network_policies:
            reviewed += " and " + plural(self.network_policies, "NetworkPolicy", "NetworkPolicies")
        line = f"{reviewed} in {plural(self.files, 'file')}: {counts}"
        if self.unmanaged:
            names = self.unmanaged_namespaces
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            line += (
                f"; {objects_noun(self.unmanaged)} in "
                f"{plural(len(names), 'unmanaged namespace')} ({shown}): not checked"
            )
        if self.exempt:
            line += f"; {objects_noun(self.exempt)} in exempt namespaces: not checked"
        skipped = sum(self.skipped.values())
        if skipped:
            top = ", ".join(f"{count} {kind}" for kind, count in self.skipped.most_common(4))
            more = ", ..." if len(self.skipped) > 4 else ""
            other = plural(skipped, "other object")
            line += f"; {other} skipped ({top}{more})"
        if self.not_sent:
            kinds = ", ".join(f"{n} {kind}" for kind, n in self.not_sent_kinds.most_common())
            line += (
                f"; {plural(len(self.not_sent), 'workload')} skipped, not sent by the API "
                f"server ({kinds}: not in workloadKinds)"
            )
        if self.namespaces:
            line += f"; {plural(self.namespaces, 'Namespace')} read"
        if self.problems:
            line += f"; {plural(len(self.problems), 'input error')}"
        return line

    def unmanaged_advice(self) -> str | None:
        """What to do about objects that were not checked, for standard error (None: nothing)."""
        if not self.unmanaged:
            return None
        names = self.unmanaged_namespaces
        head = (
            f"egress-guard: {objects_noun(self.unmanaged)} not checked: namespace "
            f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} not managed"
        )
        fix = "pass -n NAMESPACE and --mode enforce, or a labelled Namespace object"
        if self.require_managed:
            return f"error: {head} (--require-managed); {fix}"
        return f"warning: {head}; {fix} (--require-managed makes this an error)"

    def document(self, *, show_generated: bool = False) -> dict[str, Any]:
        return {
            "items": [review_document(r, show_generated=show_generated) for r in self.reviews],
            "notSent": [not_sent_document(item) for item in self.not_sent],
            "inputErrors": [problem.as_dict() for problem in self.problems],
            "summary": self.summary(),
        }


def review_document(review: WorkloadReview, *, show_generated: bool = False) -> dict[str, Any]:
    """One workload's entry in the JSON/YAML output."""
    decision = review.decision
    item: dict[str, Any] = {
        "source": review.manifest.source.as_dict(),
        "namespace": review.namespace,
        "apiVersion": review.manifest.api_version,
        "kind": review.kind,
        "name": review.name,
        "verdict": decision.verdict.value,
        "checked": is_checked(review),
        "allowed": decision.allowed,
        "code": decision.code,
        "message": decision.message,
        "reasons": [sentence(finding) for finding in decision.violations],
        "findings": [finding_document(finding) for finding in decision.findings],
        "warnings": list(decision.warnings),
        "note": decision.note.value if decision.note else "",
        "namespaceLabels": {
            "labels": dict(review.labels.labels or {}),
            "from": review.labels.origin,
        },
        "injected": {
            "networkPolicies": list(review.network_policy_names),
            "intents": [intent_document(m) for m in review.network_policies],
            "proxyEnv": {name: list(names) for name, names in review.proxy_env.items()},
            "proxyEnvOn": "pod" if review.is_pod else "pods it creates",
        },
    }
    if decision.audit_annotations:
        item["auditAnnotations"] = dict(decision.audit_annotations)
    if show_generated:
        item["generated"] = {
            "networkPolicies": [
                dict(m) for m in review.network_policies if m["kind"] == NETWORK_POLICY.kind
            ],
            "objects": [dict(m) for m in review.network_policies],
            "patchedObject": review.patched,
        }
    return item


def intent_document(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """An object admission ensures before the workload is admitted, as `check -o json` lists it:
    which backend, what, and where (the whole object is under `generated` with --show-generated)."""
    metadata = manifest["metadata"]
    return {
        "backend": generated_kind(manifest).backend.value,
        "apiVersion": manifest["apiVersion"],
        "kind": manifest["kind"],
        "namespace": metadata["namespace"],
        "name": metadata["name"],
    }


def finding_document(finding: Finding) -> dict[str, Any]:
    """A finding as structured data: what a program reads instead of the sentences."""
    document: dict[str, Any] = {
        "check": finding.check,
        "severity": finding.severity.value,
        "reason": finding.reason,
        "hint": finding.hint,
        "detail": finding.details(),
        "text": sentence(finding),
    }
    if finding.subject is not None:
        document["subject"] = {"kind": finding.subject.kind, "name": finding.subject.name}
    return document


def not_sent_document(item: NotSent) -> dict[str, Any]:
    """A skipped workload's entry in the JSON/YAML output: which object, and why."""
    return {
        "source": item.manifest.source.as_dict(),
        "namespace": item.namespace,
        "apiVersion": item.manifest.api_version,
        "kind": item.kind,
        "name": item.name,
        "reason": item.reason,
    }


def to_json(document: Mapping[str, Any]) -> str:
    return orjson.dumps(
        document,
        default=str,  # anything YAML can hold that JSON cannot (a set, say) is shown as text
        option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS,
    ).decode()


def to_yaml(document: Mapping[str, Any] | list[Any]) -> str:
    """YAML with sorted keys, as `-o yaml` prints reports."""
    return yaml_text.dump(document, sort_keys=True)
