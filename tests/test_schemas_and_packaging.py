"""One source for every schema, contracts that point at real schemas, and an installable package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

import harness.rpc
from harness import schemagen
from harness.resources import SERVICES, load_contract, load_schema

ROOT = Path(__file__).resolve().parents[1]


def test_schemas_on_disk_match_the_models_exactly() -> None:
    assert schemagen.drift(ROOT / "schemas") == [], "run: python -m harness.schemagen"


def test_every_schema_is_a_valid_draft_2020_12_schema() -> None:
    for path in (ROOT / "schemas").glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(load_schema(path.stem))


def test_every_contract_names_existing_schemas_and_known_error_codes() -> None:
    for service in SERVICES:
        contract = load_contract(service)
        assert contract["service"] == service
        methods = contract["methods"]
        assert {"initialize", "ping", "shutdown"} <= set(methods)
        for name, spec in methods.items():
            for key in ("params", "result"):
                load_schema(spec[key])  # KeyError if the schema does not exist
            for code in spec.get("errors", []):
                assert code in contract["errors"], (service, name, code)
                assert code in harness.rpc.CODE_NAMES, code
        for spec in (contract.get("notifications") or {}).values():
            load_schema(spec["params"])


def test_every_contract_method_is_served_by_its_service() -> None:
    from harness.services.bootstrap import build_server as bootstrap_server
    from harness.services.planning.service import build_server as planning_server
    from harness.services.worker_manager._service import build_server as wm_server

    servers = {"planning": planning_server(), "bootstrap": bootstrap_server(), "worker-manager": wm_server()[0]}
    for service, server in servers.items():
        assert set(load_contract(service)["methods"]) == set(server.method_names), service


def test_a_seed_style_task_packet_stays_valid() -> None:
    seed = {
        "id": "t1",
        "objective": "Fix the login redirect",
        "scope": "single_file",
        "scope_path": "src/login.py",
        "acceptance_tests": ["pytest tests/test_login.py"],
        "commit_policy": "single_commit",
        "escalation_policy": "ask_on_failure",
    }
    jsonschema.validate(seed, load_schema("TaskPacket"))
    for scope in ("workspace", "module", "single_file", "custom"):
        jsonschema.validate({**seed, "scope": scope}, load_schema("TaskPacket"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**seed, "scope": "galaxy"}, load_schema("TaskPacket"))


def test_the_example_plans_are_valid_plan_files() -> None:
    from harness.planfile import load_plan_file

    plan = load_plan_file(ROOT / "examples" / "demo" / "plan.yaml")
    assert len(plan.tasks) >= 4 and all(t.acceptance_tests for t in plan.tasks)


def test_rpc_public_names_are_complete() -> None:
    public = {n for n in dir(harness.rpc) if not n.startswith("_") and n not in {"annotations"}}
    modules = {n for n in public if type(getattr(harness.rpc, n)).__name__ == "module"}
    assert public - modules == set(harness.rpc.__all__)


def test_help_imports_nothing_heavy() -> None:
    code = "import sys, harness.cli; harness.cli.build_parser(); print(sorted(m for m in ('pydantic', 'jsonschema', 'yaml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.slow
def test_a_built_wheel_carries_the_services_schemas_and_contracts(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("harness-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "harness/services/planning/__main__.py",
        "harness/services/bootstrap/__main__.py",
        "harness/services/worker_manager/__main__.py",
        "harness/schemas/TaskPacket.json",
        "harness/contracts/planning.yaml",
        "harness/contracts/worker-manager.yaml",
        "harness/rpc/_server.py",
        "harness/supervisor/_run.py",
    ):
        assert required in names, required
    local_packages = {
        str(p.parent.relative_to(ROOT / "src")).replace("/", ".")
        for p in (ROOT / "src" / "harness").rglob("__init__.py")
    }
    local_packages |= {"harness.services." + p.parent.name for p in (ROOT / "services").glob("*/__init__.py")}
    for package in local_packages:
        assert package.replace(".", "/") + "/__init__.py" in names, f"{package} is missing from pyproject's packages"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("harness =", "harness-planning =", "harness-bootstrap =", "harness-worker-manager ="):
        assert script in scripts
    assert yaml.safe_load(zipfile.ZipFile(wheel).read("harness/contracts/planning.yaml"))["service"] == "planning"
