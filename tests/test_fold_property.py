"""The run's state is a pure fold of its log: any prefix folds to the state the run had then."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from e2e_support import assert_no_processes_left, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import eventlog
from harness.config import load_config
from harness.state import fold
from harness.supervisor import UI, RunOptions, Supervisor

pytestmark = pytest.mark.slow


class RecordingUI(UI):
    """Captures the supervisor's own state after every event it appends."""

    def __init__(self) -> None:
        super().__init__(io.StringIO(), interactive=False)
        self.snapshots: list[tuple[int, dict]] = []

    def on_event(self, event, state) -> None:
        self.snapshots.append((event["seq"], state.snapshot()))


def _record_run(
    workspace: Path, tasks: list[dict], parallel: int = 1
) -> tuple[list[dict], list[tuple[int, dict]], int]:
    write_config(workspace)
    ui = RecordingUI()
    plan = {"objective": "Record a run for the fold property", "tasks": tasks}
    sup = Supervisor(workspace, load_config(workspace), ui, RunOptions(plan=plan, approve=True, parallel=parallel))
    code = sup.start()
    evts = eventlog.read_events(sup.log_path).events
    assert_no_processes_left(workspace)
    return evts, ui.snapshots, code


FLAKY = (
    "n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; [ $n -ge 1 ] || { echo 'Connection timed out' >&2; exit 1; }"
)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    ws = tmp_path_factory.mktemp("fold")
    tasks = [
        {"id": "a", "title": "A", "commands": ["echo a > a.txt"], "acceptance_tests": ["test -f a.txt"]},
        {"id": "flaky", "title": "Flaky", "depends_on": ["a"], "commands": [FLAKY], "acceptance_tests": ["true"]},
        {"id": "b", "title": "B", "depends_on": ["a"], "commands": ["echo b"], "acceptance_tests": ["true"]},
        {"id": "review", "title": "Review by hand", "depends_on": ["b"], "acceptance_tests": ["true"]},
        {
            "id": "broken",
            "title": "Broken",
            "depends_on": ["flaky"],
            "commands": ["echo 'flux capacitor misaligned' >&2; exit 7"],
            "acceptance_tests": ["true"],
        },
    ]
    return _record_run(ws, tasks, parallel=2)


def test_the_recorded_run_exercises_retries_manual_steps_and_escalations(recorded) -> None:
    evts, snapshots, code = recorded
    kinds = {e["type"] for e in evts}
    assert {"RECOVERY_APPLIED", "TASK_WAITING", "RECOVERY_ESCALATION", "RUN_WAITING"} <= kinds
    assert code == 3
    assert [seq for seq, _ in snapshots] == [e["seq"] for e in evts]


def test_folding_every_prefix_gives_the_state_the_run_had_at_that_event(recorded) -> None:
    evts, snapshots, _ = recorded
    for n, (seq, snapshot) in enumerate(snapshots, 1):
        assert evts[n - 1]["seq"] == seq
        assert fold(evts[:n]).snapshot() == snapshot, f"fold diverges at seq {seq} ({evts[n - 1]['type']})"


@given(st.data())
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fold_is_deterministic_and_incremental_for_any_split(recorded, data) -> None:
    evts, _, _ = recorded
    cut = data.draw(st.integers(0, len(evts)))
    whole = fold(evts).snapshot()
    assert fold(evts[cut:], fold(evts[:cut])).snapshot() == whole


@given(
    shape=st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=2, max_size=5),
    parallel=st.integers(1, 3),
)
@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_plan_shape_folds_to_the_recorded_states(tmp_path_factory, shape, parallel) -> None:
    ws = tmp_path_factory.mktemp("shape")
    tasks = []
    for i, (fails, back) in enumerate(shape):
        deps = [f"t{i - 1 - back}"] if i and i - 1 - back >= 0 else []
        cmd = "echo 'novel failure' >&2; exit 3" if fails else f"echo t{i} >> out.txt"
        tasks.append(
            {"id": f"t{i}", "title": f"T{i}", "depends_on": deps, "commands": [cmd], "acceptance_tests": ["true"]}
        )
    evts, snapshots, _ = _record_run(ws, tasks, parallel=parallel)
    for n, (_, snapshot) in enumerate(snapshots, 1):
        assert fold(evts[:n]).snapshot() == snapshot
