# ruff: noqa: E501  (long human-readable messages and descriptions, kept verbatim)
"""
C{clusternet sandbox apiserver}: run a sandbox API server in the foreground.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from clusternet.cli import Command, CommandError, register

__all__: list[str] = []


_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind
_DNS_NAME = re.compile(
    r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def serving_names(host: str, tls_sans: Iterable[str]) -> tuple[str, ...]:
    """
    The extra names of the serving certificate: the listening C{host} (unless it
    is a wildcard address) and every C{--tls-san}, in order, without repeats.

    @raise ValueError: a name is empty or not a plausible DNS name or address.
    """
    names: list[str] = [] if host in _WILDCARDS else [host]
    names.extend(tls_sans)
    for name in names:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            if not _DNS_NAME.fullmatch(name):
                raise ValueError(
                    "--host and --tls-san must be DNS names or IP addresses, "
                    f"not {name!r}"
                ) from None
    return tuple(dict.fromkeys(names))


def _configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    apiserver = actions.add_parser(
        "apiserver",
        help="serve a small Kubernetes API server on 127.0.0.1",
        description="Serve a small Kubernetes API server (HTTPS, self-made CA) that kubectl and the kubernetes client work against.",
    )
    apiserver.add_argument(
        "--port",
        type=int,
        default=0,
        help="TCP port on 127.0.0.1; 0 picks a free one (default 0)",
    )
    apiserver.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1); the serving certificate names it too, unless it is 0.0.0.0 or ::",
    )
    apiserver.add_argument(
        "--tls-san",
        action="append",
        default=[],
        metavar="HOST",
        help="another DNS name or IP address for the serving certificate (besides 127.0.0.1, ::1, localhost, kubernetes.default.svc, ...); repeatable; an existing certificate in --data-dir that lacks one is issued again",
    )
    apiserver.add_argument(
        "--data-dir",
        required=True,
        help="directory for certificates, admin.kubeconfig and state",
    )
    apiserver.add_argument(
        "--name",
        default="sandbox",
        help="cluster name in the kubeconfig (default sandbox)",
    )
    apiserver.add_argument(
        "--version",
        dest="git_version",
        default="v1.32.0",
        help="gitVersion reported by /version (default v1.32.0)",
    )
    apiserver.add_argument(
        "--platform",
        default=None,
        help="platform reported by /version (default: this machine's, e.g. linux/amd64)",
    )
    apiserver.add_argument(
        "--watch-history",
        type=int,
        default=10000,
        help="events kept per resource for watches (default 10000)",
    )
    apiserver.add_argument(
        "--anonymous-auth",
        nargs="?",
        const="true",
        default="false",
        choices=("true", "false"),
        help="answer requests without credentials as system:anonymous (group system:unauthenticated) instead of 401 (default false; --anonymous-auth alone means true)",
    )
    apiserver.add_argument(
        "--aggregate",
        action="append",
        default=[],
        metavar="GROUP/VERSION=https://127.0.0.1:PORT",
        help="serve GROUP/VERSION from this backend (front-proxy client certificate, X-Remote-* headers, no server verification), overriding any APIService; repeatable",
    )
    apiserver.add_argument(
        "--token-auth-file",
        default=None,
        help='static bearer tokens, a CSV file as kube-apiserver reads it: token,user,uid[,"group1,group2"]',
    )


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "action", None) != "apiserver":
        raise CommandError(
            "usage: clusternet sandbox apiserver --data-dir DIR [--port N]", status=2
        )
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be 0..65535, not {args.port}", status=2)
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from clusternet.sandbox._aggregator import parse_aggregate_flag
    from clusternet.sandbox._server import load_or_create_material, make_sandbox
    from clusternet.sandbox.auth import parse_token_file

    aggregate: dict[tuple[str, str], str] = {}
    for text in args.aggregate:
        try:
            group, version, url = parse_aggregate_flag(text)
        except ValueError as e:
            raise CommandError(str(e), status=2) from None
        aggregate[(group, version)] = url
    static_tokens = None
    if args.token_auth_file:
        try:
            static_tokens = parse_token_file(
                Path(args.token_auth_file).read_text(encoding="utf-8")
            )
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise CommandError(
                f"cannot read --token-auth-file {args.token_auth_file}: {e}", status=2
            ) from None

    try:
        sans = serving_names(args.host, args.tls_san)
    except ValueError as e:
        raise CommandError(str(e), status=2) from None

    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(sys.stderr)], redirectStandardIO=False
    )
    try:
        # The server loads this material again; made here, it names every host.
        load_or_create_material(Path(args.data_dir), sans)
        server = make_sandbox(
            reactor,
            Path(args.data_dir),
            port=args.port,
            host=args.host,
            name=args.name,
            git_version=args.git_version,
            platform=args.platform,
            history=args.watch_history,
            anonymous=args.anonymous_auth == "true",
            static_tokens=static_tokens,
            aggregate=aggregate,
        )
    except (OSError, ValueError) as e:
        raise CommandError(f"cannot prepare {args.data_dir}: {e}") from None
    failed: list[BaseException] = []

    def start() -> None:
        try:
            server.startService()
        except Exception as e:
            failed.append(e)
            reactor.stop()
            return
        print(
            f"sandbox {args.name} serving on {server.url}; kubeconfig {server.material.kubeconfig_path}",
            flush=True,
        )

    def stop() -> object:
        if server.running:
            return server.stopService()
        return None

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    if failed:
        raise CommandError(f"sandbox apiserver failed to start: {failed[0]}")
    return 0


register(
    Command(
        "sandbox", "run the sandbox: a small Kubernetes API server", _configure, _run
    )
)
