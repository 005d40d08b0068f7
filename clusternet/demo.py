"""
The C{clusternet demo} command: a parent, the hub and children on this machine
(L{clusternet.fleet.Fleet}), then kubectl through the parent to each child.
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from clusternet.fleet import Fleet, FleetError

__all__ = ["DemoError", "run_demo"]

# The demo's errors are the fleet's.
DemoError = FleetError


MARKER = ".clusternet-demo"


def _fresh(data_dir: Path) -> None:
    """
    Empty a folder the demo made before; refuse any other non-empty folder.
    """
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).exists():
            raise DemoError(
                f"{data_dir} is not empty and was not made by the demo; "
                "choose another --data-dir"
            )
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("made by clusternet demo\n")


def run_demo(args: Any) -> int:
    """
    The C{clusternet demo} command.
    """
    data_dir = Path(args.data_dir).resolve()
    _fresh(data_dir)

    def terminated(number: int, frame: object) -> None:
        # Stop the fleet (the finally below) as on Ctrl-C, rather than dying and
        # leaving its processes behind.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)
    started = time.monotonic()
    fleet = Fleet(data_dir, args.children)
    try:
        fleet.start()
        fleet.say("Waiting for every child to register, be approved and be Ready:")
        fleet.wait_ready(args.timeout)
        fleet.say(
            f"All {args.children} children are Ready "
            f"({time.monotonic() - started:.0f}s).\n"
        )
        assert fleet.parent is not None
        parent = fleet.parent.kubeconfig
        for command in (("get", "clsrr"), ("get", "mcls", "-A"), ("get", "sockets")):
            fleet.say(f"$ kubectl --kubeconfig {parent} {' '.join(command)}")
            fleet.say(fleet.eventually_kubectl(parent, *command).rstrip() + "\n")
        child_configs = []
        for child in fleet.child_clusters:
            config = fleet.child_kubeconfig(child)
            child_configs.append(config)
            fleet.say(
                f"# {child.name}, reached through the parent "
                f"(clusternet kubeconfig {child.name}):"
            )
            fleet.say(f"$ kubectl --kubeconfig {config} get ns")
            fleet.say(fleet.eventually_kubectl(config, "get", "ns").rstrip() + "\n")
        fleet.say("Try next:")
        fleet.say(f"  export KUBECONFIG={parent}")
        fleet.say(
            "  kubectl get clsrr; kubectl get mcls -A -o wide; kubectl get sockets"
        )
        fleet.say(
            f"  kubectl --kubeconfig {child_configs[0]} "
            "create configmap hello --from-literal=k=v"
        )
        fleet.say(f"  kubectl --kubeconfig {child_configs[0]} get configmaps -w")
        installed = Path(sys.executable).parent / "clusternet"
        clusternet = str(installed) if installed.exists() else "clusternet"
        fleet.say(f"  {clusternet} get clusters --kubeconfig {parent}")
        fleet.say(f"  logs: {data_dir}/*.log")
        if args.check:
            fleet.say("Check passed.")
            return 0
        fleet.say("\nThe fleet is running; press Ctrl-C to stop it.")
        while all(p.alive() for p in fleet.processes):
            fleet.renew_tokens()
            time.sleep(1)
        dead = [p for p in fleet.processes if not p.alive()]
        raise DemoError(f"{dead[0].name} exited; see {dead[0].log}")
    except KeyboardInterrupt:
        fleet.say("\nStopping the fleet.")
        return 0
    finally:
        fleet.stop()
