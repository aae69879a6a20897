"""Phase mcp_fastpath: read the MCP server config, validate each server, optionally probe them.

The config is the common ``{"mcpServers": {name: {command, args, env} | {url}}}`` shape (a
top-level ``servers`` key is accepted too). A probe starts a stdio server in its own session,
sends one ``initialize`` request and waits at most ``mcp_timeout`` for the answer; then the server
is stopped with bounded escalation (close stdin, SIGTERM, SIGKILL to its process group) and
reaped. Probes run in parallel, so the phase takes about one timeout however many servers fail.

Verdict: every server good -> ok; some bad -> degraded (the run can go on without them); with
``requires.mcp`` any bad server, or none configured, fails the phase.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import harness
from harness.models import PhaseName, PhaseStatus

from ._fs import file_stamp, resolve_under
from ._phase import Outcome, Phase, PhaseCall

DEFAULT_CONFIGS = (".mcp.json", "mcp.json")
MCP_PROTOCOL_VERSION = "2025-06-18"
#: Bounds of the stop sequence after a probe: EOF on stdin, then SIGTERM, then SIGKILL.
STDIN_GRACE = 0.2
TERM_GRACE = 0.5
KILL_WAIT = 2.0
MAX_PROBE_OUTPUT = 1 << 20
STDERR_DRAIN = 0.2
STDERR_TAIL = 400


@dataclass
class Server:
    """One configured server and what was found about it."""

    name: str
    transport: str = "stdio"
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    resolved: str | None = None
    disabled: bool = False
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"transport": self.transport, "valid": not self.problems}
        if self.command is not None:
            out.update(command=self.command, args=self.args, resolved=self.resolved)
        if self.url is not None:
            out["url"] = self.url
        if self.disabled:
            out["disabled"] = True
        if self.problems:
            out["problems"] = self.problems
        return out


def load_config(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The servers mapping of a config file, or an error naming the line and column."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return None, f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path}: cannot read: {exc}"
    if not isinstance(data, dict):
        return None, f"{path}: the top level must be an object"
    servers = data.get("mcpServers", data.get("servers"))
    if servers is None:
        return {}, None
    if not isinstance(servers, dict):
        return None, f"{path}: mcpServers must be an object of name -> server"
    return servers, None


def parse_server(name: str, entry: Any, workspace: Path) -> Server:
    """Validate one entry: a resolvable command, or a well-formed http(s) url."""
    server = Server(name)
    if not isinstance(entry, dict):
        server.problems.append("must be an object with a command or a url")
        return server
    server.disabled = entry.get("disabled") is True
    command, url = entry.get("command"), entry.get("url")
    if command is not None and url is not None:
        server.problems.append("has both a command and a url")
    elif command is None and url is None:
        server.problems.append("needs a command (stdio) or a url (remote)")
    if url is not None:
        server.transport = str(entry.get("type") or "http")
        server.url = str(url)
        _check_url(server)
    if command is not None:
        _check_command(server, entry, workspace)
    return server


def _check_url(server: Server) -> None:
    parts = urlsplit(server.url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        server.problems.append(f"url {server.url!r} is not a well-formed http(s) URL")


def _check_command(server: Server, entry: dict[str, Any], workspace: Path) -> None:
    command, args, env = entry.get("command"), entry.get("args", []), entry.get("env", {})
    if not isinstance(command, str) or not command.strip():
        server.problems.append("command must be a non-empty string")
        return
    server.command = command
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        server.problems.append("args must be a list of strings")
    else:
        server.args = args
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        server.problems.append("env must be an object of string values")
    else:
        server.env = {str(k): v for k, v in env.items()}
    server.resolved = resolve_command(command, workspace, server.env.get("PATH"))
    if server.resolved is None:
        server.problems.append(f"command {command!r} not found (neither on PATH nor as an executable path)")


def resolve_command(command: str, workspace: Path, path_var: str | None = None) -> str | None:
    """An executable's absolute path: names through PATH, paths relative to the workspace."""
    if os.sep in command or (os.altsep and os.altsep in command):
        candidate = resolve_under(workspace, command)
        return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None
    return shutil.which(command, path=path_var if path_var is not None else os.environ.get("PATH"))


def initialize_line(request_id: int = 1) -> bytes:
    request = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": MCP_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "harness-bootstrap", "version": harness.__version__},
        },
    }
    return json.dumps(request, separators=(",", ":")).encode("utf-8") + b"\n"


def probe_server(server: Server, workspace: Path, timeout: float) -> dict[str, Any]:
    """Start the server, ask ``initialize``, stop and reap it; every step is bounded."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [server.resolved or server.command or "", *server.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workspace,
            env={**os.environ, **server.env},
            start_new_session=True,
        )
    except OSError as exc:
        return {"ok": False, "error": f"cannot start: {exc.strerror or exc}"}
    try:
        report = _exchange(proc, timeout)
    finally:
        report_exit = _stop(proc)
    report.update(pid=proc.pid, elapsed_ms=round((time.monotonic() - started) * 1000, 1), **report_exit)
    return report


def _exchange(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """Send initialize and read stdout until its answer, EOF, too much output, or the deadline."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(initialize_line())
        proc.stdin.flush()
    except OSError:
        pass  # it died already: reading will say how
    deadline = time.monotonic() + timeout
    out, err = _Lines(), bytearray()
    closed = False
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map() and (remaining := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    if key.fileobj is proc.stdout:
                        closed = True  # it is going away: collect its last words on stderr, briefly
                        deadline = min(deadline, time.monotonic() + STDERR_DRAIN)
                elif key.fileobj is proc.stderr:
                    err += chunk
                    del err[: max(0, len(err) - STDERR_TAIL)]
                else:
                    answer = out.feed(chunk)
                    if answer is not None:
                        return _verdict(answer)
                    if out.size > MAX_PROBE_OUTPUT:
                        return _failure("wrote over 1 MiB without answering initialize", err)
    if closed:
        return _failure("closed its output without answering initialize", err)
    return _failure(f"no answer to initialize within {timeout:g} s", err)


class _Lines:
    """Splits a server's stdout into lines and spots the response to our request id 1.

    Lines that are not JSON (a banner, a log line) and other messages are skipped, as a lenient
    client would.
    """

    def __init__(self) -> None:
        self._partial = bytearray()
        self.size = 0

    def feed(self, chunk: bytes) -> dict[str, Any] | None:
        self.size += len(chunk)
        self._partial += chunk
        *lines, rest = bytes(self._partial).split(b"\n")
        self._partial = bytearray(rest)
        for line in lines:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("id") == 1 and ("result" in msg or "error" in msg):
                return msg
        return None


def _verdict(answer: dict[str, Any]) -> dict[str, Any]:
    if "error" in answer:
        error = answer["error"] if isinstance(answer["error"], dict) else {}
        return {"ok": False, "error": f"initialize failed: {error.get('code')} {error.get('message', '')}".strip()}
    result = answer["result"]
    if not isinstance(result, dict) or not isinstance(result.get("protocolVersion"), str):
        return {"ok": False, "error": "initialize answered without a protocolVersion"}
    info = result.get("serverInfo")
    if not isinstance(info, dict):
        info = {}
    capabilities = result.get("capabilities")
    if not isinstance(capabilities, dict):
        capabilities = {}
    return {
        "ok": True,
        "protocol_version": result["protocolVersion"],
        "server_info": {k: info[k] for k in ("name", "version") if k in info},
        "capabilities": sorted(capabilities),
    }


def _failure(message: str, err: bytearray) -> dict[str, Any]:
    report: dict[str, Any] = {"ok": False, "error": message}
    tail = bytes(err[-STDERR_TAIL:]).decode("utf-8", "replace").strip()
    if tail:
        report["stderr_tail"] = tail
    return report


def _stop(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """Close its pipes, then SIGTERM, then SIGKILL its process group; reap. Says how it ended."""
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass
    stopped_by = "eof"
    if not _reaped(proc, STDIN_GRACE):
        stopped_by = "SIGTERM"
        _signal_group(proc.pid, signal.SIGTERM)
        if not _reaped(proc, TERM_GRACE):
            stopped_by = "SIGKILL"
            _signal_group(proc.pid, signal.SIGKILL)
            _reaped(proc, KILL_WAIT)
    _signal_group(proc.pid, signal.SIGKILL)  # whatever the server started in its group
    return {"exit_code": proc.returncode, "stopped_by": stopped_by}


def _reaped(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class McpFastpath(Phase):
    name = PhaseName.mcp_fastpath
    context_fields = ("workspace", "mcp_config", "mcp_probe", "mcp_timeout", "requires")
    description = (
        "Read the MCP server config (.mcp.json or mcp.json, or mcp_config), validate every server (command on "
        "PATH or url well-formed) and, with mcp_probe, start each stdio server and ask initialize within "
        "mcp_timeout; some bad servers degrade the phase, and fail it when requires.mcp is set."
    )

    def probe(self, call: PhaseCall) -> dict[str, Any]:
        ws = call.workspace
        explicit = call.context.mcp_config
        candidates = [resolve_under(ws, explicit)] if explicit else [ws / name for name in DEFAULT_CONFIGS]
        stamps = {str(p): file_stamp(p) for p in candidates}
        chosen = next((p for p in candidates if stamps[str(p)] is not None), None)
        call.scratch["candidates"], call.scratch["chosen"] = candidates, chosen
        facts: dict[str, Any] = {"workspace": str(ws), "config": stamps, "resolved": {}}
        if chosen is not None:
            servers, error = load_config(chosen)
            call.scratch["error"] = error
            parsed = [parse_server(str(n), e, ws) for n, e in (servers or {}).items()]
            call.scratch["parsed"] = parsed
            facts["resolved"] = {s.name: s.resolved for s in parsed}
        return facts

    def run(self, call: PhaseCall, facts: dict[str, Any]) -> Outcome:
        ctx = call.context
        problem = call.workspace_problem()
        if problem:
            return Outcome.failed(problem, config=None, servers={})
        chosen: Path | None = call.scratch["chosen"]
        if chosen is None:
            if ctx.mcp_config:
                return self._verdict(call, [f"MCP config {call.scratch['candidates'][0]} not found"], {}, {})
            if ctx.requires.mcp:
                return Outcome.failed("MCP servers are required but none are configured", config=None, servers={})
            return Outcome(PhaseStatus.ok, ["no MCP servers configured"], {"config": None, "servers": {}})
        if call.scratch["error"]:
            return self._verdict(call, [call.scratch["error"]], {}, {"config": str(chosen)})
        parsed: list[Server] = call.scratch["parsed"]
        probes = self._probe_all(call, parsed) if ctx.mcp_probe else {}
        servers: dict[str, Any] = {}
        bad: list[str] = []
        bad_names: list[str] = []
        notes: list[str] = []
        for server in parsed:
            summary = server.summary()
            probe = probes.get(server.name)
            if probe is not None:
                summary["probe"] = probe
            servers[server.name] = summary
            why = self._why_bad(server, probe)
            if server.disabled:
                notes.append(f"{server.name}: disabled in the config")
            elif why:
                bad.append(f"{server.name}: {why}")
                bad_names.append(server.name)
        if not parsed:
            notes.append(f"{chosen} lists no MCP servers")
            if ctx.requires.mcp:
                bad.append("MCP servers are required but none are configured")
        artifacts = {
            "config": str(chosen),
            "servers": servers,
            "probed": ctx.mcp_probe,
            "good": [s.name for s in parsed if not s.disabled and s.name not in bad_names],
            "bad": bad_names,
        }
        return self._verdict(call, bad, servers, artifacts, notes)

    @staticmethod
    def _why_bad(server: Server, probe: dict[str, Any] | None) -> str | None:
        if server.problems:
            return "; ".join(server.problems)
        if probe is not None and not probe["ok"]:
            return str(probe["error"])
        return None

    @staticmethod
    def _probe_all(call: PhaseCall, parsed: list[Server]) -> dict[str, dict[str, Any]]:
        targets = [s for s in parsed if not s.problems and not s.disabled and s.transport == "stdio"]
        if not targets:
            return {}
        timeout = call.context.mcp_timeout
        with ThreadPoolExecutor(min(8, len(targets)), thread_name_prefix="mcp-probe") as pool:
            futures = {s.name: pool.submit(probe_server, s, call.workspace, timeout) for s in targets}
            bound = timeout + STDIN_GRACE + TERM_GRACE + KILL_WAIT + 5.0
            return {name: fut.result(bound) for name, fut in futures.items()}

    @staticmethod
    def _verdict(
        call: PhaseCall,
        bad: list[str],
        servers: dict[str, Any],
        artifacts: dict[str, Any],
        notes: list[str] | None = None,
    ) -> Outcome:
        artifacts.setdefault("config", None)
        artifacts.setdefault("servers", servers)
        diagnostics = bad + (notes or [])
        if not bad:
            return Outcome(PhaseStatus.ok, diagnostics, artifacts)
        if call.context.requires.mcp:
            return Outcome(PhaseStatus.failed, diagnostics, artifacts)
        return Outcome(PhaseStatus.degraded, diagnostics, artifacts)
