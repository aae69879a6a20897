"""Real-looking workspaces for planning tests, written into a temporary folder: a Python project
with pytest (a git repository where git is installed), a Node project with `npm test`, a Makefile
project and a plain folder with no tooling."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

HAS_GIT = shutil.which("git") is not None


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Each ``name: text`` written under ``root`` (folders made as needed); ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def python_project(root: Path) -> Path:
    ws = write_files(
        root,
        {
            "pyproject.toml": "[project]\nname = 'pkg'\nversion = '0.1'\n",
            "src/pkg/__init__.py": "",
            "src/pkg/dashboard.py": "def render():\n    return 'light'\n",
            "tests/test_x.py": "def test_x():\n    assert True\n",
            "README.md": "# pkg\n",
        },
    )
    if HAS_GIT:
        for args in (
            ["init", "-q"],
            ["add", "-A"],
            ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init"],
        ):
            subprocess.run(["git", "-C", str(ws), *args], check=True, capture_output=True, timeout=20)
    return ws


def node_project(root: Path) -> Path:
    package = {"name": "web", "version": "1.0.0", "scripts": {"test": "node --test"}}
    return write_files(
        root, {"package.json": json.dumps(package), "lib/index.js": "module.exports = {};\n", "test/index.test.js": ""}
    )


def make_project(root: Path) -> Path:
    return write_files(
        root, {"Makefile": "test:\n\tcc -o app src/app.c && ./app\n", "src/app.c": "int main(void) { return 0; }\n"}
    )


def plain_folder(root: Path) -> Path:
    return write_files(root, {"notes.txt": "ideas\n", "dashboard.html": "<html></html>\n"})
