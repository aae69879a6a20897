"""harness: plan, gate, bootstrap, execute, recover and log, over line-delimited JSON-RPC."""

__version__ = "0.1.0"
