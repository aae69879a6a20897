"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): a plan approved by a
click, an escalation skipped, a run driven by another process followed live, no token no page, a
`<script>` title shown as text. Screenshots of the pages go to test-artifacts/ui/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import MEASURABLE_RECOVERY, events, harness, latest_run, wait_for_log, write_config, write_plan

pytest.importorskip("starlette", reason="the dashboard's tests need the ui extra: pip install -e '.[ui]'")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need Playwright for Python: pip install -e '.[test]'"
)
from test_ui import EVIL, escalated_run, gate_run, run_ids, session_ended, the_new_run  # noqa: E402
from ui_support import dashboard  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("HARNESS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip(
        "no Chromium to drive: install Debian's (apt-get install chromium) or set HARNESS_CHROMIUM",
        allow_module_level=True,
    )

ARTIFACTS = Path(os.environ.get("HARNESS_TEST_ARTIFACTS") or Path(__file__).parent.parent / "test-artifacts") / "ui"
#: Chromium as root in a container, with nothing reaching out to the network on its own.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    tab = context.new_page()

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    tab.dialogs = dialogs
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def release_run(ws: Path) -> str:
    """A six-task release plan waiting at the gate, run two at a time; `unit` fails once with a
    transient error and is retried after a backoff."""
    write_config(ws, recovery=MEASURABLE_RECOVERY)
    flaky = 'test -f build/flaky || { touch build/flaky; echo "connection reset by peer" >&2; exit 1; }'
    tasks = [
        {
            "id": "setup",
            "title": "Prepare the build folder",
            "commands": ["mkdir -p build"],
            "acceptance_tests": ["test -d build"],
        },
        {
            "id": "lint",
            "title": "Lint the sources",
            "depends_on": ["setup"],
            "commands": ["echo clean > build/lint.txt"],
            "acceptance_tests": ["test -s build/lint.txt"],
        },
        {
            "id": "unit",
            "title": "Run the unit tests",
            "depends_on": ["setup"],
            "commands": [f"{flaky}; echo ok > build/unit.txt"],
            "acceptance_tests": ["grep -q ok build/unit.txt"],
        },
        {
            "id": "docs",
            "title": "Build the docs",
            "depends_on": ["setup"],
            "commands": ["sleep 0.3; echo docs > build/docs.txt"],
            "acceptance_tests": ["test -s build/docs.txt"],
        },
        {
            "id": "package",
            "title": "Package the release",
            "depends_on": ["lint", "unit", "docs"],
            "commands": ["cat build/*.txt > build/package.txt"],
            "acceptance_tests": ["grep -q docs build/package.txt"],
        },
        {
            "id": "notes",
            "title": "Write the release notes",
            "depends_on": ["package"],
            "commands": ["echo notes > build/NOTES.md"],
            "acceptance_tests": ["test -s build/NOTES.md"],
        },
    ]
    plan = write_plan(ws, tasks, objective="Release the demo package")
    before = run_ids(ws)
    done = harness(ws, "run", "--plan", str(plan), "--parallel", "2")
    assert done.returncode == 3, done.stdout + done.stderr
    return the_new_run(ws, before)


def test_a_plan_waiting_at_the_gate_is_approved_by_a_click_and_the_run_completes(ws: Path, page: Any) -> None:
    other = escalated_run(ws)  # a second run waiting, for the runs page's picture
    run_id = release_run(ws)  # last: the plan file is this run's (resume refuses a run whose file changed)
    with dashboard(ws) as board:
        page.goto(board.url)
        rows = page.locator("tr.run")
        sync_api.expect(rows).to_have_count(2)
        assert [rows.nth(i).get_attribute("data-run") for i in range(2)] == [run_id, other]  # the newest first
        row = page.locator(f'tr[data-run="{run_id}"]')
        sync_api.expect(row).to_contain_text("waits for plan")
        row.get_by_role("link", name=run_id).click()
        sync_api.expect(page.locator(".question.kind-plan h2")).to_contain_text("waits for approval")
        page.fill(".question.kind-plan input[name=approver]", "alice")
        page.click(".question.kind-plan button[data-answer=approve]")
        sync_api.expect(page.locator(".flash")).to_contain_text("resumed in the background")
        # The live stream marks the run completed, then reloads the page (without the flash's query).
        sync_api.expect(page.locator("#run-status")).to_have_text("completed", timeout=WAIT_MS)
        page.wait_for_url(f"{board.base}/runs/{run_id}", timeout=WAIT_MS)
        sync_api.expect(page.locator('#dag g[data-task="notes"].node.state-completed.critical')).to_have_count(1)
        assert page.locator("#timeline rect.wait-backoff").count() == 1  # unit's retry waited
        assert page.locator('#timeline g[data-task="unit"] rect.bar').count() == 2  # two attempts
        shoot(page, "run.png")
        page.goto(board.base + "/")
        shoot(page, "runs.png")
    evts = events(ws, run_id)
    approved = [e["data"] for e in evts if e["type"] == "GATE_APPROVED"]
    assert [(a["source"], a["approver"]) for a in approved] == [("ui", "alice")]
    assert evts[[e["type"] for e in evts].index("EXECUTION_COMPLETE")]["data"]["status"] == "completed"
    assert (ws / "build" / "NOTES.md").exists()
    assert [e["data"]["attempt"] for e in evts if e["type"] == "TASK_STARTED" and e["task_id"] == "unit"] == [1, 2]
    assert page.dialogs == []


def test_an_escalation_is_answered_skip_in_the_browser(ws: Path, page: Any) -> None:
    run_id = escalated_run(ws)
    with dashboard(ws) as board:
        page.goto(f"{board.base}/runs/{run_id}?token={board.token}")
        question = page.locator(".question.kind-escalation")
        sync_api.expect(question).to_contain_text("invalid_input")
        sync_api.expect(question.locator("button")).to_have_text(["Retry", "Skip", "Abort"])
        shoot(page, "run-waiting.png")
        question.locator("textarea[name=note]").fill("the input is not needed")
        question.locator("button[data-answer=skip]").click()
        sync_api.expect(page.locator("#run-status")).to_have_text("completed", timeout=WAIT_MS)
        wait_for_log(ws, session_ended, 60)
    decision = next(e["data"] for e in events(ws, run_id) if e["type"] == "TASK_DECISION")
    assert (decision["decision"], decision["source"], decision["approver"], decision["note"]) == (
        "skip",
        "ui",
        "tester",
        "the input is not needed",
    )


def test_the_live_stream_shows_a_run_that_another_process_drives(ws: Path, page: Any) -> None:
    write_config(ws)
    hold = "i=0; while [ ! -f go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; test -f go"
    plan = write_plan(
        ws,
        [
            {"id": "wait", "title": "Wait for the signal", "commands": [hold], "acceptance_tests": ["test -f go"]},
            {"id": "then", "title": "Then", "depends_on": ["wait"], "commands": ["true"], "acceptance_tests": ["true"]},
        ],
    )
    driver = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--plan", str(plan), "--approve", "--workspace", str(ws)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "CI": "true"},
    )
    try:
        wait_for_log(ws, lambda evts: any(e["type"] == "TASK_STARTED" for e in evts))
        run_id = latest_run(ws)
        with dashboard(ws) as board:
            page.goto(f"{board.base}/runs/{run_id}?token={board.token}")
            sync_api.expect(page.locator("#live")).to_have_class("live on")
            # running and on the critical path (the page or the stream may have set either class last)
            sync_api.expect(page.locator('#dag g[data-task="wait"].node.state-running.critical')).to_have_count(1)
            (ws / "go").write_text("")  # the other process's task finishes now
            completed = page.locator("#events tbody tr", has_text="TASK_COMPLETED").first
            sync_api.expect(completed).to_be_visible(timeout=WAIT_MS)
            sync_api.expect(page.locator("#run-status")).to_have_text("completed", timeout=WAIT_MS)
            assert driver.wait(timeout=60) == 0
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


def test_no_token_no_page(ws: Path, page: Any) -> None:
    gate_run(ws)
    with dashboard(ws) as board:
        response = page.goto(board.base + "/")
        assert response is not None and response.status == 403
        assert "Demonstrate" not in page.content()


def test_a_script_in_a_title_is_shown_as_text(ws: Path, page: Any) -> None:
    run_id = gate_run(ws, title=EVIL)
    with dashboard(ws) as board:
        page.goto(f"{board.base}/runs/{run_id}?token={board.token}")
        sync_api.expect(page.locator("h1.objective")).to_have_text(f"Demonstrate {EVIL} safely")
        sync_api.expect(page.locator("#events")).to_contain_text(EVIL)
        page.goto(f"{board.base}/runs/{run_id}/tasks/one")
        sync_api.expect(page.locator("h1")).to_have_text(EVIL)
        assert page.evaluate("document.querySelectorAll('script').length") == 1  # ours alone
    assert page.dialogs == []
    assert harness(ws, "status", run_id).returncode == 0
