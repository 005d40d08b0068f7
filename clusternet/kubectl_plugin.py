"""
C{kubectl clusternet}: the fleet commands of C{clusternet} as a kubectl plugin.

Installed as the C{kubectl-clusternet} console script, so kubectl finds it on
C{PATH} (C{kubectl plugin list}). kubectl runs it with the arguments after
C{clusternet} as they are and the user's own environment, so it reads
C{--kubeconfig}, C{--context} and C{$KUBECONFIG} itself, as kubectl would.

The commands are those of C{clusternet} (L{clusternet.cli.COMMANDS}): the same
options and the same code, under kubectl's conventions: C{--kubeconfig} and
C{--context} also before the command, errors as one C{error: ...} line on
stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from clusternet._version import __version__
from clusternet.cli import COMMANDS, CommandError, build_parser

__all__ = ["PLUGIN_COMMANDS", "PROG", "build_plugin_parser", "main"]

PROG = "kubectl clusternet"

# The subcommands kubectl users get, with examples for their --help.
PLUGIN_COMMANDS: dict[str, str] = {
    "get": """\
examples:
  # the child clusters: readiness, version, heartbeat, tunnel
  kubectl clusternet get clusters

  # with each tunnel's peer, streams and user, and the agent's parent URL
  kubectl clusternet get clusters -o wide

  # as data, for scripts
  kubectl clusternet get clusters -o json --context admin@parent
""",
    "kubeconfig": """\
examples:
  # a kubeconfig that reaches child-1 through the parent, with your credentials
  kubectl clusternet kubeconfig child-1 -o child-1.kubeconfig
  kubectl --kubeconfig child-1.kubeconfig get pods -A
""",
    "approve": """\
examples:
  # approve a waiting registration (hub run with --cluster-approval=manual)
  kubectl get clusterregistrationrequests
  kubectl clusternet approve edge-7
""",
    "deny": """\
examples:
  kubectl clusternet deny edge-7 --reason "not one of ours"
""",
    "version": "",
}

_DESCRIPTION = """\
Reach and list the child clusters of a clusternet parent.

The parent is the cluster of your kubeconfig, chosen as kubectl chooses it:
--kubeconfig, else the files of $KUBECONFIG (merged), else ~/.kube/config;
--context, else the current context.
"""

_EPILOG = """\
examples:
  kubectl clusternet get clusters -o wide
  kubectl clusternet kubeconfig child-1 -o child-1.kubeconfig

Use "kubectl clusternet COMMAND --help" for more about a command.
"""


class _Parser(argparse.ArgumentParser):
    """
    An C{ArgumentParser} that reports a usage error as kubectl does: one line
    C{error: ...} on stderr, exit status 1.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"error: {message} (see '{self.prog} --help')\n")


def build_plugin_parser() -> argparse.ArgumentParser:
    build_parser()  # registers every command
    parser = _Parser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"kubectl-clusternet {__version__}"
    )
    # Before the command, as `kubectl clusternet --context x get clusters`; the
    # command's own copies (L{clusternet._cli_fleet.configure_parent}) win.
    parser.add_argument(
        "--kubeconfig",
        dest="global_kubeconfig",
        metavar="KUBECONFIG",
        help="the parent's kubeconfig (also after the command)",
    )
    parser.add_argument(
        "--context",
        dest="global_context",
        metavar="CONTEXT",
        help="context of the parent kubeconfig (also after the command)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, examples in PLUGIN_COMMANDS.items():
        command = COMMANDS[name]
        sub = commands.add_parser(
            name,
            help=command.help,
            description=command.help,
            epilog=examples or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.configure(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_plugin_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    for name in ("kubeconfig", "context"):
        if getattr(args, name, None) is None:
            setattr(args, name, getattr(args, f"global_{name}"))
    try:
        return int(args._run(args))
    except CommandError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
