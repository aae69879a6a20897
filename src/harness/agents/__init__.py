"""Agent adapters: how the harness drives each coding-agent CLI, and reads what it did.

One small class per CLI (``claude``, ``codex``, ``gemini``, ``opencode``, ``aider``) plus a generic
one for any other program. An adapter knows three things and nothing else:

* the argv that runs one non-interactive turn of work (never a shell string with the prompt
  spliced in), with the narrowest permission mode that lets the agent edit its working directory;
* which environment variables configure the CLI (passed through; everything else stays out);
* how to read its output, line by line, into an :class:`AgentReport`: session id, model, tool
  calls by tool, tokens, cost, turns, the final message, and the failure signals the exit code
  hides (:class:`AgentFailure`).

The verdict on a task is never the agent's: the harness's acceptance tests decide. The report
says *why* something failed, which is what recovery classifies.
"""

from __future__ import annotations

import json
import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

__all__ = [
    "ADAPTERS",
    "Adapter",
    "AgentCall",
    "AgentFailure",
    "AgentReport",
    "GenericAdapter",
    "JsonStreamParser",
    "StreamParser",
    "ToolRequest",
    "adapter_for",
    "known_names",
    "passes_through",
]


class AgentFailure(StrEnum):
    """What went wrong inside an agent, as its output tells (whatever its exit code says)."""

    auth = "auth"  # 401/403, a missing or rejected API key -> permission
    rate_limited = "rate_limited"  # 429 -> transient
    overloaded = "overloaded"  # 529, "overloaded" -> transient
    server_error = "server_error"  # 5xx -> transient
    max_turns = "max_turns"  # the turn limit was reached -> budget (escalates)
    budget = "budget"  # a usage cap of ours was reached and the agent was stopped -> budget
    tool_denied = "tool_denied"  # a tool call was refused by the permission mode -> permission
    api_error = "api_error"  # another error reported by the API or the CLI -> unknown
    crashed = "crashed"  # the CLI itself failed (no result at all) -> unknown


@dataclass(frozen=True)
class AgentCall:
    """One turn of work for an agent."""

    prompt: str  # the whole prompt
    prompt_file: str  # where the prompt is saved (for `{prompt_file}` and --message-file style flags)
    workdir: str  # the worktree (or scope directory) the agent works in
    model: str | None = None
    max_turns: int | None = None
    permission: str | None = None  # the CLI's own permission mode; None: the adapter's narrowest editing mode
    extra_args: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None  # the program (and leading args) instead of the CLI's default name
    allowed_tools: tuple[str, ...] = ()  # tool rules usable without asking (CLIs that take them)
    denied_tools: tuple[str, ...] = ()  # tool rules refused
    channel: bool = False  # ask the harness about tools the rules do not cover (CLIs with a two-way channel)


@dataclass(frozen=True)
class ToolRequest:
    """An agent asking whether it may run a tool (through a CLI's two-way channel)."""

    request_id: str
    tool: str
    input: dict[str, Any]
    description: str = ""

    def summary(self, limit: int = 300) -> str:
        """The call as one line for a person: ``Bash(npm test)``, ``Write(/path)``."""
        value = (
            self.input.get("command") or self.input.get("file_path") or self.input.get("url") or self.input.get("path")
        )
        text = f"{self.tool}({value})" if isinstance(value, str) else f"{self.tool}({json.dumps(self.input)[:120]})"
        return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class AgentReport:
    """What one run of an agent did, read from its output."""

    agent: str
    session_id: str | None = None
    model: str | None = None
    tools: dict[str, int] = field(default_factory=dict)  # tool name -> calls
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None  # None where the CLI does not report it
    turns: int = 0
    final_message: str = ""
    failure: AgentFailure | None = None
    failure_detail: str | None = None  # the error text or status as the CLI gave it
    denied_tools: list[str] = field(default_factory=list)
    exit_code: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failure"] = self.failure.value if self.failure is not None else None
        return out

    def count_tool(self, name: str) -> None:
        self.tools[name] = self.tools.get(name, 0) + 1


class StreamParser:
    """Reads an agent's stdout line by line (``feed``) into a report (``report``).

    The base class keeps the last lines as the final message; adapters override ``feed``. A line
    that is not what the parser expects is never an error: agents print what they print.
    """

    TAIL_LINES: ClassVar[int] = 20
    #: Plain-text agents: their last lines are the final message. Structured streams set False.
    TEXT_TAIL: ClassVar[bool] = True

    def __init__(self, agent: str) -> None:
        self.state = AgentReport(agent=agent)
        self._tail: list[str] = []

    def feed(self, line: str) -> None:
        text = line.rstrip("\n")
        if text.strip():
            self._tail.append(text)
            del self._tail[: -self.TAIL_LINES]

    def report(self, exit_code: int | None) -> AgentReport:
        """The report once the agent ended with ``exit_code`` (None: killed or not started)."""
        r = self.state
        r.exit_code = exit_code
        if not r.final_message and self._tail and self.TEXT_TAIL:
            r.final_message = "\n".join(self._tail)
        return r


class JsonStreamParser(StreamParser):
    """A CLI that prints one JSON object per line: each object goes to :meth:`on_event`."""

    TEXT_TAIL = False

    def feed(self, line: str) -> None:
        super().feed(line)
        try:
            event = json.loads(line)
        except ValueError:
            return
        if isinstance(event, dict):
            self.on_event(event)

    def on_event(self, event: dict[str, Any]) -> None:
        raise NotImplementedError


class Adapter(ABC):
    """How to run one CLI; see the module docstring."""

    name: ClassVar[str]
    program: ClassVar[str]  # the default executable name
    #: Environment variables that configure the CLI: exact names, or prefixes ending in '_'.
    env: ClassVar[tuple[str, ...]] = ()
    #: The prompt goes on stdin (then stdin is closed), rather than in the argv or a file.
    prompt_on_stdin: ClassVar[bool] = False
    #: Permission modes (``AgentCall.permission``) and arguments that switch every check off; the
    #: harness refuses them unless a policy tool rule names the agent (``bypass``).
    bypass_modes: ClassVar[frozenset[str]] = frozenset()
    bypass_args: ClassVar[frozenset[str]] = frozenset()
    #: The CLI takes tool rules (``allowed_tools``/``denied_tools``); others get them in the prompt only.
    takes_tool_rules: ClassVar[bool] = False

    #: The CLI can ask its caller about a tool call and wait for the answer (a two-way channel).
    has_channel: ClassVar[bool] = False

    def channel_input(self, prompt: str) -> bytes:
        """With a channel: what goes on stdin first (the prompt, in the CLI's input format)."""
        raise NotImplementedError

    def tool_request(self, event: dict[str, Any]) -> ToolRequest | None:
        """With a channel: the tool-permission request an output line carries, if it does."""
        return None

    def tool_answer(self, request: ToolRequest, allow: bool, message: str) -> bytes:
        """With a channel: the line that answers ``request``."""
        raise NotImplementedError

    def ends_session(self, event: dict[str, Any]) -> bool:
        """With a channel: this output line ends the session (then stdin is closed)."""
        return False

    def bypasses(self, permission: str | None, extra_args: Sequence[str]) -> str | None:
        """The bypass-everything setting among ``permission`` and ``extra_args``, if any."""
        if permission in self.bypass_modes:
            return f"permission {permission}"
        found = next((a for a in extra_args if a.split("=")[0] in self.bypass_args), None)
        return f"argument {found}" if found else None

    @abstractmethod
    def argv(self, call: AgentCall) -> list[str]:
        """The full argv of one non-interactive turn."""

    def wants_stdin(self) -> bool:
        """True when the prompt is written to the agent's stdin (then closed); else stdin is empty."""
        return self.prompt_on_stdin

    def parser(self) -> StreamParser:
        return StreamParser(self.name)

    def base(self, call: AgentCall) -> list[str]:
        return list(call.command) if call.command else [self.program]


class GenericAdapter(Adapter):
    """Any other program: ``--agent 'PROGRAM ARGS...'``. It gets the prompt on stdin, or in a file
    whose path replaces a ``{prompt_file}`` placeholder among its arguments."""

    name = "command"
    program = ""
    env = ()

    def __init__(self, command: Sequence[str]) -> None:
        if not command:
            raise ValueError("an agent command needs at least a program")
        self.command = tuple(command)

    @property
    def placeholder(self) -> bool:
        return any("{prompt_file}" in part for part in self.command)

    def argv(self, call: AgentCall) -> list[str]:
        argv = [part.replace("{prompt_file}", call.prompt_file) for part in self.command]
        return argv + list(call.extra_args)

    def wants_stdin(self) -> bool:
        return not self.placeholder


#: The named adapters, filled in by the modules that define them.
ADAPTERS: dict[str, type[Adapter]] = {}


def known_names() -> set[str]:
    _load_named()
    return set(ADAPTERS)


def _load_named() -> None:
    """Import the named adapters' modules (``harness.agents._<cli>``), which register themselves."""
    if ADAPTERS:
        return
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


def adapter_for(name: str | None = None, command: Sequence[str] | str | None = None) -> Adapter:
    """The adapter for a named CLI, or the generic one for a command (a list, or a string split
    like a shell would, without running one). A known name with a command runs that CLI from that
    path (``AgentCall.command``); an unknown name with a command is a generic agent of that name."""
    if name:
        _load_named()
        cls = ADAPTERS.get(name)
        if cls is not None:
            return cls()
        if command is None:
            raise KeyError(f"unknown agent {name!r} (known: {', '.join(sorted(ADAPTERS))}, or a command)")
    if command is None:
        raise ValueError("an agent needs a name or a command")
    return GenericAdapter(shlex.split(command) if isinstance(command, str) else list(command))


def passes_through(adapter: Adapter, extra: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` an agent gets on top of the worker's whitelist: its CLI's own
    (names or ``PREFIX_`` prefixes) and those its definition names."""
    wanted = tuple(adapter.env) + tuple(extra)
    names = {w for w in wanted if not w.endswith("_")}
    prefixes = tuple(w for w in wanted if w.endswith("_"))
    return {k: v for k, v in environ.items() if k in names or (prefixes and k.startswith(prefixes))}
