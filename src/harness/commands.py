"""Per-command checks: what a command must pass before the harness has a worker run it.

Every command of a task, its ``commands`` and its ``acceptance_tests``, goes through
:func:`screen` before the task's worker is spawned. The first step that decides, decides:

    1  the built-in deny list (:data:`DENY_LIST`)                  deny   deny-list:NAME
    2  the policy's deny globs (``policy.commands.deny``)          deny   the rule's name
    3  the approved plan: the command the approved revision        deny   not_in_approved_plan
       holds at this place (a hook's replacement is not held to it)
    4  the pre_command hooks: exit 2, a failure or a timeout       deny   hook:LABEL
       a replacement goes back to step 1, at most MAX_REWRITES     deny   rewrite_limit
    5  the policy's ask globs (``policy.commands.ask``)            ask    the rule's name
    6  nothing decided                                             allow  default

Everything here is pure: the hooks come in as a callable (:data:`Intercept`), so the order, the
rewrite bound and every rule are testable without a process. The checks read the command line
as text; they catch mistakes and plain intent, not a determined adversary (``eval "$(echo ...)"``
gets past any text check): the OS sandbox is the boundary for that.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from .config import CommandRule, CommandRules
from .vocab import CheckVerdict

__all__ = [
    "DEFAULT",
    "DENY_LIST",
    "DENY_LIST_PREFIX",
    "HOOK_PREFIX",
    "MAX_REWRITES",
    "NOT_IN_APPROVED_PLAN",
    "REWRITE_LIMIT",
    "Check",
    "CheckSource",
    "DenyEntry",
    "Intercept",
    "Intercepted",
    "builtin_denial",
    "matching_rule",
    "screen",
    "segments",
]

#: How many times pre_command hooks may replace one command before it is refused.
MAX_REWRITES = 3
#: The rule names the checks themselves record.
NOT_IN_APPROVED_PLAN = "not_in_approved_plan"
REWRITE_LIMIT = "rewrite_limit"
DEFAULT = "default"
DENY_LIST_PREFIX = "deny-list:"
HOOK_PREFIX = "hook:"


class CheckSource(StrEnum):
    """Who made a command's decision (COMMAND_CHECKED.source; an answered ask records who answered)."""

    builtin = "builtin"  # the built-in deny list
    policy = "policy"  # a deny or ask glob of the policy
    plan = "plan"  # the approved plan does not hold the command
    hook = "hook"  # a pre_command hook (or the bound on its replacements)
    default = "default"  # nothing decided: allowed


@dataclass(frozen=True)
class Intercepted:
    """What the pre_command hooks said about one command: nothing (it may run), a block (``rule``:
    ``hook:LABEL``, the hook that denied or failed), or a ``replacement`` to check instead."""

    rule: str | None = None
    reason: str = ""
    replacement: str | None = None


#: The pre_command hooks, as :func:`screen` calls them: the command in, what they said out.
Intercept = Callable[[str], Intercepted]


@dataclass(frozen=True)
class Check:
    """The decision about one command and the rule that made it."""

    command: str  # as the plan holds it
    verdict: CheckVerdict
    rule: str
    source: CheckSource
    reason: str = ""
    rewrites: tuple[str, ...] = ()  # each command a hook put in place of the one before

    @property
    def final(self) -> str:
        """The command that runs: the last replacement, or the command itself."""
        return self.rewrites[-1] if self.rewrites else self.command


# -- reading a command line -------------------------------------------------------------------------
_OPERATORS = re.compile(r"&&|\|\||;|\||&|\n|\$\(|`|\)|\(")
_QUOTING = re.compile(r"[\"'\\]")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
#: Programs that run the rest of their arguments as a command, with their options that take a value.
_WRAPPERS: dict[str, frozenset[str]] = {
    "sudo": frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-T", "-U"}),
    "doas": frozenset({"-u", "-C"}),
    "env": frozenset({"-u", "-C", "-S"}),
    "nice": frozenset({"-n"}),
    "ionice": frozenset({"-c", "-n", "-p"}),
    "nohup": frozenset(),
    "exec": frozenset({"-a"}),
    "command": frozenset(),
    "builtin": frozenset(),
    "time": frozenset({"-f", "-o"}),
}


def _tokens(text: str) -> list[str]:
    if not _QUOTING.search(text):
        return text.split()  # what shlex would say, 20 times faster
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote: still read it, word by word
        return text.split()


def _unwrapped(tokens: list[str]) -> list[str]:
    """The tokens without leading wrappers (``sudo -u x``, ``env A=1``, ``nohup``) and assignments."""
    i = 0
    while i < len(tokens):
        word = tokens[i]
        takes_value = _WRAPPERS.get(os.path.basename(word))
        if takes_value is not None:
            i += 1
            while i < len(tokens) and tokens[i].startswith("-"):
                i += 2 if tokens[i] in takes_value else 1
        elif _ASSIGNMENT.match(word):
            i += 1
        else:
            break
    return tokens[i:]


def segments(command: str) -> list[str]:
    """The command, whitespace collapsed, then each simple command in it (split at shell
    operators), each also without its leading wrappers: every text a rule is tried on."""
    return list(_segments(command))


@functools.lru_cache(maxsize=4096)
def _segments(command: str) -> tuple[str, ...]:
    whole = " ".join(command.split())
    out = [whole]
    for part in _OPERATORS.split(command):
        words = _tokens(part)
        for variant in (words, _unwrapped(words)):
            text = " ".join(variant)
            if text and text not in out:
                out.append(text)
    return tuple(out)


# -- the built-in deny list -------------------------------------------------------------------------
_SYSTEM_DIRS = (
    "bin boot dev etc home lib lib32 lib64 opt proc root sbin srv sys usr var System Library Applications Users"
)
_CRITICAL = frozenset({"/", "~", "$HOME", "${HOME}", *(f"/{d}" for d in _SYSTEM_DIRS.split())})


def _critical(path: str) -> bool:
    """``/``, ``/*``, ``~/``, ``/usr/``, ``$HOME``: the root, a home or a top-level system folder."""
    p = re.sub(r"/{2,}", "/", path)
    while len(p) > 1 and p.endswith(("/", "/*", "/.")):
        p = p[:-1] if p.endswith("/") else p[:-2]
    return (p or "/") in _CRITICAL


def _recursive(args: Sequence[str]) -> bool:
    return any(
        a in ("--recursive", "-R") or (a.startswith("-") and not a.startswith("--") and ("r" in a or "R" in a))
        for a in args
    )


def _rm_root(words: list[str]) -> bool:
    if not words or os.path.basename(words[0]) != "rm":
        return False
    args = words[1:]
    return _recursive(args) and any(_critical(a) for a in args if not a.startswith("-"))


def _chmod_root(words: list[str]) -> bool:
    if not words or os.path.basename(words[0]) not in ("chmod", "chown", "chgrp"):
        return False
    args = words[1:]
    return any(a in ("-R", "--recursive") or re.fullmatch(r"-[a-zA-Z]*R[a-zA-Z]*", a) for a in args) and any(
        _critical(a) for a in args if not a.startswith("-")
    )


_DISK = r"/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|disk\d|md\d|dm-\d|loop\d|mapper/)"
_RAW_WRITE = re.compile(rf"\bof={_DISK}|>\s*{_DISK}|^shred\b.*\s/dev/")
_MKFS = re.compile(r"^(?:mkfs(?:\.\w+)?|mke2fs|mkswap|wipefs|blkdiscard)\b")
_FORK_BOMB = re.compile(r"([\w:.]+)\s*\(\)\s*\{\s*\1\s*\|\s*\1\s*&\s*;?\s*\}")
_POWER = re.compile(
    r"^(?:shutdown|reboot|halt|poweroff)\b|^(?:init|telinit)\s+[06]\b|^systemctl\s+(?:poweroff|reboot|halt)\b"
)


@dataclass(frozen=True)
class DenyEntry:
    """One entry of the built-in deny list: a test on a simple command's words and text."""

    name: str
    reason: str
    test: Callable[[list[str], str], bool] = field(repr=False)


#: Commands the harness never runs, whatever the plan, the policy or a person says.
DENY_LIST: tuple[DenyEntry, ...] = (
    DenyEntry("rm-root", "deletes the root, a home or a system folder recursively", lambda w, t: _rm_root(w)),
    DenyEntry("raw-disk-write", "writes to a raw disk device", lambda w, t: bool(_RAW_WRITE.search(t))),
    DenyEntry("format-disk", "formats or wipes a disk", lambda w, t: bool(_MKFS.search(t))),
    DenyEntry("fork-bomb", "a fork bomb", lambda w, t: bool(_FORK_BOMB.search(t))),
    DenyEntry("chmod-root", "changes owner or mode of a system folder recursively", lambda w, t: _chmod_root(w)),
    DenyEntry("power-off", "shuts down or reboots the machine", lambda w, t: bool(_POWER.search(t))),
)


@functools.lru_cache(maxsize=4096)
def builtin_denial(command: str) -> DenyEntry | None:
    """The first entry of :data:`DENY_LIST` any part of the command matches."""
    texts = [(_tokens(text), text) for text in _segments(command)]
    for entry in DENY_LIST:
        for words, text in texts:
            if entry.test(words, text):
                return entry
    return None


def matching_rule(command: str, rules: Iterable[CommandRule]) -> CommandRule | None:
    """The first rule whose glob matches the command or any part of it."""
    texts = _segments(command)
    for rule in rules:
        if any(fnmatch.fnmatchcase(text, rule.pattern) for text in texts):
            return rule
    return None


# -- the pipeline -----------------------------------------------------------------------------------
def screen(
    command: str,
    *,
    approved: str | None,
    rules: CommandRules,
    intercept: Intercept | None = None,
    max_rewrites: int = MAX_REWRITES,
) -> Check:
    """Decide about one command (the module's table, in that order). ``approved`` is the command
    the approved revision holds at the same place (None: it holds none there)."""
    current = command
    rewrites: list[str] = []

    def done(verdict: CheckVerdict, rule: str, source: CheckSource, reason: str = "") -> Check:
        return Check(command, verdict, rule, source, reason, tuple(rewrites))

    while True:
        entry = builtin_denial(current)
        if entry is not None:
            return done(CheckVerdict.deny, DENY_LIST_PREFIX + entry.name, CheckSource.builtin, entry.reason)
        denied = matching_rule(current, rules.deny)
        if denied is not None:
            reason = denied.reason or f"matches {denied.pattern!r}"
            return done(CheckVerdict.deny, denied.name, CheckSource.policy, reason)
        if not rewrites and current != approved:
            reason = (
                "the approved plan holds no command here"
                if approved is None
                else f"the approved plan holds {approved!r} here"
            )
            return done(CheckVerdict.deny, NOT_IN_APPROVED_PLAN, CheckSource.plan, reason)
        if intercept is not None:
            said = intercept(current)
            if said.rule is not None:
                return done(CheckVerdict.deny, said.rule, CheckSource.hook, said.reason)
            if said.replacement is not None and said.replacement != current:
                if len(rewrites) >= max_rewrites:
                    reason = f"pre_command hooks replaced it more than {max_rewrites} times"
                    return done(CheckVerdict.deny, REWRITE_LIMIT, CheckSource.hook, reason)
                rewrites.append(said.replacement)
                current = said.replacement
                continue  # the replacement is checked again from the top
        asked = matching_rule(current, rules.ask)
        if asked is not None:
            return done(CheckVerdict.ask, asked.name, CheckSource.policy, asked.reason or f"matches {asked.pattern!r}")
        return done(CheckVerdict.allow, DEFAULT, CheckSource.default)
