"""Plans in the log: compact on the way in, whole on the way out, equal to what the model dumps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.models import Plan
from harness.planfile import load_plan_file
from harness.planlog import compact_plan, full_plan

ROOT = Path(__file__).resolve().parents[1]


def test_example_plans_come_back_whole_key_order_included() -> None:
    for path in (ROOT / "examples" / "demo" / "plan.yaml", ROOT / "examples" / "agent-demo" / "plan.yaml"):
        plan = load_plan_file(path).model_dump(mode="json")
        small = compact_plan(plan)
        assert len(json.dumps(small)) < len(json.dumps(plan))
        back = full_plan(small)
        assert back == plan
        assert json.dumps(back) == json.dumps(plan)  # the same keys in the same order, nested too


def test_a_packet_keeps_what_differs_from_its_defaults_and_nothing_else() -> None:
    plan = Plan.model_validate(
        {
            "objective": "o",
            "tasks": [{"id": "a", "title": "A", "commands": ["make"], "acceptance_tests": ["test -f x"]}],
        }
    ).model_dump(mode="json")
    assert compact_plan(plan) == {
        "objective": "o",
        "tasks": [{"id": "a", "title": "A", "objective": "A", "commands": ["make"], "acceptance_tests": ["test -f x"]}],
    }


def test_a_plan_that_would_not_come_back_equal_is_kept_as_it_is() -> None:
    partial = {"objective": "o", "tasks": [{"id": "a"}]}  # not a dump: its defaults are missing
    assert compact_plan(partial) is partial


def test_whole_plans_given_to_readers_are_their_own() -> None:
    plan = Plan.model_validate({"objective": "o", "tasks": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}]})
    small = compact_plan(plan.model_dump(mode="json"))
    first, second = full_plan(small), full_plan(small)
    first["tasks"][0]["depends_on"].append("b")
    first["requires"]["env"].append("X")
    assert second["tasks"][0]["depends_on"] == [] and second["requires"]["env"] == []
    assert full_plan(small)["tasks"][1]["depends_on"] == []


packets = st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "b", "c"]), "title": st.text(min_size=1, max_size=5)},
    optional={
        "commands": st.lists(st.text(max_size=5), max_size=2),
        "acceptance_tests": st.lists(st.text(max_size=5), max_size=2),
        "risk": st.sampled_from(["low", "high"]),
        "timeout": st.one_of(st.none(), st.floats(min_value=1, max_value=100)),
        "env": st.dictionaries(st.sampled_from(["A", "B"]), st.text(max_size=3), max_size=2),
        "scope_path": st.sampled_from([".", "src"]),
        "network": st.one_of(st.none(), st.booleans()),
        "agent": st.one_of(st.none(), st.fixed_dictionaries({"name": st.sampled_from(["claude", "codex"])})),
    },
)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(tasks=st.lists(packets, min_size=1, max_size=3, unique_by=lambda p: str(p["id"])), revision=st.integers(1, 3))
def test_any_plan_comes_back_exactly(tasks: list[dict[str, Any]], revision: int) -> None:
    plan = Plan.model_validate({"objective": "o", "tasks": tasks, "revision": revision}).model_dump(mode="json")
    assert json.dumps(full_plan(compact_plan(plan))) == json.dumps(plan)


def test_a_run_from_a_plan_file_records_the_plan_once_compact_and_folds_it_back_whole(tmp_path: Path) -> None:
    from e2e_support import harness

    from harness import eventlog
    from harness.state import fold

    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(
        "objective: two steps\ntasks:\n"
        "  - {id: make, title: Make it, commands: ['echo made > made.txt'], acceptance_tests: ['test -f made.txt']}\n"
        "  - {id: check, title: Check it, depends_on: [make], commands: ['true'], acceptance_tests: ['test -s made.txt']}\n"
    )
    done = harness(tmp_path, "run", "--plan", str(plan_path), "--approve")
    assert done.returncode == 0, done.stdout + done.stderr
    [run] = eventlog.list_runs(tmp_path)
    events = eventlog.read_events(eventlog.events_path(tmp_path, run)).events
    [started] = [e["data"] for e in events if e["type"] == "RUN_STARTED"]
    [created] = [e["data"] for e in events if e["type"] == "PLAN_CREATED"]
    assert created["from_plan_file"] is True and "plan" not in created  # recorded once, in RUN_STARTED
    assert "risk" not in started["plan_file"]["tasks"][0]  # a default: left out
    whole = load_plan_file(plan_path).model_dump(mode="json")
    state = fold(events)
    assert state.plan == whole and state.options_plan == whole
    assert state.tasks["check"].depends_on == ["make"]
    assert eventlog.verify(eventlog.events_path(tmp_path, run)).ok
