"""The llm planner's own cost per plan, against a bare HTTP call to the same endpoint, in one run.

    python bench/bench_planner.py [--plans 200] [--tasks 5]

A fake OpenAI-compatible endpoint on 127.0.0.1 answers every request at once with the same valid
plan, so what is measured is ours: building the brief (the workspace map included), the request,
parsing the answer into packets, validation, risk flags, the call record. Rows, medians of
``--plans`` runs, each in a fresh planner as the service makes one per request:

  bare POST            urllib POST of a same-sized request and json.loads of the answer (the floor)
  ModelClient.ask      our client alone: request, retries bookkeeping, answer parsing, scrubbing
  decompose_objective  the whole llm planner: brief + map + call + to_plan + validation
  heuristic            the heuristic planner on the same workspace, for scale

Workspace: this repository (a real tree for the map to walk). Only same-run ratios count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.services.planning import decompose_objective  # noqa: E402
from harness.services.planning.llm import ModelClient, resolve  # noqa: E402
from harness.services.planning.model_planner import PROPOSAL_SCHEMA, brief, objective_turn  # noqa: E402
from harness.services.planning.schemas import LLMOptions, PlanningContext  # noqa: E402
from tests.fake_llm import Step, fake_llm  # noqa: E402


def plan_of(n: int) -> dict[str, Any]:
    tasks = []
    for i in range(1, n + 1):
        tasks.append(
            {
                "id": f"t{i}",
                "title": f"Write part {i} of the report",
                "objective": f"Create part{i}.md describing step {i} of the migration",
                "scope_path": ".",
                "depends_on": [f"t{i - 1}"] if i > 1 else [],
                "commands": [],
                "acceptance_tests": [f"test -s part{i}.md", f"grep -q 'step {i}' part{i}.md"],
                "confirmation": None,
                "timeout": None,
            }
        )
    return {"tasks": tasks, "notes": []}


def timed(fn: Any, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plans", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=5)
    args = parser.parse_args()
    os.environ["BENCH_KEY"] = "sk-bench-0000000000000000"
    workspace = str(ROOT)
    with fake_llm("openai", [Step(plan=plan_of(args.tasks))]) as fake:
        options = LLMOptions(provider="openai", base_url=fake.url, model="bench", api_key_env="BENCH_KEY")
        context = PlanningContext(workspace=workspace, backend="llm", llm=options, max_tasks=max(7, args.tasks))
        settings = resolve(options.model_dump(exclude_none=True))
        system = brief(context)
        body = json.dumps(
            {"model": "bench", "messages": [{"role": "system", "content": system}, {"role": "user", "content": "x"}]}
        ).encode()

        def bare() -> None:
            request = urllib.request.Request(
                fake.url + "/chat/completions", data=body, headers={"content-type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                json.loads(response.read())

        def client() -> None:
            ModelClient(settings, system, PROPOSAL_SCHEMA).ask(objective_turn("migrate the reports"), purpose="bench")

        def planner() -> None:
            decompose_objective("migrate the reports", context)

        heuristic = PlanningContext(workspace=workspace)
        for fn in (bare, client, planner):  # warm up imports and connections
            fn()
        rows = [
            ("bare POST", timed(bare, args.plans)),
            ("ModelClient.ask", timed(client, args.plans)),
            ("decompose_objective", timed(planner, args.plans)),
            ("heuristic", timed(lambda: decompose_objective("migrate the reports", heuristic), args.plans)),
        ]
    floor = rows[0][1]
    print(f"{args.plans} plans of {args.tasks} tasks, median ms per plan (workspace: {workspace})")
    for name, ms in rows:
        print(f"  {name:<22} {ms:8.2f} ms   {ms / floor:5.2f}x bare POST")


if __name__ == "__main__":
    main()
