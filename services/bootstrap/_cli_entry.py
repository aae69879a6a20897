"""Phase cli_entry: is this a workspace we can run in, and does it have what the run needs?

Checks, all reported at once so one attempt names everything to fix: the workspace is a writable
directory; the harness config (``harness.yaml`` or ``.harness/config.yaml``) parses; every
``requires.env`` variable is set and every ``requires.tools`` program is on PATH. Git state is
reported but never fails the phase: a workspace need not be a repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from harness.models import PhaseName, PhaseStatus

from ._fs import file_stamp, find_git_root, sha256_text
from ._phase import Outcome, Phase, PhaseCall

CONFIG_FILES = ("harness.yaml", ".harness/config.yaml")
GIT_TIMEOUT = 5.0
#: Run folders live under .harness/ in the workspace; writing them must not make the tree dirty.
_GIT_STATUS = ("status", "--porcelain=v2", "--branch", "--untracked-files=normal", "--", ".", ":(exclude).harness")


def git_state(workspace: Path, timeout: float = GIT_TIMEOUT) -> dict[str, Any]:
    """Repository facts of ``workspace`` from one bounded ``git status`` call.

    ``dirty`` means uncommitted changes under the workspace, ignoring ``.harness/``.
    """
    root = find_git_root(workspace)
    state: dict[str, Any] = {"is_repo": root is not None, "root": str(root) if root else None}
    if root is None:
        return state
    git = shutil.which("git")
    if git is None:
        state["unavailable"] = "git is not on PATH: branch and changes are unknown"
        return state
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    try:
        proc = subprocess.run(
            [git, *_GIT_STATUS],
            cwd=workspace,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        state["error"] = f"git status did not finish within {timeout:g} s"
        return state
    except OSError as exc:
        state["error"] = f"git could not be started: {exc}"
        return state
    if proc.returncode != 0:
        state["error"] = "git status failed: " + proc.stderr.decode("utf-8", "replace").strip()[-300:]
        return state
    return {**state, **_parse_status(proc.stdout.decode("utf-8", "replace"))}


def _parse_status(text: str) -> dict[str, Any]:
    """Branch, commit and change count from ``git status --porcelain=v2 --branch``."""
    info: dict[str, Any] = {"branch": None, "head": None, "detached": False, "changes": 0}
    for line in text.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split(" ", 2)[2]
            info["head"] = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split(" ", 2)[2]
            info["detached"] = head == "(detached)"
            info["branch"] = None if info["detached"] else head
        elif line.startswith("# branch.upstream "):
            info["upstream"] = line.split(" ", 2)[2]
        elif line.startswith("# branch.ab "):
            ahead, behind = line.split(" ")[2:4]
            info["ahead"], info["behind"] = int(ahead), -int(behind)
        elif line and not line.startswith("#"):
            info["changes"] += 1
    info["dirty"] = info["changes"] > 0
    return info


def parse_config(path: Path, label: str) -> dict[str, Any]:
    """Summary of a harness config file, or its errors with file:line:column."""
    import yaml  # only when a config file exists: keeps the service start fast

    summary: dict[str, Any] = {"path": str(path)}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {**summary, "errors": [f"{label}: cannot read: {exc}"]}
    summary["sha256"] = sha256_text(text)
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        return {**summary, "errors": [f"{where}: {problem}"], "line": mark.line + 1 if mark else None}
    except yaml.YAMLError as exc:
        return {**summary, "errors": [f"{label}: {exc}"]}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return {**summary, "errors": [f"{label}: the top level must be a mapping, not {type(data).__name__}"]}
    return {**summary, "keys": sorted(str(k) for k in data)}


class CliEntry(Phase):
    name = PhaseName.cli_entry
    context_fields = ("workspace", "requires")
    description = (
        "Check the workspace (a writable directory), parse the harness config if present, read the git "
        "state, and verify every required environment variable and tool; all problems are named at once."
    )

    def probe(self, call: PhaseCall) -> dict[str, Any]:
        ws = call.workspace
        req = call.context.requires
        is_dir = ws.is_dir()
        return {
            "workspace": {
                "path": str(ws),
                "exists": ws.exists(),
                "is_dir": is_dir,
                "writable": is_dir and os.access(ws, os.W_OK | os.X_OK),
            },
            "env": {name: name in os.environ for name in req.env},
            "tools": {name: shutil.which(name) for name in req.tools},
            "config": {rel: file_stamp(ws / rel) for rel in CONFIG_FILES} if is_dir else {},
            "git": git_state(ws) if is_dir else {"is_repo": False, "root": None},
        }

    def run(self, call: PhaseCall, facts: dict[str, Any]) -> Outcome:
        problems: list[str] = []
        notes: list[str] = []
        ws = facts["workspace"]
        problems += _workspace_problems(ws)
        missing_env = [n for n, present in facts["env"].items() if not present]
        missing_tools = [n for n, path in facts["tools"].items() if path is None]
        if missing_env:
            problems.append("missing required environment variables: " + ", ".join(missing_env))
        if missing_tools:
            problems.append("missing required tools (not on PATH): " + ", ".join(missing_tools))
        config = self._config(call.workspace, facts["config"], notes)
        if config and config.get("errors"):
            problems += config["errors"]
        git = facts["git"]
        degraded = self._git_notes(git, notes)
        status = PhaseStatus.failed if problems else PhaseStatus.degraded if degraded else PhaseStatus.ok
        return Outcome(
            status,
            problems + notes,
            {
                "workspace": ws["path"],
                "git": git,
                "config": config,
                "missing": {"env": missing_env, "tools": missing_tools},
                "tools": {n: p for n, p in facts["tools"].items() if p is not None},
            },
        )

    @staticmethod
    def _config(workspace: Path, stamps: dict[str, str | None], notes: list[str]) -> dict[str, Any] | None:
        present = [rel for rel in CONFIG_FILES if stamps.get(rel) is not None]
        if not present:
            return None
        if len(present) > 1:
            notes.append(f"both {present[0]} and {present[1]} exist; using {present[0]}")
        return parse_config(workspace / present[0], present[0])

    @staticmethod
    def _git_notes(git: dict[str, Any], notes: list[str]) -> bool:
        """Add git diagnostics; True when the state could not be read (degraded)."""
        if not git.get("is_repo"):
            notes.append("not a git repository: changes will not be tracked by git")
            return False
        if "unavailable" in git:
            notes.append(git["unavailable"])
            return False
        if "error" in git:
            notes.append(git["error"])
            return True
        if git.get("dirty"):
            notes.append(f"git: {git['changes']} uncommitted change(s) in the workspace")
        return False


def _workspace_problems(ws: dict[str, Any]) -> list[str]:
    if not ws["exists"]:
        return [f"workspace {ws['path']} does not exist"]
    if not ws["is_dir"]:
        return [f"workspace {ws['path']} is not a directory"]
    if not ws["writable"]:
        return [f"workspace {ws['path']} is not writable"]
    return []
