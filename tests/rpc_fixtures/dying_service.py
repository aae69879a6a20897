"""A service that dies: ``die`` ends the process at once without answering (exit status 3)."""

from __future__ import annotations

import os
import sys
from typing import Any

from harness.rpc import Server


def main() -> int:
    server = Server("dying-fixture", "0.0.1")

    @server.method()
    def die() -> dict[str, Any]:
        os._exit(3)

    return server.run_stdio()


if __name__ == "__main__":
    sys.exit(main())
