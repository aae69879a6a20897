"""The three harness services, each a standalone JSON-RPC program on stdin/stdout.

Installed as ``harness.services``: ``python -m harness.services.planning`` and so on.
"""
