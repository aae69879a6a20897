"""Reading objectives: vagueness, clauses, intent and key phrases, by small deterministic rules.

A planner that cannot tell "improve stuff" from "add dark mode" makes plans nobody can verify.
The rule used here: an objective is concrete when it names something — a file or path, an
identifier, a number, a quoted thing, a command-line flag, or at least one word that is not a
stop word, a generic verb ("improve", "update", "make") or a generic noun ("code", "stuff",
"performance"). Everything else is vague.
"""

from __future__ import annotations

import re
from enum import StrEnum

# Words that carry no meaning of their own in an objective.
STOP_WORDS = frozenset(
    """a an the it its this that these those to of in on for with and or but so be is are was were
    we our my your i you me us please just also all any some bit little lot lots very really much
    more less up out off again now then there here as at by from into about should could would can
    will let lets need needs want wants try whole entire everywhere way ways e.g i.e eg ie""".split()
)

# Verbs and adjectives that say "do something" without saying what.
GENERIC_ACTIONS = frozenset(
    """improve improved improves improving improvement improvements enhance enhanced enhancement
    enhancements optimize optimise optimized optimised optimizing optimization optimisation refactor
    refactored refactoring restructure rework reworked clean cleaned cleanup cleaning tidy polish
    update updated updates updating upgrade fix fixed fixes fixing change changed changes modify
    adjust tweak tweaks make makes making do doing done handle address work working add implement
    create write support better best faster quicker nicer cleaner simpler easier good great nice
    robust stable efficient smaller bigger proper properly correct correctly stuff various misc
    general overall generally etc""".split()
)

# Nouns too broad to locate anything.
GENERIC_NOUNS = frozenset(
    """code codebase stuff thing things it everything something anything project app application
    system program software repo repository feature features bug bugs issue issues problem problems
    error errors performance speed quality ui ux logic implementation part parts place places area
    areas module modules file files function functions class classes method methods component
    components service services page pages design architecture structure readability
    maintainability""".split()
)

NON_CONTENT = STOP_WORDS | GENERIC_ACTIONS | GENERIC_NOUNS

# Signals that a text names something precise.
_SIGNALS = (
    ("quoted", re.compile(r"`[^`]+`|\"[^\"]+\"|(?<![\w])'[^'\n]+'(?![\w])")),
    ("number", re.compile(r"\d")),
    ("path", re.compile(r"[\w.-]*\w/[\w./-]*|(?<![\w.])[\w-]{2,}\.[A-Za-z][A-Za-z0-9]{0,5}\b")),
    (
        "identifier",
        re.compile(
            r"\b[A-Za-z][A-Za-z0-9]*_[A-Za-z0-9_]+\b|\b[a-z]+[A-Z][A-Za-z0-9]*\b|\b[A-Z][a-z]+[A-Z][A-Za-z0-9]*\b|\b\w+\(\)"
        ),
    ),
    ("flag", re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")),
)

_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_'./-]*")


def words(text: str) -> list[str]:
    """Lower-case word tokens, trailing punctuation removed ("config.py." -> "config.py")."""
    return [w.rstrip(".'-/").lower() for w in _WORD.findall(text) if w.rstrip(".'-/")]


def concrete_signals(text: str) -> list[str]:
    """Names of the precise-thing signals found in ``text`` (quoted, number, path, ...)."""
    return [name for name, pattern in _SIGNALS if pattern.search(text)]


def content_words(text: str) -> list[str]:
    """Words that are neither stop words nor generic verbs or nouns, in order."""
    return [w for w in words(text) if w not in NON_CONTENT]


def vagueness(text: str) -> str | None:
    """Why ``text`` is too vague to act on, or None when it names something concrete."""
    if not text.strip():
        return "it is empty"
    if concrete_signals(text) or content_words(text):
        return None
    return "it names no file, module, identifier, number, quoted thing or specific noun"


def is_vague(text: str) -> bool:
    return vagueness(text) is not None


def key_phrase(text: str, limit: int = 3) -> str | None:
    """What documentation of ``text`` must mention: its first quoted thing, flag or identifier,
    else its first run of consecutive content words (at most ``limit``).

    "add dark mode to settings" -> "dark mode"; "fix login bug" -> "login";
    "add a --top option" -> "--top"; "rename `load_cfg`" -> "load_cfg".
    """
    found = [m for name, p in _SIGNALS if name in ("quoted", "flag", "identifier") and (m := p.search(text))]
    if found:
        return min(found, key=lambda m: m.start()).group(0).strip("`\"'")
    run: list[str] = []
    for w in words(text):
        if w in NON_CONTENT:
            if run:
                break
            continue
        run.append(w)
        if len(run) == limit:
            break
    return " ".join(run) or None


# -- clauses --------------------------------------------------------------------------------------

# Verbs that begin a new piece of work when they follow "and", "then" or a comma.
CLAUSE_VERBS = (
    "add|fix|update|remove|delete|rename|write|implement|create|document|refactor|improve|move|"
    "deploy|bump|upgrade|migrate|extract|introduce|optimize|optimise|clean|enable|disable|expose|"
    "port|convert|release|publish|drop|support"
)
_CLAUSE_SPLIT = re.compile(
    rf"\s*(?:;|\n)\s*|\s*,?\s+(?:and|then|also|plus)\s+(?=(?:{CLAUSE_VERBS})\b)|\s*,\s*(?=(?:{CLAUSE_VERBS})\b)",
    re.IGNORECASE,
)


def split_clauses(objective: str) -> list[str]:
    """Separate pieces of work in one objective: "add X and fix Y; document Z" -> three clauses.

    Only a clause verb after "and"/"then"/a comma starts a new clause, so "add search and
    filters" stays whole.
    """
    parts = [" ".join(p.split()).rstrip(".!").strip() for p in _CLAUSE_SPLIT.split(objective)]
    parts = [p for p in parts if p]
    return parts or [" ".join(objective.split())]


# -- intent ---------------------------------------------------------------------------------------


class Intent(StrEnum):
    """What kind of work a clause asks for; it decides which tasks surround the change."""

    feature = "feature"
    bugfix = "bugfix"
    refactor = "refactor"
    docs = "docs"
    tests = "tests"


_BUG_WORDS = frozenset(
    "bug bugs crash crashes crashing regression broken error errors failing fails failure exception leak".split()
)
_BUG_VERBS = frozenset("fix repair resolve debug patch".split())
DOC_WORDS = frozenset(
    "readme readme.md docs documentation guide changelog changelog.md docstring docstrings tutorial manual".split()
)
DOC_VERBS = frozenset("document describe explain".split())
_TEST_WORDS = frozenset("test tests coverage".split())
_REFACTOR_VERBS = frozenset(
    "refactor rename extract move simplify restructure reorganize reorganise split tidy clean".split()
)


def intent(clause: str) -> Intent:
    ws = words(clause)
    if not ws:
        return Intent.feature
    first, rest = ws[0], set(ws)
    if first in DOC_VERBS or (rest & DOC_WORDS and not rest & _BUG_WORDS):
        return Intent.docs
    if first in _BUG_VERBS or rest & _BUG_WORDS:
        return Intent.bugfix
    if first == "test" or (rest & _TEST_WORDS and first in {"add", "write", "increase", "extend", "cover"}):
        return Intent.tests
    if first in _REFACTOR_VERBS:
        return Intent.refactor
    return Intent.feature


def shorten(text: str, limit: int = 80) -> str:
    """One line of at most ``limit`` characters, cut at a word boundary."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"


def sentence(text: str) -> str:
    """``text`` with a capital first letter and no trailing full stop."""
    text = " ".join(text.split()).rstrip(".")
    return text[:1].upper() + text[1:]
