"""`cisfix lab ...`: create, start, stop and inspect a simulated node (a kubeadm, RKE2 or k3s control plane, or
a managed EKS, GKE or AKS worker).

Hooked into the main parser by `add_commands(commands, common_options)`; `main(argv)` runs the same
actions standalone (`python -m cisfix.lab.cli status DIR`), which is what the lab's own
`lab-restart-kubelet`, `lab-restart-rke2-server`, `lab-restart-k3s` and `lab-daemon-reload` programs call.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, List, Optional

from ..errors import InputError
from .layout import BadLabInput, LabError

EXIT_OK, EXIT_UNHEALTHY, EXIT_INPUT = 0, 1, 2
DEFAULT_VERSION = "1.32"


def cmd_create(args: argparse.Namespace) -> int:
    from .pki import ALGORITHMS, PKIError

    if args.key_algorithm is not None and args.key_algorithm not in ALGORITHMS:
        raise LabError(f"--key-algorithm must be one of {', '.join(ALGORITHMS)}")
    from .workerdata import WORKERS

    if args.distribution not in ("kubeadm", "rke2", "k3s") + WORKERS:
        raise LabError(f"--distribution {args.distribution}: no such lab in this build "
                       f"({', '.join(('kubeadm', 'rke2', 'k3s') + WORKERS)})")
    if args.join and args.distribution != "kubeadm":
        raise LabError(f"--join: only a kubeadm lab joins a cluster, not {args.distribution}")
    if args.join and args.k8s_version:
        raise LabError("--k8s-version: a joining node runs its cluster's version")
    if args.node_name and not args.join:
        raise LabError("--node-name: only with --join (a cluster's first node is lab-node)")
    if args.distribution in WORKERS:
        return _create_worker(args)
    version = args.k8s_version or DEFAULT_VERSION
    restart_sec = 10.0 if args.kubelet_restart_sec is None else args.kubelet_restart_sec  # kubeadm's unit
    try:
        if args.join:
            from .join import join

            layout = join(args.dir, args.join, args.node_name, args.key_algorithm or "RSA-2048",
                          args.probe_time_scale, args.startup_delay or 0.0, (args.backoff_initial, args.backoff_max),
                          restart_sec, not args.no_watch)
        elif args.distribution == "rke2":
            from .rke2tree import create as create_rke2

            layout = create_rke2(args.dir, version, args.key_algorithm or "ECDSA-P256",
                                 args.probe_time_scale, 15.0 if args.startup_delay is None else args.startup_delay,
                                 (args.backoff_initial, args.backoff_max), args.restart_sec)
        elif args.distribution == "k3s":
            from .k3s_tree import create as create_k3s

            layout = create_k3s(args.dir, version, args.key_algorithm or "ECDSA-P256",
                                15.0 if args.startup_delay is None else args.startup_delay, args.restart_sec)
        else:
            from .tree import create

            layout = create(args.dir, version, args.file_check_frequency, args.key_algorithm or "RSA-2048",
                            args.probe_time_scale, args.startup_delay or 0.0, (args.backoff_initial, args.backoff_max),
                            restart_sec, not args.no_watch)
    except (ValueError, PKIError) as exc:
        raise LabError(str(exc))
    if not args.quiet:
        kind = "control-plane" if args.distribution == "kubeadm" else "server"
        joined = f" joined to {args.join}" if args.join else ""
        print(f"created a {args.distribution} {layout.settings().version} {kind} node "
              f"{layout.settings().node_name} in {layout.root}{joined}")
    return EXIT_OK


def _create_worker(args: argparse.Namespace) -> int:
    from .pki import PKIError
    from .worker import create as create_worker

    try:
        layout = create_worker(args.dir, args.distribution, args.k8s_version or DEFAULT_VERSION,
                               args.key_algorithm or "ECDSA-P256", args.kubelet_restart_sec)
    except (ValueError, PKIError) as exc:
        raise LabError(str(exc))
    if not args.quiet:
        settings = layout.settings()
        print(f"created a {args.distribution} {settings.version} worker node {settings.node_name} in {layout.root} "
              f"(kubelet: {settings.kubelet_version})")
    return EXIT_OK


def cmd_reboot(args: argparse.Namespace) -> int:
    """Stop the node, run what its boot runs before the kubelet (AL2023: nodeadm), start it again."""
    from .control import Lab
    from .worker import boot_step

    lab = Lab(args.dir)
    boot = boot_step(lab.layout)
    running = bool(lab.init_pid())
    leftovers = lab.stop()
    if leftovers:
        raise LabError(f"processes were left behind and killed: {leftovers}")
    what = boot()
    lab.start(wait=args.wait)
    if not args.quiet:
        print(f"rebooted {lab.root}{'' if running else ' (it was not running)'}: {what}")
    return EXIT_OK


def cmd_start(args: argparse.Namespace) -> int:
    from .control import Lab

    status = Lab(args.dir).start(wait=args.wait)
    if not args.quiet:
        _print_status(status, "text")
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    from .control import Lab

    leftovers = Lab(args.dir).stop()
    if leftovers:
        print(f"cisfix: error: processes were left behind and killed: {leftovers}", file=sys.stderr)
        return EXIT_UNHEALTHY
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .control import Lab

    status = Lab(args.dir).status()
    _print_status(status, args.format)
    return EXIT_OK if all(s.healthy for s in status.values()) else EXIT_UNHEALTHY


def cmd_upgrade(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .upgrade import upgrade

    report = upgrade(args.dir, args.to, Path(args.patches) if args.patches else None, args.wait, args.packages,
                     args.etcd_upgrade)
    _print_upgrade(args, report)
    return EXIT_OK


def cmd_upgrade_node(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .upgrade import upgrade_node

    report = upgrade_node(args.dir, Path(args.patches) if args.patches else None, args.wait, args.packages,
                          args.etcd_upgrade)
    _print_upgrade(args, report)
    return EXIT_OK


def _print_upgrade(args: argparse.Namespace, report) -> None:
    if not args.quiet:
        print(f"upgraded from v{report.version_from} to v{report.version_to}: regenerated "
              f"{', '.join(report.changed) or 'no static pod'}"
              f"{'; unchanged: ' + ', '.join(report.unchanged) if report.unchanged else ''}"
              f"{'; old manifests in ' + report.backups if report.backups else ''}; kubelet config rewritten"
              f"{'; kubeadm-flags.env rewritten' if report.flags_rewritten else ''}"
              f"{'; kubeadm and kubelet packages reinstalled' if args.packages else ''}"
              f"{'; applied to nothing (the lab has no CoreDNS Deployment): ' if report.applied_to_nothing else ''}"
              f"{', '.join(report.applied_to_nothing)}")


def _go_bool(text: str) -> bool:
    """A boolean flag's value as Go's strconv.ParseBool (kubeadm's flags) reads it."""
    from .flags import parse_bool

    try:
        return parse_bool(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_restart_kubelet(args: argparse.Namespace) -> int:
    from .control import Lab

    Lab(args.dir).restart_kubelet()
    return EXIT_OK


def cmd_daemon_reload(args: argparse.Namespace) -> int:
    from .control import Lab

    Lab(args.dir).daemon_reload()
    return EXIT_OK


def cmd_restart(args: argparse.Namespace) -> int:
    """`systemctl restart` of the lab's unit; an rke2-server or k3s unit (Type=notify) only once the new
    process is ready."""
    from .control import Lab

    lab = Lab(args.dir)
    if lab.layout.settings().distribution not in ("rke2", "k3s"):  # kubeadm's and a worker's kubelet
        lab.restart_kubelet()
    else:
        lab.restart_notify_unit()
    return EXIT_OK


def _print_status(status: dict, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps({"components": {name: s.as_dict() for name, s in status.items()}}, indent=2))
        return
    print(f"{'COMPONENT':<25} {'HEALTHY':<8} {'PID':>8} {'RESTARTS':>9} {'PORT':>6}")
    for name, s in status.items():
        print(f"{name:<25} {str(s.healthy).lower():<8} {s.pid or '-':>8} {s.restarts:>9} {s.port:>6}")


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except LabError as exc:
            print(f"cisfix: error: {exc}", file=sys.stderr)
            return EXIT_INPUT if handler is cmd_create or isinstance(exc, BadLabInput) else EXIT_UNHEALTHY
        except InputError as exc:  # a lab folder or program another user could have written
            print(f"cisfix: error: {exc}", file=sys.stderr)
            return EXIT_INPUT
    return run


def _add_actions(actions, common_options: Callable[[argparse.ArgumentParser], None]) -> None:
    def action(name: str, handler: Callable, help: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, description=help)
        common_options(sub)
        sub.add_argument("dir", metavar="DIR", help="the lab's directory (its node root)")
        sub.set_defaults(handler=_guarded(handler))
        return sub

    create = action("create", cmd_create,
                    "write a kubeadm control-plane node's or an RKE2 or k3s server node's files under DIR")
    create.add_argument("--distribution", default="kubeadm", metavar="NAME",
                        help="kubeadm (default), rke2 or k3s: the node the lab is laid out as; eks-al2, eks-al2023, "
                             "gke or aks: a managed worker node (its kubelet only)")
    create.add_argument("--k8s-version", default=None, metavar="X.Y",
                        help=f"Kubernetes version, 1.29-1.35 (k3s: 1.32-1.35; default {DEFAULT_VERSION})")
    create.add_argument("--join", metavar="FIRST_DIR",
                        help="kubeadm: make another control-plane node of the running lab FIRST_DIR's cluster, as "
                             "`kubeadm join --control-plane` does (its version and configuration are the cluster's)")
    create.add_argument("--node-name", metavar="NAME",
                        help="with --join: the node's name (default lab-node-2, lab-node-3, ...)")
    # Every default below is a real node's timing; tests and impatient demos ask for speed explicitly.
    create.add_argument("--file-check-frequency", default="20s", metavar="DURATION",
                        help="the kubelet's static pod re-list interval (default 20s, the kubelet's)")
    create.add_argument("--no-watch", action="store_true",
                        help="the kubelet sees manifest changes only at its re-list, as when its inotify watch "
                             "missed an event (default: it sees them at once, then re-lists)")
    create.add_argument("--backoff-initial", type=float, default=10.0, metavar="SECONDS",
                        help="CrashLoopBackOff's first delay, doubled per restart (default 10, the kubelet's)")
    create.add_argument("--backoff-max", type=float, default=300.0, metavar="SECONDS",
                        help="CrashLoopBackOff's longest delay (default 300, the kubelet's)")
    create.add_argument("--kubelet-restart-sec", type=float, default=None, metavar="SECONDS",
                        help="systemd's RestartSec for a kubelet that exited (default: its unit's; kubeadm's 10)")
    create.add_argument("--key-algorithm", default=None, metavar="ALG",
                        help="RSA-2048 (kubeadm's default) or ECDSA-P256 (fast; kubeadm's encryptionAlgorithm; "
                             "k3s's keys, its default)")
    create.add_argument("--probe-time-scale", type=float, default=1.0, metavar="FACTOR",
                        help="run every probe's delays, periods and timeouts FACTOR times as fast as the "
                             "manifest says (the manifests keep kubeadm's values); 1 is real time")
    create.add_argument("--startup-delay", type=float, default=None, metavar="SECONDS",
                        help="seconds the API server, controller-manager and scheduler stand-ins take to start "
                             "serving, as real ones do (default 0; rke2, k3s: 15, as a k3s server takes 10-20 s)")
    create.add_argument("--restart-sec", type=float, default=5.0, metavar="SECONDS",
                        help="rke2, k3s: systemd's RestartSec for rke2-server.service or k3s.service (default 5, "
                             "their units'); rke2 also waits this long to restart its kubelet")

    start = action("start", cmd_start, "start the lab's init, kubelet and static pods")
    start.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                       help="wait this long for every component to be healthy (0: do not wait)")
    action("stop", cmd_stop, "stop the kubelet and every container; nothing of the lab keeps running")
    status = action("status", cmd_status, "health, pid, restarts and port of every component")
    status.add_argument("--format", choices=("text", "json"), default="text")
    action("restart-kubelet", cmd_restart_kubelet, "what `systemctl restart kubelet` is on a node")
    action("daemon-reload", cmd_daemon_reload, "what `systemctl daemon-reload` is on the node: the init re-reads the "
                                               "kubelet's unit files (until then an edit of them changes nothing)")
    action("restart", cmd_restart, "what `systemctl restart <unit>` is on the node: kubelet (kubeadm), rke2-server "
                                   "or k3s; the last two return once the new process is ready, and fail if it "
                                   "exits first")
    reboot = action("reboot", cmd_reboot, "what a reboot does to the node: stop it, run its boot step (eks-al2023: "
                                          "nodeadm rewrites the kubelet's files from /var/lib/lab/user-data), start it")
    reboot.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                        help="wait this long for every component to be healthy (0: do not wait)")
    upgrade = action("upgrade", cmd_upgrade, "what `kubeadm upgrade apply` does: regenerate the static pods and "
                                             "the kubelet config from the cluster's ConfigMaps, one at a time, rolled "
                                             "back if one does not come up; then upload the new ClusterConfiguration")
    upgrade.add_argument("--to", metavar="X.Y[.Z]", help="the version to upgrade to (default: the next minor)")
    upgrade_node = action("upgrade-node", cmd_upgrade_node,
                          "what `kubeadm upgrade node` does on another control-plane node: regenerate its static "
                          "pods and kubelet config from the cluster's (already upgraded) ConfigMaps")
    for sub in (upgrade, upgrade_node):
        sub.add_argument("--patches", metavar="DIR",
                         help="kubeadm patch files, named target[suffix][+patchtype].{yaml|json}")
        sub.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                         help="wait this long for each upgraded component to come up healthy, else roll back "
                              "(0: do not wait)")
        sub.add_argument("--packages", action="store_true",
                         help="also the package step: reinstall the kubeadm package's kubelet drop-in before, the "
                              "kubelet package's unit after (their content, mode 0644), then restart the kubelet")
        sub.add_argument("--etcd-upgrade", type=_go_bool, nargs="?", const=True, default=True, metavar="BOOL",
                         help="upgrade etcd's static pod (kubeadm's flag; --etcd-upgrade=false leaves it as it is)")


def add_commands(commands, common_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add `lab` and its actions to the main parser's subcommands."""
    lab = commands.add_parser("lab", help="a simulated kubeadm, RKE2 or k3s node for tests and demos",
                              description="a simulated kubeadm control-plane node or RKE2 or k3s server node for "
                                          "tests and demos")
    common_options(lab)
    actions = lab.add_subparsers(dest="lab_command", metavar="ACTION")
    actions.required = True
    _add_actions(actions, common_options)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="cisfix lab")
    parser.add_argument("-q", "--quiet", action="store_true")
    actions = parser.add_subparsers(dest="lab_command", metavar="ACTION")
    actions.required = True
    _add_actions(actions, lambda sub: None)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
