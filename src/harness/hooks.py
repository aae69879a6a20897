"""Hooks: programs and URLs that witness what a run does and, at some points, intervene.

``hooks:`` in harness.yaml lists the hooks of each point (:class:`harness.vocab.HookPoint`); they
run in order, in the supervisor, and each run is a HOOK_RAN event (its decision and duration):

    point          runs                                             a deny or a failure
    pre_task       before a task's worker is spawned                fails the task (permission)
    pre_command    for each command, inside the per-command checks  refuses the command (permission)
    post_command   for each command that ran, before the verdict    fails the task (permission)
    post_task      after the task's verdict is recorded             is recorded; the verdict stands
    on_waiting     when the run records that it waits for a person  is recorded
    on_run_end     when the run ends (EXECUTION_COMPLETE)           is recorded

A command hook is started without a shell, in its own process group, with the payload as JSON on
its stdin and ``HARNESS_HOOK_EVENT`` (the point) in its environment:

* exit 0 allows. Its stdout may be a JSON object: ``message`` is recorded and shown; at
  pre_command, ``command`` replaces the command, and the replacement is checked again.
* exit 2 denies; its stderr is the reason.
* any other exit, a hook that cannot start, an answer that is not what it should be, or a hook
  still running at its timeout (its group gets SIGTERM, then SIGKILL) is a failure, and a
  failure blocks wherever a deny would: hooks fail closed.

A URL hook gets the payload POSTed as JSON (its ``text`` makes it a Slack-compatible message): a
2xx answer allows, anything else is a failure. Events name a URL by its scheme and host only,
since a webhook's path is often its secret.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .config import HooksConfig, HookSpec
from .vocab import HookPoint, HookVerdict

__all__ = ["BLOCKING", "HookRun", "Hooks", "label", "payload", "run_hook"]

#: The points where a deny or a failure stops what the hook was asked about.
BLOCKING = frozenset({HookPoint.pre_task, HookPoint.pre_command, HookPoint.post_command})
#: Seconds a timed-out hook's group gets between SIGTERM and SIGKILL.
TERM_GRACE = 1.0
#: What is kept of a hook's message or stderr.
MESSAGE_CHARS = 500


@dataclass(frozen=True)
class HookRun:
    """How one hook run ended."""

    point: HookPoint
    hook: str  # label(spec)
    kind: str  # command | url
    verdict: HookVerdict
    duration_ms: float
    exit_code: int | None = None
    status: int | None = None  # a URL's HTTP status
    message: str | None = None
    replacement: str | None = None  # pre_command: the command it put instead

    @property
    def blocks(self) -> bool:
        return self.verdict is not HookVerdict.allow

    def event(self, **about: Any) -> dict[str, Any]:
        """The data of HOOK_RAN, with ``about`` (attempt, command) added."""
        data: dict[str, Any] = {
            "point": self.point,
            "hook": self.hook,
            "kind": self.kind,
            "decision": self.verdict,
            "duration_ms": self.duration_ms,
        }
        if self.kind == "command":
            data["exit_code"] = self.exit_code
        else:
            data["status"] = self.status
        if self.message:
            data["message"] = self.message
        if self.replacement is not None:
            data["replaced_by"] = self.replacement
        data.update({k: v for k, v in about.items() if v is not None})
        return data


def label(spec: HookSpec) -> str:
    """How events and messages name a hook: its name, its argv, or its URL's scheme and host."""
    if spec.name:
        return spec.name
    if spec.command is not None:
        return shlex.join(spec.command)
    parts = urllib.parse.urlsplit(spec.url or "")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def payload(point: HookPoint, text: str, **fields: Any) -> dict[str, Any]:
    """What a hook is given: the point, the fields that are set, and one line for people."""
    out: dict[str, Any] = {"event": point.value}
    out.update({k: v for k, v in fields.items() if v is not None})
    out["text"] = text
    return out


def _bounded(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MESSAGE_CHARS else "..." + text[-MESSAGE_CHARS:]


def _ms(since: float) -> float:
    return round((time.monotonic() - since) * 1000.0, 1)


def run_hook(
    spec: HookSpec,
    point: HookPoint,
    data: Mapping[str, Any],
    *,
    cwd: str,
    argv: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> HookRun:
    """Run one hook to its end (bounded by its timeout). ``argv`` is its command as resolved
    (relative paths from the config file); default: as configured."""
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    if spec.url is not None:
        return _post(spec, point, body)
    command = argv or list(spec.command or [])
    env = {**(os.environ if environ is None else environ), "HARNESS_HOOK_EVENT": point.value}
    return _run_command(spec, point, command, body, cwd, env)


def _run_command(
    spec: HookSpec, point: HookPoint, argv: list[str], body: bytes, cwd: str, env: dict[str, str]
) -> HookRun:
    name = label(spec)
    t0 = time.monotonic()

    def ended(verdict: HookVerdict, code: int | None, message: str | None, replacement: str | None = None) -> HookRun:
        return HookRun(point, name, "command", verdict, _ms(t0), code, None, message, replacement)

    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:
        return ended(HookVerdict.error, None, f"cannot start: {exc}")
    try:
        out, err = proc.communicate(body, timeout=spec.timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        return ended(HookVerdict.timeout, None, f"no answer within {spec.timeout:g} s: its processes were killed")
    code = proc.returncode
    stderr = err.decode("utf-8", "replace")
    if code == 2:
        return ended(HookVerdict.deny, code, _bounded(stderr) or "denied (the hook gave no reason)")
    if code != 0:
        why = f"killed by signal {-code}" if code < 0 else f"exited {code}"
        return ended(HookVerdict.error, code, _bounded(f"{why}: {stderr}" if stderr.strip() else why))
    try:
        answer = _answer(out.decode("utf-8", "replace"), point)
    except ValueError as exc:
        return ended(HookVerdict.error, code, f"invalid answer: {exc}")
    return ended(HookVerdict.allow, code, answer.get("message"), answer.get("command"))


def _answer(stdout: str, point: HookPoint) -> dict[str, str]:
    """The fields of an exit-0 answer: stdout that is a JSON object; other output is not an answer."""
    text = stdout.strip()
    if not text.startswith("{"):
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"stdout looks like JSON but is not: {exc.msg}") from exc
    if not isinstance(obj, dict):
        raise ValueError("stdout is not a JSON object")
    out: dict[str, str] = {}
    message = obj.get("message")
    if message is not None:
        if not isinstance(message, str):
            raise ValueError('"message" must be a string')
        out["message"] = _bounded(message)
    command = obj.get("command")
    if command is not None:
        if point is not HookPoint.pre_command:
            raise ValueError(f'only a pre_command hook may answer a "command", not a {point.value} hook')
        if not isinstance(command, str) or not command.strip():
            raise ValueError('"command" must be a non-empty string')
        out["command"] = command
    return out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """A timed-out hook: SIGTERM to its group, a grace period, SIGKILL to what is left of it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=TERM_GRACE)
    except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # what is left of the group, even when its leader ended
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.communicate(timeout=1.0)  # the pipes, once no process holds them
    except (subprocess.TimeoutExpired, ValueError, OSError):
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()


def _post(spec: HookSpec, point: HookPoint, body: bytes) -> HookRun:
    import urllib.error
    import urllib.request  # only where a URL hook is configured: it costs ~15 ms to import

    name = label(spec)
    t0 = time.monotonic()
    request = urllib.request.Request(
        spec.url or "",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "harness-hooks"},
    )

    def ended(verdict: HookVerdict, status: int | None, message: str | None) -> HookRun:
        return HookRun(point, name, "url", verdict, _ms(t0), None, status, message)

    try:
        with urllib.request.urlopen(request, timeout=spec.timeout) as response:
            response.read(65536)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return ended(HookVerdict.error, exc.code, f"HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError):
            return ended(HookVerdict.timeout, None, f"no answer within {spec.timeout:g} s")
        return ended(HookVerdict.error, None, f"{type(reason).__name__}: {reason}"[:MESSAGE_CHARS])
    if 200 <= status < 300:
        return ended(HookVerdict.allow, status, None)
    return ended(HookVerdict.error, status, f"HTTP {status}")


class Hooks:
    """The configured hooks of a run: :meth:`run` runs those of one point, in order."""

    def __init__(
        self,
        config: HooksConfig,
        *,
        cwd: str,
        resolve: Callable[[list[str]], list[str]] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.cwd = cwd
        self._resolve = resolve or (lambda argv: list(argv))
        self._environ = environ

    def configured(self, point: HookPoint) -> bool:
        return bool(self.config.at(point))

    def run(self, point: HookPoint, data: Mapping[str, Any], record: Callable[[HookRun], None]) -> HookRun | None:
        """Run the hooks of ``point`` in order, handing each run to ``record`` as it ends. At a
        blocking point the first run that blocks, or (pre_command) replaces the command, ends
        the round and is returned; elsewhere every hook runs and the first that blocked is
        returned. None: every hook allowed."""
        first: HookRun | None = None
        for spec in self.config.at(point):
            argv = self._resolve(list(spec.command)) if spec.command is not None else None
            done = run_hook(spec, point, data, cwd=self.cwd, argv=argv, environ=self._environ)
            record(done)
            if point in BLOCKING and (done.blocks or done.replacement is not None):
                return done
            if done.blocks and first is None:
                first = done
        return first
