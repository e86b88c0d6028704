"""How the kubelet is configured, as the kubelet itself sees it.

Its command line wins over its config file. The command line is the running process's, else the one
systemd would build from the drop-in: `ExecStart=` expands the drop-in's `Environment=` variables and
the `EnvironmentFile=`s it names (kubeadm-flags.env, /etc/default/kubelet) in the order it lists them.
The config file is the one `--config` names, else the component's `config`.

(This belongs in the core next to `NodeState.flags`; it lives here until the core offers it.)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from cisfix.declarative import lookup
from cisfix.state import NodeState
from cisfix.types import Evidence

from . import flagfile

COMPONENT = "kubelet"


@dataclass(frozen=True)
class FlagSource:
    """Where a flag of the command line is defined: a flag file and its variable, or only the process."""

    file: Optional[str]
    line: Optional[int] = None


@dataclass(frozen=True)
class KubeletView:
    flags: Dict[str, Optional[str]]  # the effective command line
    running: bool  # `flags` come from the live process
    process: Optional[Evidence]
    file_flags: Dict[str, Optional[str]]  # the command line the flag files give (what a restart would run)
    sources: Dict[str, FlagSource]  # flag -> where the flag files define it (last definition)
    config_path: Optional[str]
    config: Optional[dict]

    def setting(self, flag: Optional[str], path: Optional[str]) -> Tuple[bool, Any, Evidence]:
        """The effective value of a setting known as `--flag` and as `path` in the config file."""
        return self._lookup(self.flags, self.running, flag, path)

    def setting_on_disk(self, flag: Optional[str], path: Optional[str]) -> Tuple[bool, Any, Evidence]:
        """The value the kubelet would have after a restart."""
        return self._lookup(self.file_flags, False, flag, path)

    def _lookup(self, flags: Dict[str, Optional[str]], running: bool, flag: Optional[str],
                path: Optional[str]) -> Tuple[bool, Any, Evidence]:
        if flag and flag in flags:
            source = self.sources.get(flag)
            if running:
                evidence = Evidence(process=self.process.process if self.process else COMPONENT, detail=f"--{flag}")
            else:
                evidence = Evidence(file=source.file if source else None, line=source.line if source else None,
                                    detail=f"--{flag}")
            return True, flags[flag], evidence
        if path and isinstance(self.config, dict):
            present, value = lookup(self.config, path)
            return present, value, Evidence(file=self.config_path, detail=path)
        return False, None, Evidence(file=self.config_path, detail=path or f"--{flag}")


def view(state: NodeState) -> KubeletView:
    """The kubelet's effective flags and config file (read once per NodeState)."""
    cached = getattr(state, "_cisfix_cis_kubelet", None)
    if cached is None:
        cached = _build(state)
        setattr(state, "_cisfix_cis_kubelet", cached)
    return cached


def _build(state: NodeState) -> KubeletView:
    component = state.component(COMPONENT)
    file_flags, sources = command_line_from_files(state, component.flag_files)
    live = state.flags(COMPONENT)
    flags = dict(live.values) if live.running else dict(file_flags)
    config_path = flags.get("config") or file_flags.get("config") or component.config
    # An unreadable config raises InputError (FILE:LINE: reason): every kubelet check is then an ERROR.
    config = state.yaml(config_path) if config_path else None
    return KubeletView(flags, live.running, live.evidence if live.running else None, file_flags, sources,
                       config_path, config if isinstance(config, dict) else None)


def command_line_from_files(state: NodeState, flag_files: Tuple[str, ...]) -> Tuple[Dict[str, Optional[str]],
                                                                                   Dict[str, FlagSource]]:
    """The command line systemd would start the kubelet with, and where each flag is defined."""
    variables: Dict[str, Tuple[str, flagfile.Assignment]] = {}
    order: List[str] = []  # variable names in ExecStart order
    literal: List[Tuple[str, Optional[str]]] = []  # flags written straight into ExecStart
    seen, queue = set(), list(flag_files)
    while queue:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        data = state.read(path)
        if data is None:
            continue
        parsed = flagfile.parse(data.decode("utf-8", "replace"))
        for assignment in parsed.assignments:
            variables[assignment.var] = (path, assignment)
        queue.extend(parsed.env_files)
        if parsed.exec_start:
            order = re.findall(r"\$\{?(\w+)\}?", parsed.exec_start)
            words = [w for w in parsed.exec_start.split() if w.startswith("--")]
            literal = [(w[2:].partition("=")[0], w.partition("=")[2] or None) for w in words]
    names = [v for v in order if v in variables] or list(variables)
    flags: Dict[str, Optional[str]] = dict(literal)
    sources: Dict[str, FlagSource] = {name: FlagSource(None) for name in flags}
    for var in names:
        path, assignment = variables[var]
        for name, value, _, _ in assignment.flags():
            flags[name] = value
            sources[name] = FlagSource(path, assignment.line)
    return flags, sources
