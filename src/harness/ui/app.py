"""The dashboard's web app (Starlette): pages folded from the logs, a live event stream, and
decisions recorded through :mod:`harness.decisions`, the same path as `harness approve` / `decide`.

Security: every request carries the access token (``?token=`` once, then an HttpOnly, SameSite
cookie); the Host header must name this server (no DNS rebinding); decisions are POSTs whose
Origin must be this server; every value from a log is escaped by the templates (autoescape) and
the pictures (:mod:`.svg`); a strict Content-Security-Policy allows no inline script at all.
``read_only`` leaves the decision endpoint out of the app entirely.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import decisions, eventlog
from ..vocab import Source
from . import svg
from .model import Digests, RunDigest, RunUnreadable, collector_paused, full_events, line

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: How long one event stream stays open; the browser reconnects (Last-Event-ID) after it ends.
STREAM_SECONDS = 600.0
POLL_SECONDS = 0.25
TAIL_BYTES = 8192
PROMPT_BYTES = 65536
DIFF_BYTES = 200_000
#: Past this many tasks the run page links the report instead of showing it.
REPORT_INLINE_TASKS = 300

#: Events after which a run page is loaded again: the run stopped, or a question was asked or
#: answered (elsewhere too: the page then shows the answer instead of offering the question).
STOPS = {
    "RUN_WAITING",
    "EXECUTION_COMPLETE",
    "RUN_ABORTED",
    "PLAN_CREATED",
    "GATE_APPROVED",
    "GATE_REJECTED",
    "TASK_WAITING",
    "TRUST_REQUIRED",
    "RECOVERY_ESCALATION",
    "TASK_DECISION",
    "TOOL_PERMISSION_REQUESTED",
    "TOOL_PERMISSION_DECIDED",
}


@dataclass
class Settings:
    workspace: str
    token: str
    read_only: bool = False
    hosts: frozenset[str] = frozenset()  # host[:port] values the Host header may name
    approver: str = ""  # the name a decision form starts with
    resume: Callable[[str, str, int], int | None] | None = None  # (workspace, run, parallel) -> pid
    started: dict[str, int] = field(default_factory=dict)  # run id -> pid of a resume this app started
    ended: dict[str, str] = field(default_factory=dict)  # run id -> how that resume ended, when it failed


# -- security ---------------------------------------------------------------------------------------
class Guard:
    """Token, Host and Origin checks, and the security headers, around the whole app."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.cookie = f"harness_ui_{hmac.new(settings.token.encode(), b'cookie', 'sha256').hexdigest()[:8]}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if self.settings.hosts and host not in self.settings.hosts:
            await _plain(403, "This dashboard does not answer to that host name.")(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = (query.get("token") or [""])[0]
        if given and hmac.compare_digest(given, self.settings.token) and scope["method"] == "GET":
            rest = {k: v for k, v in query.items() if k != "token"}
            target = scope.get("path", "/") + ("?" + urlencode(rest, doseq=True) if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(self.cookie, self.settings.token, httponly=True, samesite="strict", path="/")
            await _secured(response)(scope, receive, send)
            return
        cookie = _cookie(headers.get("cookie", ""), self.cookie)
        if not (cookie and hmac.compare_digest(cookie, self.settings.token)):
            await _plain(403, "Forbidden: open the address `harness ui` printed (it carries the access token).")(
                scope, receive, send
            )
            return
        if scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin", "")
            scheme = scope.get("scheme", "http")
            if origin != f"{scheme}://{host}" or headers.get("sec-fetch-site", "same-origin") != "same-origin":
                await _plain(403, "Forbidden: a decision must come from this dashboard's own pages.")(
                    scope, receive, send
                )
                return

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, secured_send)


_SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make a form's Origin "null"
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def _secured(response: Response) -> Response:
    """A response made before the app (the guard's own), with the headers every response gets."""
    response.headers.update({k.decode(): v.decode() for k, v in _SECURITY_HEADERS})
    return response


def _plain(status: int, text: str) -> Response:
    return _secured(Response(text + "\n", status_code=status, media_type="text/plain; charset=utf-8"))


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


# -- rendering --------------------------------------------------------------------------------------
_env = Environment(
    loader=PackageLoader("harness.ui", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(unix: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix)) if unix else ""


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


_env.filters["when"] = _when
_env.filters["duration"] = _duration
_env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context), status_code=status)


def error_page(status: int, title: str, message: str) -> HTMLResponse:
    return page("error.html", status, title=title, message=message)


# -- the app ----------------------------------------------------------------------------------------
def create_app(settings: Settings) -> ASGIApp:
    digests = Digests(settings.workspace)

    def digest(request: Request) -> RunDigest:
        return digests.get(request.path_params["run_id"])

    def runs_page(request: Request) -> Response:
        rows, broken = digests.summaries()
        return page(
            "runs.html",
            runs=rows,
            broken=broken,
            workspace=settings.workspace,
            read_only=settings.read_only,
            now=time.time(),
        )

    def run_page(request: Request) -> Response:
        d = digest(request)
        with d.lock, collector_paused():
            return _run_page(request, d)

    def _run_page(request: Request, d: RunDigest) -> Response:
        state = d.state
        href = _task_href(d.run_id)
        report = None
        if len(state.tasks) <= REPORT_INLINE_TASKS and state.outcome is not None:
            report = d.cached("report", lambda: _report(d))
        return page(
            "run.html",
            run=d.summary(),
            state=state,
            questions=d.questions(),
            dag=Markup(d.cached("dag", lambda: svg.dag_svg(d.nodes(), href=href))),
            timeline=Markup(_timeline(d, href)),
            events=d.recent_lines(),
            last_seq=state.last_seq,
            report=report,
            plan_changes=_plan_changes(state),
            read_only=settings.read_only,
            approver=settings.approver,
            flash=_flash(request),
            resumed=settings.started.get(d.run_id),
            resume_ended=settings.ended.get(d.run_id),
            refusal=_refusal(state),
        )

    def task_page(request: Request) -> Response:
        d = digest(request)
        with d.lock:
            return _task_page(request, d)

    def _task_page(request: Request, d: RunDigest) -> Response:
        tid = request.path_params["task_id"]
        task = d.state.tasks.get(tid)
        if task is None:
            return error_page(404, "No such task", f"Run {d.run_id} has no task {tid!r}.")
        return page(
            "task.html",
            run=d.summary(),
            task=task,
            packet=d.state.packets.get(tid, {}),
            details=_task_details(d, tid),
            questions=[q for q in d.questions() if q.task_id == tid],
            read_only=settings.read_only,
            approver=settings.approver,
            flash=_flash(request),
        )

    def report_page(request: Request) -> Response:
        d = digest(request)
        with d.lock:
            run = d.summary()
        return page("report.html", run=run, report=_report(d))

    async def stream(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        d = await run_in_threadpool(digests.get, run_id)
        after = _int(request.headers.get("last-event-id")) or _int(request.query_params.get("after")) or 0
        return StreamingResponse(
            _events(request, d, after),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    async def decide(request: Request) -> Response:
        body = await request.body()
        if len(body) > 65536:
            return error_page(413, "Too large", "That form is larger than any decision needs.")
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return await run_in_threadpool(_decide, request.path_params["run_id"], form, settings, digests)

    routes = [
        Route("/", runs_page),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/tasks/{task_id}", task_page),
        Route("/runs/{run_id}/report", report_page),
        Route("/runs/{run_id}/events", stream),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    if not settings.read_only:
        routes.append(Route("/runs/{run_id}/decide", decide, methods=["POST"]))

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_page(404, "Not found", f"There is nothing at {request.url.path}.")

    async def unreadable(request: Request, exc: Exception) -> Response:
        return error_page(404, "Run not shown", str(exc))

    async def refused(request: Request, exc: Exception) -> Response:
        return error_page(400, "Not recorded", str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_page(exc.status_code, "Error", str(exc.detail))

    async def failure(request: Request, exc: Exception) -> Response:
        return error_page(500, "Something went wrong", f"{type(exc).__name__}: the dashboard could not show this page.")

    app = Starlette(
        routes=routes,
        exception_handlers={
            404: not_found,
            HTTPException: http_error,
            RunUnreadable: unreadable,
            ValueError: refused,
            decisions.Refused: refused,
            Exception: failure,
        },
    )
    return Guard(app, settings)


def _task_href(run_id: str) -> Callable[[str], str]:
    from urllib.parse import quote

    return lambda tid: f"/runs/{quote(run_id, safe='')}/tasks/{quote(tid, safe='')}"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


_FLASH = {
    "recorded": "Your decision was recorded.",
    "resumed": "Your decision was recorded, and the run was resumed in the background.",
    "driven": "Your decision was recorded; the harness process driving the run picks it up.",
}


def _flash(request: Request) -> str | None:
    return _FLASH.get(request.query_params.get("said", ""))


def _plan_changes(state: Any) -> str | None:
    if state.revision > 1 and state.previous_plan is not None and state.plan is not None:
        from ..plandiff import describe_changes, plan_diff

        return describe_changes(plan_diff(state.previous_plan, state.plan), state.revision - 1)
    return None


def _timeline(d: RunDigest, href: Callable[[str], str]) -> str:
    """The timeline; drawn once per fold when nothing in it is open (open bars grow with the clock)."""
    if d.state.status.value in ("completed", "failed", "aborted", "planned"):
        return str(
            d.cached("timeline", lambda: svg.timeline_svg(d.rows(), d.phase_list(), now=d.state.last_unix, href=href))
        )
    return svg.timeline_svg(d.rows(), d.phase_list(), now=time.time(), href=href)


def _refusal(state: Any) -> str | None:
    """Why `harness resume` would refuse the run as its log and plan file stand (as `harness status` says)."""
    if state.plan is None or state.status.value in ("completed", "planned"):
        return None
    from ..plandiff import file_plan_hash, resume_refusal

    return resume_refusal(state, file_plan_hash(state.plan_path) if state.plan_path else None)


def _report(d: RunDigest) -> str:
    from ..report import render

    with collector_paused():
        return render(full_events(d), run_id=d.run_id, log_path=str(d.path))


def _tail(path: Path, limit: int) -> str | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read(limit)
    except OSError:
        return None
    text = data.decode("utf-8", "replace")
    return ("…" + text) if size > limit else text


def _task_details(d: RunDigest, tid: str) -> dict[str, Any]:
    """The task panel's files and figures: prompt, output tails, agent usage, diff."""
    track = d.tracks.get(tid)
    folder = d.worker_dir(tid)
    out: dict[str, Any] = {"attempts": [], "usage": [], "prompt": None, "stdout": None, "stderr": None, "diff": None}
    nodes = d.state.tasks[tid].nodes
    if track is not None:
        out["attempts"] = [
            {"number": a.number, "start": a.start, "end": a.end, "outcome": a.outcome, "node": nodes.get(a.number)}
            for a in track.attempts
        ]
        out["usage"] = list(track.usage)
    if folder is not None:
        out["prompt"] = _tail(folder / "prompt.md", PROMPT_BYTES)
        out["stdout"] = _tail(folder / "stdout.log", TAIL_BYTES)
        out["stderr"] = _tail(folder / "stderr.log", TAIL_BYTES)
    task = d.state.tasks[tid]
    if track is not None and task.commit and track.start_commit:
        out["diff"] = _git_diff(d.workspace, track.start_commit, task.commit)
    elif track is not None and track.saved_diff:
        out["diff"] = _tail(Path(track.saved_diff), DIFF_BYTES)
    return out


def _git_diff(workspace: str, start: str, commit: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", workspace, "diff", "--no-color", "--no-ext-diff", f"{start}..{commit}", "--"],
            capture_output=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    text = done.stdout[:DIFF_BYTES].decode("utf-8", "replace")
    return text + ("\n… (cut)" if len(done.stdout) > DIFF_BYTES else "")


# -- the live stream --------------------------------------------------------------------------------
async def _events(request: Request, d: RunDigest, after: int):
    """Server-sent events following the log, as `harness log --follow` does: each event once,
    with the task's and the run's state after it; a comment every 15 s keeps proxies awake."""
    last = after
    began = quiet = time.monotonic()
    yield "retry: 1000\n\n"
    while time.monotonic() - began < STREAM_SECONDS:
        if await request.is_disconnected():
            return
        try:
            await run_in_threadpool(d.refresh)
            new = await run_in_threadpool(d.events_after, last)
        except RunUnreadable:
            return
        if new:
            for item in await run_in_threadpool(_stream_items, d, new):
                last = int(item["seq"])
                yield f"id: {last}\ndata: {json.dumps(item, ensure_ascii=False)}\n\n"
            quiet = time.monotonic()
        elif time.monotonic() - quiet > 15:
            quiet = time.monotonic()
            yield ": still here\n\n"
        await asyncio.sleep(POLL_SECONDS)


def _stream_items(d: RunDigest, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stream's messages for new events, each with its task's and the run's state now."""
    with d.lock:
        titles = d.titles()
        status = d.state.status.value
        items = []
        for event in new:
            item = line(event, titles)
            task = d.state.tasks.get(item["task"]) if item["task"] else None
            item["task_state"] = task.status.value if task else None
            item["run_status"] = status
            item["stop"] = item["type"] in STOPS
            items.append(item)
    return items


# -- decisions --------------------------------------------------------------------------------------
def _decide(run_id: str, form: dict[str, list[str]], settings: Settings, digests: Digests) -> Response:
    """One answer from a page's form, recorded as `harness approve` / `decide` record it (source
    ui, the approver's name), then the run resumed in the background unless a process drives it."""
    d = digests.get(run_id)

    def one(name: str) -> str:
        return (form.get(name) or [""])[0]

    approver = one("approver").strip()[:80]
    kind, key, answer, task_id, back = one("kind"), one("key"), one("decision"), one("task"), one("back")
    note = one("note").strip() or None
    keep = one("keep_dependents") == "on"
    if not approver:
        raise decisions.Refused("Say who decides: the approver's name is required.")
    try:
        if kind == "plan":
            revision = _int(key.partition(":")[2])
            if answer == "approve":
                skip = form.get("skip") or []
                decisions.approve_plan(
                    settings.workspace,
                    run_id,
                    source=Source.ui,
                    approver=approver,
                    skip=skip,
                    keep_dependents=keep,
                    revision=revision,
                )
            elif answer in ("reject", "clarify"):
                if not note:
                    raise decisions.Refused("A rejection needs feedback for the planner.")
                decisions.approve_plan(
                    settings.workspace,
                    run_id,
                    source=Source.ui,
                    approver=approver,
                    reject=note if answer == "reject" else None,
                    clarify=note if answer == "clarify" else None,
                    revision=revision,
                )
            else:
                raise decisions.Refused(f"'{answer}' is not an answer to a plan")
        elif kind == "tool":
            decisions.decide_tool(
                settings.workspace,
                run_id,
                task_id,
                answer,
                source=Source.ui,
                approver=approver,
                note=note,
                request_id=key.partition(":")[2] or None,
            )
        elif kind in ("trust", "manual", "escalation"):
            decisions.decide_task(
                settings.workspace,
                run_id,
                task_id,
                answer,
                source=Source.ui,
                approver=approver,
                note=note,
                keep_dependents=keep,
                key=key,
            )
        else:
            raise decisions.Refused(f"unknown question kind {kind!r}")
    except decisions.Stale as exc:
        d = digests.get(run_id)
        with d.lock:
            run = d.summary()
        return page("stale.html", 409, run=run, message=str(exc), back=_back(run_id, back))
    said = "recorded"
    if decisions.driven(settings.workspace, run_id):
        said = "driven"
    elif settings.resume is not None:
        with d.lock:
            parallel = int(d.state.options.get("parallel") or 1)
        settings.ended.pop(run_id, None)
        pid = settings.resume(settings.workspace, run_id, parallel)
        if pid:
            settings.started[run_id] = pid
            said = "resumed"
    return RedirectResponse(_back(run_id, back) + "?" + urlencode({"said": said}), status_code=303)


def _back(run_id: str, back: str) -> str:
    base = f"/runs/{run_id}"
    return back if back.startswith(base + "/tasks/") and "?" not in back and "//" not in back else base


def background_resume(workspace: str, run_id: str, parallel: int, ended: dict[str, str] | None = None) -> int | None:
    """`harness resume RUN` in a session of its own, its output in the run's folder; reaped by a
    thread while the dashboard lives, by init after (it outlives the dashboard on purpose). A
    resume that fails (not 0 done, not 3 waiting) is put in ``ended`` with its last words."""
    folder = eventlog.run_dir(workspace, run_id)
    log_path = folder / "ui-resume.log"
    with open(log_path, "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} harness resume {run_id} (from the dashboard)\n".encode())
        out.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "resume", run_id, "--workspace", workspace, "--parallel", str(parallel)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workspace,
            start_new_session=True,
            env={**os.environ, "HARNESS_NONINTERACTIVE": "1"},
        )

    def reap() -> None:
        code = proc.wait()
        if ended is not None and code not in (0, 3):
            last = (_tail(log_path, 2000) or "").strip().splitlines()
            ended[run_id] = f"exit code {code}" + (f": {last[-1]}" if last else "")

    threading.Thread(target=reap, name=f"resume-{run_id}", daemon=True).start()
    return proc.pid
