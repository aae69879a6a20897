"""What the harness adds around an agent task, against running the same agent by hand.

    python bench/bench_agent.py [--quick] [--agent fake|claude] [--tasks N]

Both sides run the same agent program on the same one-turn task, followed by the same acceptance
test, in the same invocation:

* bare:    a git worktree of its own would be an extra; the bare side runs the agent in a plain
           checkout, then the acceptance test (``sh -c``), as a person would by hand;
* harness: ``harness run --plan ... --approve --agent ...``: a worktree per task, the prompt built,
           saved and hashed, the agent's output parsed, the acceptance test, the commit and the
           merge into the run's branch, every step in the log.

The per-task figure is marginal (a chain of N tasks minus a chain of 1, over N-1), so the
harness's own start-up (three services) is left out; medians of the repetitions; the ratio is
harness / bare. ``--agent fake`` is tests/agent_programs/fake_agent.py (a Python program, about
as quick as an agent can be: the harness's git work weighs most against it); ``--agent claude``
runs Claude Code against the tests' fake model server when both are installed.

It also times ``git worktree add`` (and remove) on a repository of 1,000 files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "agent_programs" / "fake_agent.py"


def sh(cwd: Path, *args: str) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


def make_repo(root: Path, files: int) -> Path:
    ws = root / "repo"
    (ws / "src").mkdir(parents=True)
    for i in range(files):
        (ws / "src" / f"mod_{i:04d}.py").write_text(f"VALUE_{i} = {i}\n")
    (ws / ".gitignore").write_text(".harness/\n")
    sh(ws, "git", "init", "-q", "-b", "main")
    sh(ws, "git", "config", "user.email", "bench@example.com")
    sh(ws, "git", "config", "user.name", "bench")
    sh(ws, "git", "add", "-A")
    sh(ws, "git", "commit", "-qm", "initial")
    return ws


def time_worktrees(root: Path, files: int, reps: int) -> dict[str, float]:
    ws = make_repo(root / f"wt-{files}", files)
    adds, removes = [], []
    for i in range(reps):
        where = ws / ".harness" / "worktrees" / f"t{i}"
        t0 = time.perf_counter()
        sh(ws, "git", "worktree", "add", "--quiet", "-b", f"b{i}", str(where), "HEAD")
        adds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sh(ws, "git", "worktree", "remove", "--force", str(where))
        removes.append(time.perf_counter() - t0)
    return {"add_ms": statistics.median(adds) * 1000, "remove_ms": statistics.median(removes) * 1000}


def plan_of(n: int) -> dict[str, object]:
    tasks = []
    for i in range(n):
        task: dict[str, object] = {
            "id": f"t{i}",
            "title": f"Write out_{i}.txt",
            "objective": f"Write the file out_{i}.txt",
            "acceptance_tests": [f"test -f out_{i}.txt"],
        }
        if i:
            task["depends_on"] = [f"t{i - 1}"]
        tasks.append(task)
    return {"objective": "Benchmark agent tasks", "tasks": tasks}


def script_of(n: int) -> dict[str, object]:
    return {f"t{i}": [{"write": {f"out_{i}.txt": "x\n"}}] for i in range(n)}


# -- the agent: the stand-in program, or Claude Code on the tests' fake model ----------------------
AGENT = {"kind": "fake", "cli": "", "url": "", "home": ""}


def claude_cli() -> str:
    folder = os.environ.get("HARNESS_AGENT_BIN_DIR") or str(REPO / ".ci" / "agents" / "node_modules" / ".bin")
    path = os.path.join(folder, "claude")
    if not os.access(path, os.X_OK):
        raise SystemExit(f"no Claude Code at {path}: run .ci/install-agents .ci/agents")
    return path


def agent_env() -> dict[str, str]:
    if AGENT["kind"] != "claude":
        return {}
    from agent_clis import claude_env

    return claude_env(Path(AGENT["home"]), AGENT["url"])


def agent_plan(n: int) -> dict[str, object]:
    plan = plan_of(n)
    if AGENT["kind"] == "claude":  # the fake model writes hello.txt through Claude's own Write tool
        for task in plan["tasks"]:  # type: ignore[attr-defined]
            task["acceptance_tests"] = ["grep -q hello hello.txt"]
    return plan


def run_harness(root: Path, n: int) -> float:
    ws = make_repo(root / f"h-{n}-{time.monotonic_ns()}", 20)
    (ws.parent / "plan.yaml").write_text(yaml.safe_dump(agent_plan(n)))
    (ws.parent / "script.json").write_text(json.dumps(script_of(n)))
    if AGENT["kind"] == "claude":
        config = {"agents": {"claude": {"command": [AGENT["cli"]]}}}
    else:
        config = {"agents": {"fake": {"command": [sys.executable, str(FAKE), str(ws.parent / "script.json")]}}}
    (ws.parent / "harness.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "harness.cli", "run", "--plan", str(ws.parent / "plan.yaml"), "--approve"]
    cmd += ["--agent", AGENT["kind"], "--config", str(ws.parent / "harness.yaml"), "--workspace", str(ws)]
    t0 = time.perf_counter()
    env = {**os.environ, "CI": "true", **agent_env()}
    proc = subprocess.run(cmd, cwd=ws, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"harness run failed:\n{proc.stdout}\n{proc.stderr}")
    return wall


def run_bare(root: Path, n: int) -> float:
    ws = make_repo(root / f"b-{n}-{time.monotonic_ns()}", 20)
    (ws.parent / "script.json").write_text(json.dumps(script_of(n)))
    run_dir = ws.parent / "bare-run"
    run_dir.mkdir()
    t0 = time.perf_counter()
    for i in range(n):
        if AGENT["kind"] == "claude":
            from harness.agents import AgentCall, adapter_for

            call = AgentCall(
                prompt=f"Write hello.txt (task {i})", prompt_file="", workdir=str(ws), command=(AGENT["cli"],)
            )
            env = {"PATH": os.environ["PATH"], **agent_env()}
            argv = adapter_for("claude").argv(call)
            subprocess.run(argv, cwd=ws, env=env, stdin=subprocess.DEVNULL, check=True, capture_output=True)
            subprocess.run(["/bin/sh", "-c", "grep -q hello hello.txt"], cwd=ws, check=True)
            continue
        env = {**os.environ, "HARNESS_TASK_ID": f"t{i}", "HARNESS_ATTEMPT": "1", "HARNESS_RUN_DIR": str(run_dir)}
        subprocess.run(
            [sys.executable, str(FAKE), str(ws.parent / "script.json")],
            cwd=ws, env=env, input=f"Write the file out_{i}.txt", text=True, check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(["/bin/sh", "-c", f"test -f out_{i}.txt"], cwd=ws, check=True)
    return time.perf_counter() - t0


def marginal(fn: Callable[[Path, int], float], root: Path, n: int, reps: int) -> tuple[float, float]:
    """(marginal seconds per task, wall of one task), medians over ``reps``."""
    ones = [fn(root, 1) for _ in range(reps)]
    many = [fn(root, n) for _ in range(reps)]
    one, more = statistics.median(ones), statistics.median(many)
    return (more - one) / (n - 1), one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks and repetitions (under a minute)")
    parser.add_argument("--tasks", type=int, default=0, help="tasks in the long chain (default 10, quick 4)")
    parser.add_argument("--agent", choices=["fake", "claude"], default="fake", help="the agent both sides run")
    args = parser.parse_args(argv)
    if args.agent == "claude":
        sys.path.insert(0, str(REPO / "tests"))
        from fake_models import fake_model

        with fake_model() as model, tempfile.TemporaryDirectory() as home:
            AGENT.update(kind="claude", cli=claude_cli(), url=model.url, home=home)
            return measure_all(args)
    return measure_all(args)


def measure_all(args: argparse.Namespace) -> int:
    n = args.tasks or (4 if args.quick else 10)
    reps = 1 if args.quick else 3
    root = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    try:
        wt = time_worktrees(root, 1000, 3 if args.quick else 7)
        print(f"git worktree add on 1,000 files: {wt['add_ms']:.1f} ms (remove {wt['remove_ms']:.1f} ms), median")
        bare, bare_one = marginal(run_bare, root, n, reps)
        ours, ours_one = marginal(run_harness, root, n, reps)
        who = "Claude Code on the fake model" if AGENT["kind"] == "claude" else FAKE.name
        print(f"agent: {who}, chain of {n} one-turn tasks, medians of {reps}")
        print(f"{'':<10} {'ms/task':>9} {'1-task wall':>12}")
        print(f"{'bare':<10} {bare * 1000:9.1f} {bare_one:11.2f}s")
        print(f"{'harness':<10} {ours * 1000:9.1f} {ours_one:11.2f}s")
        print(f"harness / bare per task: {ours / bare:.2f}x (overhead {1000 * (ours - bare):.1f} ms per task)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
