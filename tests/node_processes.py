"""Processes with the evidence a real node gives about them (see `cisfix.identity`), for tests outside a lab.

A static pod's container runs as root from a root-owned executable, in the pod cgroup the kubelet made,
and the kubelet wrote its log folder `/var/log/pods/<namespace>_<pod>-<node>_<uid>` in the node tree.
`pod_process` starts such a real process; `fake_process` writes the same evidence into a proc tree that
the node configuration names with `proc:`, as a user could for a node image.
"""
from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Optional, Sequence

from cisfix.lab import cgroups

NODE = "node1"


def pod_log_folder(node_root: Path, namespace: str, name: str, uid: Optional[str] = None) -> str:
    """Write the kubelet's log folder of the static pod `name` (as in its manifest); its uid."""
    uid = uid or secrets.token_hex(16)
    folder = node_root / f"var/log/pods/{namespace}_{name}-{NODE}_{uid}"
    folder.mkdir(parents=True)
    os.chmod(folder, 0o755)
    return uid


def pod_process(node_root: Path, namespace: str, name: str, argv: Sequence[str], **popen) -> subprocess.Popen:
    """A real root process in a new container cgroup of the static pod `name`; stop it with `stop`."""
    uid = pod_log_folder(node_root, namespace, name)
    cgroup = cgroups.new_container(uid)
    process = subprocess.Popen(cgroups.joined(cgroup, list(argv)), **popen)
    process.cgroup = cgroup  # type: ignore[attr-defined]
    return process


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()
    cgroups.remove(getattr(process, "cgroup", None), pod_too=True)


def fake_process(proc_dir: Path, pid: int, argv: Sequence[str], *, exe: str, cgroup: str = "/",
                 uid: int = 0, start_ticks: int = 12345) -> Path:
    """/proc/<pid> as the kernel shows it: cmdline, stat, status, cgroup, and the exe and root links."""
    proc = proc_dir / str(pid)
    proc.mkdir(parents=True)
    (proc / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    name = os.path.basename(argv[0])[:15]
    (proc / "stat").write_text(f"{pid} ({name}) S " + "1 " * 18 + f"{start_ticks} 0 0\n")
    (proc / "status").write_text(f"Name:\t{name}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t0\t0\t0\t0\n")
    (proc / "cgroup").write_text(f"0::{cgroup}\n")
    (proc / "exe").symlink_to(exe)
    (proc / "root").symlink_to("/")
    return proc


def pod_cgroup(uid: str) -> str:
    """A container's cgroup in the pod `uid`, as /proc/PID/cgroup shows it."""
    return "/" + cgroups.new_container(uid)
