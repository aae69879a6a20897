"""A map of the workspace for a model planner: what a person would glance at before planning.

The top-level layout, the languages (by file counts), the test, build and lint commands the
workspace declares (:func:`.workspace.detect`), the instruction files (AGENTS.md, CLAUDE.md, ...)
and the git state. Bounded in size and time: at most ``MAX_FILES`` files are counted, instruction
files are cut at ``INSTRUCTIONS_CHARS`` characters, and git gets a few seconds. Nothing here runs
the workspace's own code.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from pathlib import Path

from .workspace import WorkspaceProfile, detect

MAX_FILES = 20_000
MAX_ENTRIES = 60
INSTRUCTIONS_CHARS = 6_000
INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md", "GEMINI.md", "CONVENTIONS.md", ".github/copilot-instructions.md")
SKIP_DIRS = frozenset(
    {
        ".git",
        ".harness",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        "dist",
        "build",
        "target",
        ".tox",
    }
)
LANGUAGES = {
    ".py": "Python",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".cjs": "JavaScript",
    ".jsx": "JavaScript",
    ".ts": "TypeScript",
    ".tsx": "TypeScript",
    ".go": "Go",
    ".rs": "Rust",
    ".java": "Java",
    ".kt": "Kotlin",
    ".rb": "Ruby",
    ".php": "PHP",
    ".c": "C",
    ".h": "C",
    ".cc": "C++",
    ".cpp": "C++",
    ".hpp": "C++",
    ".cs": "C#",
    ".swift": "Swift",
    ".sh": "Shell",
    ".css": "CSS",
    ".scss": "CSS",
    ".html": "HTML",
    ".vue": "Vue",
    ".svelte": "Svelte",
    ".sql": "SQL",
    ".md": "Markdown",
}


def languages(root: Path) -> list[tuple[str, int]]:
    """(language, files) by file count, most first; bounded by MAX_FILES."""
    counts: Counter[str] = Counter()
    seen = 0
    for _dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in filenames:
            seen += 1
            language = LANGUAGES.get(os.path.splitext(name)[1].lower())
            if language:
                counts[language] += 1
        if seen >= MAX_FILES:
            break
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def layout(root: Path) -> list[str]:
    """The top-level entries, folders first with their file counts (one level down)."""
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return []
    lines: list[str] = []
    for name in entries:
        if name in SKIP_DIRS or name in (".DS_Store",):
            continue
        path = root / name
        if path.is_dir():
            try:
                inside = len(os.listdir(path))
            except OSError:
                inside = 0
            lines.append(f"{name}/ ({inside} entries)")
        else:
            lines.append(name)
    extra = len(lines) - MAX_ENTRIES
    return lines[:MAX_ENTRIES] + ([f"... and {extra} more"] if extra > 0 else [])


def instructions(root: Path) -> list[tuple[str, str]]:
    """(file, text) of the instruction files at the workspace root, each cut to INSTRUCTIONS_CHARS."""
    out: list[tuple[str, str]] = []
    for rel in INSTRUCTION_FILES:
        path = root / rel
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if len(text) > INSTRUCTIONS_CHARS:
            text = text[:INSTRUCTIONS_CHARS] + f"\n[... cut: {len(text) - INSTRUCTIONS_CHARS} more characters]"
        out.append((rel, text.strip()))
    return out


def git_state(root: Path) -> list[str]:
    """Branch, last commit and uncommitted changes, or why there is no git state."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    if git("rev-parse", "--is-inside-work-tree") != "true":
        return ["not a git repository"]
    lines = [f"branch: {git('rev-parse', '--abbrev-ref', 'HEAD') or '(none)'}"]
    last = git("log", "-1", "--format=%h %s")
    lines.append(f"last commit: {last}" if last else "no commits yet")
    status = git("status", "--porcelain", "--", ".", ":(exclude).harness")
    changed = [line for line in (status or "").splitlines() if line.strip()]
    lines.append(
        f"uncommitted changes: {len(changed)} file(s)"
        + (": " + ", ".join(c[3:] for c in changed[:10]) if changed else "")
    )
    return lines


def workspace_map(workspace: str | None, profile: WorkspaceProfile | None = None) -> str:
    """The map as Markdown-ish text for a prompt; a short note when there is no workspace."""
    if workspace is None:
        return "No workspace was given: plan from the objective alone."
    root = Path(workspace)
    if not root.is_dir():
        return f"The workspace {workspace} does not exist."
    profile = profile or detect(workspace)
    parts = ["## Workspace", "", "Top level:", *[f"  {e}" for e in layout(root)], ""]
    langs = languages(root)
    if langs:
        parts += ["Languages (files): " + ", ".join(f"{name} {n}" for name, n in langs[:8]), ""]
    parts.append("Test commands: " + (", ".join(c.text for c in profile.test_commands) or "none found"))
    parts.append("Build commands: " + (", ".join(c.text for c in profile.build_commands) or "none found"))
    parts.append("Lint commands: " + (", ".join(c.text for c in profile.lint_commands) or "none found"))
    dirs = [
        f"sources {profile.source_dir}/" if profile.source_dir != "." else None,
        f"tests {profile.tests_dir}/" if profile.tests_dir else None,
        f"docs {profile.docs_dir}/" if profile.docs_dir else None,
        f"readme {profile.readme}" if profile.readme else None,
        f"changelog {profile.changelog}" if profile.changelog else None,
    ]
    found = [d for d in dirs if d]
    if found:
        parts.append("Main places: " + ", ".join(found))
    parts += ["", "Git: " + "; ".join(git_state(root))]
    for rel, text in instructions(root):
        parts += ["", f"## Instructions from {rel}", "", text]
    return "\n".join(parts)
