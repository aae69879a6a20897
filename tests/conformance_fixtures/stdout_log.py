"""The planning service, served without fd 1 protection, logging to stdout on every decompose."""

from __future__ import annotations

import sys

from harness.rpc import LineWriter
from harness.services.planning.schemas import DecomposeParams, DecomposeTasks
from harness.services.planning.service import build_server, decompose


def chatty_decompose(params: DecomposeParams) -> DecomposeTasks:
    print(f"planning: decomposing {params.objective!r}", flush=True)  # the bug: stdout is the wire
    return decompose(params)


def main() -> int:
    server = build_server()
    server.add_method("decompose", chatty_decompose)
    server.serve(sys.stdin.buffer, LineWriter(1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
