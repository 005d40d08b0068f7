"""
The C{clusternet} command: helpers users want at hand beside C{twist}.

Each subcommand registers itself in L{COMMANDS} with a function that adds its
arguments and one that runs it.  Failures print one line on stderr and exit
non-zero; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from attrs import frozen

from clusternet._version import __version__

__all__ = ["COMMANDS", "Command", "CommandError", "main"]


class CommandError(Exception):
    """
    A failure to report as one line, with an exit status.
    """

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@frozen
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _configure_version(parser: argparse.ArgumentParser) -> None:
    pass


def _run_version(args: argparse.Namespace) -> int:
    print(f"clusternet {__version__}")
    return 0


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--children", type=int, default=2, help="child clusters to start (default 2)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit after showing the fleet works (0 when it does) instead of running",
    )
    parser.add_argument(
        "--data-dir",
        default="clusternet-demo",
        help="folder for the clusters' state, certificates and logs "
        "(default ./clusternet-demo; emptied at start)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=100.0,
        help="seconds to wait for every child to be Ready (default 100)",
    )


def _run_demo(args: argparse.Namespace) -> int:
    from clusternet.demo import DemoError, run_demo

    try:
        return run_demo(args)
    except DemoError as e:
        raise CommandError(str(e)) from None


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> None:
    COMMANDS[command.name] = command


register(Command("version", "print the version", _configure_version, _run_version))
register(
    Command(
        "demo",
        "run a parent, the hub and child clusters on this machine, then kubectl "
        "through the parent",
        _configure_demo,
        _run_demo,
    )
)


def _load_commands() -> None:
    """
    Import the modules that contribute subcommands.
    """
    for module in (
        "clusternet._cli_fleet",
        "clusternet._cli_approval",
        "clusternet.sandbox._cli",
    ):
        try:
            __import__(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = argparse.ArgumentParser(
        prog="clusternet",
        description=(
            "Helpers for clusternet. The hub and the agent themselves run under "
            "twist: `twist clusternet-hub --help`, `twist clusternet-agent --help`."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"clusternet {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        sub = commands.add_parser(
            command.name, help=command.help, description=command.help
        )
        command.configure(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args))
    except CommandError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
