"""The worker manager, whose ping also sends three notifications that break the contract."""

from __future__ import annotations

import os
import sys
from typing import Any

from harness.rpc import LineWriter
from harness.services.worker_manager._service import build_server

ROGUE: list[dict[str, Any]] = [
    {"jsonrpc": "2.0", "method": "progress", "params": {"percent": 50}},  # not in the contract
    {"jsonrpc": "2.0", "id": "n-1", "method": "worker_event", "params": {}},  # carries an id
    {"jsonrpc": "2.0", "method": "worker_event", "params": {"event": "worker_spawned"}},  # fields missing
]


def main() -> int:
    server, _manager = build_server()
    wire = os.dup(1)
    os.dup2(2, 1)
    writer = LineWriter(wire)

    def ping() -> dict[str, Any]:
        for message in ROGUE:
            writer.send(message)
        return {}

    server.add_method("ping", ping)
    server.serve(sys.stdin.buffer, writer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
