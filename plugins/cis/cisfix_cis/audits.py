"""Audit builders: each is a small frozen dataclass, called with a `NodeState`, that the catalog
instantiates per recommendation. Flags are read as the component sees them (its running process, else
its manifest); when the process and the file on disk disagree, the reason says so."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from cisfix.declarative import audit_files, compare
from cisfix.state import NodeState
from cisfix.types import FAIL, PASS, WARN, AuditResult, Evidence

from . import etcd, kubelet, targets

HEALTH_PATHS = ("/livez", "/readyz", "/healthz")
Values = Dict[str, Optional[str]]


# ---- flags of static-pod components ----

def with_drift(live: AuditResult, on_disk: Optional[AuditResult], component: str, where: str) -> AuditResult:
    """Add to a verdict on the live process what the file on disk would give after a restart."""
    if on_disk is None or on_disk.status == live.status:
        return live
    if on_disk.status == PASS:
        note = (f"{where} is already compliant ({on_disk.actual}), but {component} still runs with "
                f"{live.actual}: it has not restarted since the change")
    else:
        note = (f"the running {component} is compliant, but {where} now says {on_disk.actual}: the next "
                f"restart of {component} makes this {on_disk.status}")
    reason = "; ".join(r for r in (live.reason, note) if r)
    return AuditResult(live.status, live.expected, live.actual, live.evidence + on_disk.evidence, reason)


def audit_component(state: NodeState, component: str, evaluate: Callable[[Values, Tuple[Evidence, ...]], AuditResult],
                    ) -> AuditResult:
    """Evaluate a component's effective flags, and its manifest too when the process runs."""
    flags = state.flags(component)
    if not flags.running and component not in state.info.components and not flags.values:
        return AuditResult(WARN, reason=f"{component} is neither running nor configured on this node")
    live = evaluate(*_effective(state, component, flags.values, flags.evidence))
    if not flags.running:
        return live
    manifest = state.manifest_flags(component)
    path = state.component(component).manifest
    on_disk = evaluate(*_effective(state, component, manifest, Evidence(file=path))) if manifest is not None else None
    return with_drift(live, on_disk, component, path or "its manifest")


def _effective(state: NodeState, component: str, values: Values, evidence: Evidence,
               ) -> Tuple[Values, Tuple[Evidence, ...]]:
    """The settings a command line gives the component: etcd's come from its --config-file when it has one."""
    if component != etcd.COMPONENT or not values.get("config-file"):
        return values, (evidence,)
    return etcd.settings(state, values), (evidence, Evidence(file=values["config-file"]))


@dataclass(frozen=True)
class Flag:
    """One flag compared with `cisfix.declarative.compare` (ops eq, noteq, gte, has, nothas, present,
    absent); `default` is what the component uses when the flag is unset."""

    component: str
    flag: str
    op: str
    value: Any = None
    default: Optional[str] = None

    def expect(self) -> dict:
        return {"op": self.op, **({"value": self.value} if self.value is not None else {}),
                **({"default": self.default} if self.default is not None else {})}

    def evaluate(self, values: Values, evidence: Tuple[Evidence, ...]) -> AuditResult:
        return compare(self.expect(), self.flag in values, values.get(self.flag), evidence)

    def __call__(self, state: NodeState) -> AuditResult:
        return audit_component(state, self.component, self.evaluate)

    @property
    def target(self) -> str:
        return f"{self.component} --{self.flag}"


@dataclass(frozen=True)
class AllSet:
    """Every one of several flags is set (e.g. a certificate and its key)."""

    component: str
    flags: Tuple[str, ...]

    def evaluate(self, values: Values, evidence: Tuple[Evidence, ...]) -> AuditResult:
        missing = [f"--{f}" for f in self.flags if not values.get(f)]
        shown = ", ".join(f"--{f}={values[f]}" for f in self.flags if values.get(f)) or "unset"
        return AuditResult(FAIL if missing else PASS, "set: " + ", ".join(f"--{f}" for f in self.flags),
                           shown, evidence, f"not set: {', '.join(missing)}" if missing else "")

    def __call__(self, state: NodeState) -> AuditResult:
        return audit_component(state, self.component, self.evaluate)

    @property
    def target(self) -> str:
        return f"{self.component} " + " ".join(f"--{f}" for f in self.flags)


@dataclass(frozen=True)
class OnlyItems:
    """A comma-separated flag is set and all its items are in `allowed` (kube-bench's valid_elements)."""

    component: str
    flag: str
    allowed: Tuple[str, ...]

    def evaluate(self, values: Values, evidence: Tuple[Evidence, ...]) -> AuditResult:
        return only_items(values.get(self.flag), self.allowed, evidence)

    def __call__(self, state: NodeState) -> AuditResult:
        return audit_component(state, self.component, self.evaluate)

    @property
    def target(self) -> str:
        return f"{self.component} --{self.flag}"


def only_items(value: Any, allowed: Tuple[str, ...], evidence: Tuple[Evidence, ...]) -> AuditResult:
    items = value if isinstance(value, list) else [i for i in str(value or "").split(",") if i]
    expected = "only " + ",".join(allowed)
    if not items:
        return AuditResult(FAIL, expected, "unset", evidence, "not set: the built-in defaults include weak suites")
    weak = [i for i in items if i not in allowed]
    return AuditResult(FAIL if weak else PASS, expected, ",".join(items), evidence,
                       f"not allowed: {', '.join(weak)}" if weak else "")


@dataclass(frozen=True)
class DistinctFiles:
    """Two components' flags name different files (etcd's CA is not the cluster's CA)."""

    component: str
    flag: str
    other_component: str
    other_flag: str

    def evaluate(self, values: Values, evidence: Tuple[Evidence, ...], other: Optional[str] = None) -> AuditResult:
        mine = values.get(self.flag)
        if not mine:
            return AuditResult(FAIL, f"--{self.flag} set", "unset", evidence)
        same = other is not None and mine == other
        return AuditResult(FAIL if same else PASS, f"differs from {self.other_component} --{self.other_flag}",
                           mine, evidence, "the same CA signs etcd and cluster clients" if same else "")

    def __call__(self, state: NodeState) -> AuditResult:
        other = state.flags(self.other_component).get(self.other_flag)
        return audit_component(state, self.component, lambda v, e: self.evaluate(v, e, other))

    @property
    def target(self) -> str:
        return f"{self.component} --{self.flag}"


# ---- the API server's anonymous access and encryption at rest ----

@dataclass(frozen=True)
class AnonymousAuth:
    """Anonymous requests are off (`--anonymous-auth=false`) or, through an AuthenticationConfiguration,
    allowed only for the health endpoints (CIS accepts that; kubeadm's probes need it)."""

    component: str = "kube-apiserver"
    target: str = "kube-apiserver --anonymous-auth / --authentication-config"

    def __call__(self, state: NodeState) -> AuditResult:
        return audit_component(state, self.component, lambda values, ev: self.evaluate(state, values, ev))

    def evaluate(self, state: NodeState, values: Values, evidence: Tuple[Evidence, ...]) -> AuditResult:
        expected = "false, or anonymous only for " + ",".join(HEALTH_PATHS)
        if values.get("anonymous-auth") == "false":
            return AuditResult(PASS, expected, "--anonymous-auth=false", evidence,
                               "kubeadm's liveness probes carry no credentials and get 401 with this setting")
        config_path = values.get("authentication-config")
        anonymous = None
        if config_path:
            data = state.yaml(config_path)
            anonymous = data.get("anonymous") if isinstance(data, dict) else None
            evidence += (Evidence(file=config_path, detail="anonymous"),)
        if not isinstance(anonymous, dict):
            return AuditResult(FAIL, expected, values.get("anonymous-auth", "unset (default true)"), evidence)
        if not anonymous.get("enabled"):
            return AuditResult(PASS, expected, "anonymous disabled", evidence)
        paths = tuple(c.get("path", "") for c in anonymous.get("conditions") or () if isinstance(c, dict))
        ok = bool(paths) and set(paths) <= set(HEALTH_PATHS)
        return AuditResult(PASS if ok else FAIL, expected, "anonymous for " + (",".join(paths) or "every path"),
                           evidence)


STRONG_PROVIDERS = ("aescbc", "kms", "secretbox")


@dataclass(frozen=True)
class EncryptionProviders:
    """Secrets are encrypted first with aescbc, kms or secretbox (identity first means not at all)."""

    component: str = "kube-apiserver"
    target: str = "kube-apiserver --encryption-provider-config"

    def __call__(self, state: NodeState) -> AuditResult:
        return audit_component(state, self.component, lambda values, ev: self.evaluate(state, values, ev))

    def evaluate(self, state: NodeState, values: Values, evidence: Tuple[Evidence, ...]) -> AuditResult:
        expected = "secrets encrypted first with " + " or ".join(STRONG_PROVIDERS)
        path = values.get("encryption-provider-config")
        if not path:
            return AuditResult(FAIL, expected, "no --encryption-provider-config", evidence)
        data = state.yaml(path)
        evidence += (Evidence(file=path),)
        if data is None:
            return AuditResult(FAIL, expected, "file missing", evidence, f"{path} does not exist")
        first = {}
        for entry in (data or {}).get("resources") or ():
            providers = entry.get("providers") or [{}]
            for resource in entry.get("resources") or ():
                first.setdefault(resource, next(iter(providers[0]), "none"))
        secrets = first.get("secrets") or first.get("*.*") or first.get("*.")
        if secrets is None:
            return AuditResult(FAIL, expected, "secrets not listed", evidence)
        return AuditResult(PASS if secrets in STRONG_PROVIDERS else FAIL, expected, f"secrets: {secrets}", evidence)


# ---- the kubelet ----

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(text: str) -> Optional[float]:
    """A Go duration (`4h0m0s`, `5m`, `0`) in seconds, or None when it is not one."""
    if text.strip() == "0":
        return 0.0
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass(frozen=True)
class KubeletSetting:
    """A kubelet setting, as `--flag` (wins) or `path` in its config file, compared with `compare`.
    `zero_is_default`: a zero duration in the config file means "use the default" (kubelet defaulting),
    while the same zero on the command line is taken literally. `flags_default`: the default of a kubelet
    that runs without a config file, where it differs (kubelet `applyLegacyDefaults`, cmd/kubelet/app/
    options/options.go: --read-only-port 10255 there, 0 in a KubeletConfiguration)."""

    flag: Optional[str]
    path: Optional[str]
    op: str
    value: Any = None
    default: Any = None
    zero_is_default: bool = False
    allowed: Tuple[str, ...] = ()  # op "only": every item in this list
    flags_default: Any = None
    component = kubelet.COMPONENT

    @property
    def target(self) -> str:
        return " / ".join(filter(None, (self.flag and f"kubelet --{self.flag}", self.path and f"config {self.path}")))

    def __call__(self, state: NodeState) -> AuditResult:
        view = kubelet.view(state)
        default = self.default if self.flags_default is None or not kubelet.without_config_file(state) else self.flags_default
        live = self.evaluate(*view.setting(self.flag, self.path), default=default)
        if not view.running:
            return live
        return with_drift(live, self.evaluate(*view.setting_on_disk(self.flag, self.path), default=default),
                          "kubelet", "its flag files and config file")

    def evaluate(self, present: bool, value: Any, evidence: Evidence, default: Any = None) -> AuditResult:
        default = self.default if default is None else default
        from_config = evidence.file is not None and evidence.detail == self.path
        if (self.zero_is_default and present and from_config and value is not None
                and seconds(str(value)) == 0):
            present = False
        if self.op == "only":
            return only_items(value if present else None, self.allowed, (evidence,))
        if self.op == "nothas" and isinstance(value, dict):  # featureGates in the config file
            value = ",".join(f"{k}={str(v).lower()}" for k, v in value.items())
        if self.op == "noteq" and present and seconds(str(value)) is not None:
            value = "0" if seconds(str(value)) == 0 else str(value)
        expect = {"op": self.op, **({"value": self.value} if self.value is not None else {}),
                  **({"default": default} if default is not None else {})}
        return compare(expect, present, value, (evidence,))


# ---- files ----

@dataclass(frozen=True)
class Files:
    """Mode (no bits beyond `mode`) and owner of files a `targets` resolver names. `missing` is the
    verdict when none exists (kube-bench reports WARN when there is nothing to stat)."""

    where: targets.Target
    mode: Optional[str] = None
    owner: Optional[str] = None
    missing: str = WARN

    @property
    def target(self) -> str:
        return f"files {self.where.describe}"

    def __call__(self, state: NodeState) -> AuditResult:
        patterns = self.where(state)
        expect = {"op": "mode", "value": self.mode} if self.mode else {"op": "owner"}
        if self.owner:
            expect["owner"] = self.owner
        result = audit_files(state, patterns, expect)
        if result.actual == "no such file":
            return AuditResult(self.missing, result.expected, "no such file",
                               reason=f"nothing to check: {self.where.describe} does not exist on this node")
        return result


@dataclass(frozen=True)
class KubeProxyMetrics:
    """kube-proxy's metrics endpoint listens on the loopback only (its default, 127.0.0.1:10249)."""

    target: str = "kube-proxy --metrics-bind-address / metricsBindAddress"

    def __call__(self, state: NodeState) -> AuditResult:
        flags = state.flags("kube-proxy")
        value, evidence = flags.get("metrics-bind-address"), (flags.evidence,)
        config = flags.get("config")
        if value is None and config:
            data = state.yaml(config)
            if isinstance(data, dict):
                value, evidence = data.get("metricsBindAddress"), (Evidence(file=config, detail="metricsBindAddress"),)
        if not value:
            return AuditResult(PASS, "127.0.0.1", "unset (default 127.0.0.1:10249)", evidence)
        ok = str(value).startswith(("127.0.0.1", "[::1]", "localhost"))
        return AuditResult(PASS if ok else FAIL, "127.0.0.1", str(value), evidence)
