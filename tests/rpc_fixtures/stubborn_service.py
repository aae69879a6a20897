"""A child that ignores stdin EOF and, unless ``--obey-sigterm`` is given, SIGTERM too.

It sends a ``ready`` notification once its signal disposition is set, then idles (bounded), never
reading stdin. Without ``--obey-sigterm`` only SIGKILL ends it.
"""

from __future__ import annotations

import signal
import sys
import time

IDLE_LIMIT_SECONDS = 30.0


def main() -> int:
    if "--obey-sigterm" not in sys.argv[1:]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdout.write('{"jsonrpc":"2.0","method":"ready"}\n')
    sys.stdout.flush()
    deadline = time.monotonic() + IDLE_LIMIT_SECONDS
    while time.monotonic() < deadline:  # never reads stdin, so its EOF goes unnoticed
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
