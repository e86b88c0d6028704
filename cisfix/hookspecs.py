"""The plugin contract: every hook a cisfix plugin can implement.

A plugin is a module or object with functions named like these hooks, marked with `cisfix.hookimpl`.
The built-in content (the CIS benchmark, declarative checks.d files) uses exactly this contract.
Plugins return data — checks, plans of edits, node descriptions; only the core writes files, inside a
transaction.

A plugin is found through the `cisfix` entry point group of an installed distribution, or as a `*.py`
module in a checks.d directory. A hook implementation may accept any subset of the hook's parameters.

    # my_plugin.py
    import cisfix

    @cisfix.hookimpl
    def cisfix_register_checks(node_info):
        return [cisfix.Check(id="ACME-9", title="...", audit=my_audit)]
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .node import Node
    from .state import NodeState
    from .types import (Benchmark, Check, CheckResult, Editor, HostPath, NetChange, NodeInfo, PersistPlan, Plan, Probe,
                        ReportFormat, ReportSection)

hookspec = pluggy.HookspecMarker("cisfix")


@hookspec
def cisfix_register_checks(node_info: "NodeInfo") -> "Optional[List[Check]]":
    """Return the checks this plugin provides.

    :param node_info: how the node is laid out (see `cisfix_describe_node`); use it to point a check at
        the right manifest or config file, or to leave out checks that cannot apply.

    Return a list of `cisfix.Check`, or None for none. Each check's `id` must be unique across all
    plugins; two plugins defining the same id is an error naming both, unless one lists the other's
    id in its `overrides`.

    Example::

        @cisfix.hookimpl
        def cisfix_register_checks(node_info):
            def audit(state):
                flags = state.flags("kube-apiserver")
                ok = flags.get("profiling") == "false"
                return cisfix.AuditResult(cisfix.PASS if ok else cisfix.FAIL, "false", flags.get("profiling", "<unset>"))
            return [cisfix.Check(id="ACME-1", title="Profiling is off", audit=audit,
                                 component="kube-apiserver")]
    """


@hookspec
def cisfix_register_benchmarks() -> "Optional[List[Benchmark]]":
    """Return the benchmarks this plugin implements, so `cisfix benchmarks` lists them and the core can
    choose one for the node.

    Return a list of `cisfix.Benchmark`, or None; two benchmarks of one name are an error naming both
    plugins. The core sets `node_info.benchmark` to the one asked
    for with `--benchmark` (or `benchmark:` in the node configuration), else, among the benchmarks whose
    `distribution` is the node's (else the generic ones, `distribution=""`), to the benchmark whose
    `versions` include the node's Kubernetes minor version, else, for a node newer than every
    benchmark, to the newest one, adding a warning to `node_info.warnings` that every report carries;
    `cisfix_register_checks` then sees it.

    Example::

        @cisfix.hookimpl
        def cisfix_register_benchmarks():
            return [cisfix.Benchmark("acme-2", "ACME hardening guide v2", ("1.30", "1.31"))]
    """


@hookspec(firstresult=True)
def cisfix_describe_node(node: "Node", config: dict) -> "Optional[NodeInfo]":
    """The layout hook: describe the node — its distribution, Kubernetes version, node types and, for
    each component, where its settings live and in which precedence, how it is probed, restarted and
    what it depends on, and how its process is recognised (`Component.user`, and its `manifest`'s pod or
    its `unit`'s cgroup: see `cisfix.identity`; argv alone never makes a process a component).

    :param node: the node root; `node.host("/etc/...")` gives the host path of a node path.
    :param config: the parsed node configuration file `<root>/etc/cisfix/config.yaml` (empty when absent).

    firstresult: the first plugin that returns a `cisfix.NodeInfo` wins; return None when this is not a
    node your layout knows (e.g. an RKE2 layout returns None on a kubeadm node). The built-in kubeadm
    layout (`cisfix.layouts.kubeadm`), which runs last, describes a kubeadm node, adjusted by the
    configuration file. Checks never name a component's files: they plan `cisfix.Configure` changes of
    settings, and the layout's `Component` says which file holds each (see plugins/README.md, "Writing
    a layout").

    Example::

        @cisfix.hookimpl
        def cisfix_describe_node(node, config):
            if not node.host("/etc/rancher/rke2").exists():
                return None
            return cisfix.NodeInfo(distribution="rke2", components={...})
    """


@hookspec
def cisfix_register_editors() -> "Optional[List[Editor]]":
    """Return editors for further file formats (e.g. a TOML config or an env file).

    Return a list of `cisfix.Editor`, or None. An editor receives the file's text and the operations
    that apply to it and returns `cisfix.plan.Edited`; it must change only what it has to and must
    raise `cisfix.EditError` for input it cannot edit safely. The built-in static pod manifest and YAML
    editors come first; a plugin editor is used for files that match its patterns.

    Example::

        @cisfix.hookimpl
        def cisfix_register_editors():
            return [cisfix.Editor("env-file", ("*.env",), (cisfix.SetFlag,), edit_env_file)]
    """


@hookspec
def cisfix_register_probes() -> "Optional[List[Probe]]":
    """Return health probes for components, used to gate changes to their files.

    Return a list of `cisfix.Probe`, or None. `probe.check(state, component)` returns
    `(healthy, message)`; it must never count an HTTP 401 or 403 as healthy, nor an answer another
    process sent on the component's port: ask it with `cisfix.health.get(url, state, settings,
    component=component)`. When several plugins probe the same component, all must pass.

    Example::

        @cisfix.hookimpl
        def cisfix_register_probes():
            return [cisfix.Probe("my-agent", lambda state, component: (True, "ok"))]
    """


@hookspec
def cisfix_register_report_formats() -> "Optional[List[ReportFormat]]":
    """Return further output formats for `cisfix audit --format NAME`.

    Return a list of `cisfix.ReportFormat`, or None. `render(results, summary, node_info)` receives the
    list of `cisfix.CheckResult`, the summary counts (a dict of status -> number) and the node's
    `cisfix.NodeInfo` (it may leave that out), and returns the text. The NodeInfo says what the audit
    judged against, which a report should name: `name` (the node's), `version` (Kubernetes),
    `distribution`, `layout`, `benchmark`, `level` (the `--level` asked; None for every level), and its
    `warnings`; `cisfix.judged.judged_against(node_info)` gives all of it, with the cisfix build, as the
    built-in JSON's `judged_against` object. Two formats of one name are an error naming both plugins.

    Example::

        @cisfix.hookimpl
        def cisfix_register_report_formats():
            return [cisfix.ReportFormat("csv", lambda results, summary: "...", "comma-separated values")]
    """


@hookspec(firstresult=True)
def cisfix_veto_plan(check: "Check", plan: "Plan", node_info: "NodeInfo") -> "Optional[str]":
    """Inspect a remediation plan before it is applied, and veto it by returning the reason.

    :param check: the check whose remediation this is.
    :param plan: the changes it would make (`cisfix.Plan`).
    :param node_info: the node description.

    firstresult: the first non-None answer vetoes the plan; the check is reported as SKIPPED with that
    reason and nothing of it is written. Return None to let it through.

    Example::

        @cisfix.hookimpl
        def cisfix_veto_plan(check, plan, node_info):
            if check.component == "etcd":
                return "etcd changes need a change ticket on this cluster"
    """


@hookspec
def cisfix_observe_result(result: "CheckResult") -> None:
    """Observe each check's result as soon as it is known (audit verdict, and fix outcome).

    :param result: a `cisfix.CheckResult`: the check, its audit verdict and, during a fix, the
        remediation status and transaction id.

    Return value ignored. Use it to forward results to a SIEM, a metrics system or a ticket queue;
    it must not raise (an exception ends the run).

    Example::

        @cisfix.hookimpl
        def cisfix_observe_result(result):
            syslog.syslog(f"{result.check.id} {result.audit.status}")
    """


@hookspec(firstresult=True)
def cisfix_plan_persistence(node_info: "NodeInfo", state: "NodeState",
                            changes: "List[NetChange]") -> "Optional[PersistPlan]":
    """The layout hook for `cisfix persist` (and `fix --persist`): say where the node's installer keeps
    what it regenerates the fixed files from, so that its next upgrade keeps the fixes.

    :param node_info: the node description (`cisfix_describe_node`).
    :param state: the node's files and settings; read node files through it.
    :param changes: every node file cisfix's committed fixes changed, as `cisfix.NetChange` (the file
        before the first of them, and now).

    firstresult: return a `cisfix.PersistPlan` — API objects to update (the core reads, shows and writes
    them with optimistic concurrency, or writes their `offline` YAML under the state folder when the
    API server cannot be reached), files for the installer (written under `<state>/persist/files`) and
    notes, and for a cluster with several control-plane nodes the files they must all hold
    (`cluster_files`) and how to reach the cluster (`cluster`: a `cisfix.ClusterAccess`), which the core
    publishes and waits for (`cisfix.persist_nodes`) — or None when this is not your layout's node. The built-in kubeadm layout persists into the
    `kubeadm-config` and `kubelet-config` ConfigMaps and kubeadm patch files
    (`cisfix.layouts.kubeadm.persist`). Where no installer reads them and a person must paste them into the
    provider's own mechanism (a node pool's settings, user data), set `show_files`: persist prints them
    (the managed worker layouts, `cisfix.layouts.worker`).

    Example::

        @cisfix.hookimpl
        def cisfix_plan_persistence(node_info, state, changes):
            if node_info.distribution != "rke2":
                return None
            return cisfix.PersistPlan(notes=("RKE2 keeps its config in /etc/rancher/rke2/config.yaml",))
    """


@hookspec
def cisfix_host_paths(node_info: "NodeInfo") -> "Optional[List[HostPath]]":
    """Declare the node paths your plugin reads (`audit`) and writes (`fix`), so that cisfix in a container
    can be given these and nothing else: `cisfix paths --for audit|fix` lists every plugin's, and the
    manifests in deploy/kubernetes mount exactly those (a test holds them to it).

    :param node_info: the node description (`cisfix_describe_node`): declare the paths it names.

    Return a list of `cisfix.HostPath`, or None. Declare a folder when its files are replaced by rename;
    declare with HIDE what lies inside a declared folder but must never be seen (other pods' secrets). A
    check that reads a path nobody declared still works on the host, and fails in the container.

    Example::

        @cisfix.hookimpl
        def cisfix_host_paths(node_info):
            return [cisfix.HostPath("/etc/acme", "the ACME agent's configuration", fix=cisfix.types.WRITE)]
    """


@hookspec
def cisfix_report_sections(report: dict, node_info: "NodeInfo") -> "Optional[List[ReportSection]]":
    """Add sections to the node report (`cisfix report`, `cisfix audit --format html`): what your plugin
    knows that an auditor should read beside the checks — an agent's own findings, a change ticket, the
    state of a tool you run.

    :param report: the node report document built so far (a copy: changing it changes nothing), as
        `cisfix report --format json` prints it without `sections`: `node`, `benchmark`, `summary`,
        `checks` (each with `id`, `status`, `evidence`, `changes`, ...), `exceptions`, `drift`. See the
        README's "Reports" section.
    :param node_info: the node description (`cisfix_describe_node`).

    Return a list of `cisfix.ReportSection(title, text)`, or None. Sections appear in the page after the
    built-in ones, in plugin order, and in the JSON document's `sections` (so a fleet page shows them
    too). The text is plain text, shown escaped and preformatted: never markup. Never put secrets in it:
    the report is handed to people outside the node. The built-in drift summary is such a section
    (`cisfix.builtin`).

    Example::

        @cisfix.hookimpl
        def cisfix_report_sections(report):
            failing = [c["id"] for c in report["checks"] if c["status"] == "FAIL"]
            return [cisfix.ReportSection("ACME ticket", f"CHG-1234 covers {len(failing)} open findings")]
    """
