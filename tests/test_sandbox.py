"""The OS sandbox: each step of a task under bubblewrap, the file system read-only except the task's
scope (an agent: its worktree and its CLI's home), the run's folder and a private /tmp, and no
network unless the task or the policy allows it. The argv builder and the decision are tested
everywhere; the runs that need bubblewrap skip, saying why, where it is missing or cannot make
its namespaces here."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import events, first, harness, latest_run, processes_in, types, write_config, write_plan

from harness.recovery import Recovery, read_only_path, summarize
from harness.sandbox import Bubblewrap, Confinement, bwrap_argv, choose, locate, probe
from harness.services.worker_manager import RunWorkerParams, SpawnWorkerParams, WorkerManager

ROOT_TOOL = Bubblewrap("/usr/bin/bwrap", root=True, userns="/usr/bin/unshare")
USER_TOOL = Bubblewrap("/usr/bin/bwrap")


def _usable() -> str | None:
    """Why the sandboxed runs cannot run here (None: they can)."""
    tool = locate()
    if tool is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    return probe(tool.path, tool.root, tool.userns)[1]


needs_bwrap = pytest.mark.skipif(_usable() is not None, reason=f"the sandbox cannot run here: {_usable()}")


def pairs(argv: list[str], flag: str) -> list[str]:
    """The paths given to ``flag`` (``--bind SRC DEST`` with SRC == DEST), in order."""
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag and argv[i + 1] == argv[i + 2]]


# -- the argv, pure -------------------------------------------------------------------------------
def test_a_shell_step_sees_the_machine_read_only_and_writes_only_its_scope_and_the_run_folder() -> None:
    argv = bwrap_argv(
        ["/bin/sh", "-c", "make"],
        tool=ROOT_TOOL,
        cwd="/w/ws/sub",
        writable=["/w/ws/sub", "/w/ws/.harness/runs/R"],
        protected=["/w/ws", "/w/ws/.harness/runs/R/events.jsonl"],
        visible=["/root", "/usr/local/bin"],
        network=False,
    )
    assert argv == [
        "/usr/bin/bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
        "--bind", "/w/ws/sub", "/w/ws/sub",
        "--bind", "/w/ws/.harness/runs/R", "/w/ws/.harness/runs/R",
        "--ro-bind-try", "/w/ws/.harness/runs/R/events.jsonl", "/w/ws/.harness/runs/R/events.jsonl",
        "--unshare-pid", "--unshare-ipc", "--unshare-net", "--die-with-parent", "--chdir", "/w/ws/sub",
        "--cap-drop", "ALL", "--cap-add", "CAP_SETFCAP", "--", "/usr/bin/unshare", "--user", "--map-root-user",
        "--", "/bin/sh", "-c", "make",
    ]  # fmt: skip
    assert "--new-session" not in argv  # it would leave the process group the manager kills


def test_an_agent_writes_its_home_and_worktree_but_not_the_workspace_inside_that_home() -> None:
    ws = "/home/u/src/app"
    tree = f"{ws}/.harness/worktrees/R/t"
    argv = bwrap_argv(
        ["claude", "-p", "go"],
        tool=USER_TOOL,
        cwd=tree,
        writable=[tree, f"{ws}/.harness/runs/R"],
        protected=[ws, f"{ws}/.harness/runs/R/events.jsonl"],
        state=["/home/u", "/home/u/.codex", "/"],
        network=True,
    )
    mounts = [(a, argv[i + 1]) for i, a in enumerate(argv) if a.startswith("--") and "bind" in a]
    assert mounts[1:] == [
        ("--bind-try", "/home/u"),  # its CLI's state (its own .codex inside needs no mount of its own)
        ("--ro-bind-try", ws),  # ... but not the workspace inside that home
        ("--bind", f"{ws}/.harness/runs/R"),
        ("--ro-bind-try", f"{ws}/.harness/runs/R/events.jsonl"),
        ("--bind", tree),  # ... and again its worktree inside the workspace
    ]
    assert "--unshare-net" not in argv  # its model endpoint
    assert "--cap-drop" not in argv and "/usr/bin/unshare" not in argv  # not root: bwrap has no capability to give


def test_what_a_step_must_see_in_tmp_is_shown_again_read_only_and_nothing_else_is() -> None:
    argv = bwrap_argv(
        ["true"],
        tool=USER_TOOL,
        cwd="/tmp/t/ws/sub",
        writable=["/tmp/t/ws/sub"],
        protected=["/tmp/t/ws"],
        visible=["/tmp/t/home", "/tmp/t/ws/.venv/bin", "/usr/bin", "/tmp/t/ws/sub/bin"],
        network=False,
    )
    assert pairs(argv, "--ro-bind-try") == ["/tmp/t/home", "/tmp/t/ws"]  # the venv is inside the workspace
    assert pairs(argv, "--bind") == ["/tmp/t/ws/sub"]
    assert argv.index("--tmpfs") < argv.index("/tmp/t/ws")  # mounted on the private /tmp, after it


@pytest.mark.parametrize(
    ("tmpdir", "reset"), [("/tmp", False), ("/tmp/pytest-7", True), ("/w/ws/sub/tmp", False), ("/var/tmp", True)]
)
def test_a_tmpdir_the_step_cannot_write_becomes_the_private_tmp(tmpdir: str, reset: bool) -> None:
    argv = bwrap_argv(["true"], tool=USER_TOOL, cwd="/w/ws/sub", writable=["/w/ws/sub"], network=False, tmpdir=tmpdir)
    assert ("--setenv" in argv) is reset
    if reset:
        assert argv[argv.index("--setenv") : argv.index("--setenv") + 3] == ["--setenv", "TMPDIR", "/tmp"]


def test_root_without_unshare_drops_every_capability() -> None:
    argv = bwrap_argv(["true"], tool=Bubblewrap("/b/bwrap", root=True), cwd="/", writable=[], network=False)
    assert argv[-6:] == ["--chdir", "/", "--cap-drop", "ALL", "--", "true"]


# -- the decision -----------------------------------------------------------------------------------
def test_auto_without_bubblewrap_runs_unconfined_and_says_why(tmp_path: Path) -> None:
    chosen = choose("auto", path_env=str(tmp_path))
    assert chosen == {
        "mode": "off",
        "policy": "auto",
        "tool": None,
        "version": None,
        "reason": "bubblewrap (bwrap) is not installed",
    }
    assert choose("off")["reason"] == "the policy says sandbox: off"


@pytest.mark.slow
def test_required_without_bubblewrap_refuses_to_run_and_leaves_no_run_behind(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    write_plan(ws, [{"id": "a", "title": "A", "commands": ["true"], "acceptance_tests": ["true"]}])
    write_config(ws, policy={"sandbox": "required"})
    no_bwrap = tmp_path / "bin"  # a PATH without bwrap
    no_bwrap.mkdir()
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve", env={"PATH": str(no_bwrap)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "sandbox: required, but bubblewrap (bwrap) is not installed" in proc.stderr
    assert not (ws / ".harness" / "runs").exists()


# -- recovery ----------------------------------------------------------------------------------------
def test_a_write_refused_by_the_sandbox_is_a_permission_failure_naming_the_path() -> None:
    failure = {
        "reason": "acceptance_failed",
        "exit_code": 1,
        "failed_step": {"kind": "acceptance", "index": 0, "command": "pytest -q"},
        "stderr_tail": "E   OSError: [Errno 30] Read-only file system: '/ws/cache/x.db'\n1 failed in 0.02s\n",
    }
    classified = Recovery().classify(failure)
    assert (classified.failure_type.value, classified.rule) == ("permission", "sandbox-denied")
    assert "/ws/cache/x.db" in (classified.evidence or "")
    assert summarize(failure).endswith("(write refused, read-only: /ws/cache/x.db)")
    assert read_only_path("Error: EROFS: read-only file system, open '/home/u/.npmrc'") == "/home/u/.npmrc"
    assert read_only_path("sh: 1: cannot create /ws/out.txt: Read-only file system") == "/ws/out.txt"


# -- the worker manager --------------------------------------------------------------------------------
def _spawn_and_run(manager: WorkerManager, ws: Path, commands: list[str], **extra: Any) -> dict[str, Any]:
    params = SpawnWorkerParams.model_validate(
        {
            "task_packet": {"title": "t", "scope_path": "sub", "commands": commands, **extra.pop("packet", {})},
            "workspace": str(ws),
            "run_dir": str(ws.parent / "run"),
            "trusted_roots": [str(ws)],
            **extra,
        }
    )
    info = manager.spawn_worker(params)
    return dict(manager.run_worker(RunWorkerParams(worker_id=info["worker_id"]))["result"])


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "ws" / "sub").mkdir(parents=True)
    return tmp_path / "ws"


def test_a_manager_without_bubblewrap_fails_the_worker_rather_than_run_it_unconfined(
    ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap here
    events_seen: list[dict[str, Any]] = []
    result = _spawn_and_run(WorkerManager(events_seen.append), ws, ["touch ran"], sandbox={"mode": "bwrap"})
    assert (result["ok"], result["reason"], result["steps"]) == (False, "spawn_error", [])
    assert "bubblewrap" in result["message"] and not (ws / "sub" / "ran").exists()
    spawned = next(e for e in events_seen if e["event"] == "worker_spawned")
    assert spawned["data"]["sandbox"] == {"mode": "bwrap", "network": False, "writable": [], "readonly": []}


@needs_bwrap
def test_a_timed_out_step_in_the_sandbox_is_killed_with_everything_it_started(ws: Path) -> None:
    result = _spawn_and_run(
        WorkerManager(lambda e: None),
        ws,
        ["sleep 60 & sleep 60"],
        packet={"timeout": 0.3},
        sandbox={"mode": "bwrap"},
    )
    assert (result["reason"], result["timed_out"]) == ("timeout", True)
    assert not processes_in(ws)


@needs_bwrap
def test_an_agent_killed_by_a_signal_in_the_sandbox_is_reported_as_that_signal(ws: Path) -> None:
    """bwrap reports a child killed by signal N as exit 128+N; an agent has no shell that would."""
    manager = WorkerManager(lambda e: None)
    suicide = [sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"]
    params = SpawnWorkerParams.model_validate(
        {
            "task_packet": {"title": "t", "scope_path": "sub", "agent": {"command": suicide}},
            "workspace": str(ws),
            "run_dir": str(ws.parent / "run"),
            "trusted_roots": [str(ws)],
            "sandbox": {"mode": "bwrap", "network": True},
        }
    )
    wid = manager.spawn_worker(params)["worker_id"]
    worker_dir = ws.parent / "run" / "workers" / wid
    worker_dir.mkdir(parents=True)
    (worker_dir / "prompt.md").write_text("die\n")
    result = manager.run_worker(RunWorkerParams(worker_id=wid))["result"]
    assert (result["reason"], result["signal"], result["exit_code"]) == ("signal", 9, None)


# -- end to end ----------------------------------------------------------------------------------------
def _escape_run(tmp_path: Path, target: str, policy: dict[str, Any] | None = None) -> tuple[Path, Any]:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    home = tmp_path / "home"
    home.mkdir()
    write_plan(
        ws,
        [
            {
                "id": "escape",
                "title": "Write outside the scope",
                "scope": "module",
                "scope_path": "sub",
                "commands": ["touch inside", f"touch {target}"],
                "acceptance_tests": ["test -f inside"],
            }
        ],
    )
    write_config(ws, **({"policy": policy} if policy else {}))
    return ws, harness(ws, "run", "--plan", "plan.yaml", "--approve", env={"HOME": str(home)})


@pytest.mark.slow
@needs_bwrap
@pytest.mark.parametrize(("target", "landed"), [("../escaped", "ws/escaped"), ('"$HOME/escaped"', "home/escaped")])
def test_a_task_writing_outside_its_scope_fails_as_permission_naming_the_path(
    tmp_path: Path, target: str, landed: str
) -> None:
    ws, proc = _escape_run(tmp_path, target)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    evts = events(ws)
    started = first(evts, "RUN_STARTED")["data"]["sandbox"]
    assert (started["mode"], started["policy"]) == ("bwrap", "auto") and started["version"]
    path = "../escaped" if target.startswith("..") else str(tmp_path / "home" / "escaped")
    failed = first(evts, "TASK_FAILED", "escape")["data"]
    assert "Read-only file system" in failed["stderr_tail"] and path in failed["summary"]
    classified = first(evts, "FAILURE_CLASSIFIED", "escape")["data"]
    assert (classified["failure_type"], classified["rule"]) == ("permission", "sandbox-denied")
    assert path in first(evts, "PERMISSION_REQUIRED", "escape")["data"]["what"]
    assert (ws / "sub" / "inside").is_file() and not (tmp_path / landed).exists()
    spawned = first(evts, "WORKER_SPAWNED", "escape")["data"]["sandbox"]
    run_dir = str(ws / ".harness" / "runs" / latest_run(ws))
    assert spawned == {
        "mode": "bwrap",
        "network": False,
        "writable": [run_dir],
        "readonly": [f"{run_dir}/events.jsonl", str(ws)],
    }


@pytest.mark.slow
def test_the_same_run_passes_with_sandbox_off_and_the_log_says_so(tmp_path: Path) -> None:
    ws, proc = _escape_run(tmp_path, "../escaped", policy={"sandbox": "off"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (ws / "escaped").is_file()
    evts = events(ws)
    assert first(evts, "RUN_STARTED")["data"]["sandbox"] == {
        "mode": "off",
        "policy": "off",
        "tool": None,
        "version": None,
        "reason": "the policy says sandbox: off",
    }
    assert "sandbox" not in first(evts, "WORKER_SPAWNED", "escape")["data"]


@pytest.fixture
def server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 of this machine; a connection completes in its backlog."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


@pytest.mark.slow
@needs_bwrap
def test_network_off_blocks_a_local_server_that_a_task_allowed_the_network_reaches(tmp_path: Path, server: int) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    marker = f"harness-sandbox-{uuid.uuid4().hex}"
    connect = shlex.join([sys.executable, "-c", f"import socket; socket.create_connection(('127.0.0.1', {server}), 5)"])
    write_plan(
        ws,
        [
            # reaches the server; its private /tmp takes a write that never shows on this machine's
            {"id": "online", "title": "Online", "network": True, "commands": [connect, f"touch /tmp/{marker}"],
             "acceptance_tests": [f"test -f /tmp/{marker}"]},
            {"id": "offline", "title": "Offline", "depends_on": ["online"], "commands": [connect],
             "acceptance_tests": ["true"]},
        ],
    )  # fmt: skip
    write_config(ws)
    proc = harness(ws, "run", "--plan", "plan.yaml", "--approve")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    evts = events(ws)
    assert "TASK_COMPLETED" in types(evts, "online")
    failed = first(evts, "TASK_FAILED", "offline")["data"]
    assert "ConnectionRefusedError" in failed["stderr_tail"]  # its own loopback: nobody listens there
    assert not Path("/tmp", marker).exists()
    assert first(evts, "WORKER_SPAWNED", "online")["data"]["sandbox"]["network"] is True
    assert first(evts, "WORKER_SPAWNED", "offline")["data"]["sandbox"]["network"] is False


def _git(ws: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True)


AGENT = """
import json, os, socket, subprocess, sys
sys.stdin.read()
def git(*args):
    return subprocess.run(["git", *args], capture_output=True).returncode
def attempt(what, action):
    try:
        action()
        return "ok"
    except OSError as exc:
        return exc.strerror
def write(path):
    return lambda: open(path, "w").write("x")
report = {
    "home": attempt("home", write(os.path.join(os.environ["HOME"], "agent-state"))),
    "worktree": attempt("worktree", write("work.txt")),
    "workspace": attempt("workspace", write(os.path.join(os.environ["HARNESS_WORKSPACE"], "escaped"))),
    "network": attempt("network", lambda: socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5).close()),
    "git add": git("add", "work.txt"),
    "git commit": git("commit", "-qm", "by the agent"),
}
open("report.json", "w").write(json.dumps(report))
print(json.dumps(report))
"""


@pytest.mark.slow
@needs_bwrap
def test_an_agent_writes_its_worktree_and_home_reaches_the_network_but_not_the_workspace(
    tmp_path: Path, server: int
) -> None:
    ws = tmp_path / "repo"
    ws.mkdir()
    _git(ws, "init", "-q", "-b", "main")
    (ws / "README.md").write_text("x\n")
    _git(ws, "config", "user.email", "a@b")
    _git(ws, "config", "user.name", "a")
    _git(ws, "add", "-A")
    _git(ws, "commit", "-qm", "init")
    home = tmp_path / "home"
    home.mkdir()
    plan = {"objective": "Confined agent", "tasks": [{"id": "box", "title": "Work in the box", "agent": "box",
                                                      "acceptance_tests": ["test -f work.txt"]}]}  # fmt: skip
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    config = {"agents": {"box": {"command": [sys.executable, "-c", AGENT, str(server)]}}}
    (tmp_path / "harness.yaml").write_text(yaml.safe_dump(config))
    proc = harness(ws, "run", "--plan", str(tmp_path / "plan.yaml"), "--approve", "--config",
                   str(tmp_path / "harness.yaml"), env={"HOME": str(home)})  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = latest_run(ws)
    report = json.loads(subprocess.run(["git", "show", f"harness/{run_id}:report.json"], cwd=ws, capture_output=True,
                                       text=True, check=True).stdout)  # fmt: skip
    assert report.pop("git commit") != 0  # its branch is the harness's to move (refs are read-only)
    assert report == {"home": "ok", "worktree": "ok", "workspace": "Read-only file system", "network": "ok",
                      "git add": 0}  # fmt: skip
    assert (home / "agent-state").is_file() and not (ws / "escaped").exists()
    spawned = first(events(ws, run_id), "WORKER_SPAWNED", "box")["data"]["sandbox"]
    assert spawned["network"] is True and spawned["writable"][0] == str(ws / ".harness" / "worktrees" / run_id / "box")


def test_the_confinement_shows_an_agents_program_and_writes_its_state_but_never_the_root(tmp_path: Path) -> None:
    confinement = Confinement(writable=[str(tmp_path)], tool=USER_TOOL)
    env = {"HOME": "/", "CODEX_HOME": str(tmp_path / "codex"), "PATH": os.defpath}
    argv = confinement.argv(["/tmp/agents/bin/cli", "exec"], str(tmp_path), env, agent=True)
    assert "/" not in pairs(argv, "--bind-try")  # HOME=/ is not made writable
    assert "/tmp/agents" in pairs(argv, "--ro-bind-try")  # a program kept in /tmp: its whole tree there
    shell = confinement.argv(["/bin/sh", "-c", "true"], str(tmp_path), env, agent=False)
    assert not pairs(shell, "--bind-try")  # a shell step gets no agent state
