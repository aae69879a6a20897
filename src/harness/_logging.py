"""Diagnostics go to stderr through ``logging``, at the level ``HARNESS_LOG_LEVEL`` names.

Kept free of heavy imports: the CLI configures it before it knows which command runs.
"""

from __future__ import annotations

import logging
import os
import sys

#: The environment variable naming the log level (``DEBUG``, ``INFO``, ``WARNING``, ...).
LOG_LEVEL_ENV = "HARNESS_LOG_LEVEL"


def configure_logging() -> None:
    """Send this process's log records to stderr, at the level ``HARNESS_LOG_LEVEL`` names
    (WARNING when unset or not a level name). Called once by each entry point (the CLI and every
    service) before it works: a service never logs to stdout, which is the JSON-RPC wire."""
    name = os.environ.get(LOG_LEVEL_ENV, "").strip().upper()
    level = logging.getLevelNamesMapping().get(name, logging.WARNING)
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
