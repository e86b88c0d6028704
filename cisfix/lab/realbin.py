"""Run a real binary (etcd) as a container would: one process, which sees only its mounts.

Tools reading /proc must see the manifest's flags, and the binary must open its files through the
container's mounts. So this launcher gives itself a mount namespace whose root holds only the pod's
hostPath volumes (bound where `volumeMounts` put them, read-only where they say so), /dev, and the host's
/usr and /lib read-only in place of the image's own libraries, then *becomes*
the binary (exec), its command line the manifest's, unchanged. As on a real node, the process cisfix finds
is the one that listens and answers, its messages name container paths, and a path under no mount does
not exist for it.
"""
from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import List, Optional

from .container import Mounts

CLONE_NEWNS = 0x00020000
IMAGE = ("/usr", "/lib", "/lib64")  # what an image would carry: the binary's loader and libraries, read-only
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x1, 0x20, 0x1000, 0x4000, 0x40000


def main(name: str, binary: str, root: str, argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    program = os.open(binary, os.O_RDONLY | os.O_CLOEXEC)  # opened before the host's files are out of sight
    try:
        _enter_container(Mounts.from_env() or Mounts([]), Path(root) / "run/lab/containers" / name)
    except OSError as exc:
        sys.stderr.write(f"failed to create container {name}: {exc}\n")
        return 128
    # argv[0] is this launcher's path, which the node configuration names as the component's program.
    os.execve(program, [sys.argv[0]] + argv, dict(os.environ))
    return 127  # not reached: execve raises when it fails


def _enter_container(mounts: Mounts, new_root: Path) -> None:
    """A private mount namespace whose root is a fresh tmpfs at `new_root` holding the mounts, /dev and
    the image's libraries."""
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"{what}: {os.strerror(error)}")

    def mount(source: Optional[str], target: Path, fstype: Optional[str], flags: int,
              data: Optional[str] = None) -> None:
        check(libc.mount(source and source.encode(), str(target).encode(), fstype and fstype.encode(),
                         ctypes.c_ulong(flags), data and data.encode()), f"mount {target}")

    check(libc.unshare(CLONE_NEWNS), "unshare")
    mount(None, Path("/"), None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host
    new_root.mkdir(parents=True, exist_ok=True)
    mount("tmpfs", new_root, "tmpfs", 0, "mode=0755")
    image = [(path, path, True) for path in IMAGE] + [("/dev", "/dev", False)]
    for mount_path, host_path, read_only in image + list(reversed(mounts.entries)):  # outer first
        target = new_root / mount_path.lstrip("/")
        if os.path.islink(host_path) and mount_path in IMAGE:  # /lib -> usr/lib on a merged-/usr host
            target.symlink_to(os.readlink(host_path))
            continue
        if os.path.isdir(host_path):
            target.mkdir(parents=True, exist_ok=True)
        elif os.path.exists(host_path):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        else:
            continue  # the kubelet creates what a volume's type asks for; what is still missing is not there
        mount(host_path, target, None, MS_BIND | MS_REC)
        if read_only:
            mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
    os.chroot(new_root)
    os.chdir("/")
