"""Count words in every .txt file of a folder and write the totals as JSON."""

import json
import re
import sys
from collections import Counter
from pathlib import Path

WORD = re.compile(r"[a-z']+")


def count_words(text: str) -> Counter:
    return Counter(WORD.findall(text.lower()))


def stats(folder: Path) -> dict:
    totals: Counter = Counter()
    per_file = {}
    for path in sorted(folder.glob("*.txt")):
        counts = count_words(path.read_text(encoding="utf-8"))
        per_file[path.name] = sum(counts.values())
        totals.update(counts)
    return {
        "files": len(per_file),
        "words": sum(totals.values()),
        "distinct": len(totals),
        "per_file": per_file,
        "top": totals.most_common(10),
    }


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.write_text(json.dumps(stats(source), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {target}")
