"""One version everywhere, and service diagnostics on stderr through logging, never on the wire."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

import harness

SERVICE_MODULES = ("planning", "bootstrap", "worker_manager")
REQUEST = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}\n'

#: A service whose one method is a bug: the server answers -32603 and logs the failure.
CRASHING_SERVICE = """
from harness.rpc import Server, configure_logging

configure_logging()
server = Server("crashy", "0")

def crash() -> None:
    raise KeyError("handler bug")

server.add_method("crash", crash)
raise SystemExit(server.run_stdio())
"""


def run(argv: list[str], stdin: bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=30, env={**os.environ, **env})


def test_the_package_metadata_carries_the_version_defined_in_the_package() -> None:
    assert importlib.metadata.version("harness") == harness.__version__


@pytest.mark.parametrize("module", SERVICE_MODULES)
def test_every_service_reports_the_package_version_in_initialize(module: str) -> None:
    proc = run([sys.executable, "-m", f"harness.services.{module}"], REQUEST)
    assert proc.returncode == 0, proc.stderr
    (reply,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert reply["result"]["version"] == harness.__version__


def test_a_handler_failure_is_logged_to_stderr_and_only_the_reply_reaches_stdout() -> None:
    proc = run([sys.executable, "-c", CRASHING_SERVICE], b'{"jsonrpc":"2.0","id":7,"method":"crash"}\n')
    assert proc.returncode == 0, proc.stderr
    (reply,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert (reply["id"], reply["error"]["code"]) == (7, -32603)
    err = proc.stderr.decode()
    assert "harness.rpc._server ERROR crashy: internal error: KeyError" in err
    assert "Traceback" not in err  # tracebacks only at DEBUG


def test_harness_log_level_debug_adds_the_traceback_and_an_unknown_level_means_warning() -> None:
    request = b'{"jsonrpc":"2.0","id":1,"method":"crash"}\n'
    debug = run([sys.executable, "-c", CRASHING_SERVICE], request, HARNESS_LOG_LEVEL="debug")
    assert "Traceback" in debug.stderr.decode() and b"Traceback" not in debug.stdout
    unknown = run([sys.executable, "-c", CRASHING_SERVICE], request, HARNESS_LOG_LEVEL="loud")
    assert unknown.returncode == 0
    assert "internal error: KeyError" in unknown.stderr.decode()
    assert "Traceback" not in unknown.stderr.decode()


#: The ``harness`` command's entry point, with an exit function of our own registered first.
ENTRY = """
import atexit, sys
atexit.register(lambda: sys.stdout.write("exit functions ran\\n"))
from harness.cli import entry
entry()
"""


def test_the_harness_command_exits_fast_yet_flushes_output_runs_exit_functions_and_keeps_its_code(
    tmp_path: os.PathLike[str],
) -> None:
    ok = subprocess.run(
        [sys.executable, "-c", ENTRY, "status", "--workspace", str(tmp_path)], capture_output=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.decode() == f"No runs in {tmp_path}.\nexit functions ran\n"
    bad = subprocess.run(
        [sys.executable, "-c", ENTRY, "log", "nope", "--workspace", str(tmp_path)], capture_output=True, timeout=60
    )
    assert bad.returncode == 2
    assert "no run 'nope'" in bad.stderr.decode() and bad.stdout.decode() == "exit functions ran\n"
