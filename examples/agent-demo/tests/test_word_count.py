import unittest

from textkit import word_count


class WordCountTest(unittest.TestCase):
    def test_words_are_counted_case_insensitively(self) -> None:
        self.assertEqual(word_count("The cat and the hat"), {"the": 2, "cat": 1, "and": 1, "hat": 1})

    def test_punctuation_is_not_part_of_a_word(self) -> None:
        self.assertEqual(word_count("Yes! yes? no."), {"yes": 2, "no": 1})

    def test_empty_text_has_no_words(self) -> None:
        self.assertEqual(word_count(""), {})


if __name__ == "__main__":
    unittest.main()
