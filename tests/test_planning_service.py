"""The planning service as a real process: every method, replies checked against the contract's schemas."""

from __future__ import annotations

import copy
import json
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import service_cmd

from harness.rpc import INVALID_PARAMS, INVALID_PLAN, InvalidParams, InvalidPlan, RPCError, ServiceProcess

REPO = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).with_name("harness-planning")


@cache
def contract() -> dict[str, Any]:
    from harness import resources

    try:
        return resources.load_contract("planning")
    except ModuleNotFoundError:
        import yaml

        return yaml.safe_load((REPO / "contracts" / "planning.yaml").read_text(encoding="utf-8"))


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    from harness import resources

    try:
        schema = resources.load_schema(name)
    except ModuleNotFoundError:
        schema = json.loads((REPO / "schemas" / f"{name}.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def check_result(method: str, result: Any) -> Any:
    validator(contract()["methods"][method]["result"]).validate(result)
    return result


def call(proc: ServiceProcess, method: str, params: Any = None) -> Any:
    """A request whose reply must match the method's result schema, or whose error the contract lists."""
    validator(contract()["methods"][method]["params"]).validate(params if params is not None else {})
    try:
        return check_result(method, proc.request(method, params, timeout=10))
    except RPCError as exc:
        assert exc.code in contract()["methods"][method]["errors"], f"{method} returned undeclared code {exc.code}"
        raise


def call_raw(proc: ServiceProcess, method: str, params: Any) -> Any:
    """A request with params that are meant to be refused (not checked against the params schema)."""
    try:
        return proc.request(method, params, timeout=10)
    except RPCError as exc:
        assert exc.code in contract()["methods"][method]["errors"]
        raise


@pytest.fixture(scope="module")
def planning():
    proc = ServiceProcess(service_cmd("planning"), stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture()
def python_ws(tmp_path: Path) -> Path:
    (tmp_path / "src" / "app").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    (tmp_path / "tests" / "test_app.py").write_text("def test_ok():\n    pass\n")
    return tmp_path


# -- the package -----------------------------------------------------------------------------------


def test_every_public_name_of_the_package_resolves():
    import harness.services.planning as planning_pkg

    assert sorted(planning_pkg.__all__) == planning_pkg.__all__
    for name in planning_pkg.__all__:
        assert getattr(planning_pkg, name) is not None, name


def test_the_service_starts_without_the_planning_machinery_or_heavy_imports():
    probe = (
        "import sys, harness.services.planning.service as s; s.build_server(); "
        "heavy = [m for m in ('yaml', 'jsonschema', 'harness.services.planning.heuristic', "
        "'harness.services.planning.validation', 'harness.services.planning.refine') if m in sys.modules]; "
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- the contract ----------------------------------------------------------------------------------


def resolve(value: Any, results: dict[str, Any]) -> Any:
    """Replace "$method.dotted.field" strings by that field of the latest result of method."""
    if isinstance(value, str) and value.startswith("$"):
        method, *fields = value[1:].split(".")
        found = results[method]
        for field in fields:
            found = found[int(field)] if isinstance(found, list) else found[field]
        return copy.deepcopy(found)
    if isinstance(value, dict):
        return {k: resolve(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, results) for v in value]
    return value


def test_the_contract_names_schemas_and_error_codes_that_exist():
    from harness.rpc import CODE_NAMES

    spec = contract()
    assert spec["service"] == "planning" and list(spec["methods"])[-1] == "shutdown"
    for name, method in spec["methods"].items():
        validator(method["params"]), validator(method["result"])
        assert set(method["errors"]) <= set(spec["errors"]), name
    assert all(CODE_NAMES[code] == name for code, name in spec["errors"].items())


def test_initialize_names_the_service_and_every_contract_method(planning):
    info = call(planning, "initialize", {})
    assert info["name"] == info["contract"] == "planning"
    assert set(contract()["methods"]) <= set(info["methods"])


def test_the_contract_examples_run_in_order_and_every_reply_matches_its_schema(planning):
    results: dict[str, Any] = {}
    for method, spec in contract()["methods"].items():
        if method == "shutdown":
            continue
        for example in spec.get("examples") or [{}]:
            results[method] = call(planning, method, resolve(example, results))
    assert results["refine"]["applied"] == ["renamed t1 to 'Find the login handler'"]
    assert results["validate"]["valid"] is False
    assert {p["code"] for p in results["validate"]["problems"]} >= {"cycle", "missing_acceptance_tests"}


# -- decompose -------------------------------------------------------------------------------------


def test_decompose_plan_reads_the_workspace_for_its_test_command(planning, python_ws):
    params = {"objective": "add dark mode", "context": {"workspace": str(python_ws)}}
    result = call(planning, "decompose_plan", params)
    tasks = result["plan"]["tasks"]
    assert tasks[-1]["commands"] == ["python3 -m pytest -q"]
    # locate reads src/; the change and its tests run pytest, which must run at the root: they
    # work from there, and their objectives say where the work belongs
    assert [t["scope_path"] for t in tasks[:3]] == ["src", ".", "."]
    assert "belongs in src/" in tasks[1]["objective"] and "belong in tests/" in tasks[2]["objective"]
    assert result["report"]["valid"] is True
    assert any("pytest" in note for note in result["notes"])


def test_decompose_gives_the_same_plan_for_the_same_input(planning, python_ws):
    params = {"objective": "fix the crash in parse_config", "context": {"workspace": str(python_ws), "max_tasks": 5}}
    assert call(planning, "decompose", params) == call(planning, "decompose", params)
    assert call(planning, "decompose_plan", params) == call(planning, "decompose_plan", params)


def test_decompose_answers_the_task_packets_of_the_plan_decompose_plan_answers(planning, python_ws):
    params = {"objective": "add dark mode", "context": {"workspace": str(python_ws)}}
    tasks = call(planning, "decompose", params)
    assert isinstance(tasks, list) and [t["id"] for t in tasks] == [f"t{i}" for i in range(1, len(tasks) + 1)]
    assert tasks == call(planning, "decompose_plan", params)["plan"]["tasks"]


@pytest.mark.parametrize("method", ["decompose", "decompose_plan"])
def test_a_vague_objective_is_an_invalid_plan_listing_every_problem(planning, method):
    with pytest.raises(InvalidPlan) as info:
        call(planning, method, {"objective": "make it faster"})
    assert info.value.code == INVALID_PLAN
    problems = info.value.data["problems"]
    assert len(problems) == 2 and {p["code"] for p in problems} == {"vague_objective"}
    for problem in problems:
        validator("Problem").validate(problem)


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "   "},
        {},
        {"objective": "add x", "colour": "blue"},
        {"objective": "add x", "context": {"max_tasks": 2}},
        ["add x"],
    ],
)
@pytest.mark.parametrize("method", ["decompose", "decompose_plan"])
def test_malformed_decompose_params_are_invalid_params(planning, method, params):
    with pytest.raises(InvalidParams) as info:
        call_raw(planning, method, params)
    assert info.value.code == INVALID_PARAMS


@pytest.mark.parametrize("method", ["decompose", "decompose_plan"])
def test_an_unknown_backend_is_invalid_params(planning, method):
    with pytest.raises(InvalidParams):
        call(planning, method, {"objective": "add dark mode", "context": {"backend": "oracle"}})


# -- refine ----------------------------------------------------------------------------------------


def test_refine_applies_directives_and_bumps_the_revision(planning):
    plan = call(planning, "decompose_plan", {"objective": "add dark mode"})["plan"]
    result = call(planning, "refine", {"plan": plan, "feedback": "skip t4; timeout t5 120\nuse the system theme"})
    refined = result["plan"]
    assert (refined["revision"], refined["source"]) == (2, "refined")
    assert [t["id"] for t in refined["tasks"]] == ["t1", "t2", "t3", "t5"]
    assert refined["tasks"][-1]["timeout"] == 120
    assert len(result["applied"]) == 3 and "use the system theme" in result["applied"][-1]


def test_refine_accepts_bare_packets_with_their_objective(planning):
    packets = [
        {"id": "a", "title": "Build the wheel", "acceptance_tests": ["ls dist/*.whl"]},
        {"id": "b", "title": "Run the unit tests", "depends_on": ["a"], "acceptance_tests": ["pytest -q"]},
    ]
    result = call(
        planning,
        "refine",
        {"packets": packets, "objective": "Release the demo app", "feedback": "add task: deploy the docs"},
    )
    assert result["plan"]["tasks"][-1]["depends_on"] == ["b"]
    assert result["report"]["risky"] == [result["plan"]["tasks"][-1]["id"]]


def test_a_refinement_that_breaks_the_plan_is_an_invalid_plan_with_what_was_applied(planning):
    plan = call(planning, "decompose_plan", {"objective": "add dark mode"})["plan"]
    with pytest.raises(InvalidPlan) as info:
        call(planning, "refine", {"plan": plan, "feedback": "t1 after t5"})
    assert [p["code"] for p in info.value.data["problems"]] == ["cycle"]
    assert info.value.data["applied"] == ["t1 now depends on t5"]


@pytest.mark.parametrize(
    "params",
    [
        {"feedback": "skip t1"},
        {"packets": [], "feedback": "skip t1"},
        {"plan": {"objective": "x"}, "feedback": "skip t1"},
    ],
)
def test_refine_needs_a_plan_or_packets_with_an_objective(planning, params):
    with pytest.raises(InvalidParams):
        call_raw(planning, "refine", params)


# -- validate --------------------------------------------------------------------------------------


def test_validate_reports_every_problem_of_packets_at_once(planning, tmp_path):
    packets = [
        {"id": "a", "title": "Build x.py", "depends_on": ["b"], "acceptance_tests": ["true"]},
        {"id": "b", "title": "Test x.py", "depends_on": ["a", "ghost"], "acceptance_tests": []},
        {"id": "c", "title": "Clean up", "scope_path": "../up", "acceptance_tests": ["true"]},
        {"id": "d", "title": "Deploy x.py to production", "acceptance_tests": ["true"]},
    ]
    report = call(planning, "validate", {"packets": packets, "workspace": str(tmp_path)})
    codes = [(p["code"], p["severity"]) for p in report["problems"]]
    assert ("cycle", "error") in codes and ("unknown_dependency", "error") in codes
    assert ("missing_acceptance_tests", "error") in codes and ("scope_outside_workspace", "error") in codes
    assert ("vague_objective", "warning") in codes and ("plan_size", "warning") not in codes
    assert report["valid"] is False and report["risky"] == ["d"]


def test_validate_follows_strictness_and_config(planning):
    packets = [{"id": "a", "title": "Tidy up", "acceptance_tests": ["test -f tidy.log"]}]
    generated = call(planning, "validate", {"packets": packets, "strictness": "generated"})
    relaxed = call(
        planning,
        "validate",
        {"packets": packets, "strictness": "generated", "config": {"min_tasks": 1, "vague": "warning"}},
    )
    assert generated["valid"] is False and {p["code"] for p in generated["problems"]} == {
        "plan_size",
        "vague_objective",
    }
    assert relaxed["valid"] is True and [p["code"] for p in relaxed["problems"]] == ["vague_objective"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"packets": [{"id": "bad id!", "title": "x"}]},
        {"packets": [], "strictness": "lenient"},
        {"plan": None, "packets": None},
    ],
)
def test_malformed_validate_params_are_invalid_params(planning, params):
    with pytest.raises(InvalidParams):
        call_raw(planning, "validate", params)


# -- lifecycle and pipes ---------------------------------------------------------------------------


def test_shutdown_answers_and_the_service_exits_cleanly():
    proc = ServiceProcess(service_cmd("planning"), stderr=subprocess.DEVNULL)
    try:
        assert call(proc, "shutdown", {}) == {}
        assert proc.proc.wait(10) == 0
    finally:
        proc.stop()


#: The seed's QUICKSTART request, verbatim.
SEED_DECOMPOSE = '{"id":1,"method":"decompose","params":{"objective":"add dark mode"}}'

PIPED = [
    (SEED_DECOMPOSE, 1),
    ('{"jsonrpc":"2.0","id":1,"method":"decompose_plan","params":{"objective":"add dark mode"}}', 1),
    ('{"id":"1","method":"decompose_plan","params":{"objective":"fix login bug"}}', "1"),
]
needs_console_script = pytest.mark.skipif(
    not CONSOLE_SCRIPT.exists(), reason="the console script is not installed next to this interpreter"
)


def piped(line: str, cwd: Path, then: str = "") -> subprocess.CompletedProcess[bytes]:
    """``echo LINE | harness-planning [| THEN]`` through the shell in ``cwd``, as a user types it."""
    command = f"echo {shlex.quote(line)} | {shlex.quote(str(CONSOLE_SCRIPT))}" + (f" | {then}" if then else "")
    return subprocess.run(["sh", "-c", command], capture_output=True, timeout=30, cwd=cwd)


@needs_console_script
@pytest.mark.parametrize(("line", "rid"), PIPED)
def test_one_request_piped_into_the_console_script_gets_one_valid_reply(line, rid, tmp_path):
    done = piped(line, tmp_path)
    assert done.returncode == 0, done.stderr
    [reply] = done.stdout.decode().splitlines()
    message = json.loads(reply)
    assert (message["jsonrpc"], message["id"]) == ("2.0", rid)
    check_result(json.loads(line)["method"], message["result"])


@needs_console_script
def test_the_seeds_decompose_line_answers_the_list_of_task_packets(tmp_path):
    done = piped(SEED_DECOMPOSE, tmp_path)
    assert done.returncode == 0, done.stderr
    tasks = json.loads(done.stdout)["result"]
    assert isinstance(tasks, list) and len(tasks) >= 3
    first = tasks[0]
    validator("TaskPacket").validate(first)
    assert first["id"] == "t1" and first["objective"]
    assert first["acceptance_tests"] or first["confirmation"], "a check that can fail, or a person's confirmation"


@needs_console_script
@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_the_seeds_quickstart_pipeline_through_jq_prints_the_first_task_packet(tmp_path):
    done = piped(SEED_DECOMPOSE, tmp_path, "jq '.result[0]'")
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    validator("TaskPacket").validate(first)
    assert first["id"] == "t1" and first["objective"]
    assert first["acceptance_tests"] or first["confirmation"], "a check that can fail, or a person's confirmation"


@needs_console_script
def test_decompose_plan_piped_answers_the_whole_plan_with_its_report_and_notes(tmp_path):
    done = piped('{"id":1,"method":"decompose_plan","params":{"objective":"add dark mode"}}', tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["result"]
    assert set(result) == {"plan", "report", "notes"}
    assert {"objective", "revision", "source", "requires", "tasks"} <= set(result["plan"])
    assert (result["plan"]["objective"], result["plan"]["revision"]) == ("add dark mode", 1)
    assert result["report"]["valid"] is True and isinstance(result["notes"], list)
