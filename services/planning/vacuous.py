"""Reading a shell command without running it: checks that cannot fail, and commands that leave
their task's directory.

An acceptance test is its task's verdict, so one that cannot fail says nothing. :func:`vacuous_reason`
names those, by these rules (each is a certainty, never a guess):

* Commands that always succeed: ``true``, ``:``, ``echo``, ``printf``, ``pwd``, ``exit 0``, an
  assignment alone (``X=1``), and ``cd``/``pushd``/``popd``, which only move (so
  ``cd DIR && <vacuous>`` is vacuous too).
* ``ls`` of the working directory: no path, or only ``.`` (``ls``, ``ls .``, ``ls -A``). A path
  or a glob (``ls dist/*.whl``) may match nothing, so that is a real check.
* ``test``/``[ ]`` that are true by construction: ``-d``/``-e`` of ``.``, ``..``, ``/`` or
  ``$PWD``; ``-n`` of a constant or of ``$(ls)`` of the working directory, ``$(pwd)``,
  ``$(echo text)``; ``-z ''``; two identical constants compared.
* Lists, read with the shell's rules: in ``a && b`` and ``a || b`` the second part runs only
  after success, resp. failure, of the first; after ``;``, ``&`` or a new line only the last list
  decides the status; ``!`` inverts; a pipeline's status is its last command's; a ``( ... )``
  subshell is read inside. So ``X || true``, ``X || exit 0``, ``X; true``, ``X &`` are vacuous
  whatever ``X`` is, and a sequence is vacuous when every part that can decide it is.

Anything else — an unknown program, ``if``/``for``/``case``, a redirection from a file, a
command substitution whose output is not known, text the shell could not parse — counts as a
real check: only what certainly cannot fail is flagged.

:func:`scope_escape` is a cheap lexical check that a command stays in its task's directory:
``cd``/``pushd`` to ``..``, an absolute path or the home directory, and any argument that
climbs out once normalised (``../x``, ``a/../../x``, ``--root=..``, ``PATH=a:../b``).
Subshells and command substitutions are read too. Both functions are pure.
"""

from __future__ import annotations

import functools
import posixpath
import re
import shlex
from dataclasses import dataclass
from enum import Enum

__all__ = ["is_vacuous", "scope_escape", "vacuous_reason"]


class End(Enum):
    """How a piece of shell can end: a status the script goes on from, or an exit of the shell."""

    ok = "ok"
    failed = "failed"
    exit_ok = "exit_ok"
    exit_failed = "exit_failed"


OKS = frozenset({End.ok, End.exit_ok})
EXITS = frozenset({End.exit_ok, End.exit_failed})
ANY = frozenset({End.ok, End.failed})


@dataclass(frozen=True)
class _Verdict:
    """The ways a piece of shell can end, and why it cannot fail when it cannot."""

    ends: frozenset[End]
    why: str | None = None

    @property
    def always_ok(self) -> bool:
        return self.ends <= OKS


UNKNOWN = _Verdict(ANY)


def _contained(ends: frozenset[End]) -> frozenset[End]:
    """``ends`` of a subshell or a pipe's part, seen from outside: an exit there ends only it."""
    return frozenset(End.ok if e == End.exit_ok else End.failed if e == End.exit_failed else e for e in ends)


# -- splitting ------------------------------------------------------------------------------------

#: Operators that separate lists (the status of the last list counts) and and-or operators.
SEPARATORS = (";", "\n", "&")
AND_OR = ("&&", "||")


def _split_operators(text: str) -> tuple[list[str], list[str]] | None:
    """``text`` cut at its top-level operators: (parts, operators), ``len(parts) == len(operators) + 1``.

    Operators are ``&&``, ``||``, ``|`` (and ``|&``), ``;``, ``&`` and new lines; quotes,
    ``$( )``, ``( )``, backquotes and ``#`` comments are respected, so ``grep -q 'a;b' f`` is one
    part. Parts are stripped. None when quotes or parentheses do not balance.
    """
    parts: list[str] = []
    ops: list[str] = []
    buf: list[str] = []
    stack: list[str] = []  # open contexts: "'", '"', "(", "`"
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        top = stack[-1] if stack else None
        if top == "'":
            buf.append(ch)
            if ch == "'":
                stack.pop()
            i += 1
            continue
        if ch == "\\" and i + 1 < n:
            buf.append(text[i : i + 2])
            i += 2
            continue
        if top == "`":
            buf.append(ch)
            if ch == "`":
                stack.pop()
            i += 1
            continue
        if top == '"':
            buf.append(ch)
            if ch == '"':
                stack.pop()
            elif ch == "`":
                stack.append("`")
            elif text.startswith("$(", i):
                buf.append("(")
                stack.append("(")
                i += 1
            i += 1
            continue
        # top-level code, or inside ( ) / $( )
        if ch in "'\"`":
            stack.append(ch)
            buf.append(ch)
            i += 1
            continue
        if ch == "(":
            stack.append("(")
            buf.append(ch)
            i += 1
            continue
        if ch == ")":
            if top != "(":
                return None
            stack.pop()
            buf.append(ch)
            i += 1
            continue
        if ch == "#" and (not buf or buf[-1][-1:].isspace() or buf[-1][-1:] in "();|&"):
            while i < n and text[i] != "\n":
                i += 1
            continue
        if top is None:
            op = _operator_at(text, i, buf)
            if op is not None:
                parts.append("".join(buf).strip())
                ops.append(op)
                buf = []
                i += len(op)
                continue
        buf.append(ch)
        i += 1
    if stack:
        return None
    parts.append("".join(buf).strip())
    return parts, ["|" if op == "|&" else op for op in ops]


def _operator_at(text: str, i: int, buf: list[str]) -> str | None:
    """The operator starting at ``text[i]``, or None (``>&2``, ``&>f`` and ``>|f`` are redirections)."""
    ch = text[i]
    prev = buf[-1][-1:] if buf else ""
    if ch == "\n":
        return "\n"
    if ch == ";":
        return ";"
    if ch == "&":
        if text.startswith("&&", i):
            return "&&"
        if prev in ("<", ">") or text.startswith("&>", i):
            return None
        return "&"
    if ch == "|":
        if text.startswith("||", i):
            return "||"
        if prev == ">":
            return None
        return "|&" if text.startswith("|&", i) else "|"
    return None


def _words(part: str) -> list[str] | None:
    try:
        return shlex.split(part)
    except ValueError:
        return None


_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
#: printf conversions: ``%d`` of "abc" fails; ``%s``, ``%b``, ``%q`` and ``%%`` cannot.
_CONVERSION = re.compile(r"%(%|[-+ #0-9.*]*[A-Za-z]?)")
_REDIRECT = re.compile(r"^(\d*)(>>|>\||>&|<&|&>>|&>|<>|<<<|<<|<|>)(.*)$")
_HARMLESS_TARGETS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "&1", "&2", "&-", "1", "2", "-"})


def _strip_redirections(words: list[str]) -> tuple[list[str], bool]:
    """``words`` without redirections, and whether every redirection was harmless (cannot fail:
    output to /dev/null, a descriptor or a plain file name here; never input from a file)."""
    out: list[str] = []
    harmless = True
    k = 0
    while k < len(words):
        m = _REDIRECT.match(words[k])
        if m is None:
            out.append(words[k])
            k += 1
            continue
        operator, target = m.group(2), m.group(3)
        if not target and k + 1 < len(words):
            target = words[k + 1]
            k += 1
        k += 1
        if operator.startswith("<") and operator != "<&":
            harmless = harmless and target == "/dev/null"  # a file to read may be missing
        else:
            harmless = harmless and (target in _HARMLESS_TARGETS or "/" not in target)
    return out, harmless


# -- vacuous checks -------------------------------------------------------------------------------

HERE = frozenset({".", "./", "$PWD", "${PWD}", "$(pwd)"})
ALWAYS_THERE = HERE | frozenset({"..", "../", "/"})


def _constant(word: str) -> bool:
    """A word with no expansion in it (after the shell removed its quotes)."""
    return not any(c in word for c in "$`*?[~")


def _prints_text(arg: str) -> bool:
    """A printf argument whose conversions, if any, never fail (``%s``, ``%b``, ``%q``, ``%%``)."""
    return all(c == "%" or c[-1:] in ("s", "b", "q") for c in _CONVERSION.findall(arg))


def _lists_here(words: list[str]) -> bool:
    """``ls`` of the working directory only: no paths but ``.``."""
    return bool(words) and words[0] == "ls" and all(w.startswith("-") or w in HERE for w in words[1:])


def _always_prints(inner: str) -> str | None:
    """Why the command ``inner`` (of a ``$( )``) always prints something, or None."""
    words = _words(inner)
    if not words:
        return None
    if words == ["pwd"]:
        return "$(pwd) is never empty"
    if _lists_here(words):
        return f"$({inner}) lists the working directory, which has files in it before any work is done"
    if words[0] == "echo" and any(w and _constant(w) and not w.startswith("-") for w in words[1:]):
        return f"$({inner}) prints constant text"
    return None


def _substitution(word: str) -> str | None:
    """The command of a word that is exactly one ``$( ... )``, else None."""
    if word.startswith("$(") and word.endswith(")"):
        parsed = _split_operators(word[1:])
        if parsed is not None and len(parsed[0]) == 1:
            return word[2:-1].strip()
    return None


def _test_reason(args: list[str], shown: str) -> str | None:
    """Why ``test args`` is always true, or None."""
    if len(args) == 2 and args[0] in ("-d", "-e") and args[1] in ALWAYS_THERE:
        return f"{shown!r} is always true: {args[1]!r} always exists"
    if len(args) == 1 or (len(args) == 2 and args[0] == "-n"):
        operand = args[-1]
        if operand and _constant(operand) and not (len(args) == 1 and operand.startswith("-")):
            return f"{shown!r} tests a constant, non-empty string"
        inner = _substitution(operand)
        why = _always_prints(inner) if inner is not None else None
        if why:
            return f"{shown!r} is always true: {why}"
    if args == ["-z", ""]:
        return f"{shown!r} tests a constant, empty string"
    if len(args) == 3 and args[1] in ("=", "==", "-eq") and args[0] == args[2] and _constant(args[0]):
        return f"{shown!r} compares a constant with itself"
    return None


def _simple(part: str) -> _Verdict:
    """A simple command (or a subshell): how it can end."""
    if part.startswith("(") and part.endswith(")"):
        inner = _script(part[1:-1])
        return _Verdict(_contained(inner.ends), inner.why)
    words = _words(part)
    if words is None:
        return UNKNOWN
    words, harmless = _strip_redirections(words)
    if not harmless:
        return UNKNOWN
    k = 0
    while k < len(words) and _ASSIGNMENT.match(words[k]):
        k += 1
    assignments, words = words[:k], words[k:]
    if not words:
        if assignments and not any("$(" in a or "`" in a for a in assignments):
            return _Verdict(frozenset({End.ok}), f"{part!r} only sets variables")
        return UNKNOWN
    name, args = words[0], words[1:]
    if name == "true":
        return _Verdict(frozenset({End.ok}), "'true' always succeeds")
    if name == ":" and not any("${" in a for a in args):
        return _Verdict(frozenset({End.ok}), "':' does nothing and succeeds")
    if name == "false":
        return _Verdict(frozenset({End.failed}))
    if name == "exit":
        if len(args) == 1 and args[0].isdigit():
            if int(args[0]) % 256 == 0:
                return _Verdict(frozenset({End.exit_ok}), f"{part!r} ends the shell with success")
            return _Verdict(frozenset({End.exit_failed}))
        return _Verdict(EXITS)  # 'exit' alone passes on the last status
    if name == "echo" or (name == "printf" and all(_prints_text(a) for a in args)):
        return _Verdict(frozenset({End.ok}), f"{name!r} only prints")
    if name == "pwd":
        return _Verdict(frozenset({End.ok}), "'pwd' only prints the working directory")
    if name in ("cd", "pushd", "popd"):
        return _Verdict(frozenset({End.ok}), f"{name!r} only changes the directory, it checks nothing")
    if _lists_here(words):
        return _Verdict(frozenset({End.ok}), f"{part!r} lists the working directory, which always exists")
    if name in ("test", "["):
        if name == "[":
            if args[-1:] != ["]"]:
                return UNKNOWN
            args = args[:-1]
        if not args:
            return _Verdict(frozenset({End.failed}))
        why = _test_reason(args, part)
        return _Verdict(frozenset({End.ok}), why) if why else UNKNOWN
    return UNKNOWN


def _pipeline(parts: list[str]) -> _Verdict:
    """The last command decides (no pipefail); ``!`` inverts; exits inside a pipe stay inside."""
    first = parts[0]
    negated = first.startswith("!") and first[1:2].isspace()
    if negated:
        parts = [first[1:].strip(), *parts[1:]]
    verdict = _simple(parts[-1])
    if len(parts) > 1:
        verdict = _Verdict(_contained(verdict.ends), verdict.why)
    if not negated:
        return verdict
    flip = {End.ok: End.failed, End.failed: End.ok}
    ends = frozenset(flip.get(e, e) for e in verdict.ends)
    return _Verdict(ends, f"{' | '.join(parts)!r} always fails, and '!' turns that into success")


def _and_or(pipes: list[list[str]], ops: list[str]) -> _Verdict:
    """``p0 op p1 op p2 ...`` with ``&&``/``||``, left to right as the shell reads it."""
    first = _pipeline(pipes[0])
    ends, why = first.ends, first.why
    for k, (op, pipe) in enumerate(zip(ops, pipes[1:], strict=True), start=1):
        goes_on = End.ok if op == "&&" else End.failed
        if goes_on not in ends:
            continue  # this part never runs
        nxt = _pipeline(pipe)
        ends = (ends - {goes_on}) | nxt.ends
        if ends <= OKS:
            if op == "||":
                before = " ".join(" | ".join(p) for p in pipes[:k])
                why = f"it ends in '|| {' | '.join(pipe)}', so it succeeds whether or not {before!r} does"
            else:
                why = f"{why}, and {nxt.why}"
    return _Verdict(ends, why)


def _lists(parts: list[str], ops: list[str]) -> list[tuple[list[list[str]], list[str], bool]] | None:
    """Parts grouped as the shell groups them: lists of and-or chains of pipelines, each with its
    and-or operators and whether it runs in the background. None on a syntax error."""
    lists: list[tuple[list[list[str]], list[str], bool]] = []
    pipes: list[list[str]] = [[]]
    chain: list[str] = []
    for k, part in enumerate(parts):
        before = ops[k - 1] if k else None
        after = ops[k] if k < len(ops) else None
        if not part:
            if (before is None or before in SEPARATORS) and after in (None, "\n"):
                continue  # an empty line, or the end after a ';', '&' or new line
            return None  # '&& ||', '| ;', a leading ';': the shell refuses them
        pipes[-1].append(part)
        if after == "|":
            continue
        if after in AND_OR:
            chain.append(after)
            pipes.append([])
            continue
        lists.append((pipes, chain, after == "&"))
        pipes, chain = [[]], []
    return lists


def _script(text: str) -> _Verdict:
    """A whole command line: lists separated by ``;``, ``&`` and new lines; the last one that runs
    decides the status, unless an earlier one exited."""
    parsed = _split_operators(text)
    lists = _lists(*parsed) if parsed is not None else None
    if lists is None:
        return UNKNOWN
    if not lists:
        return _Verdict(frozenset({End.ok}), "it is empty")
    ends: frozenset[End] = frozenset({End.ok})
    why: str | None = None
    ran = 0
    for pipes, chain, background in lists:
        if not ends - EXITS:
            break  # every way here has exited already
        ran += 1
        if background:
            shown = " ".join(" | ".join(p) for p in pipes)
            verdict = _Verdict(frozenset({End.ok}), f"{shown!r} runs in the background, so its status is always 0")
        else:
            verdict = _and_or(pipes, chain)
        ends = (ends & EXITS) | verdict.ends
        why = verdict.why
    if ran > 1 and why:
        why = f"only its last command decides its status, and {why}"
    return _Verdict(ends, why)


@functools.lru_cache(maxsize=4096)
def vacuous_reason(command: str) -> str | None:
    """Why ``command`` cannot fail as an acceptance test, or None when it is a real check.

    Never raises: unparsable shell is a real check (the shell would fail on it). Cached: a plan
    repeats its tests (``pytest -q``) across tasks, and the answer depends on the text alone.
    """
    if not command.strip():
        return None
    verdict = _script(command)
    if not verdict.always_ok:
        return None
    return verdict.why or "it always succeeds"


def is_vacuous(command: str) -> bool:
    return vacuous_reason(command) is not None


# -- leaving the scope ----------------------------------------------------------------------------

_HOME = frozenset({"~", "$HOME", "${HOME}"})
_PIECES = re.compile(r"[=:]")


def _climbs(path: str) -> bool:
    """True when ``path``, normalised, starts above the directory it is read from."""
    if not path or path.startswith("/"):
        return False
    norm = posixpath.normpath(path)
    return norm == ".." or norm.startswith("../")


def _substitutions(word: str) -> list[str]:
    """The commands of the ``$( )`` and backquotes in ``word`` (outermost only)."""
    found: list[str] = []
    i = 0
    while i < len(word):
        if word.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(word) and depth:
                depth += {"(": 1, ")": -1}.get(word[j], 0)
                j += 1
            found.append(word[i + 2 : j - 1])
            i = j
        elif word[i] == "`":
            j = word.find("`", i + 1)
            if j < 0:
                break
            found.append(word[i + 1 : j])
            i = j + 1
        else:
            i += 1
    return found


def _escape_of_part(part: str) -> str | None:
    if part.startswith("(") and part.endswith(")"):
        return scope_escape(part[1:-1])
    words = _words(part)
    if words is None:
        words = part.split()
    for word in words:
        for inner in _substitutions(word):
            found = scope_escape(inner)
            if found:
                return found
    k = 0
    while k < len(words) and _ASSIGNMENT.match(words[k]):
        k += 1
    if k < len(words) and words[k] in ("cd", "pushd"):
        name = words[k]
        targets = [w for w in words[k + 1 :] if not (w.startswith("-") and w != "-")]
        if not targets:
            return f"{name!r} with no directory goes to the home directory"
        move = f"{name} {targets[0]}"
        if targets[0] == "-":
            return f"{move!r} goes back to wherever the shell was before"
        if targets[0] in _HOME or targets[0].startswith(("~/", "$HOME/", "${HOME}/")):
            return f"{move!r} goes to the home directory"
        if targets[0].startswith("/"):
            return f"{move!r} goes to an absolute path"
    for word in words:
        for piece in (word, *_PIECES.split(word)[1:]):
            if _climbs(piece):
                return f"{piece!r} climbs out of the task's directory"
    return None


@functools.lru_cache(maxsize=4096)
def scope_escape(command: str) -> str | None:
    """Why ``command`` reaches outside its task's directory, or None. Lexical, never raises;
    cached like :func:`vacuous_reason`."""
    parsed = _split_operators(command)
    parts = parsed[0] if parsed is not None else [command]
    for part in parts:
        if part:
            found = _escape_of_part(part)
            if found:
                return found
    return None
