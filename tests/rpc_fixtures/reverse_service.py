"""Answers requests out of order: collects ``batch`` requests, then replies last one first.

``python reverse_service.py BATCH``. Written on the stdlib alone, as a service in another stack
would be; each reply is ``{"value": <params.value>}`` for the request with that id.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    batch = int(sys.argv[1])
    held: list[dict] = []
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        msg = json.loads(line)
        held.append(msg)
        if len(held) < batch:
            continue
        for req in reversed(held):
            reply = {"jsonrpc": "2.0", "id": req["id"], "result": {"value": (req.get("params") or {}).get("value")}}
            out.write(json.dumps(reply).encode() + b"\n")
        out.flush()
        held.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
