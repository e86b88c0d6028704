"""Synthetic node report documents (`cisfix-node-report/1`) for the HTML report's tests and its size
benchmark: realistic in shape and size (about 130 checks, some fixed with diffs and gate records, an
exception, drift), deterministic for a given seed, and optionally carrying a hostile string."""
from __future__ import annotations

import random
import zlib
from typing import Any, Dict, List

HOSTILE = '<script>console.log("HOSTILE-RAN")</script>&amp;"\'<img src=x>'
SECTIONS = (("1.1", 21), ("1.2", 30), ("1.3", 7), ("1.4", 2), ("2", 7), ("3.1", 3), ("3.2", 2), ("4.1", 10),
            ("4.2", 13), ("4.3", 1), ("5.1", 13), ("5.2", 13), ("5.3", 2), ("5.4", 2), ("5.5", 1), ("5.7", 4))


COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kubelet")
CLUSTERS = 4  # nodes of one cluster share their manifests, so most of their diffs are the same text


def diff(flags: List[str], component: str, context: str) -> str:
    path = f"/etc/kubernetes/manifests/{component}.yaml"
    changed = "".join(f"-    - {flag}=true\n+    - {flag}=false\n" for flag in flags)
    return (f"--- {path}\n+++ {path}\n@@ -14,7 +14,7 @@ spec:\n   containers:\n   - command:\n"
            f"     - {component}\n     - {context}\n{changed}"
            f"     - --secure-port=6443\n     - --etcd-keyfile=<hidden>\n")


def transaction(check_ids: List[str], component: str, n: int, context: str) -> Dict[str, Any]:
    """One gated transaction per component, as `fix` makes them: every check it fixed shares it."""
    return {"txid": f"20261202T13400{n}Z-{zlib.crc32(component.encode()) % 0xffffff:06x}",
            "time": f"2026-12-02T13:40:0{n}Z", "label": f"fix {', '.join(check_ids)}", "state": "committed",
            "files": [{"path": f"/etc/kubernetes/manifests/{component}.yaml", "mode": "0644 -> 0600",
                       "diff": diff([f"--flag-{c.replace('.', '-')}" for c in check_ids], component, context)}],
            "gate": {"components": [component], "verdict": "healthy",
                     "restart_seen": f"2026-12-02T13:40:1{n}Z", "healthy_since": f"2026-12-02T13:40:3{n}Z",
                     "stability_window": 15.0, "verified": True, "message": "ready on /readyz, restart count stable"}}


def node_doc(name: str, seed: int = 0, fixed: bool = True, hostile: bool = False,
             halted: bool = False) -> Dict[str, Any]:
    """One node's report. `fixed`: after `cisfix fix` (what cisfix can fix is PASS with its change, a few
    checks need a person); else before it (a fifth of the automated checks FAIL)."""
    rnd = random.Random(seed)
    checks: List[Dict[str, Any]] = []
    summary = dict.fromkeys(("PASS", "FAIL", "NEEDS_A_PERSON", "EXCEPTED", "NOT_APPLICABLE", "MANUAL", "ERROR",
                             "FIXED_BY_CISFIX"), 0)
    exceptions = []
    fixed_by: Dict[str, List[Dict[str, Any]]] = {}
    for section, count in SECTIONS:
        for i in range(1, count + 1):
            check_id = f"{section}.{i}"
            component = COMPONENTS[zlib.crc32(check_id.encode()) % len(COMPONENTS)]
            status = rnd.choices(("PASS", "FAIL", "NEEDS_A_PERSON", "EXCEPTED", "NOT_APPLICABLE", "MANUAL"),
                                 (55, 1 if fixed else 20, 3, 1, 6, 20))[0]
            check = {"id": check_id, "title": f"Ensure that the --flag-{check_id} argument is set as appropriate",
                     "section": section, "level": 1 if i % 5 else 2, "status": status, "automated": status != "MANUAL",
                     "component": component,
                     "evidence": [f"{component} pid {1000 + i} argv: --flag-{check_id}=true --secure-port=6443",
                                  f"/etc/kubernetes/manifests/{component}.yaml mode 0644 owner root:root"],
                     "reason": f"expected false, found true on {component}",
                     "remediation": None if status in ("PASS", "NOT_APPLICABLE") else
                     f"Edit the {component} manifest on the control plane node and set --flag-{check_id}=false.",
                     "exception": None, "changes": []}
            if fixed and status == "PASS" and rnd.random() < 0.25:
                fixed_by.setdefault(component, []).append(check)
                summary["FIXED_BY_CISFIX"] += 1
            if status == "EXCEPTED":
                exc = {"reason": "the ingress controller needs it until the 2027 migration",
                       "who": "alice (config.yaml)",
                       "expires": "2026-09-30" if len(exceptions) % 2 == 0 else "2027-06-30",
                       "expired": len(exceptions) % 2 == 0}
                check["exception"] = exc
                exceptions.append(dict(exc, id=check_id))
            summary[status] += 1
            checks.append(check)
    for n, (component, fixed_checks) in enumerate(sorted(fixed_by.items())):
        # etcd's flags name the node; the other components' manifests are the cluster's.
        context = f"--name={name}" if component == "etcd" else f"--advertise-address=10.{seed % CLUSTERS}.0.10"
        change = transaction([c["id"] for c in fixed_checks], component, n, context)
        for check in fixed_checks:
            check["changes"].append(change)
    if hostile:
        checks[0]["title"] = HOSTILE
        checks[0]["evidence"].append(HOSTILE)
    fixed = [c for c in checks if c["changes"]]
    doc = {"format": "cisfix-node-report/1", "generated": "2026-12-02T13:40:00Z",
           "cisfix": {"version": "0.1.0", "commit": "abc123def456"},
           "node": {"name": name, "root": "/", "distribution": "kubeadm", "layout": "kubeadm",
                    "kubernetes_version": "1.32.1", "node_types": ["master", "etcd", "worker"]},
           "benchmark": {"name": "cis-1.12", "level": 1},
           "warnings": ["Kubernetes 1.35 is newer than every benchmark cisfix has; judged against cis-1.12"],
           "halted": "the gate saw kube-apiserver unhealthy after rollback" if halted else None,
           "paused": None, "summary": summary, "checks": checks, "exceptions": exceptions,
           "drift": {"corrections": [{"time": c["changes"][0]["time"], "check": c["id"], "class": "manual",
                                      "file": c["changes"][0]["files"][0]["path"], "found": "--profiling=true",
                                      "outcome": "FIXED", "txid": c["changes"][0]["txid"]} for c in fixed[:3]],
                     "flapping": {fixed[0]["id"]: [
                         {"time": "2026-12-01T10:00:00Z", "class": "upgrade", "outcome": "FIXED"},
                         {"time": "2026-12-02T10:00:00Z", "class": "manual", "outcome": "FIXED"}]}
                     if fixed else {}},
           "sections": [{"title": "From plugin acme" + (HOSTILE if hostile else ""),
                         "text": "acme says: all good\n" + (HOSTILE if hostile else ""), "html": HOSTILE}]}
    return doc
