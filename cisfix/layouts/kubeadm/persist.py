"""Persisting fixes on a kubeadm node: what `kubeadm upgrade` regenerates each fixed file from, and what
to put there so that the next upgrade generates the fixed file again.

- A static pod manifest is regenerated from the ClusterConfiguration in the `kube-system/kubeadm-config`
  ConfigMap: a flag the fixes set or changed becomes an `extraArgs` entry of the component's section
  (`apiServer`, `controllerManager`, `scheduler`, `etcd.local`; v1beta3's map or v1beta4's list of
  name/value, as the stored configuration has it), which replaces kubeadm's default of that name; a
  hostPath volume the fixes mounted (audit policy and log, encryption and admission configs) becomes an
  `extraVolumes` entry. What extraArgs cannot say — a flag removed, a volume of local etcd, which has
  no extraVolumes — goes into a kubeadm patch file (`target+json.yaml` removing the exact command item,
  `etcd+strategic.yaml` adding mounts; for `--patches DIR`).
- The kubelet's config.yaml is rewritten from the `kube-system/kubelet-config` ConfigMap: a changed
  setting goes there (cluster-wide). Its flag files are node-local and no kubeadm object regenerates
  them, so a flag a fix set there is not persisted anywhere: it stays as the upgrade leaves it. The
  upgrade leaves the systemd drop-in and files a fix created alone; `kubeadm-flags.env` too, except for
  kubeadm's rewrites of it on the way to 1.34 and 1.35 (see `flagsenv`), which keep a flag written as
  `--name=value` but not a bare boolean or a quoted value: the note names every flag a fix set there that
  an upgrade ahead of the node would lose or change (persist says so rather than rewriting a node file,
  which is the fixes' work).

A value already there is left as it is; a different value someone set there is a conflict, reported and
kept unless forced. For the kubelet ConfigMap, which holds every setting, a value still equal to the
node's before the fix is replaced without conflict.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from ...editors.manifest import read_flags
from ...errors import EditError, InputError
from ...kubeyaml import dump
from ...nodefile import decode_text, parse_yaml
from ...state import NodeState
from ...trust import read_node_trusted
from ...types import ApiObject, ClusterAccess, NetChange, NodeInfo, ObjectUpdate, PersistPlan
from . import flagsenv
from .paths import ADMIN_CONF, KUBEADM_FLAGS_ENV, PKI

KUBEADM_CONFIG, KUBELET_CONFIG = "kube-system/kubeadm-config", "kube-system/kubelet-config"
V1BETA3, V1BETA4 = "kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4"
SECTIONS = {"kube-apiserver": ("apiServer",), "kube-controller-manager": ("controllerManager",),
            "kube-scheduler": ("scheduler",), "etcd": ("etcd", "local")}
NO_EXTRA_VOLUMES = frozenset({"etcd"})  # ClusterConfiguration's etcd.local has extraArgs only
_GONE = object()  # a setting the fix removed


@dataclass
class PodChange:
    """What the fixes changed in one static pod, in kubeadm's terms."""

    args: Dict[str, str] = field(default_factory=dict)  # flag -> value set or changed
    removed: List[str] = field(default_factory=list)  # flags removed
    removed_values: Dict[str, str] = field(default_factory=dict)  # flag removed -> its value before
    flags: Dict[str, str] = field(default_factory=dict)  # the fixed pod's flags
    volumes: List[dict] = field(default_factory=list)  # extraVolumes entries (HostPathMount)
    command: List[str] = field(default_factory=list)  # the fixed container's command
    mounts: List[dict] = field(default_factory=list)  # its new volumeMounts (for a patch file)
    pod_volumes: List[dict] = field(default_factory=list)  # the pod's new volumes (for a patch file)


def go_string(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _doc(data: Optional[bytes], shown: str) -> Any:
    return parse_yaml(decode_text(data, shown), shown) if data is not None else None


# ---- what the fixes changed ----

def _dicts(value: Any) -> List[dict]:
    """The mappings of a YAML list (anything else in it, or a list that is not one, is no entry)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _get_dict(value: Any, key: str) -> dict:
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, dict) else {}


def _container(pod: Any, component: str) -> dict:
    containers = _dicts(_get_dict(pod, "spec").get("containers"))
    return next((c for c in containers if c.get("name") == component), containers[0] if containers else {})


def pod_change(component: str, change: NetChange, shown: str) -> PodChange:
    def flags(data: Optional[bytes]) -> Dict[str, str]:
        if data is None:
            return {}
        try:
            return {n: "true" if v is None else v for n, v in read_flags(decode_text(data, shown), component)}
        except EditError as exc:
            raise InputError(shown, str(exc))

    before, after = flags(change.before), flags(change.after)
    pods = _doc(change.before, shown), _doc(change.after, shown)
    result = PodChange(args={n: v for n, v in after.items() if before.get(n) != v},
                       removed=[n for n in before if n not in after],
                       removed_values={n: v for n, v in before.items() if n not in after}, flags=after,
                       command=list(_container(pods[1], component).get("command") or []))
    old_volumes = {v.get("name"): v for v in _dicts(_get_dict(pods[0], "spec").get("volumes"))}
    mounts = {m.get("name"): m for m in _dicts(_container(pods[1], component).get("volumeMounts"))}
    for volume in _dicts(_get_dict(pods[1], "spec").get("volumes")):
        name, host = volume.get("name"), _get_dict(volume, "hostPath")
        if old_volumes.get(name) == volume or not host or name not in mounts:
            continue
        mount = mounts[name]
        result.volumes.append({"name": name, "hostPath": host.get("path"), "mountPath": mount.get("mountPath"),
                               "readOnly": bool(mount.get("readOnly")), "pathType": host.get("type") or ""})
        result.mounts.append(mount)
        result.pod_volumes.append(volume)
    return result


def setting_changes(before: Any, after: Any, path: Tuple[str, ...] = ()) -> List[Tuple[Tuple[str, ...], Any, Any]]:
    """(path, value before, value after) of every setting that differs; `_GONE` for an absent one."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in list(after) + [k for k in before if k not in after]:
            out += setting_changes(before.get(key, _GONE), after.get(key, _GONE), path + (str(key),))
        return out
    return [] if before == after else [(path, before, after)]


# ---- ClusterConfiguration ----

def _section(config: dict, path: Tuple[str, ...]) -> dict:
    for key in path:
        if not isinstance(config.get(key), dict):
            config[key] = {}
        config = config[key]
    return config


def _arg_values(args: Any, name: str) -> List[str]:
    if isinstance(args, dict):
        return [go_string(args[name])] if name in args else []
    return [go_string(a.get("value", "")) for a in _dicts(args) if a.get("name") == name]


def _set_arg(section: dict, list_form: bool, name: str, value: str) -> None:
    args = section.get("extraArgs")
    if args is None:
        args = section["extraArgs"] = [] if list_form else {}
    if isinstance(args, dict):
        args[name] = value
    else:
        args[:] = [a for a in args if a.get("name") != name] + [{"name": name, "value": value}]


def _drop_arg(section: dict, name: str) -> None:
    args = section.get("extraArgs")
    if isinstance(args, dict):
        args.pop(name, None)
    elif args:
        args[:] = [a for a in args if a.get("name") != name]


def _is_list_of_maps(value: Any) -> bool:
    return isinstance(value, list) and len(_dicts(value)) == len(value)


def update_cluster_configuration(config: dict, pods: Mapping[str, PodChange], force: bool) -> Tuple[List[str], List[str]]:
    """Put the pods' changes into `config` (in place); (changes, conflicts) as lines."""
    list_form = config.get("apiVersion") == V1BETA4
    changes: List[str] = []
    conflicts: List[str] = []
    for component, pod in pods.items():
        path = SECTIONS[component]
        section = _section(config, path)
        where = f"ClusterConfiguration {'.'.join(path)}"
        args, volumes = section.get("extraArgs"), section.get("extraVolumes")
        if not (args is None or isinstance(args, dict) or _is_list_of_maps(args)) or \
                not (volumes is None or _is_list_of_maps(volumes)):
            raise InputError(KUBEADM_CONFIG, f"{where}: extraArgs is neither a map nor a list of name/value, or "
                                             "extraVolumes not a list of mounts; kubeadm could not read it either")
        for name, value in sorted(pod.args.items()):
            there = _arg_values(section.get("extraArgs"), name)
            if there == [value]:
                continue
            if there and not force:
                conflicts.append(f"{where}.extraArgs: {name} is {', '.join(map(repr, there))} there, the fixed node "
                                 f"has {value!r}; kept (--force replaces it)")
                continue
            _set_arg(section, list_form, name, value)
            changes.append(f"{where}.extraArgs: {name}={value} ({'replaced' if there else 'added'})")
        for name in pod.removed:
            there = _arg_values(section.get("extraArgs"), name)
            if there and not force:
                conflicts.append(f"{where}.extraArgs: {name} is {', '.join(map(repr, there))} there, the fix removed "
                                 f"it; kept (--force removes it)")
            elif there:
                _drop_arg(section, name)
                changes.append(f"{where}.extraArgs: {name} removed")
        if component in NO_EXTRA_VOLUMES:
            continue
        for volume in pod.volumes:
            existing = [v for v in _dicts(section.get("extraVolumes")) if v.get("name") == volume["name"]]
            same = [v for v in existing if (v.get("hostPath"), v.get("mountPath")) == (volume["hostPath"], volume["mountPath"])]
            if same:
                continue
            if existing and not force:
                conflicts.append(f"{where}.extraVolumes: {volume['name']} mounts {existing[0].get('hostPath')} there, the "
                                 f"fixed node mounts {volume['hostPath']}; kept (--force replaces it)")
                continue
            others = [v for v in section.get("extraVolumes") or () if v.get("name") != volume["name"]]
            section["extraVolumes"] = others + [volume]
            changes.append(f"{where}.extraVolumes: {volume['name']} ({volume['hostPath']} at {volume['mountPath']}) "
                           f"{'replaced' if existing else 'added'}")
    return changes, conflicts


# ---- KubeletConfiguration ----

def _get(doc: Any, path: Tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return _GONE
        doc = doc[key]
    return doc


def _put(doc: dict, path: Tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(doc.get(key), dict):
            doc[key] = {}
        doc = doc[key]
    if value is _GONE:
        doc.pop(path[-1], None)
    else:
        doc[path[-1]] = value


def update_kubelet_configuration(config: dict, settings: List[Tuple[Tuple[str, ...], Any, Any]],
                                 force: bool) -> Tuple[List[str], List[str]]:
    changes: List[str] = []
    conflicts: List[str] = []
    for path, before, after in settings:
        there, where = _get(config, path), f"KubeletConfiguration {'.'.join(path)}"
        if there == after:
            continue
        if there != before and not force:
            conflicts.append(f"{where} is {_show(there)} there, the fixed node has {_show(after)}; kept (--force "
                             f"replaces it)")
            continue
        _put(config, path, after)
        changes.append(f"{where}: {_show(after)}" if after is not _GONE else f"{where}: removed")
    return changes, conflicts


def _show(value: Any) -> str:
    return "unset" if value is _GONE else repr(value)


# ---- the plan ----

def _updater(key: str, shown: str, apply: Callable[[dict, bool], Tuple[List[str], List[str]]]):
    """update(current data, force) of a ConfigMap whose `key` holds one YAML document."""
    def update(data: Mapping[str, str], force: bool) -> ObjectUpdate:
        doc = parse_yaml(data.get(key, ""), f"{shown} {key}") or {}
        if not isinstance(doc, dict):
            raise InputError(f"{shown} {key}", "not a YAML mapping")
        new = copy.deepcopy(doc)
        changes, conflicts = apply(new, force)
        if new == doc:
            return ObjectUpdate(dict(data), (), tuple(conflicts))
        return ObjectUpdate({**data, key: dump(new)}, tuple(changes), tuple(conflicts))
    return update


def _offline(header: str, skeleton: dict, apply: Callable[[dict, bool], Tuple[List[str], List[str]]]) -> bytes:
    apply(skeleton, True)
    return (header + dump(skeleton)).encode()


def _api(state: NodeState) -> Tuple[str, Optional[dict]]:
    """The API server's URL and the admin credentials, from admin.conf; no credentials on a node
    without it (a worker). admin.conf is read through the trust rule, and its server must speak https:
    its client certificate may change the whole cluster. InputError when it is not to be used."""
    shown = state.node.display(ADMIN_CONF)
    try:
        text = read_node_trusted(state.node, ADMIN_CONF, why="; its admin credentials are not used")
    except FileNotFoundError:
        return "", None
    kubeconfig = parse_yaml(decode_text(text, shown), shown)
    clusters = kubeconfig.get("clusters") if isinstance(kubeconfig, dict) else None
    first = clusters[0] if isinstance(clusters, list) and clusters else None
    cluster = first.get("cluster") if isinstance(first, dict) else None
    server = cluster.get("server") if isinstance(cluster, dict) else None
    if not isinstance(server, str) or not server:
        raise InputError(shown, "names no API server (clusters[0].cluster.server)")
    try:
        parts = urlsplit(server)
        https = parts.scheme == "https" and bool(parts.hostname) and parts.port != 0
    except ValueError:  # an unclosed [IPv6 literal, a port out of range
        https = False
    if not https:
        raise InputError(shown, f"names the API server {server!r}, not an https:// URL of a host; its admin "
                                "credentials go to a verified https server only")
    # As kubectl: the server's certificate signed by the cluster CA and naming the host admin.conf dials.
    return server.rstrip("/"), {"kubeconfig": ADMIN_CONF, "caFile": f"{PKI}/ca.crt", "verifyServerName": True}


def _url(server: str, name: str) -> str:
    namespace, _, configmap = name.partition("/")
    return f"{server}/api/v1/namespaces/{namespace}/configmaps/{configmap}" if server else ""


def _header(component: str) -> str:
    return f"# Written by `cisfix persist`: what kubeadm's ClusterConfiguration cannot express for {component}.\n"


def volume_patch(component: str, pod: PodChange) -> Optional[bytes]:
    """A strategic-merge patch mounting the pod's new volumes where ClusterConfiguration has no
    extraVolumes (local etcd), or None. Strategic merge adds volumes and mounts by name and mountPath:
    kubeadm's own stay as they are."""
    if component not in NO_EXTRA_VOLUMES or not pod.pod_volumes:
        return None
    container = {"name": component, "volumeMounts": pod.mounts}
    return (_header(component) + dump({"spec": {"containers": [container], "volumes": pod.pod_volumes}})).encode()


def removal_patch(component: str, pod: PodChange) -> Optional[bytes]:
    """An RFC 6902 patch removing the flags the fixes removed from the command kubeadm generates, or None.

    extraArgs can add or replace a flag, never remove one of kubeadm's defaults. A strategic patch of
    `command` would replace the whole list (kubeadm's later default changes and every extraArgs change
    lost with it); this removes the exact items only. kubeadm generates the command as the binary then
    every flag `--name=value` sorted by name, then value (kubeadm's ArgumentsToCommand, as
    `cisfix.lab.kubeadm.arguments_to_command` models it): the generated command is the fixed one with the
    removed flags back, so each removed item's index is known. Each `remove` follows a `test` of the very
    item at that index: should a later kubeadm generate the command otherwise, the patch fails and kubeadm
    stops before changing the node, instead of removing some other flag. Removals go from the last index
    down, so each index is still right when its turn comes (app/util/patches applies json patches with
    evanphx/json-patch, in order)."""
    if not pod.removed:
        return None
    generated = sorted([(n, v) for n, v in pod.flags.items()] + list(pod.removed_values.items()))
    operations: List[Dict[str, Any]] = []
    for index, (name, value) in sorted(((i + 1, item) for i, item in enumerate(generated)
                                        if item[0] in pod.removed_values), reverse=True):
        path = f"/spec/containers/0/command/{index}"
        operations += [{"op": "test", "path": path, "value": f"--{name}={value}"}, {"op": "remove", "path": path}]
    return (_header(component) + dump(operations)).encode()


def flags_env_note(shown: str, change: NetChange, version: Optional[str]) -> str:
    """What the upgrades ahead of a node of `version` (unknown: all of them) do to the flags the fixes
    set in kubeadm-flags.env."""
    def text(data: Optional[bytes]) -> str:
        return decode_text(data, shown) if data is not None else ""

    before, after = flagsenv.kubelet_flags(text(change.before)), text(change.after)
    fixed = {n: v for n, v in flagsenv.kubelet_flags(after).items() if n not in before or before[n] != v}
    node = version or "0.0"
    ahead = flagsenv.rewrites_ahead(node)
    if not ahead:
        return f"{shown}: node-local kubelet flags; kubeadm upgrade keeps them as they are"
    lost = {n: later for n, (_, later) in flagsenv.lost_on_upgrade(after, node).items() if n in fixed}
    steps = " and ".join(ahead)
    if not lost:
        return (f"{shown}: node-local kubelet flags; kubeadm upgrade to {steps} rewrites the file (sorted, as "
                f"--name=value) and keeps every flag the fixes set there")
    shown_lost = ", ".join(f"--{n} ({'dropped' if v is None else f'becomes {v!r}'})" for n, v in sorted(lost.items()))
    return (f"{shown}: kubeadm upgrade to {steps} rewrites this node-local file and loses what the fixes set "
            f"there: {shown_lost}; set it again as --name=value before the upgrade, or after it")


def plan(info: NodeInfo, state: NodeState, changes: List[NetChange]) -> PersistPlan:
    manifests = {spec.manifest: name for name, spec in info.components.items() if spec.manifest and name in SECTIONS}
    kubelet = info.components.get("kubelet")
    pods: Dict[str, PodChange] = {}
    kubelet_settings: List[Tuple[Tuple[str, ...], Any, Any]] = []
    files: Dict[str, bytes] = {}
    notes: List[str] = []
    created: List[str] = []
    for change in changes:
        shown = state.node.display(change.path)
        if change.path in manifests and change.after is not None:
            component = manifests[change.path]
            pods[component] = pod_change(component, change, shown)
            for name, patch in ((f"{component}+json.yaml", removal_patch(component, pods[component])),
                                (f"{component}+strategic.yaml", volume_patch(component, pods[component]))):
                if patch:
                    files[name] = patch
        elif kubelet and change.path == kubelet.config and change.after is not None:
            kubelet_settings += setting_changes(_doc(change.before, shown) or {}, _doc(change.after, shown) or {})
        elif kubelet and change.path in kubelet.package_owned:
            continue  # the core names package-owned files
        elif kubelet and change.path == KUBEADM_FLAGS_ENV:
            notes.append(flags_env_note(shown, change, info.version))
        elif kubelet and change.path in kubelet.flag_files:
            notes.append(f"{shown}: node-local kubelet flags; kubeadm upgrade leaves the file as it is")
        elif change.before is None:
            created.append(change.path)
        else:
            notes.append(f"{shown}: kubeadm upgrade does not regenerate it; it stays as fixed")

    shared = _cluster_files(changes, pods)
    notes += [f"{state.node.display(path)}: created by a fix; kubeadm upgrade leaves it as it is"
              + ("; every control-plane node needs it before its upgrade (published for the others)"
                 if path in shared else "") for path in created]
    try:
        server, credentials = _api(state)
        refused = ""
    except InputError as exc:  # an admin.conf not to be used: the YAML to merge goes elsewhere
        server, credentials, refused = "", None, str(exc)

    def configmap(name: str, key: str, skeleton: dict, apply: Callable[[dict, bool], Tuple[List[str], List[str]]]):
        header = (f"# Written by `cisfix persist` on {state.node.root}: merge this into the {key} of the {name}\n"
                  f"# ConfigMap (kubectl -n kube-system edit configmap {name.split('/')[1]}) where the API server "
                  "can be reached.\n")
        return ApiObject(name, _url(server, name), credentials, _updater(key, name, apply),
                         _offline(header, skeleton, apply), refused)

    api_version = V1BETA4 if tuple(int(p) for p in (info.version or "0.0").split(".")[:2]) >= (1, 31) else V1BETA3
    objects = []
    if any(pod.args or pod.removed or pod.volumes for pod in pods.values()):
        objects.append(configmap(KUBEADM_CONFIG, "ClusterConfiguration",
                                 {"apiVersion": api_version, "kind": "ClusterConfiguration"},
                                 lambda config, force: update_cluster_configuration(config, pods, force)))
    if kubelet_settings:
        objects.append(configmap(KUBELET_CONFIG, "kubelet",
                                 {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"},
                                 lambda config, force: update_kubelet_configuration(config, kubelet_settings, force)))
    access = ClusterAccess(server, credentials, refused)
    return PersistPlan(tuple(objects), files, USAGE, tuple(notes), shared, access, RETIRED)


# Before the JSON patches, a removed flag pinned the component's whole command in a strategic patch; kept in
# the folder, `--patches` would go on masking extraArgs and kubeadm's new defaults. (etcd's strategic
# patch still carries its mounts: it is rewritten, not retired.)
RETIRED = tuple(f"{component}+strategic.yaml" for component in SECTIONS if component not in NO_EXTRA_VOLUMES)


USAGE = ("`--patches {dir}` on every `kubeadm upgrade apply` and every `kubeadm upgrade node`, on every "
         "control-plane node (the folder as `persist --install` puts it there); without it the upgrade "
         "generates the pods without these changes")


def _cluster_files(changes: List[NetChange], pods: Mapping[str, PodChange]) -> Tuple[str, ...]:
    """Files the fixes created that the persisted pods refer to (a mounted hostPath, or inside a mounted
    folder; a flag naming it): the pod of every control-plane node regenerated from ClusterConfiguration
    needs them, or it cannot start."""
    mounted = [v["hostPath"] for pod in pods.values() for v in pod.volumes]
    mounted += [_get_dict(v, "hostPath").get("path") for pod in pods.values() for v in pod.pod_volumes]
    folders = [m.rstrip("/") + "/" for m in mounted if isinstance(m, str)]
    named = {value for pod in pods.values() for value in pod.args.values()} | set(mounted)
    created = [c.path for c in changes if c.before is None and c.after is not None]
    return tuple(sorted(p for p in created if p in named or any(p.startswith(f) for f in folders)))
