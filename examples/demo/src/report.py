"""Render the statistics JSON as a short markdown report."""

import json
import sys
from pathlib import Path


def render(data: dict) -> str:
    lines = [
        "# Word statistics",
        "",
        f"{data['words']} words, {data['distinct']} distinct, in {data['files']} files.",
        "",
    ]
    lines += ["## Per file", ""] + [f"- {name}: {n} words" for name, n in data["per_file"].items()]
    lines += ["", "## Top words", ""] + [f"{i}. {w} ({n})" for i, (w, n) in enumerate(data["top"], 1)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    Path(sys.argv[2]).write_text(render(data), encoding="utf-8")
    print(f"wrote {sys.argv[2]}")
