"""``harness conformance SERVICE [--json] [--timeout S] -- COMMAND [ARGS...]``.

Exit status: 0 when every check passed, 1 when one failed, 2 for bad usage (a message on
stderr). The report goes to stdout: one line per check and a summary, or one JSON document.
"""

from __future__ import annotations

import argparse
import sys

from harness.resources import SERVICES

from ._kit import DEFAULT_TIMEOUT

USAGE = "harness conformance SERVICE [--json] [--timeout SECONDS] -- COMMAND [ARGS...]"


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage by raising, so ``main`` returns 2 instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Usage(message)


class _Usage(Exception):
    pass


def _parser() -> _Parser:
    parser = _Parser(
        prog="harness conformance", usage=USAGE, description="Check a service program against its contract."
    )
    parser.add_argument("service", choices=SERVICES, help="the contract to check against")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per request (default %(default)g)"
    )
    return parser


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Options before ``--``, the program's command after it; _Usage on any mistake."""
    if "--" not in argv:
        raise _Usage("the program to check goes after '--', e.g. -- node planning-service.js")
    cut = argv.index("--")
    command = argv[cut + 1 :]
    if not command:
        raise _Usage("no command after '--'")
    args = _parser().parse_args(argv[:cut])
    if not args.timeout > 0:
        raise _Usage("--timeout must be a positive number of seconds")
    return args, command


def main(argv: list[str]) -> int:
    """Run the kit as the CLI does; returns the exit status."""
    if argv and argv[0] in ("-h", "--help"):
        _parser().print_help()
        return 0
    try:
        args, command = parse(list(argv))
    except _Usage as exc:
        print(f"usage: {USAGE}\nharness conformance: error: {exc}", file=sys.stderr)
        return 2
    from ._kit import run

    report = run(args.service, command, timeout=args.timeout)
    sys.stdout.write(report.json() if args.json else report.text())
    sys.stdout.flush()
    return 0 if report.ok else 1
