"""The bootstrap service as a real child process: every method, every phase's success and failure
paths, idempotency, notifications and replay. Replies are validated against the schemas the
contract (contracts/bootstrap.yaml) names."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from harness.rpc import INVALID_PARAMS, RPCError, ServiceProcess

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = yaml.safe_load((ROOT / "contracts" / "bootstrap.yaml").read_text(encoding="utf-8"))
PHASES = ["cli_entry", "system_prompt_fastpath", "mcp_fastpath", "daemon_worker_fastpath", "main_runtime"]
from harness.services.bootstrap._models import WORKER_MANAGER_METHODS as _REQUIRED  # noqa: E402

WORKER_MANAGER_METHODS = list(_REQUIRED)  # what daemon_worker_fastpath requires, as JSON sends it
PRESENT_VAR = "HARNESS_BOOTSTRAP_TEST_PRESENT"
REQUEST_TIMEOUT = 20.0

TINY_MCP_SERVER = """
import json, sys
print("tiny server starting", flush=True)  # not JSON: a client must skip it
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("method") == "initialize":
        note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info"}}
        reply = {"jsonrpc": "2.0", "id": msg["id"], "result": {
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}, "resources": {}},
            "serverInfo": {"name": "tiny", "version": "1.0"}}}
        sys.stdout.write(json.dumps(note) + "\\n" + json.dumps(reply) + "\\n")
        sys.stdout.flush()
"""

#: Never answers, ignores SIGTERM and stdin EOF, and starts a child in its process group.
MUTE_MCP_SERVER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
with open(sys.argv[1], "w") as fh:
    fh.write(str(child.pid))
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    time.sleep(0.05)
"""

FAKE_WORKER_MANAGER = """
from harness.rpc import Server
server = Server("worker-manager", "0")
for name in {methods!r}:
    server.add_method(name, lambda: {{}})
raise SystemExit(server.run_stdio())
"""


# -- schemas and the service ---------------------------------------------------------------------


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / "schemas" / f"{name}.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def conforms(value: Any, schema_name: str) -> None:
    validator(schema_name).validate(value)


class Bootstrap:
    """A running bootstrap service that records its notifications and checks every exchange."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.notes: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self.proc = ServiceProcess(
            [sys.executable, "-m", "harness.services.bootstrap"],
            env=env,
            stderr=subprocess.DEVNULL,
            on_notification=self._on_note,
        )

    def _on_note(self, method: str, params: Any) -> None:
        with self._lock:
            self.notes.append((method, params))

    def take_notes(self) -> list[tuple[str, Any]]:
        with self._lock:
            notes, self.notes = self.notes, []
        return notes

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        spec = CONTRACT["methods"][method]
        params = {} if params is None else params
        conforms(params, spec["params"])
        result = self.proc.request(method, params, timeout=REQUEST_TIMEOUT)
        conforms(result, spec["result"])
        return result

    def phase(self, phase: str, context: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return self.call("execute_phase", {"phase": phase, "context": context, **extra})

    def stop(self) -> None:
        self.proc.stop()


def service_env() -> dict[str, str]:
    return {**os.environ, PRESENT_VAR: "yes"}


@pytest.fixture(scope="module")
def svc() -> Iterator[Bootstrap]:
    service = Bootstrap(service_env())
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def fresh() -> Iterator[Bootstrap]:
    """A service of its own, for tests about what one process remembers."""
    service = Bootstrap(service_env())
    try:
        yield service
    finally:
        service.stop()


# -- workspaces ----------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return proc.stdout


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("hello\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "first")
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def gone_within(pid: int, seconds: float = 3.0) -> bool:
    """A SIGKILL is delivered asynchronously: wait (bounded) for the process to be gone."""
    deadline = time.monotonic() + seconds
    while not process_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


# -- lifecycle and plan --------------------------------------------------------------------------


def test_initialize_announces_the_contracts_methods_and_notifications(svc: Bootstrap) -> None:
    info = svc.call("initialize")
    assert info["contract"] == "bootstrap"
    assert set(info["methods"]) == set(CONTRACT["methods"])
    assert set(info["notifications"]) == set(CONTRACT["notifications"])
    assert svc.call("ping") == {}


def test_plan_lists_the_five_phases_in_order_each_described(svc: Bootstrap, tmp_path: Path) -> None:
    plan = svc.call("plan", {"context": {"workspace": str(tmp_path)}})
    assert [p["name"] for p in plan["phases"]] == PHASES
    assert all(p["description"] for p in plan["phases"])


def test_plan_without_a_workspace_is_invalid_params(svc: Bootstrap) -> None:
    with pytest.raises(RPCError) as err:
        svc.proc.request("plan", {"context": {}}, timeout=REQUEST_TIMEOUT)
    assert err.value.code == INVALID_PARAMS


def test_unknown_phase_is_invalid_params_listing_the_valid_phases(svc: Bootstrap, tmp_path: Path) -> None:
    with pytest.raises(RPCError) as err:
        svc.proc.request(
            "execute_phase", {"phase": "warp_drive", "context": {"workspace": str(tmp_path)}}, timeout=REQUEST_TIMEOUT
        )
    assert err.value.code == INVALID_PARAMS
    assert err.value.data["valid_phases"] == PHASES
    assert svc.take_notes() == []  # nothing started


# -- cli_entry -----------------------------------------------------------------------------------


def test_cli_entry_in_a_clean_git_repo_reports_branch_and_commit(svc: Bootstrap, tmp_path: Path) -> None:
    ws = git_repo(tmp_path / "repo")
    head = git(ws, "rev-parse", "HEAD").strip()
    result = svc.phase("cli_entry", {"workspace": str(ws), "requires": {"env": [PRESENT_VAR], "tools": ["git"]}})
    assert (result["status"], result["success"]) == ("ok", True)
    assert result["artifacts"]["workspace"] == str(ws.resolve())
    git_info = result["artifacts"]["git"]
    assert {k: git_info[k] for k in ("is_repo", "branch", "head", "dirty")} == {
        "is_repo": True,
        "branch": "main",
        "head": head,
        "dirty": False,
    }
    assert result["artifacts"]["missing"] == {"env": [], "tools": []}


def test_cli_entry_sees_a_new_file_as_dirty_but_ignores_run_folders(svc: Bootstrap, tmp_path: Path) -> None:
    ws = git_repo(tmp_path / "repo")
    ctx = {"workspace": str(ws)}
    assert svc.phase("cli_entry", ctx)["artifacts"]["git"]["dirty"] is False
    write(ws / ".harness" / "runs" / "r1" / "events.jsonl", "{}\n")
    again = svc.phase("cli_entry", ctx)
    assert again["cached"] is True and again["artifacts"]["git"]["dirty"] is False
    write(ws / "new.txt", "change\n")
    dirty = svc.phase("cli_entry", ctx)
    assert dirty["cached"] is False
    assert dirty["artifacts"]["git"]["dirty"] is True and dirty["artifacts"]["git"]["changes"] == 1
    assert dirty["status"] == "ok"


def test_cli_entry_outside_git_is_ok_with_a_diagnostic(svc: Bootstrap, tmp_path: Path) -> None:
    result = svc.phase("cli_entry", {"workspace": str(tmp_path)})
    assert (result["status"], result["success"]) == ("ok", True)
    assert result["artifacts"]["git"]["is_repo"] is False
    assert result["diagnostics"]


def test_cli_entry_names_every_missing_env_var_and_tool_together(svc: Bootstrap, tmp_path: Path) -> None:
    requires = {
        "env": ["HARNESS_TEST_UNSET_ALPHA", PRESENT_VAR, "HARNESS_TEST_UNSET_BETA"],
        "tools": ["harness-test-no-such-tool", "git", "harness-test-no-such-tool-2"],
    }
    result = svc.phase("cli_entry", {"workspace": str(tmp_path), "requires": requires})
    assert (result["status"], result["success"]) == ("failed", False)
    assert result["artifacts"]["missing"] == {
        "env": ["HARNESS_TEST_UNSET_ALPHA", "HARNESS_TEST_UNSET_BETA"],
        "tools": ["harness-test-no-such-tool", "harness-test-no-such-tool-2"],
    }
    joined = "\n".join(result["diagnostics"])
    for name in result["artifacts"]["missing"]["env"] + result["artifacts"]["missing"]["tools"]:
        assert name in joined


@pytest.mark.parametrize("phase", ["cli_entry", "system_prompt_fastpath", "mcp_fastpath"])
def test_phases_that_read_the_workspace_fail_when_it_is_missing(svc: Bootstrap, tmp_path: Path, phase: str) -> None:
    result = svc.phase(phase, {"workspace": str(tmp_path / "nowhere")})
    assert (result["status"], result["success"]) == ("failed", False)
    assert result["diagnostics"]


def test_cli_entry_reports_a_config_syntax_error_with_its_line(svc: Bootstrap, tmp_path: Path) -> None:
    write(tmp_path / "harness.yaml", "parallel: 2\npolicy: [a, b\nretries: 3\n")
    result = svc.phase("cli_entry", {"workspace": str(tmp_path)})
    assert (result["status"], result["success"]) == ("failed", False)
    config = result["artifacts"]["config"]
    assert config["errors"] and config["errors"][0].startswith("harness.yaml:")
    assert config["line"] in (2, 3)


def test_cli_entry_summarises_a_valid_config_in_dot_harness(svc: Bootstrap, tmp_path: Path) -> None:
    write(tmp_path / ".harness" / "config.yaml", "parallel: 2\npolicy: strict\n")
    result = svc.phase("cli_entry", {"workspace": str(tmp_path)})
    assert result["status"] == "ok"
    assert result["artifacts"]["config"]["keys"] == ["parallel", "policy"]
    assert result["artifacts"]["config"]["path"].endswith(".harness/config.yaml")


# -- system_prompt_fastpath ----------------------------------------------------------------------


def test_system_prompt_assembles_instruction_files_from_git_root_down_and_writes_it(
    svc: Bootstrap, tmp_path: Path
) -> None:
    write(tmp_path / "AGENTS.md", "above the repository: never read\n")
    root = git_repo(tmp_path / "repo")
    ws = root / "pkg"
    write(root / "AGENTS.md", "ROOT AGENTS\n")
    write(ws / "AGENTS.md", "PKG AGENTS\n")
    write(ws / "CLAUDE.md", "PKG CLAUDE\n")
    write(ws / ".github" / "copilot-instructions.md", "PKG COPILOT\n")
    ctx = {"workspace": str(ws), "run_dir": ".harness/runs/r1", "objective": "add dark mode"}
    result = svc.phase("system_prompt_fastpath", ctx)
    assert (result["status"], result["success"]) == ("ok", True)
    art = result["artifacts"]
    assert [s["label"] for s in art["sources"]] == [
        "AGENTS.md",
        "pkg/AGENTS.md",
        "pkg/CLAUDE.md",
        "pkg/.github/copilot-instructions.md",
    ]
    path = Path(art["path"])
    assert path == ws.resolve() / ".harness" / "runs" / "r1" / "system_prompt.md"
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == art["sha256"]
    text = data.decode("utf-8")
    assert art["chars"] == len(text)
    assert "add dark mode" in text and str(ws.resolve()) in text
    marks = [text.index(m) for m in ("ROOT AGENTS", "PKG AGENTS", "PKG CLAUDE", "PKG COPILOT")]
    assert marks == sorted(marks)
    assert "never read" not in text


def test_system_prompt_reports_truncation_of_a_long_file(svc: Bootstrap, tmp_path: Path) -> None:
    write(tmp_path / "AGENTS.md", "x" * 500)
    result = svc.phase("system_prompt_fastpath", {"workspace": str(tmp_path), "prompt_file_max_chars": 100})
    assert result["success"] is True
    assert result["artifacts"]["truncated"] is True and result["artifacts"]["sources"][0]["truncated"] is True
    assert result["artifacts"]["chars"] < 500
    assert result["diagnostics"]


def test_system_prompt_keeps_within_its_total_limit_and_says_what_was_left_out(svc: Bootstrap, tmp_path: Path) -> None:
    write(tmp_path / "AGENTS.md", "a" * 400)
    write(tmp_path / "CLAUDE.md", "c" * 400)
    result = svc.phase("system_prompt_fastpath", {"workspace": str(tmp_path), "prompt_max_chars": 450})
    art = result["artifacts"]
    assert result["success"] is True and art["chars"] <= 450
    assert [(s["label"], s["truncated"]) for s in art["sources"]] == [("AGENTS.md", True), ("CLAUDE.md", True)]
    assert art["sources"][1]["chars"] == 0 and len(result["diagnostics"]) == 2


def test_system_prompt_without_instruction_files_is_ok_and_minimal(svc: Bootstrap, tmp_path: Path) -> None:
    result = svc.phase("system_prompt_fastpath", {"workspace": str(tmp_path)})
    assert (result["status"], result["success"]) == ("ok", True)
    assert result["artifacts"]["sources"] == [] and result["artifacts"]["path"] is None
    assert 0 < result["artifacts"]["chars"] < 300
    assert result["diagnostics"]


# -- idempotency ---------------------------------------------------------------------------------


def test_same_phase_and_inputs_are_served_from_the_cache(svc: Bootstrap, tmp_path: Path) -> None:
    write(tmp_path / "AGENTS.md", "be careful\n")
    ctx = {"workspace": str(tmp_path), "run_dir": "run"}
    first = svc.phase("system_prompt_fastpath", ctx)
    second = svc.phase("system_prompt_fastpath", ctx)
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["artifacts"] == first["artifacts"]


def test_a_context_change_the_phase_does_not_read_keeps_the_cache(svc: Bootstrap, tmp_path: Path) -> None:
    ctx = {"workspace": str(tmp_path), "run_dir": "run", "worker_manager": {"pid": 1, "methods": []}}
    first = svc.phase("system_prompt_fastpath", ctx)
    resumed = svc.phase("system_prompt_fastpath", {**ctx, "worker_manager": {"pid": 2, "methods": []}})
    assert (first["cached"], resumed["cached"]) == (False, True)
    retitled = svc.phase("system_prompt_fastpath", {**ctx, "objective": "something else"})
    assert retitled["cached"] is False  # the objective is in the prompt's header


def test_changing_an_instruction_file_invalidates_the_cache(svc: Bootstrap, tmp_path: Path) -> None:
    agents = write(tmp_path / "AGENTS.md", "version one\n")
    ctx = {"workspace": str(tmp_path), "run_dir": "run"}
    first = svc.phase("system_prompt_fastpath", ctx)
    agents.write_text("version two\n")  # same length: only the content tells them apart
    second = svc.phase("system_prompt_fastpath", ctx)
    assert second["cached"] is False
    assert second["artifacts"]["sha256"] != first["artifacts"]["sha256"]
    assert "version two" in Path(second["artifacts"]["path"]).read_text()


def test_a_new_instruction_file_or_a_deleted_prompt_invalidates_the_cache(svc: Bootstrap, tmp_path: Path) -> None:
    ctx = {"workspace": str(tmp_path), "run_dir": "run"}
    first = svc.phase("system_prompt_fastpath", ctx)
    write(tmp_path / "HARNESS.md", "new rules\n")
    second = svc.phase("system_prompt_fastpath", ctx)
    assert second["cached"] is False and len(second["artifacts"]["sources"]) == 1
    assert first["artifacts"]["sha256"] != second["artifacts"]["sha256"]
    Path(second["artifacts"]["path"]).unlink()
    third = svc.phase("system_prompt_fastpath", ctx)
    assert third["cached"] is False and Path(third["artifacts"]["path"]).is_file()


def test_failed_results_are_not_served_from_the_cache(svc: Bootstrap, tmp_path: Path) -> None:
    ctx = {"workspace": str(tmp_path), "requires": {"env": ["HARNESS_TEST_UNSET_ALPHA"]}}
    assert svc.phase("cli_entry", ctx)["status"] == "failed"
    assert svc.phase("cli_entry", ctx)["cached"] is False


def test_an_idempotency_key_reused_for_another_phase_is_refused(svc: Bootstrap, tmp_path: Path) -> None:
    ctx = {"workspace": str(tmp_path)}
    svc.phase("mcp_fastpath", ctx, idempotency_key="run-1/mcp")
    assert svc.phase("mcp_fastpath", ctx, idempotency_key="run-1/mcp")["cached"] is True
    with pytest.raises(RPCError) as err:
        svc.proc.request(
            "execute_phase",
            {"phase": "cli_entry", "context": ctx, "idempotency_key": "run-1/mcp"},
            timeout=REQUEST_TIMEOUT,
        )
    assert err.value.code == INVALID_PARAMS


def test_an_idempotency_key_resent_with_a_new_context_runs_on_the_new_inputs(svc: Bootstrap, tmp_path: Path) -> None:
    before = {"workspace": str(tmp_path), "worker_manager": {"pid": dead_pid(), "methods": WORKER_MANAGER_METHODS}}
    after = {"workspace": str(tmp_path), "worker_manager": {"pid": os.getpid(), "methods": WORKER_MANAGER_METHODS}}
    first = svc.phase("daemon_worker_fastpath", before, idempotency_key="run-2:daemon_worker_fastpath")
    second = svc.phase("daemon_worker_fastpath", after, idempotency_key="run-2:daemon_worker_fastpath")
    assert (first["status"], second["status"], second["cached"]) == ("failed", "ok", False)


# -- notifications -------------------------------------------------------------------------------


def test_each_execution_emits_started_then_completed_matching_their_schemas(svc: Bootstrap, tmp_path: Path) -> None:
    svc.take_notes()
    ctx = {"workspace": str(tmp_path)}
    results = [svc.phase("mcp_fastpath", ctx, idempotency_key="notes/1"), svc.phase("mcp_fastpath", ctx)]
    notes = svc.take_notes()  # sent before each reply, so already delivered
    assert [m for m, _ in notes] == ["phase_started", "phase_completed"] * 2
    for method, params in notes:
        conforms(params, CONTRACT["notifications"][method]["params"])
    started, completed = notes[0][1], notes[1][1]
    assert started["phase"] == completed["phase"] == "mcp_fastpath"
    assert started["context_digest"] == completed["context_digest"]
    assert started["idempotency_key"] == completed["idempotency_key"] == "notes/1"
    assert "idempotency_key" not in notes[2][1]
    for (_, note), result in zip(notes[1::2], results, strict=True):
        assert {k: note[k] for k in result} == result
    assert [n["cached"] for _, n in notes[1::2]] == [False, True]
    assert notes[1][1]["input_digest"] == notes[3][1]["input_digest"]


# -- mcp_fastpath --------------------------------------------------------------------------------


def mcp_config(ws: Path, servers: dict[str, Any], name: str = ".mcp.json") -> Path:
    return write(ws / name, json.dumps({"mcpServers": servers}))


def test_mcp_without_config_is_ok(svc: Bootstrap, tmp_path: Path) -> None:
    result = svc.phase("mcp_fastpath", {"workspace": str(tmp_path), "mcp_probe": True})
    assert (result["status"], result["success"]) == ("ok", True)
    assert result["artifacts"]["servers"] == {}


def test_mcp_probe_with_one_good_and_one_bad_server_is_degraded(svc: Bootstrap, tmp_path: Path) -> None:
    server = write(tmp_path / "tiny_mcp.py", TINY_MCP_SERVER)
    mcp_config(
        tmp_path,
        {
            "tiny": {"command": sys.executable, "args": [str(server)]},
            "broken": {"command": "harness-test-no-such-mcp-server"},
        },
    )
    result = svc.phase("mcp_fastpath", {"workspace": str(tmp_path), "mcp_probe": True, "mcp_timeout": 5.0})
    assert (result["status"], result["success"]) == ("degraded", True)
    art = result["artifacts"]
    assert (art["good"], art["bad"]) == (["tiny"], ["broken"])
    probe = art["servers"]["tiny"]["probe"]
    assert probe["ok"] is True
    assert probe["server_info"] == {"name": "tiny", "version": "1.0"}
    assert probe["capabilities"] == ["resources", "tools"]
    assert probe["stopped_by"] == "eof" and gone_within(probe["pid"])
    assert art["servers"]["broken"]["valid"] is False


def test_an_mcp_server_that_exits_before_answering_is_reported_with_its_stderr(svc: Bootstrap, tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "import sys; sys.stderr.write('boom: no token'); sys.exit(3)"]
    mcp_config(tmp_path, {"crashy": {"command": crash[0], "args": crash[1:]}})
    result = svc.phase("mcp_fastpath", {"workspace": str(tmp_path), "mcp_probe": True, "mcp_timeout": 5.0})
    assert (result["status"], result["success"]) == ("degraded", True)
    probe = result["artifacts"]["servers"]["crashy"]["probe"]
    assert (probe["ok"], probe["exit_code"]) == (False, 3)
    assert "boom: no token" in probe["stderr_tail"]


def test_mcp_with_required_servers_fails_when_one_is_bad(svc: Bootstrap, tmp_path: Path) -> None:
    mcp_config(
        tmp_path,
        {"remote": {"url": "https://mcp.example.com/v1"}, "broken": {"command": "harness-test-no-such-mcp-server"}},
        name="mcp.json",
    )
    ctx = {"workspace": str(tmp_path), "requires": {"mcp": True}}
    result = svc.phase("mcp_fastpath", ctx)
    assert (result["status"], result["success"]) == ("failed", False)
    assert result["artifacts"]["good"] == ["remote"]


def test_mcp_validates_urls_and_entry_shapes_without_probing(svc: Bootstrap, tmp_path: Path) -> None:
    mcp_config(
        tmp_path,
        {
            "fine": {"url": "https://mcp.example.com/v1"},
            "bad_url": {"url": "not a url"},
            "both": {"command": "git", "url": "https://x.example"},
            "neither": {"args": []},
            "bad_args": {"command": "git", "args": "--oops"},
        },
    )
    result = svc.phase("mcp_fastpath", {"workspace": str(tmp_path)})
    assert (result["status"], result["success"]) == ("degraded", True)
    assert result["artifacts"]["good"] == ["fine"]
    assert sorted(result["artifacts"]["bad"]) == ["bad_args", "bad_url", "both", "neither"]


def test_mcp_config_syntax_error_is_reported_with_its_location(svc: Bootstrap, tmp_path: Path) -> None:
    write(tmp_path / ".mcp.json", '{"mcpServers": {\n  "a": {"command": "x",}\n}}')
    result = svc.phase("mcp_fastpath", {"workspace": str(tmp_path)})
    assert (result["status"], result["success"]) == ("degraded", True)
    assert ".mcp.json:2:" in result["diagnostics"][0]
    required = svc.phase("mcp_fastpath", {"workspace": str(tmp_path), "requires": {"mcp": True}})
    assert required["status"] == "failed"


def test_an_mcp_probe_that_never_answers_is_bounded_by_the_timeout_and_reaped(svc: Bootstrap, tmp_path: Path) -> None:
    server = write(tmp_path / "mute_mcp.py", MUTE_MCP_SERVER)
    child_file = tmp_path / "child.pid"
    mcp_config(tmp_path, {"mute": {"command": sys.executable, "args": [str(server), str(child_file)]}})
    timeout = 0.5
    ctx = {"workspace": str(tmp_path), "mcp_probe": True, "mcp_timeout": timeout}
    params = {"phase": "mcp_fastpath", "context": ctx}
    started = time.monotonic()
    pending = svc.proc.peer.request_async("execute_phase", params, timeout=REQUEST_TIMEOUT)
    assert svc.call("ping") == {}  # the probe does not hold up other requests
    assert not pending.done()
    result = pending.result(REQUEST_TIMEOUT)
    elapsed = time.monotonic() - started
    conforms(result, "PhaseResult")
    assert (result["status"], result["success"]) == ("degraded", True)
    probe = result["artifacts"]["servers"]["mute"]["probe"]
    assert probe["ok"] is False
    assert probe["stopped_by"] == "SIGKILL"  # it ignored stdin EOF and SIGTERM
    assert timeout <= elapsed < timeout + 2.5
    assert gone_within(probe["pid"])
    assert gone_within(int(child_file.read_text()))  # its process group went with it


# -- daemon_worker_fastpath ----------------------------------------------------------------------


def test_daemon_worker_with_a_live_pid_and_all_methods_is_ok(svc: Bootstrap, tmp_path: Path) -> None:
    wm = {"pid": os.getpid(), "methods": ["initialize", *WORKER_MANAGER_METHODS]}
    result = svc.phase("daemon_worker_fastpath", {"workspace": str(tmp_path), "worker_manager": wm})
    assert (result["status"], result["success"]) == ("ok", True)
    assert result["artifacts"]["alive"] is True and result["artifacts"]["missing_methods"] == []


def test_daemon_worker_with_a_dead_pid_fails(svc: Bootstrap, tmp_path: Path) -> None:
    wm = {"pid": dead_pid(), "methods": WORKER_MANAGER_METHODS}
    result = svc.phase("daemon_worker_fastpath", {"workspace": str(tmp_path), "worker_manager": wm})
    assert (result["status"], result["success"]) == ("failed", False)
    assert result["artifacts"]["alive"] is False and result["diagnostics"]


def test_daemon_worker_names_missing_methods_and_missing_info(svc: Bootstrap, tmp_path: Path) -> None:
    methods = ["spawn_worker", "replay"]
    wm = {"pid": os.getpid(), "methods": methods}
    partial = svc.phase("daemon_worker_fastpath", {"workspace": str(tmp_path), "worker_manager": wm})
    assert partial["status"] == "failed"
    assert partial["artifacts"]["missing_methods"] == [m for m in WORKER_MANAGER_METHODS if m not in methods]
    absent = svc.phase("daemon_worker_fastpath", {"workspace": str(tmp_path)})
    assert (absent["status"], absent["artifacts"]["reachable"]) == ("failed", False)


def test_daemon_worker_can_start_a_manager_command_and_ask_it(svc: Bootstrap, tmp_path: Path) -> None:
    script = write(tmp_path / "fake_wm.py", FAKE_WORKER_MANAGER.format(methods=WORKER_MANAGER_METHODS))
    wm = {"command": [sys.executable, str(script)]}
    result = svc.phase("daemon_worker_fastpath", {"workspace": str(tmp_path), "worker_manager": wm})
    assert (result["status"], result["success"]) == ("ok", True)
    assert result["artifacts"]["via"] == "command" and result["artifacts"]["missing_methods"] == []


# -- main_runtime --------------------------------------------------------------------------------


def test_main_runtime_fails_when_required_phases_have_not_run(svc: Bootstrap, tmp_path: Path) -> None:
    result = svc.phase("main_runtime", {"workspace": str(tmp_path), "run_id": "never-ran"})
    assert (result["status"], result["success"]) == ("failed", False)
    assert result["artifacts"]["missing"] == PHASES[:4] and result["artifacts"]["ready"] is False


def test_main_runtime_summarises_the_earlier_phases_of_its_context(svc: Bootstrap, tmp_path: Path) -> None:
    ctx = {
        "workspace": str(tmp_path),
        "run_id": "summary",
        "worker_manager": {"pid": os.getpid(), "methods": WORKER_MANAGER_METHODS},
    }
    mcp_config(tmp_path, {"fine": {"url": "https://mcp.example.com"}, "broken": {"command": "harness-test-nope"}})
    for phase in PHASES[:4]:
        assert svc.phase(phase, ctx)["success"] is True
    result = svc.phase("main_runtime", ctx)
    assert (result["status"], result["success"]) == ("degraded", True)
    art = result["artifacts"]
    assert art["ran"] == PHASES[:4] and art["degraded"] == ["mcp_fastpath"] and art["missing"] == []
    assert art["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert art["cpu_count"] == os.cpu_count()


def test_main_runtime_fails_when_a_required_phase_failed(svc: Bootstrap, tmp_path: Path) -> None:
    ctx = {"workspace": str(tmp_path), "requires": {"env": ["HARNESS_TEST_UNSET_ALPHA"], "phases": ["cli_entry"]}}
    assert svc.phase("cli_entry", ctx)["success"] is False
    result = svc.phase("main_runtime", ctx)
    assert (result["status"], result["artifacts"]["failed"]) == ("failed", ["cli_entry"])


def test_git_status_parsing_reads_branch_upstream_and_changes() -> None:
    from harness.services.bootstrap._cli_entry import _parse_status

    text = (
        "# branch.oid 0123abcd\n# branch.head feature\n# branch.upstream origin/feature\n"
        "# branch.ab +2 -1\n1 .M N... 100644 100644 100644 aaa bbb src/a.py\n? new.txt\n"
    )
    assert _parse_status(text) == {
        "branch": "feature",
        "head": "0123abcd",
        "detached": False,
        "upstream": "origin/feature",
        "ahead": 2,
        "behind": 1,
        "changes": 2,
        "dirty": True,
    }
    detached = _parse_status("# branch.oid (initial)\n# branch.head (detached)\n")
    assert (detached["branch"], detached["head"], detached["detached"], detached["dirty"]) == (None, None, True, False)


# -- replay --------------------------------------------------------------------------------------


def test_replay_restores_the_cache_in_a_new_process(svc: Bootstrap, fresh: Bootstrap, tmp_path: Path) -> None:
    write(tmp_path / "AGENTS.md", "replayed rules\n")
    ctx = {
        "workspace": str(tmp_path),
        "run_dir": "run",
        "worker_manager": {"pid": os.getpid(), "methods": WORKER_MANAGER_METHODS},
    }
    svc.take_notes()
    originals = {phase: svc.phase(phase, ctx) for phase in PHASES[:4]}
    log = [{"method": m, "params": p} for m, p in svc.take_notes()]
    assert fresh.call("replay", {"events": log}) == {"phases": 4, "ignored": 4}
    for phase, original in originals.items():
        again = fresh.phase(phase, ctx)
        assert again["cached"] is True
        assert again["artifacts"] == original["artifacts"]
    summary = fresh.phase("main_runtime", ctx)
    assert summary["status"] == "ok" and summary["artifacts"]["ran"] == PHASES[:4]


def test_replay_accepts_log_events_and_is_all_or_nothing(fresh: Bootstrap, svc: Bootstrap, tmp_path: Path) -> None:
    ctx = {"workspace": str(tmp_path)}
    svc.take_notes()
    svc.phase("mcp_fastpath", ctx)
    completed = [p for m, p in svc.take_notes() if m == "phase_completed"]
    good = {"type": "PHASE_COMPLETED", "run_id": "r", "data": completed[0]}
    bad = {"method": "phase_completed", "params": {"phase": "mcp_fastpath"}}
    with pytest.raises(RPCError) as err:
        fresh.proc.request("replay", {"events": [good, bad]}, timeout=REQUEST_TIMEOUT)
    assert err.value.code == INVALID_PARAMS
    assert fresh.phase("mcp_fastpath", ctx)["cached"] is False  # nothing was restored
    other = tmp_path / "elsewhere"  # a second context, to restore into
    other.mkdir()
    ctx2 = {"workspace": str(other)}
    svc.phase("mcp_fastpath", ctx2)
    completed2 = [p for m, p in svc.take_notes() if m == "phase_completed"]
    log_events = [{"type": "PHASE_COMPLETED", "data": completed2[0]}, {"type": "TASK_STARTED", "data": {}}]
    assert fresh.call("replay", {"events": log_events}) == {"phases": 1, "ignored": 1}
    assert fresh.phase("mcp_fastpath", ctx2)["cached"] is True
