"""The map of the workspace a model planner gets: layout, languages, commands, instructions, git."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.services.planning.context_map import workspace_map
from harness.services.planning.model_planner import PROPOSAL_SCHEMA, brief, to_plan
from harness.services.planning.schemas import PlanningContext
from harness.services.planning.workspace import detect


def _project(root: Path) -> Path:
    (root / "src" / "app").mkdir(parents=True)
    (root / "src" / "app" / "__init__.py").write_text("def f():\n    return 1\n")
    (root / "src" / "app" / "ui.ts").write_text("export const x = 1\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_f.py").write_text("from app import f\n\ndef test_f():\n    assert f() == 1\n")
    (root / "pyproject.toml").write_text('[project]\nname = "app"\n\n[tool.ruff]\nline-length = 100\n')
    (root / "package.json").write_text(json.dumps({"scripts": {"test": "jest", "lint": "eslint ."}}))
    (root / "AGENTS.md").write_text("Run the tests with pytest. Never touch vendor/.\n")
    (root / "node_modules" / "dep").mkdir(parents=True)
    (root / "node_modules" / "dep" / "index.js").write_text("x\n" * 10)
    return root


def test_the_map_shows_layout_languages_commands_instructions_and_git(tmp_path: Path) -> None:
    ws = _project(tmp_path)
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    subprocess.run(["git", "-C", str(ws), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(ws), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first commit"], check=True
    )
    (ws / "new.py").write_text("")
    text = workspace_map(str(ws))
    assert "src/ (1 entries)" in text and "node_modules" not in text
    assert "Python 3" in text and "TypeScript 1" in text and "JavaScript" not in text  # node_modules skipped
    assert "Test commands: python3 -m pytest -q, npm test" in text
    assert "Lint commands: npm run lint, ruff check ." in text
    assert "Never touch vendor/." in text
    assert "last commit:" in text and "first commit" in text and "uncommitted changes: 1 file(s): new.py" in text


def test_a_plain_folder_and_no_workspace(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    text = workspace_map(str(tmp_path))
    assert "Test commands: none found" in text and "Git: not a git repository" in text
    assert detect(tmp_path).lint_commands == ()
    assert "plan from the objective alone" in workspace_map(None)


def test_the_brief_and_the_answer_schema_agree() -> None:
    text = brief(PlanningContext(max_tasks=5))
    assert "3 to 5 tasks" in text
    for name in PROPOSAL_SCHEMA["properties"]["tasks"]["items"]["properties"]:
        assert f"- {name}:" in text or f"{name}:" in text
    plan, notes = to_plan(
        json.dumps({"plan": {"tasks": [{"id": "t1", "title": "x", "acceptance_tests": ["pytest"], "color": "red"}]}}),
        "obj",
    )
    assert plan.tasks[0].id == "t1" and any("ignored fields color" in n for n in notes)
