"""Soak: at least 60 `cisfix drift` runs on a lab node, as a timer runs them, with a scripted actor
between runs — manual edits of three fixed flags, a `lab upgrade` (kubeadm regenerating the static pods
without cisfix's edits), an actor that re-breaks one flag after every correction, a pause window — and
at least 30 runs with nothing to do. After every run the textfile parses strictly and the events log
holds exactly one entry per correction so far. The lab runs its short timings and the node config a
1 s stability window; the engine has no special case for any of it."""
from __future__ import annotations

import collections
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import add_summary_line
from prometheus import parse_prometheus, value

MANUAL = {"1.2.15": ("kube-apiserver", "--profiling=false", "--profiling=true"),
          "1.3.2": ("kube-controller-manager", "--profiling=false", "--profiling=true"),
          "1.4.1": ("kube-scheduler", "--profiling=false", "--profiling=true")}
FLAPPER = ("1.2.17", "kube-apiserver", "--audit-log-maxage=30", "--audit-log-maxage=7")
PAUSED = ("1.2.18", "kube-apiserver", "--audit-log-maxbackup=10", "--audit-log-maxbackup=2")
FLAP_LIMIT = 3  # the default
MIN_RUNS, MIN_QUIET = 60, 30


class Soak:
    """Runs drift as a timer would and keeps the counts."""

    def __init__(self, lab, textfile: Path) -> None:
        self.lab, self.textfile = lab, textfile
        self.state = lab.root / "var/lib/cisfix"
        self.runs = self.quiet = self.corrections = self.flapping_runs = 0
        self.classes: collections.Counter = collections.Counter()
        self.restarts: collections.Counter = collections.Counter()

    def cisfix(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cisfix", "--root", str(self.lab.root), *args],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)

    def drift(self, *args: str):
        """One run: (result, restarts by component during it, metrics)."""
        started, kubelet = time.time(), self.lab.restarts("kubelet")
        result = self.cisfix("-q", "drift", "--level", "1", "--textfile", str(self.textfile), *args)
        restarts = collections.Counter(e["component"] for e in self.lab.events("pod-started", since=started))
        restarts["kubelet"] += self.lab.restarts("kubelet") - kubelet
        restarts = +restarts  # drop zeros
        self.runs += 1
        self.restarts.update(restarts)
        samples = parse_prometheus(self.textfile.read_text())
        assert value(samples, "cisfix_last_run_exit_code") == result.returncode
        corrected = [line for line in result.stdout.splitlines() if line.startswith("CORRECTED ")]
        self.corrections += len(corrected)
        self.classes.update(line.split("(")[1].split(",")[0] for line in corrected)
        self.flapping_runs += result.returncode == 6
        assert len(self.events()) == self.corrections, result.stdout + result.stderr
        return result, restarts, samples

    def events(self) -> list:
        path = self.state / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def snapshot(self) -> dict:
        """What a run with nothing to do must not write: the node's files and cisfix's state."""
        files = [*(self.lab.root / "etc/kubernetes/manifests").iterdir(), self.lab.root / "var/lib/kubelet/config.yaml",
                 *(p for p in self.state.iterdir() if p.is_file() and p.name not in ("lock", "drift.lock"))]
        return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}

    def quiet_run(self) -> None:
        before = self.snapshot()
        result, restarts, samples = self.drift()
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), result.stdout + result.stderr
        assert restarts == {} and self.snapshot() == before
        assert value(samples, "cisfix_compliance_state") == 2  # compliant but for the accepted risks
        self.quiet += 1

    def act(self, component: str, old: str, new: str) -> None:
        """The other actor edits a manifest; the kubelet restarts the pod before the next run."""
        since = time.time()
        self.lab.edit_manifest(component, old, new)
        self.lab.wait_for_event("pod-started", component, since=since, timeout=120)
        self.lab.wait_healthy(120)


def test_soak_drift_runs_with_a_scripted_actor(make_lab, tmp_path, request):
    lab = make_lab()
    soak = Soak(lab, tmp_path / "cisfix.prom")
    config = lab.root / "etc/cisfix/config.yaml"
    operator = "gate: {timeout: 90, stabilityWindow: 1}\n"
    config.write_text(config.read_text() + operator)
    dry = soak.cisfix("fix", "--level", "1", "--dry-run", "--format", "json")
    people = [r["id"] for r in json.loads(dry.stdout)["results"] if r["fix"] == "SKIPPED" and r["status"] == "FAIL"]
    expires = datetime.date.today() + datetime.timedelta(days=90)
    operator += "exceptions:\n" + "".join(f"  - {{id: '{i}', reason: 'needs a person; ticket SEC-7', "
                                          f"expires: {expires}}}\n" for i in people)
    config.write_text(config.read_text() + operator.split("\n", 1)[1])
    fixed = soak.cisfix("fix", "--level", "1")
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-2000:]

    for _ in range(10):
        soak.quiet_run()

    # Manual edits of three fixed flags: each corrected once, class manual, one restart of its component.
    for check_id, (component, good, bad) in MANUAL.items():
        soak.act(component, good, bad)
        result, restarts, _ = soak.drift()
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith(f"CORRECTED {check_id} (manual, /etc/kubernetes/manifests/{component}.yaml")
        assert len(result.stdout.splitlines()) == 1 and restarts == {component: 1}
        for _ in range(4):
            soak.quiet_run()

    # kubeadm upgrade: the static pods regenerated with new image tags and without cisfix's edits.
    upgrade = soak.cisfix("lab", "upgrade", str(lab.root), "--to", "1.32.1", "--wait", "120")
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    config.write_text(config.read_text() + operator)  # the lab rewrote the node config: the operator's part again
    upgraded = len(soak.events())
    result, restarts, _ = soak.drift()
    assert result.returncode == 0, result.stdout + result.stderr
    classes = {e["class"] for e in soak.events()[upgraded:]}
    assert classes == {"upgrade"} and "kube-apiserver" in restarts, result.stdout
    assert set(restarts.values()) == {1}, restarts  # one restart per component
    assert b"v1.32.1" in (lab.root / "etc/kubernetes/manifests/kube-apiserver.yaml").read_bytes()
    for _ in range(4):
        soak.quiet_run()

    # An actor that re-breaks one flag after every correction: FLAPPING once the check was corrected K
    # times in the window (the upgrade's correction of it counts too), and no restart after that.
    check_id, component, good, bad = FLAPPER
    while True:
        soak.act(component, good, bad)
        result, restarts, _ = soak.drift()
        if result.returncode == 6:
            break
        assert result.returncode == 0 and result.stdout.startswith(f"CORRECTED {check_id} (manual")
        assert restarts == {component: 1}
    assert len([e for e in soak.events() if e["id"] == check_id]) == FLAP_LIMIT
    broken = lab.manifest(component).read_bytes()
    assert restarts == {} and f"FLAPPING {check_id}" in result.stdout
    for _ in range(2):
        result, restarts, samples = soak.drift()
        assert result.returncode == 6, result.stdout + result.stderr
        assert result.stdout.startswith(f"FLAPPING {check_id}: corrected {FLAP_LIMIT} time(s) in the window")
        assert restarts == {} and lab.manifest(component).read_bytes() == broken
        assert value(samples, "cisfix_flapping", id=check_id) == 1
    soak.act(component, bad, good)  # a person settles it, then resets the guard
    result, restarts, samples = soak.drift("--reset", check_id)
    assert (result.returncode, result.stdout, restarts) == (0, "", {})
    assert value(samples, "cisfix_flapping", id=check_id) == 0

    # A pause window: the node is changed under it, nothing is corrected, exit 0; then unpause.
    check_id, component, good, bad = PAUSED
    assert soak.cisfix("pause", "--reason", "maintenance window CHG-9", "--until", "1h").returncode == 0
    soak.act(component, good, bad)
    broken = lab.manifest(component).read_bytes()
    for _ in range(3):
        result, restarts, samples = soak.drift()
        assert result.returncode == 0 and result.stdout.startswith("paused by ")
        assert len(result.stdout.splitlines()) == 1 and "maintenance window CHG-9" in result.stdout
        assert restarts == {} and lab.manifest(component).read_bytes() == broken
        assert value(samples, "cisfix_paused") == 1
    assert soak.cisfix("unpause").returncode == 0
    result, restarts, _ = soak.drift()
    assert result.returncode == 0 and result.stdout.startswith(f"CORRECTED {check_id} (manual")
    assert restarts == {component: 1}

    while soak.runs < MIN_RUNS or soak.quiet < MIN_QUIET:
        soak.quiet_run()
    assert all(s.healthy for s in lab.status().values())
    events = soak.events()
    assert len(events) == soak.corrections and all(e["outcome"] == "FIXED" for e in events)
    line = (f"drift soak: {soak.runs} runs ({soak.quiet} with nothing to do), drifts by class "
            f"{dict(sorted(soak.classes.items()))}, {soak.corrections} corrections, restarts "
            f"{dict(sorted(soak.restarts.items()))}, {soak.flapping_runs} runs FLAPPING (1 check)")
    print(line)
    add_summary_line(request.config, line)
