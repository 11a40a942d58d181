"""`check -o junit`: JUnit XML, the test report format CI systems read (GitLab, Jenkins, GitHub
actions): one testsuite per input file, one testcase per workload, a `failure` for each workload
the server would refuse, a `skipped` one for each workload the API server would not send or
egress-guard would not check (its namespace is not managed, or exempt: an `error` instead with
`--require-managed`), and an `error` for each input that could not be read. A testcase's `file` is
the Helm template the object came from when the input says (`# Source:`), else the input file."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict

from webhook.cli.check_report import CheckReport, is_checked
from webhook.cli.input_files import InputProblem, SourceRef
from webhook.cli.offline_review import NotSent, WorkloadReview
from webhook.core.decision import Note
from webhook.core.wording import sentence

SUITES_NAME = "egress-guard check"
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters XML 1.0 cannot carry, even escaped (control characters, lone surrogates)."""


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def _file(source: SourceRef) -> str:
    """The Helm template an object came from, when known; else the file it was read from."""
    return source.helm_source or source.path


def _unchecked(case: ET.Element, review: WorkloadReview, *, require_managed: bool) -> ET.Element:
    where = "exempt" if review.decision.note is Note.EXEMPT else "not managed"
    message = f"not checked: namespace {review.namespace} is {where}"
    if require_managed and review.decision.note is Note.NOT_MANAGED:
        message += " (--require-managed): pass -n NAMESPACE and --mode, or a Namespace object"
        ET.SubElement(case, "error", {"type": "NotManaged", "message": _text(message)})
    else:
        ET.SubElement(case, "skipped", {"message": _text(message)})
    return case


def _testcase(review: WorkloadReview, *, require_managed: bool = False) -> ET.Element:
    decision = review.decision
    source = review.manifest.source
    case = ET.Element(
        "testcase",
        {
            "classname": _text(f"egress-guard.{review.namespace}"),
            "name": _text(f"{review.kind}/{review.name}"),
            "file": _text(_file(source)),
            "line": str(source.line),
        },
    )
    if not is_checked(review):
        return _unchecked(case, review, require_managed=require_managed)
    details = [f"{review.kind}/{review.name} in namespace {review.namespace} ({source})"]
    details += [f"reason: {sentence(violation)}" for violation in decision.violations]
    details += [f"warning: {warning}" for warning in decision.warnings]
    if not decision.allowed:
        failure = ET.SubElement(
            case,
            "failure",
            {
                "type": decision.verdict.value,
                "message": _text(decision.message),
            },
        )
        failure.text = _text("\n".join(details))
    elif len(details) > 1:
        ET.SubElement(case, "system-out").text = _text(
            "\n".join([f"verdict: {decision.verdict.value}", *details])
        )
    return case


def _skipped_case(item: NotSent) -> ET.Element:
    source = item.manifest.source
    case = ET.Element(
        "testcase",
        {
            "classname": _text(f"egress-guard.{item.namespace}"),
            "name": _text(f"{item.kind}/{item.name}"),
            "file": _text(_file(source)),
            "line": str(source.line),
        },
    )
    ET.SubElement(case, "skipped", {"message": _text(item.reason)})
    return case


def _error_case(problem: InputProblem) -> ET.Element:
    case = ET.Element(
        "testcase",
        {
            "classname": "egress-guard.input",
            "name": _text(f"read {problem.path}" + (f":{problem.line}" if problem.line else "")),
            "file": _text(problem.path),
        },
    )
    if problem.line:
        case.set("line", str(problem.line))
    error = ET.SubElement(case, "error", {"type": "InputError", "message": _text(problem.message)})
    error.text = _text(str(problem))
    return case


def render_junit(report: CheckReport) -> str:
    """The whole report as a JUnit XML document."""
    cases: dict[str, list[ET.Element]] = defaultdict(list)
    for problem in report.problems:
        cases[problem.path].append(_error_case(problem))
    for review in report.reviews:
        cases[review.manifest.source.path].append(
            _testcase(review, require_managed=report.require_managed)
        )
    for item in report.not_sent:
        cases[item.manifest.source.path].append(_skipped_case(item))
    root = ET.Element("testsuites", {"name": SUITES_NAME})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for path in sorted(cases):
        suite_cases = cases[path]
        counts = {
            "tests": len(suite_cases),
            "failures": sum(1 for c in suite_cases if c.find("failure") is not None),
            "errors": sum(1 for c in suite_cases if c.find("error") is not None),
            "skipped": sum(1 for c in suite_cases if c.find("skipped") is not None),
        }
        suite = ET.SubElement(
            root, "testsuite", {"name": _text(path), **{k: str(v) for k, v in counts.items()}}
        )
        suite.extend(suite_cases)
        for key, value in counts.items():
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=False).join(
        ('<?xml version="1.0" encoding="UTF-8"?>\n', "\n")
    )
