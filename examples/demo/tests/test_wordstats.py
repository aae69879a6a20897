import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import report  # noqa: E402
import wordstats  # noqa: E402


class WordStatsTest(unittest.TestCase):
    def test_counts_words_case_insensitively(self):
        self.assertEqual(wordstats.count_words("The cat and the hat")["the"], 2)

    def test_stats_totals_every_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "a.txt").write_text("one two two")
            Path(tmp, "b.txt").write_text("two three")
            data = wordstats.stats(Path(tmp))
        self.assertEqual(data["files"], 2)
        self.assertEqual(data["words"], 5)
        self.assertEqual(data["top"][0], ("two", 3))

    def test_report_lists_top_words(self):
        text = report.render(
            {"words": 3, "distinct": 2, "files": 1, "per_file": {"a.txt": 3}, "top": [["x", 2], ["y", 1]]}
        )
        self.assertIn("## Top words", text)
        self.assertIn("1. x (2)", text)


if __name__ == "__main__":
    unittest.main()
