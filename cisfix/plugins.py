"""Loading plugins and their checks.

Sources, all registered through the same pluggy contract (`cisfix.hookspecs`):
1. the default plugin modules (`DEFAULT_PLUGINS`: the core's built-ins and the bundled content);
2. installed distributions with an entry point in the `cisfix` group;
3. checks.d directories — the bundled one, `<root>/etc/cisfix/checks.d`, and each `--checks-dir` —
   whose `*.py` files are plugin modules and whose `*.yaml` files hold declarative checks.
`-p no:NAME` blocks a plugin by name; `--disable ID` drops a check.
"""
from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass, replace
from importlib import import_module
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pluggy

from . import hookspecs
from .config import CONFIG_PATH, load_node_config
from .declarative import load_checks
from .errors import InputError
from .markers import hookimpl
from .node import Node
from .nodefile import decode_text
from .trust import read_trusted, require_trusted_dir
from .types import Check, Editor, NodeInfo, ReportFormat

DEFAULT_PLUGINS = ("cisfix.builtin", "cisfix.layouts.rke2", "cisfix.layouts.k3s", "cisfix.layouts.eks",
                   "cisfix.layouts.gke", "cisfix.layouts.aks", "cisfix.layouts.kubeadm", "cisfix_cis")
_BUILT_IN_LAYOUTS = "cisfix.layouts."  # their layout names are kubeadm, rke2, k3s, eks, gke and aks
_REFUSED = "; refusing to load checks or plugins from it"
NODE_CHECKS_DIR = "/etc/cisfix/checks.d"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    source: str
    checks: int


def minor_version(version: Optional[str]) -> Optional[Tuple[int, int]]:
    """"v1.31.2", "1.31", "1.31.4+rke2r1", "v1.31.4+k3s1", "1.31.5-gke.1023000" or "1.31.3-eks-4096722" -> (1, 31);
    None when there is no such version."""
    parts = (version or "").lstrip("v").split(".")
    return (int(parts[0]), int(parts[1])) if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit() else None


class DeclarativeFile:
    """A checks.d YAML file, registered as a plugin of its own."""

    def __init__(self, source: str, text: str) -> None:
        self.checks, self.errors = load_checks(text, source)

    @hookimpl
    def cisfix_register_checks(self) -> List[Check]:
        return self.checks


def may_have_entry_points(group: str) -> bool:
    """False only when no installed distribution can declare entry points in `group`: every folder and
    zip (the zipapp itself) on `sys.path` was listed and no `*.dist-info` or `*.egg-info` at its top has an
    `entry_points.txt` with that section, and nothing else lists distributions (an egg on the path,
    another finder). Importing importlib.metadata and reading every distribution's metadata is about a
    tenth of a warm audit."""
    from importlib.machinery import PathFinder

    if any(getattr(finder, "find_distributions", None) and finder is not PathFinder for finder in sys.meta_path):
        return True
    try:
        for entry in sys.path:
            if entry.lower().endswith(".egg"):
                return True
            for text in _entry_point_files(entry or "."):
                if group in [line.strip()[1:-1].strip() for line in text.splitlines()
                             if line.strip().startswith("[") and line.strip().endswith("]")]:
                    return True
    except Exception:  # unreadable, not UTF-8, a broken zip (zipfile.BadZipFile): importlib.metadata decides
        return True
    return False


def _entry_point_files(entry: str) -> Iterable[str]:
    """The `entry_points.txt` of each distribution at the top of a `sys.path` folder or zip, as
    importlib.metadata finds them (nothing for a path that does not exist)."""
    if os.path.isdir(entry):
        for name in os.listdir(entry):
            path = os.path.join(entry, name, "entry_points.txt")
            if name.lower().endswith((".dist-info", ".egg-info")) and os.path.isfile(path):
                with open(path, encoding="utf-8") as file:
                    yield file.read()
    elif os.path.exists(entry):
        import zipfile

        with zipfile.ZipFile(entry) as archive:
            names = set(archive.namelist())
            for top in {name.split("/")[0] for name in names}:
                if top.lower().endswith((".dist-info", ".egg-info")) and f"{top}/entry_points.txt" in names:
                    yield archive.read(f"{top}/entry_points.txt").decode("utf-8")


def _bundled_checks_dir():
    from importlib.resources import files

    return files("cisfix").joinpath("checks.d")


class Plugins:
    """Everything loaded for one run: the plugin manager, the node description and the checks."""

    def __init__(self, node: Node, checks_dirs: Iterable[str] = (), blocked: Iterable[str] = (),
                 disabled: Iterable[str] = (), benchmark: Optional[str] = None) -> None:
        self.node = node
        self.pm = pluggy.PluginManager("cisfix")
        self.pm.add_hookspecs(hookspecs)
        self.errors: List[str] = []  # checks.d files that did not load, as FILE:LINE: reason
        self._sources: Dict[str, Tuple[str, str]] = {}  # plugin name -> (version, source)
        # Every name -p no:NAME may block: entry points (found as pluggy finds them, on Python 3.9 too),
        # then each plugin as it registers.
        entry_points = may_have_entry_points("cisfix")
        self._offered = set()
        if entry_points:
            from importlib.metadata import distributions

            self._offered = {ep.name for dist in distributions() for ep in dist.entry_points if ep.group == "cisfix"}
        for name in blocked:
            self.pm.set_blocked(name)
        for module in DEFAULT_PLUGINS:
            self._register(import_module(module), module, "-", "built-in")
        if entry_points:
            try:
                self.pm.load_setuptools_entrypoints("cisfix")
            except pluggy.PluginValidationError as exc:
                raise InputError(f"entry point {self.pm.get_name(exc.plugin) or exc.plugin}", str(exc))
        for plugin, dist in self.pm.list_plugin_distinfo():
            self._sources[self.pm.get_name(plugin)] = (dist.version, f"entry point of {dist.project_name}")
        self._load_dir(_bundled_checks_dir(), "bundled checks.d")
        node_dir = node.host(NODE_CHECKS_DIR)
        if node_dir.is_dir():
            self._load_dir(node_dir, str(node_dir))
        for directory in checks_dirs:
            path = Path(directory)
            if not path.is_dir():
                raise InputError(path, "--checks-dir: not a directory")
            self._load_dir(path, str(path))
        self._check_pending()
        unknown = [name for name in blocked if name not in self._offered]
        if unknown:  # a mistyped name would block nothing, silently
            raise InputError(f"-p no:{unknown[0]}", "no such plugin (see `cisfix plugins`)")
        self.config = load_node_config(node)
        info = self._describe_node(node)
        self.benchmarks = self._by_name("cisfix_register_benchmarks", "benchmark")
        chosen, warnings = self._choose_benchmark(info, benchmark or self.config.get("benchmark"))
        self.info = replace(info, benchmark=chosen, warnings=tuple(info.warnings) + warnings)
        collected = self._collect_checks()
        require_checks("--disable", disabled, collected)
        self.checks = {i: c for i, c in collected.items() if i not in set(disabled)}

    def _describe_node(self, node: Node) -> NodeInfo:
        """The first layout's description of the node (the hook is firstresult, called here in pluggy's
        order), with the layout's name: every report says which layout it judged the node by."""
        for impl in reversed(self.pm.hook.cisfix_describe_node.get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:  # wraps the call, answers nothing of its own
                continue
            given = {"node": node, "config": self.config}
            info = impl.function(**{a: given[a] for a in impl.argnames})
            if info is not None:
                name = impl.plugin_name
                layout = name[len(_BUILT_IN_LAYOUTS):] if name.startswith(_BUILT_IN_LAYOUTS) else name
                return replace(info, layout=layout)
        raise InputError(node.root, "no layout plugin describes this node (is cisfix.layouts.kubeadm blocked?)")

    def _choose_benchmark(self, info: NodeInfo, requested: Optional[str]) -> Tuple[Optional[str], Tuple[str, ...]]:
        """The benchmark asked for, else the one registered for the node's minor version, else, for a
        node newer than every benchmark, the newest benchmark and a warning saying so (never silently,
        unlike kube-bench's fallback). With it, the warnings every report must carry."""
        if requested:
            if requested not in self.benchmarks:
                raise InputError(f"--benchmark {requested}", f"unknown benchmark; known: {', '.join(sorted(self.benchmarks)) or 'none'}")
            return requested, ()
        minor = minor_version(info.version)
        candidates = self._benchmarks_for(info.distribution)
        chosen = next((name for name, b in candidates.items()
                       if minor and minor in map(minor_version, b.versions)), None)
        newest = max(((max(minor_version(v) or (0, 0) for v in b.versions), name)
                      for name, b in candidates.items() if b.versions), default=None)
        # A distribution with benchmarks of its own whose version is unknown: its newest one, said so (the
        # generic benchmarks, written for many versions, are not guessed at: the audit asks for one).
        unknown = not minor and newest and any(b.distribution == info.distribution for b in candidates.values())
        if unknown:
            return newest[1], (f"the Kubernetes version of this {info.distribution} node is unknown: audited against "
                               f"{newest[1]}, its newest benchmark; choose one with --benchmark or `benchmark:` in "
                               f"{self.node.display(CONFIG_PATH)} to confirm it",)
        if chosen or not minor or not newest or minor <= newest[0]:
            return chosen, ()
        newest_minor, name = newest
        covered = ".".join(map(str, newest_minor))
        return name, (f"Kubernetes {info.version} is newer than every benchmark: audited against {name}, "
                      f"the newest (for Kubernetes up to {covered}); choose one with --benchmark or "
                      f"`benchmark:` in {self.node.display(CONFIG_PATH)} to confirm it",)

    def _benchmarks_for(self, distribution: str) -> Dict[str, Any]:
        """The benchmarks registered for the node's distribution (kube-bench's rke2-cis-* for "rke2"), else
        the generic ones (kubeadm's CIS benchmarks), which are written for no distribution in particular."""
        own = {name: b for name, b in self.benchmarks.items() if b.distribution and b.distribution == distribution}
        return own or {name: b for name, b in self.benchmarks.items() if not b.distribution}

    def _register(self, plugin: object, name: str, version: str, source: str) -> None:
        self._offered.add(name)
        if self.pm.is_blocked(name):
            return
        if self.pm.has_plugin(name):
            raise InputError(source, f"a plugin named {name} is already loaded from {self._sources[name][1]}")
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:  # a hook implementation with parameters the hook lacks
            raise InputError(source, f"plugin {name}: {exc}")
        self._sources[name] = (version, source)

    def _check_pending(self) -> None:
        """A hook implementation whose name is no cisfix hook (a typo) would silently never run."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            plugin = self.pm.get_name(exc.plugin) or str(exc.plugin)
            hook = str(exc).split("'")[1] if "'" in str(exc) else str(exc)
            raise InputError(self._sources.get(plugin, ("", plugin))[1],
                             f"plugin {plugin} implements {hook}, which is not a cisfix hook (misspelled?)")

    def _by_name(self, hook_name: str, what: str) -> Dict[str, Any]:
        """What every plugin registers through `hook_name`, by name; one name registered twice is an error
        naming both plugins."""
        found: Dict[str, Tuple[Any, str]] = {}
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            source = self._sources.get(impl.plugin_name, ("", impl.plugin_name))[1]
            for item in impl.function() or ():
                if item.name in found:
                    raise InputError(f"{what} {item.name}", f"registered twice: by {found[item.name][1]} and by {source}")
                found[item.name] = (item, source)
        return {name: item for name, (item, _) in found.items()}

    def _load_dir(self, directory, label: str) -> None:
        """Register every plugin module and declarative file of a checks.d directory. A directory on the
        node is read through `cisfix.trust`: each file's content comes from the descriptor whose owner and
        mode were checked, along a path whose every directory was checked."""
        if not isinstance(directory, Path):  # the bundled checks.d, part of cisfix itself
            if directory.is_dir():
                for entry in sorted(directory.iterdir(), key=lambda e: e.name):
                    if _is_checks_file(entry.name):
                        self._load_file(entry.name, entry.read_bytes(), f"{label}/{entry.name}")
            return
        real = require_trusted_dir(directory, why=_REFUSED)
        for name in sorted(os.listdir(real)):
            if _is_checks_file(name):
                try:
                    data = read_trusted(real / name, why=_REFUSED)
                except FileNotFoundError:
                    raise InputError(directory / name, "no such file (a symlink to nothing?)")
                self._load_file(name, data, str(directory / name))

    def _load_file(self, name: str, data: bytes, source: str) -> None:
        text = decode_text(data, source)
        if name.endswith(".py"):
            self._register(_module_from_source(name[:-3], text, source), name[:-3], "-", source)
        else:
            declarative = DeclarativeFile(source, text)
            self.errors += declarative.errors
            self._register(declarative, name, "-", source)

    def _collect_checks(self) -> Dict[str, Check]:
        """Every registered check by id; a second definition of an id is an error unless it overrides."""
        checks: Dict[str, Check] = {}
        hook = self.pm.hook.cisfix_register_checks
        for impl in reversed(hook.get_hookimpls()):  # registration order
            returned = impl.function(**{a: self.info for a in impl.argnames if a == "node_info"}) or []
            for check in returned:
                check = replace(check, source=check.source or self._sources.get(impl.plugin_name, ("", impl.plugin_name))[1])
                existing = checks.get(check.id)
                if existing and check.id not in check.overrides:
                    if check.id in existing.overrides:
                        continue
                    raise InputError(check.id, f"check defined twice: by {existing.source} and by {check.source} "
                                               "(declare `overrides` in one of them to replace the other)")
                checks[check.id] = check
        for check in list(checks.values()):
            for other in check.overrides:
                if other != check.id:
                    checks.pop(other, None)
        return checks

    def plugins(self) -> List[PluginInfo]:
        counts: Dict[str, int] = {}
        for check in self.checks.values():
            counts[check.source] = counts.get(check.source, 0) + 1
        return [PluginInfo(name, version, source, counts.get(source, 0))
                for name, (version, source) in self._sources.items()]

    def editors(self) -> List[Editor]:
        return [e for found in self.pm.hook.cisfix_register_editors() for e in found or ()]

    def report_formats(self) -> Dict[str, ReportFormat]:
        return self._by_name("cisfix_register_report_formats", "report format")


def require_checks(option: str, ids: Iterable[str], known: Iterable[str]) -> None:
    """Every id given with `option` names a known check: a mistyped id is bad input, never silently
    nothing (a `--disable` that disables nothing would leave the check running unnoticed)."""
    known = set(known)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InputError(option, f"no such check: {', '.join(unknown)} (see `cisfix checks list`)")


def _is_checks_file(name: str) -> bool:
    return not name.startswith(".") and name.endswith((".py", ".yaml", ".yml"))


def _module_from_source(name: str, text: str, source: str) -> types.ModuleType:
    """Import a checks.d plugin module from its text (works for files inside a zipapp, too)."""
    module = types.ModuleType(f"cisfix_checksd_{name}")
    module.__file__ = source
    sys.modules[module.__name__] = module
    exec(compile(text, source, "exec"), module.__dict__)
    return module
