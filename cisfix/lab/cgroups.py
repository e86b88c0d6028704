"""The cgroups a node puts its processes in, so that the lab gives cisfix the evidence a real node gives.

systemd starts the kubelet in `system.slice/kubelet.service`; the kubelet with containerd and the systemd
cgroup driver puts each container of a pod in
`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
(the pod uid is the one in its log folder's name). The lab writes the cgroup v2 hierarchy and v1's
`name=systemd` one, wherever /proc/self/mountinfo says they are mounted.

A process joins its cgroup before it runs its program: it is started as a shell that writes `0` (itself)
to each `cgroup.procs` and then execs the program, keeping its pid — so no one ever sees the program
outside its cgroup. Several labs run at once: pod cgroups are unique to their pod uid, and the shared
slices (`kubepods*.slice`, `kubelet.service`) stay, as on a node.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import List, Optional

_QOS = "burstable"  # the kubeadm control plane's pods request CPU and set no limits
# sh -c JOIN sh <cgroup.procs>... -- <argv>: join each cgroup, then become the program.
_JOIN = 'for procs do case $procs in --) break;; esac; echo 0 > "$procs" || exit 126; shift; done; shift; exec "$@"'


def pod(uid: str) -> str:
    return f"kubepods.slice/kubepods-{_QOS}.slice/kubepods-{_QOS}-pod{uid.replace('-', '_')}.slice"


def new_container(pod_uid: str) -> str:
    """The cgroup of a new container of the pod, with a new container id as the runtime gives one."""
    return f"{pod(pod_uid)}/cri-containerd-{secrets.token_hex(32)}.scope"


def hierarchies(mountinfo: Path = Path("/proc/self/mountinfo")) -> List[Path]:
    """Where the cgroup v2 hierarchy and the v1 `name=systemd` one are mounted writable (either may be
    absent, or read-only in a container)."""
    found = []
    for line in mountinfo.read_text().splitlines():
        mount, _, fs = line.partition(" - ")
        fields, (fstype, _, options) = mount.split(), (fs.split() + ["", "", ""])[:3]
        if "ro" in fields[5].split(","):
            continue
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options.split(",")):
            found.append(Path(fields[4].encode().decode("unicode_escape")))  # \040 for a space
    return found


def joined(cgroup: str, argv: List[str]) -> List[str]:
    """The command line that runs `argv` in `cgroup` (created here, in every hierarchy). OSError when
    none is mounted or it cannot be created."""
    procs = []
    for hierarchy in hierarchies():
        path = hierarchy / cgroup
        path.mkdir(parents=True, exist_ok=True)
        procs.append(str(path / "cgroup.procs"))
    if not procs:
        raise OSError(f"no cgroup2 or name=systemd hierarchy is mounted to put {cgroup} in")
    return ["/bin/sh", "-c", _JOIN, "sh", *procs, "--", *argv]


def remove(container: Optional[str], pod_too: bool = False) -> None:
    """Remove a container's cgroup (and its pod's, when the pod is gone) where empty; one still in use
    stays."""
    if not container:
        return
    for cgroup in (container, container.rsplit("/", 1)[0])[:2 if pod_too else 1]:
        for hierarchy in hierarchies():
            try:
                os.rmdir(hierarchy / cgroup)
            except OSError:  # in use, already gone: it stays, as on a node
                pass
