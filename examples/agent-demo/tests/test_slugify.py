import unittest

from textkit import slugify


class SlugifyTest(unittest.TestCase):
    def test_words_are_joined_by_dashes_in_lower_case(self) -> None:
        self.assertEqual(slugify("Hello, World!"), "hello-world")

    def test_runs_of_separators_collapse_and_ends_are_trimmed(self) -> None:
        self.assertEqual(slugify("  --Plan  & Execute--  "), "plan-execute")

    def test_digits_stay(self) -> None:
        self.assertEqual(slugify("Release 2.0"), "release-2-0")


if __name__ == "__main__":
    unittest.main()
