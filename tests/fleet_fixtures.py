"""The fleet playbook deploy/ansible/cisfix.yml run for real against three lab nodes on this machine
(local connection, one cisfix_root each): cp1 and cp2 form the control plane, w1 is the worker. The
`fleet` fixture and what its tests read from a run (the play's recap and task outcomes, the nodes'
journals and files, the fleet page's text); the tests are in test_fleet_ansible*.py, two files so that
`--dist loadfile` runs them on two workers. `Fleet` also runs the playbook on other labs in other groups
(test_fleet_ansible_persist.py: a lab cluster's two control-plane nodes).

Each run audits and fixes one API server flag (1.2.15) with a short stability window, so a run takes
tens of seconds; the run that checks the fleet report audits the whole benchmark."""
from __future__ import annotations

import hashlib
import html.parser
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK = REPO / "deploy/ansible/cisfix.yml"
GATE = "--timeout 60 --stability-window 2"
CHECK = "--check 1.2.15"  # API server profiling off: one restart of the API server
NODES = ("cp1", "cp2", "w1")


class Fleet:
    def __init__(self, labs: Dict[str, object], work: Path, pyz: Path, shiv_root: Path,
                 groups: Optional[Dict[str, List[str]]] = None) -> None:
        self.labs, self.work, self.pyz, self.shiv_root = labs, work, pyz, shiv_root
        self.groups = groups or {"control_plane": ["cp1", "cp2"], "workers": ["w1"]}  # the inventory's groups
        self.report_dir = work / "report"
        self.all_vars = {"cisfix_args": CHECK, "cisfix_fix_args": GATE}
        self.host_vars: Dict[str, dict] = {name: {} for name in labs}
        self.env: Dict[str, str] = {}  # more environment for ansible-playbook

    def inventory(self) -> Path:
        def host(name: str) -> dict:
            return {"cisfix_root": str(self.labs[name].root), "cisfix_install_dir": str(self.work / f"bin-{name}"),
                    **self.host_vars[name]}
        inventory = {"all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                     "cisfix_pyz": str(self.pyz), "cisfix_report_dir": str(self.report_dir), **self.all_vars},
            "children": {group: {"hosts": {name: host(name) for name in names}} for group, names in self.groups.items()}}}
        path = self.work / "inventory.yml"  # JSON is YAML
        path.write_text(json.dumps(inventory, indent=2))
        return path

    def play(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="1", ANSIBLE_HOME=str(self.work / "ansible"),
                   ANSIBLE_LOCAL_TEMP=str(self.work / "ansible/tmp"), ANSIBLE_REMOTE_TEMP=str(self.work / "ansible/tmp"),
                   ANSIBLE_RETRY_FILES_ENABLED="0", LC_ALL="C.UTF-8", SHIV_ROOT=str(self.shiv_root), **self.env)
        playbook = Path(sys.executable).with_name("ansible-playbook")
        return subprocess.run([str(playbook), "-i", str(self.inventory()), str(PLAYBOOK), *args],
                              capture_output=True, text=True, env=env, timeout=600, cwd=self.work)

    def journal(self, name: str) -> List[dict]:
        path = self.labs[name].root / "var/lib/cisfix/journal.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def snapshot(self) -> Dict[str, str]:
        """sha256 of every file a cisfix run could change on the nodes: etc/ (manifests, PKI, kubeconfigs),
        the kubelet's files, cisfix's state."""
        digests = {}
        for name, lab in self.labs.items():
            for top in ("etc", "var/lib/kubelet", "var/lib/cisfix"):
                for path in sorted((lab.root / top).rglob("*")):
                    if path.is_file():
                        digests[f"{name}:{path.relative_to(lab.root)}"] = hashlib.sha256(path.read_bytes()).hexdigest()
        return digests


def recap(result: subprocess.CompletedProcess) -> Dict[str, Dict[str, int]]:
    """PLAY RECAP lines as {host: {"ok": n, "changed": n, "failed": n, ...}}."""
    lines = result.stdout.split("PLAY RECAP", 1)[1].splitlines()[1:]
    return {line.split()[0]: {k: int(v) for k, v in (field.split("=") for field in line.split(":", 1)[1].split())}
            for line in lines if ":" in line}


def task_outcomes(result: subprocess.CompletedProcess, task: str) -> Dict[str, str]:
    """{host: "ok" | "changed" | ...} of every run of the task named `task` in the play's output."""
    outcomes = {}
    for block in result.stdout.split("TASK [")[1:]:
        if block.startswith(task + "]"):
            for line in block.splitlines()[1:]:
                status, _, rest = line.partition(": [")
                if rest:
                    outcomes[rest.split("]")[0]] = status
    return outcomes


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout[-6000:] + result.stderr[-3000:]


def page_text(path: Path) -> str:
    """The text a person reads on an HTML page (its markup and inline script and style left out)."""
    class Text(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: List[str] = []
            self.hidden = 0

        def handle_starttag(self, tag, attrs) -> None:
            self.hidden += tag in ("script", "style")

        def handle_endtag(self, tag) -> None:
            self.hidden -= tag in ("script", "style")

        def handle_data(self, data) -> None:
            if not self.hidden:
                self.parts.append(data)

    parser = Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return " ".join(" ".join(parser.parts).split())


@pytest.fixture(scope="session")
def shiv_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shiv")


@pytest.fixture
def fleet(make_lab, pyz, shiv_root, tmp_path) -> Fleet:
    labs = {name: make_lab(name) for name in NODES}
    for name, lab in labs.items():  # each node's own name, as a real node's /etc/hostname gives it
        (lab.root / "etc/hostname").write_text(f"{name}\n")
    return Fleet(labs, tmp_path, pyz, shiv_root)
