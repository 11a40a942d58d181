"""What a check returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a check found, in a full sentence and in a warning-sized form."""

    message: str
    warning: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Violations deny under enforce; advice only ever warns."""

    violations: tuple[Finding, ...] = ()
    advice: tuple[Finding, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.violations


PASSED = CheckResult()
