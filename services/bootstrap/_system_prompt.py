"""Phase system_prompt_fastpath: assemble the agents' system prompt from instruction files.

Instruction files are looked for in every directory from the git root (or the workspace alone,
outside a repository) down to the workspace, outermost first, so that the more specific file comes
later and reads as the refinement. Within a directory the order is fixed by ``INSTRUCTION_FILES``.
Each file and the whole prompt are size-limited; every cut is reported.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from harness.models import PhaseName, PhaseResult, PhaseStatus

from ._fs import atomic_write, file_stamp, find_git_root, resolve_under, sha256_text
from ._phase import Outcome, Phase, PhaseCall

INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md", ".github/copilot-instructions.md", "HARNESS.md")
PROMPT_FILE = "system_prompt.md"


def search_dirs(workspace: Path) -> list[Path]:
    """Directories to search, outermost first: git root .. workspace (or just the workspace)."""
    root = find_git_root(workspace)
    if root is None:
        return [workspace]
    chain = [workspace]
    for parent in workspace.parents:
        if not parent.is_relative_to(root):
            break
        chain.append(parent)
    return list(reversed(chain))


def _read_head(path: Path, max_chars: int) -> tuple[str, int, bool]:
    """The first ``max_chars`` characters, the file's size in bytes, and whether it was cut."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(4 * max_chars + 4)  # UTF-8 needs at most 4 bytes per character
    text = raw.decode("utf-8", "replace")
    cut = len(text) > max_chars or len(raw) < size
    return text[:max_chars], size, cut


class SystemPromptFastpath(Phase):
    name = PhaseName.system_prompt_fastpath
    context_fields = ("workspace", "objective", "run_id", "run_dir", "prompt_file_max_chars", "prompt_max_chars")
    description = (
        "Find instruction files (AGENTS.md, CLAUDE.md, .github/copilot-instructions.md, HARNESS.md) from the "
        "git root down to the workspace, assemble them into one size-limited system prompt and write it to "
        "<run_dir>/system_prompt.md."
    )

    def probe(self, call: PhaseCall) -> dict[str, Any]:
        if call.workspace_problem():
            return {"workspace": str(call.workspace), "usable": False}
        dirs = search_dirs(call.workspace)
        candidates = [d / rel for d in dirs for rel in INSTRUCTION_FILES]
        call.scratch["base"] = dirs[0]
        call.scratch["candidates"] = candidates
        return {
            "workspace": str(call.workspace),
            "usable": True,
            "files": {str(p): file_stamp(p) for p in candidates},
        }

    def run(self, call: PhaseCall, facts: dict[str, Any]) -> Outcome:
        problem = call.workspace_problem()
        if problem:
            return Outcome.failed(problem)
        ctx = call.context
        base: Path = call.scratch["base"]
        found = [p for p in call.scratch["candidates"] if facts["files"][str(p)] is not None]
        diagnostics: list[str] = []
        sections: list[str] = [self._header(call, bool(found))]
        sources: list[dict[str, Any]] = []
        budget = ctx.prompt_max_chars - len(sections[0])
        for path in found:
            label = str(path.relative_to(base))
            try:
                text, size, cut = _read_head(path, ctx.prompt_file_max_chars)
            except OSError as exc:
                diagnostics.append(f"{label}: cannot read: {exc.strerror or exc}")
                continue
            section = f"\n## {label}\n\n{text.rstrip()}\n"
            if cut:
                section += f"\n[truncated: {label} is {size} bytes; the first {len(text)} characters are shown]\n"
                diagnostics.append(f"{label}: truncated to {len(text)} characters (file is {size} bytes)")
            if budget <= 0:
                diagnostics.append(f"{label}: left out, the prompt hit its limit ({ctx.prompt_max_chars} characters)")
                sources.append({"path": str(path), "label": label, "bytes": size, "chars": 0, "truncated": True})
                continue
            if len(section) > budget:
                section = section[:budget]
                cut = True
                diagnostics.append(f"{label}: cut at the prompt limit of {ctx.prompt_max_chars} characters")
            budget -= len(section)
            sections.append(section)
            sources.append({"path": str(path), "label": label, "bytes": size, "chars": len(section), "truncated": cut})
        if not found:
            diagnostics.append(
                "no instruction files found (looked for " + ", ".join(INSTRUCTION_FILES) + "): using a minimal prompt"
            )
        prompt = "".join(sections)
        written = self._write(call, prompt, diagnostics)
        status = PhaseStatus.ok if len(sources) == len(found) else PhaseStatus.degraded
        artifacts = {
            "path": str(written) if written else None,
            "sha256": sha256_text(prompt),
            "chars": len(prompt),
            "sources": sources,
            "truncated": any(s["truncated"] for s in sources),
        }
        if written is None and ctx.run_dir is not None:
            return Outcome(PhaseStatus.failed, diagnostics, artifacts)
        return Outcome(status, diagnostics, artifacts)

    @staticmethod
    def _header(call: PhaseCall, has_files: bool) -> str:
        ctx = call.context
        lines = ["# System prompt", "", f"Workspace: {call.workspace}"]
        if ctx.objective:
            lines.append(f"Objective: {ctx.objective}")
        if ctx.run_id:
            lines.append(f"Run: {ctx.run_id}")
        if has_files:
            lines += ["", "Follow the instructions below; later sections are more specific than earlier ones."]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _write(call: PhaseCall, prompt: str, diagnostics: list[str]) -> Path | None:
        if call.context.run_dir is None:
            return None
        target = resolve_under(call.workspace, call.context.run_dir) / PROMPT_FILE
        try:
            atomic_write(target, prompt)
        except OSError as exc:
            diagnostics.append(f"cannot write {target}: {exc.strerror or exc}")
            return None
        return target

    def still_valid(self, call: PhaseCall, result: PhaseResult) -> bool:
        """A cached prompt is served only while the file it wrote is still there, unchanged."""
        path = result.artifacts.get("path")
        if not path:
            return True
        try:
            return hashlib.sha256(Path(path).read_bytes()).hexdigest() == result.artifacts.get("sha256")
        except OSError:
            return False
