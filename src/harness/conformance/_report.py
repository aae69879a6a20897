"""Check results and the report: one line per check for people, one JSON document for programs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    passed = "PASS"
    failed = "FAIL"
    skipped = "SKIP"


@dataclass(frozen=True, slots=True)
class Check:
    """One named check: ``framing.one_message_per_line``, ``methods.decompose.result_schema``, ..."""

    name: str
    outcome: Outcome
    detail: str = ""

    @property
    def passed(self) -> bool:
        """A skipped check did not fail: it is counted apart but does not fail the run."""
        return self.outcome != Outcome.failed

    def line(self) -> str:
        return f"{self.outcome.value} {self.name}" + (f": {self.detail}" if self.detail else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "skipped": self.outcome == Outcome.skipped,
            "detail": self.detail,
        }


@dataclass(slots=True)
class Report:
    """Every check of one run of the kit against one program."""

    service: str
    command: list[str]
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for c in self.checks if c.outcome == Outcome.passed)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.checks if c.outcome == Outcome.failed)

    @property
    def skipped(self) -> int:
        return sum(1 for c in self.checks if c.outcome == Outcome.skipped)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def get(self, name: str) -> Check:
        """The check called ``name``; KeyError naming the checks that exist when there is none."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check {name!r}; checks: {', '.join(c.name for c in self.checks)}")

    def failures(self) -> list[str]:
        return [c.name for c in self.checks if c.outcome == Outcome.failed]

    def summary(self) -> str:
        text = f"{self.passed} passed, {self.failed} failed"
        return text + (f", {self.skipped} skipped" if self.skipped else "")

    def text(self) -> str:
        return "\n".join([*(c.line() for c in self.checks), self.summary()]) + "\n"

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "command": self.command,
            "checks": [c.as_json() for c in self.checks],
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
        }

    def json(self) -> str:
        return json.dumps(self.as_json(), ensure_ascii=False) + "\n"
