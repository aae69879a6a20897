"""A small service on harness.rpc.Server, used by the client and server tests.

``python echo_service.py [--max-line N]``. Methods:

* ``echo {value}``        -> ``{"value": value}`` (typed params, answered inline)
* ``echo_blocking {value}`` -> the same, on the server's thread pool
* ``emit {count}``        -> sends ``count`` ``tick`` notifications first, then ``{"sent": count}``
* ``hold``                -> blocks the read loop until the process receives SIGUSR1 (at most 20 s),
  so a test can time a request out and then release its late response deterministically
* ``big {size}``          -> ``{"blob": "x" * size}``
* ``noisy``               -> writes to stdout three ways (print, fd 1, a child process)
* ``crash``               -> raises RuntimeError
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.rpc import Server

HOLD_LIMIT_SECONDS = 20.0


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Any = None


class EmitParams(BaseModel):
    count: int = Field(ge=0, le=10_000)


class BigParams(BaseModel):
    size: int = Field(ge=0)


def build(max_line: int | None = None) -> Server:
    server = Server("echo-fixture", "0.0.1", notifications=["tick"], max_line=max_line)  # None: the default

    @server.method()
    def echo(params: EchoParams) -> dict[str, Any]:
        return {"value": params.value}

    @server.method(blocking=True)
    def echo_blocking(params: EchoParams) -> dict[str, Any]:
        return {"value": params.value}

    @server.method()
    def emit(params: EmitParams) -> dict[str, Any]:
        for i in range(params.count):
            server.notify("tick", {"i": i})
        return {"sent": params.count}

    @server.method()
    def hold() -> dict[str, Any]:
        got = signal.sigtimedwait({signal.SIGUSR1}, HOLD_LIMIT_SECONDS)
        return {"released": got is not None}

    @server.method()
    def big(params: BigParams) -> dict[str, Any]:
        return {"blob": "x" * params.size}

    @server.method()
    def noisy() -> dict[str, Any]:
        print("noise from print")
        os.write(1, b"noise written to fd 1\n")
        subprocess.run([sys.executable, "-c", "print('noise from a child process')"], timeout=10, check=True)
        return {"ok": True}

    @server.method()
    def crash() -> dict[str, Any]:
        raise RuntimeError("handler bug")

    return server


def main() -> int:
    # Blocked before any thread starts, so SIGUSR1 stays pending until ``hold`` collects it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-line", type=int, default=None)
    args = parser.parse_args()
    return build(args.max_line).run_stdio()


if __name__ == "__main__":
    sys.exit(main())
