"""A check's result: a stable id, a status, what was found and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"
    UNKNOWN = "unknown"
    """Could not be told: never counted as ok."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str
    status: Status
    summary: str
    details: tuple[str, ...] = ()
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "check": self.check,
            "status": self.status.value,
            "summary": self.summary,
        }
        if self.details:
            document["details"] = list(self.details)
        if self.fix:
            document["fix"] = self.fix
        return document


def unknown(check: str, what: str, why: str, fix: str = "") -> CheckResult:
    """A result for what could not be read."""
    return CheckResult(check, Status.UNKNOWN, f"could not read {what}: {why}", fix=fix)
