"""The planning service behind a read loop that parses each line itself and dies on bad JSON."""

from __future__ import annotations

import json
import os
import sys
import threading

from harness.rpc import LineWriter
from harness.services.planning.service import build_server


def main() -> int:
    server = build_server()
    wire = os.dup(1)
    os.dup2(2, 1)
    read_end, write_end = os.pipe()
    serving = threading.Thread(target=server.serve, args=(os.fdopen(read_end, "rb"), LineWriter(wire)), daemon=True)
    serving.start()
    with os.fdopen(write_end, "wb", buffering=0) as feed:
        for line in sys.stdin.buffer:
            if line.strip():
                json.loads(line)  # the bug: a JSONDecodeError ends the process
            feed.write(line)
    serving.join(10.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
