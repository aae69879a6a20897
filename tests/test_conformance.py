"""The conformance kit: it passes real services, fails broken ones naming the check, and its
protocol document is generated from the same contracts and schemas."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from harness import protocol_doc
from harness.conformance import CHECKS, WORKSPACE, Outcome, Unresolved, catalogued, main, run, substitute
from harness.conformance._params import invalid_params, schema_problems
from harness.resources import SERVICES, load_contract

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "conformance_fixtures"
NODE_PLANNER = ROOT / "examples" / "node" / "planning-service.js"
MODULES = {"planning": "planning", "bootstrap": "bootstrap", "worker-manager": "worker_manager"}


def python_service(service: str) -> list[str]:
    return [sys.executable, "-m", f"harness.services.{MODULES[service]}"]


def fixture(name: str) -> list[str]:
    return [sys.executable, str(FIXTURES / f"{name}.py")]


def node() -> str:
    """Node is part of the toolchain here: its absence is a failure, never a skip."""
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not on PATH: the Node examples and their conformance run need it (install Node >= 18)")
    return found


def assert_all_catalogued(names: list[str]) -> None:
    unknown = [n for n in names if not catalogued(n)]
    assert not unknown, f"checks missing from CHECKS (and so from docs/PROTOCOL.md): {unknown}"


# -- real services pass -------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_every_python_service_passes_every_check_of_its_contract(service: str) -> None:
    report = run(service, python_service(service), timeout=10)
    assert report.ok, report.text()
    names = [c.name for c in report.checks]
    assert_all_catalogued(names)
    for method in load_contract(service)["methods"]:
        if method not in ("initialize", "ping", "shutdown"):
            assert report.get(f"methods.{method}.result_schema").outcome == Outcome.passed
    assert report.get("robustness.oversized_line").outcome == Outcome.skipped


def test_the_node_planning_service_passes_the_planning_contract() -> None:
    report = run("planning", [node(), str(NODE_PLANNER)], timeout=10)
    assert report.ok, report.text()
    assert report.failed == 0 and report.passed >= 25


def test_the_worker_manager_examples_run_in_the_kits_own_temporary_workspace_which_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    report = run("worker-manager", python_service("worker-manager"), timeout=10)
    assert report.ok, report.text()
    assert list(tmp_path.iterdir()) == []  # workspace, worker output and stderr logs all removed
    for service in SERVICES:  # no example names a fixed path of the caller's machine
        examples = [spec.get("examples") for spec in load_contract(service)["methods"].values()]
        assert "/tmp" not in json.dumps(examples), service
        # "." as a workspace or run_dir would be the caller's own directory; a scope_path is inside the kit's
        assert not [v for k, v in _fields(examples) if v == "." and k != "scope_path"], service


def _fields(value: Any, key: str = "") -> list[tuple[str, Any]]:
    """Every (field name, scalar value) pair in ``value``, at any depth (list items keep the list's name)."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _fields(v, str(k))]
    if isinstance(value, list):
        return [pair for v in value for pair in _fields(v, key)]
    return [(key, value)]


# -- broken services fail, naming the check -----------------------------------------------------


def test_a_log_line_on_stdout_fails_framing_and_nothing_else() -> None:
    report = run("planning", fixture("stdout_log"), timeout=10)
    assert report.failures() == ["framing.one_message_per_line"]
    assert "planning: decomposing" in report.get("framing.one_message_per_line").detail


def test_a_result_of_the_wrong_shape_fails_that_methods_result_schema() -> None:
    report = run("planning", fixture("wrong_result_shape"), timeout=10)
    check = report.get("methods.decompose_plan.result_schema")
    assert check.outcome == Outcome.failed
    assert "'plan' is a required property" in check.detail
    assert report.get("methods.decompose_plan.invalid_params").outcome == Outcome.passed
    assert report.get("methods.decompose.result_schema").outcome == Outcome.passed
    assert report.get("methods.refine.result_schema").outcome == Outcome.failed  # its example needs the plan
    assert report.get("framing.one_message_per_line").outcome == Outcome.passed


def test_a_service_dying_on_malformed_json_fails_parse_error_first_and_then_everything_after() -> None:
    report = run("planning", fixture("dies_on_malformed_json"), timeout=10)
    failures = report.failures()
    assert failures[0] == "errors.parse_error"
    assert "exit status 1" in report.get("errors.parse_error").detail
    assert "lifecycle.shutdown" in failures
    assert report.get("methods.decompose.result_schema").outcome == Outcome.passed  # before the garbage


def test_notifications_with_an_id_undeclared_or_off_schema_each_fail_their_own_check() -> None:
    report = run("worker-manager", fixture("rogue_notifications"), timeout=10)
    assert report.failures() == ["notifications.declared", "notifications.no_id", "notifications.params_schema"]
    assert "progress" in report.get("notifications.declared").detail
    assert "'worker_id' is a required property" in report.get("notifications.params_schema").detail


def test_a_program_that_cannot_start_fails_lifecycle_start() -> None:
    report = run("planning", ["/nonexistent/harness-planning"], timeout=5)
    assert report.failures() == ["lifecycle.start"]
    assert "cannot start" in report.get("lifecycle.start").detail


# -- the command line ---------------------------------------------------------------------------


def test_main_prints_one_line_per_check_and_a_summary_and_exits_1_when_a_check_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["planning", "--timeout", "10", "--", *fixture("stdout_log")])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert all(re.match(r"^(PASS|FAIL|SKIP) [a-z_]+(\.[a-z_]+)+(: .*)?$", line) for line in out[:-1]), out
    assert re.fullmatch(r"\d+ passed, 1 failed, 1 skipped", out[-1])
    assert any(line.startswith("FAIL framing.one_message_per_line: ") for line in out)


def test_main_json_report_lists_every_check_and_exits_0_when_all_pass(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["planning", "--json", "--", *python_service("planning")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["service"] == "planning" and report["command"] == python_service("planning")
    assert report["failed"] == 0 and report["passed"] == sum(
        1 for c in report["checks"] if c["passed"] and not c["skipped"]
    )
    assert set(report["checks"][0]) == {"name", "passed", "skipped", "detail"}


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["planning"],
        ["planning", "--"],
        ["no-such-service", "--", "true"],
        ["planning", "--timeout", "0", "--", "true"],
        ["planning", "--timeout", "soon", "--", "true"],
        ["planning", "--bogus", "--", "true"],
    ],
)
def test_bad_usage_returns_2_with_a_message_on_stderr_and_runs_nothing(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: harness conformance SERVICE" in captured.err


# -- what the kit sends -------------------------------------------------------------------------


def test_placeholders_take_fields_of_earlier_results_and_the_kits_workspace() -> None:
    results: dict[str, Any] = {"decompose_plan": {"plan": {"tasks": [{"id": "t1"}, {"id": "t2"}]}}}
    example = {
        "plan": "$decompose_plan.plan",
        "id": "$decompose_plan.plan.tasks.1.id",
        "where": f"{WORKSPACE}/run",
        "root": WORKSPACE,
        "price": "$5",
    }
    filled = substitute(example, results, "/ws")
    assert filled == {
        "plan": results["decompose_plan"]["plan"],
        "id": "t2",
        "where": "/ws/run",
        "root": "/ws",
        "price": "$5",
    }
    assert example["root"] == WORKSPACE  # the contract's data is not modified


def test_placeholders_index_into_a_result_that_is_a_list() -> None:
    results: dict[str, Any] = {"decompose": [{"id": "t1", "depends_on": []}, {"id": "t2", "depends_on": ["t1"]}]}
    filled = substitute({"first": "$decompose.0", "dep": "$decompose.1.depends_on.0"}, results, "/ws")
    assert filled == {"first": results["decompose"][0], "dep": "t1"}
    with pytest.raises(Unresolved):
        substitute({"x": "$decompose.2.id"}, results, "/ws")


@pytest.mark.parametrize(
    "placeholder", ["$refine.plan", "$decompose_plan.report", "$decompose_plan.plan.tasks.7.id", "$decompose.plan"]
)
def test_a_placeholder_naming_a_missing_call_or_field_is_unresolved(placeholder: str) -> None:
    with pytest.raises(Unresolved):
        substitute({"x": placeholder}, {"decompose_plan": {"plan": {"tasks": []}}, "decompose": []}, "/ws")


@pytest.mark.parametrize("service", SERVICES)
def test_every_method_with_params_gets_a_probe_its_own_schema_rejects(service: str) -> None:
    for method, spec in load_contract(service)["methods"].items():
        if method in ("initialize", "ping", "shutdown") or spec["params"] == "Empty":
            continue
        probe = invalid_params(spec["params"])
        assert probe is not None, method
        assert schema_problems(spec["params"], probe), method


def test_every_catalogued_check_is_documented_in_the_protocol() -> None:
    text = (ROOT / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    for name in CHECKS:
        assert f"| `{name}` |" in text, name


# -- the protocol document ----------------------------------------------------------------------


def test_protocol_md_is_what_the_generator_makes_from_contracts_and_schemas() -> None:
    assert protocol_doc.main(["--check"]) == 0, "docs/PROTOCOL.md is stale: run `python -m harness.protocol_doc`"


def test_protocol_doc_check_reports_drift_and_writing_fixes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "PROTOCOL.md"
    target.write_text("# hand-edited\n", encoding="utf-8")
    assert protocol_doc.main(["--check", "--output", str(target)]) == 1
    assert "drift" in capsys.readouterr().err
    assert protocol_doc.main(["--output", str(target)]) == 0
    assert protocol_doc.main(["--check", "--output", str(target)]) == 0


def test_the_protocol_names_every_method_notification_and_error_code_of_every_contract() -> None:
    text = protocol_doc.generate()
    for service in SERVICES:
        contract = load_contract(service)
        for method in contract["methods"]:
            assert f"[`{method}`]" in text, (service, method)
        for note in contract.get("notifications") or {}:
            assert f"### {service} · `{note}`" in text
        for code in contract.get("errors") or {}:
            assert f"| {code} |" in text
