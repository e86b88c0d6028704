"""Who a process is: argv says nothing (`exec -a` writes anything there), so a process counts as a
component only when root or the container runtime could have started it for that component.

The evidence, all read from the node's proc folder (so `--root /host` with the host's proc works):
- its real, effective and saved uid (`/proc/PID/status`) are the component's `user`;
- as root: its executable (`/proc/PID/exe`) is a regular root-owned file that no group or other may
  write, in root-owned folders no one else may write — judged in the process's own file system
  (`/proc/PID/root`), so a container's binary is judged in its image;
- its cgroup (`/proc/PID/cgroup`: the cgroup v2 line and the v1 `name=systemd` line) is the
  component's own: for a static pod, a pod cgroup as the kubelet names it (systemd driver
  `kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice/<runtime>-<id>.scope`, cgroupfs driver
  `/kubepods/<qos>/pod<uid>/<id>`) whose pod uid names a trusted log folder
  `/var/log/pods/<namespace>_<pod>_<uid>` of the manifest's namespace and pod; for a service, its unit's
  cgroup. Only root can move a process into a cgroup outside the subtrees systemd delegates to users,
  and those never start at the root of the hierarchy.

`kubeadm` is no component: it runs as root from a trusted file whose name is kubeadm.
A process that claims to be a component (by argv) and fails is ignored and named once per run.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Set, Tuple

from . import trust
from .errors import InputError
from .shown import shown
from .types import Component

if TYPE_CHECKING:  # pragma: no cover
    from .state import NodeState, Process

log = logging.getLogger("cisfix")

# The kubelet's pod cgroups, from the root of the hierarchy (the uid: dashes become underscores in
# systemd's unit names); guaranteed pods have no QoS slice.
_POD_CGROUPS = (
    re.compile(r"/kubepods\.slice/(?:kubepods-(besteffort|burstable)\.slice/kubepods-\1-|kubepods-)"
               r"pod([0-9a-f_]+)\.slice/[a-z][a-z0-9-]*-[0-9a-f]+\.scope"),
    re.compile(r"/kubepods/(?:(besteffort|burstable)/)?pod([0-9a-f-]+)/[0-9a-f]+"),
)
# A static pod's uid is the md5 of its manifest as the kubelet read it (pkg/kubelet/config/common.go): 32
# hex digits. The API server gives every other pod a dashed UUID and ignores one asked for, so a pod that
# anyone with rights in kube-system creates (a `kube-apiserver-backup`, say) can never be a static pod.
_STATIC_POD_UID = re.compile(r"[0-9a-f]{32}")
_named: Set[Tuple[int, int, str]] = set()  # (pid, start, component): impostors already named in this run


class Vanished(Exception):
    """The process exited while it was looked at."""


def why_not(state: "NodeState", process: "Process", component: str) -> str:
    """Why the process is not the component's own (its argv claims it is), or '' when it is."""
    spec = state.component(component)
    proc = state.proc_dir / str(process.pid)
    try:
        expected = _expected_user(state, spec)
    except InputError as exc:
        return f"its manifest cannot be read ({exc})"
    return _user_problem(proc, expected) or _exe_problem(proc) or _tie_problem(state, proc, spec)


def is_installer(proc_dir: Path, process: "Process", name: str) -> bool:
    """Is the process the node's `name` (kubeadm): run by root from a trusted file of that name, in the
    host's own file system (the root PID 1 has)? A root process of any container — a pod's, or one a
    job started — has an image of its own, where it may put a file of any name."""
    proc = proc_dir / str(process.pid)
    try:
        if _user_problem(proc, 0) or _exe_problem(proc):
            return False
        host, its = os.stat(proc_dir / "1" / "root"), os.stat(proc / "root")
        return (its.st_dev, its.st_ino) == (host.st_dev, host.st_ino) and os.path.basename(_exe_path(proc)) == name
    except (Vanished, OSError):
        return False


def genuine(state: "NodeState", processes: List["Process"], component: str) -> List["Process"]:
    """The processes that are the component's own; the others are named once on stderr."""
    found = []
    for process in processes:
        try:
            problem = why_not(state, process, component)
        except Vanished:
            continue
        if not problem:
            found.append(process)
        elif (process.pid, process.start_ticks, component) not in _named:
            _named.add((process.pid, process.start_ticks, component))
            log.error("ignored pid %d posing as %s: %s", process.pid, component, shown(problem, None))
    return found


# ---- the evidence ----

def _read(path: Path) -> str:
    """A file of the process's proc folder; '' when it cannot be read (no evidence)."""
    try:
        return path.read_text(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        raise Vanished(path)
    except OSError:
        return ""


def _expected_user(state: "NodeState", spec: Component) -> int:
    """The layout's uid, unless the static pod's manifest runs its container as another one."""
    pod = state.yaml(spec.manifest) if spec.manifest else None
    if not isinstance(pod, dict):
        return spec.user
    pod_spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    containers = pod_spec.get("containers") if isinstance(pod_spec.get("containers"), list) else []
    contexts = [c.get("securityContext") for c in containers[:1] if isinstance(c, dict)]
    for context in contexts + [pod_spec.get("securityContext")]:  # the container's first, as the kubelet
        user = context.get("runAsUser") if isinstance(context, dict) else None
        if isinstance(user, int) and not isinstance(user, bool):
            return user
    return spec.user


def _user_problem(proc: Path, expected: int) -> str:
    for line in _read(proc / "status").splitlines():
        if line.startswith("Uid:"):
            real, effective, saved = (line.split()[1:4] + ["?"] * 3)[:3]
            if real == effective == saved == str(expected):
                return ""
            return f"uid {real}" if real == effective == saved else f"uids {real}/{effective}/{saved}"
    return "no uid in its status"


def _exe_path(proc: Path) -> str:
    try:
        target = os.readlink(proc / "exe")
    except (FileNotFoundError, ProcessLookupError):
        raise Vanished(proc)
    return target[:-len(" (deleted)")] if target.endswith(" (deleted)") else target


def _exe_problem(proc: Path) -> str:
    """As root only, like every trust rule: another user may not read a root process's executable.
    The kernel shows a process's executable and root only to a reader holding every capability the
    process holds (ptrace's rule), so root without capabilities (the audit DaemonSet) sees none of the
    components': that is no evidence either way, and the uid and the cgroup, which only root can give,
    still decide."""
    if not trust.enforced():
        return ""
    try:
        path = _exe_path(proc)
        fd = os.open(proc / "exe", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        raise Vanished(proc)
    except PermissionError:
        return ""
    except OSError as exc:
        return f"its executable cannot be read ({exc.strerror})"
    try:
        trust.require_trusted_file(fd, Path(path), why=" (its executable)")
        trust.trusted_realpath(Path(path), why=" (a folder of its executable)", within=proc / "root")
    except InputError as exc:
        return str(exc)
    except PermissionError:
        return ""
    except OSError as exc:
        return f"its executable's folder cannot be read ({exc.strerror})"
    finally:
        os.close(fd)
    return ""



def cgroups(proc: Path) -> List[str]:
    """The process's cgroup in the v2 hierarchy and in v1's `name=systemd` one, where they exist."""
    found = []
    for line in _read(proc / "cgroup").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if (hierarchy == "0" and controllers == "") or "name=systemd" in controllers.split(","):
            found.append(path)
    return found


def _tie_problem(state: "NodeState", proc: Path, spec: Component) -> str:
    paths = cgroups(proc)
    shown = " or ".join(sorted(set(paths))) or "none"
    if paths and all(path.startswith("/..") for path in paths):
        # The kernel shows cgroups relative to the reader's cgroup namespace: from inside a container
        # with its own (cgroup v2's default for unprivileged ones), no path can be tied to a pod or unit.
        return (f"its cgroup ({shown}) is outside this run's cgroup namespace; run cisfix in the host's "
                "(on the host, or in a privileged container)")
    if spec.manifest:
        pod = manifest_pod(state, spec.manifest)
        if pod is None:
            return f"{spec.manifest} names no pod"
        if any(_is_pod(_pod_of(state, path), pod) for path in paths):
            return ""
        return f"its cgroup ({shown}) is not a container of pod {pod[0]}/{pod[1]}"
    if spec.unit:
        if "/" + spec.unit.strip("/") in paths:
            return ""
        return f"its cgroup ({shown}) is not {spec.unit}"
    return f"its layout names no pod or unit for {spec.name}"


def manifest_pod(state: "NodeState", manifest: str) -> Optional[Tuple[str, str]]:
    """(namespace, name) of the static pod the manifest defines."""
    pod = state.yaml(manifest)
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    return str(meta.get("namespace") or "default"), meta["name"]


def _pod_of(state: "NodeState", cgroup: str) -> Optional[Tuple[str, str]]:
    """(namespace, manifest's pod name) of the kubelet pod whose cgroup this is, by its trusted log folder;
    a static pod's name is the manifest's, suffixed with `-<node name>`."""
    for pattern in _POD_CGROUPS:
        match = pattern.fullmatch(cgroup)
        if match:
            break
    else:
        return None
    uid = match.group(2).replace("_", "-")
    if not _STATIC_POD_UID.fullmatch(uid):
        return None
    logs = state.node.host("/var/log/pods")
    for folder in logs.glob(f"*_*_{uid}"):
        parts = folder.name.split("_")  # neither a namespace nor a pod name has one
        if len(parts) != 3:
            continue
        try:
            trust.require_trusted_dir(folder, why=" (a pod's log folder)")
        except InputError:
            continue
        return parts[0], parts[1]
    return None


def _is_pod(found: Optional[Tuple[str, str]], manifest_pod: Tuple[str, str]) -> bool:
    """The kubelet names a static pod `<manifest's name>-<node name>`."""
    if found is None:
        return False
    (namespace, name), (want_namespace, want_name) = found, manifest_pod
    return namespace == want_namespace and (name == want_name or name.startswith(want_name + "-"))
