"""The gates on a terminal: a person answers the prompts of a real `harness run` through a pty."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import assert_no_processes_left, events, first, types, write_config, write_plan

pytestmark = pytest.mark.slow


class Terminal:
    """A child process on a pseudo-terminal, read with bounded waits."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "HARNESS_NONINTERACTIVE")}
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"never saw {text!r}; the terminal shows:\n{self.seen}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the program ended before {text!r}:\n{self.seen}")
                self.seen += chunk.decode(errors="replace")
        at = self.seen.index(text) + len(text)
        before, self.seen = self.seen[:at], self.seen[at:]
        return before

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:
                    pass
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait(10)
        os.close(self.master)
        return code


def test_a_person_rejects_with_feedback_then_approves_with_a_skip_and_confirms_a_manual_step(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    write_config(ws)
    write_plan(
        ws,
        [
            {
                "id": "a",
                "title": "First",
                "commands": ["echo a >> order.txt"],
                "acceptance_tests": ["test -s order.txt"],
            },
            {"id": "b", "title": "Optional", "commands": ["echo b >> order.txt"], "acceptance_tests": ["true"]},
            {"id": "c", "title": "Unwanted", "commands": ["echo c >> order.txt"], "acceptance_tests": ["true"]},
            {"id": "check", "title": "Look at it", "depends_on": ["a"], "acceptance_tests": ["grep -q a order.txt"]},
        ],
    )
    term = Terminal(
        [sys.executable, "-m", "harness.cli", "run", "--plan", str(ws / "plan.yaml"), "--workspace", str(ws)], ws
    )
    try:
        term.expect("Approve this plan?")
        term.send("r")
        term.expect("Feedback for the planner:")
        term.send("skip c")
        shown = term.expect("Approve this plan?")
        assert "revision 2" in shown and "c: Unwanted" not in shown
        term.send("m")
        term.expect("Task ids to skip")
        term.send("b")
        term.expect("New order")
        term.send("")
        term.expect("Is check done?")
        term.send("done")
        code = term.wait()
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
            term.proc.wait(10)
    assert code == 0, term.seen
    assert (ws / "order.txt").read_text().split() == ["a"]
    evts = events(ws)
    rejected = first(evts, "GATE_REJECTED")["data"]
    assert (rejected["source"], rejected["feedback"], rejected["revision"]) == ("tty", "skip c", 1)
    approved = first(evts, "GATE_APPROVED")["data"]
    assert (approved["source"], approved["revision"], approved["skip"]) == ("tty", 2, ["b"])
    assert first(evts, "TASK_DECISION", "check")["data"]["source"] == "tty"
    assert "TASK_COMPLETED" in types(evts, "check")
    assert_no_processes_left(ws)
