"""The managed worker labs (eks-al2, eks-al2023, gke, aks): each runs its kubelet from the provider's unit,
answers `--version` with the provider's string, serves /configz to the operator's client certificate, and
AL2023's `lab reboot` rewrites the kubelet's files from the boot input as nodeadm does, GKE's as its startup
scripts do.

One lab per provider, started once and shared by the module's tests (a lab start is the slow part)."""
from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict

import pytest

from cisfix.lab.tree import load_yaml
from cisfix.lab import nodeadm
from cisfix.lab.control import Lab, processes_under
from cisfix.lab.supervisor import kubelet_command
from cisfix.lab.worker import KUBELET_API_KUBECONFIG, create
from cisfix.lab.workerdata import PROVIDERS

# The effective settings each fresh lab's /configz shows, from where they come on that provider.
EXPECTED = {
    "eks-al2": {"readOnlyPort": 10255,  # 30-kubelet-extra-args.conf's flag over kubelet-config.json's 0
                "makeIPTablesUtilChains": False, "protectKernelDefaults": True},  # kubelet-config.json
    "eks-al2023": {"makeIPTablesUtilChains": False,  # the user data's part, in 40-nodeadm.conf
                   "protectKernelDefaults": True, "serverTLSBootstrap": True},  # nodeadm's config.json
    "gke": {"readOnlyPort": 10255, "staticPodPath": "/etc/kubernetes/manifests",  # kubelet-config.yaml
            "streamingConnectionIdleTimeout": "0"},  # KUBELET_OPTS
    "aks": {"rotateCertificates": False, "eventRecordQPS": 0, "readOnlyPort": 0,  # KUBELET_FLAGS
            "featureGates": {"RotateKubeletServerCertificate": True}, "clusterDNS": ["10.0.0.10"],
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": "/etc/kubernetes/certs/ca.crt"}},
            "evictionHard": {"memory.available": "750Mi", "nodefs.available": "10%", "nodefs.inodesFree": "5%"}},
}
VERSIONS = {"eks-al2": "Kubernetes v1.32.3-eks-4096722", "eks-al2023": "Kubernetes v1.32.3-eks-4096722",
            "gke": "Kubernetes v1.32.3-gke.1234000", "aks": "Kubernetes v1.32.3"}


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """name -> a started lab of that provider, made on first use; all stopped at the module's end."""
    labs: Dict[str, Lab] = {}

    def get(name: str) -> Lab:
        if name not in labs:
            labs[name] = Lab(create(tmp_path_factory.mktemp(name) / "node", name, kubelet_restart_sec=0.2).root)
            labs[name].start(wait=60)
        return labs[name]

    yield get
    for lab in labs.values():
        assert lab.stop() == [] and processes_under(lab.root) == []


def configz(lab: Lab, tmp_path: Path) -> dict:
    """GET /configz as cisfix does: the client certificate of /etc/cisfix/kubelet-api.kubeconfig."""
    user = load_yaml(lab.layout.host(KUBELET_API_KUBECONFIG).read_text())["users"][0]["user"]
    pem = tmp_path / "client.pem"
    pem.write_bytes(base64.b64decode(user["client-certificate-data"]) + base64.b64decode(user["client-key-data"]))
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.load_cert_chain(str(pem))
    url = lab.node_config()["components"]["kubelet"]["liveConfig"]["url"]
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        return json.load(response)["kubeletconfig"]


def environment_file(layout) -> str:
    return layout.host(nodeadm.ENVIRONMENT).read_text()


def lab_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cisfix.lab.cli", *argv], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_worker_lab_runs_its_kubelet_from_the_providers_unit_and_serves_configz(workers, name, tmp_path):
    lab = workers(name)
    status = lab.status()["kubelet"]
    assert status.healthy and status.pid
    argv = [a.decode() for a in Path(f"/proc/{status.pid}/cmdline").read_bytes().split(b"\0")[:-1]]
    assert argv[1:] == kubelet_command(lab.layout)  # argv[0]: the launcher's interpreter
    assert argv[1] == str(lab.layout.host(PROVIDERS[name].binary))
    config = lab.node_config()
    assert config["distribution"] == PROVIDERS[name].distribution and "version" not in config
    live = configz(lab, tmp_path)
    assert lab.probe(config["components"]["kubelet"]["liveConfig"])  # cisfix's own client, with the kubeconfig
    anonymous = ssl.create_default_context()
    anonymous.check_hostname, anonymous.verify_mode = False, ssl.CERT_NONE
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(config["components"]["kubelet"]["liveConfig"]["url"], context=anonymous, timeout=10)
    for key, value in EXPECTED[name].items():
        assert live[key] == value, (key, live[key])
    slice_ = "runtime.slice" if name.startswith("eks") else "system.slice"
    assert any(line.endswith(f"/{slice_}/kubelet.service")
               for line in Path(f"/proc/{status.pid}/cgroup").read_text().splitlines())


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_the_kubelet_binary_answers_version_without_starting(workers, name):
    lab = workers(name)
    result = subprocess.run([str(lab.layout.host(PROVIDERS[name].binary)), "--version"], capture_output=True,
                            text=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, VERSIONS[name] + "\n")


def test_al2023_reboot_reverts_config_json_and_applies_a_new_user_data_part(workers, tmp_path):
    lab = workers("eks-al2023")
    config = lab.layout.host(nodeadm.CONFIG)
    fresh = config.read_bytes()
    assert fresh.startswith(b'{\n    "address": "0.0.0.0",') and not fresh.endswith(b"\n")  # MarshalIndent, 4 spaces
    config.write_text(fresh.decode().replace('"protectKernelDefaults": true', '"protectKernelDefaults": false'))
    user_data = lab.layout.host(nodeadm.USER_DATA)
    user_data.write_text(user_data.read_text().replace("--//--\n", (
        "--//\nContent-Type: application/node.eks.aws\n\n"
        "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    config:\n      readOnlyPort: 0\n"
        "\n--//--\n")))
    result = lab_cli("reboot", str(lab.root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "nodeadm rewrote /etc/kubernetes/kubelet/config.json" in result.stdout
    assert config.read_bytes() == fresh
    dropin = json.loads(lab.layout.host(nodeadm.DROPIN).read_text())
    assert dropin == {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                      "makeIPTablesUtilChains": False, "readOnlyPort": 0}
    live = configz(lab, tmp_path)
    assert live["readOnlyPort"] == 0 and live["protectKernelDefaults"] is True
    args = lab.layout.host(nodeadm.ENVIRONMENT).read_text()
    assert args.startswith("NODEADM_KUBELET_ARGS=--cloud-provider=external --config=/etc/kubernetes/kubelet/config.json "
                           "--config-dir=/etc/kubernetes/kubelet/config.json.d ")
    assert args.endswith(" --node-labels=eks.amazonaws.com/nodegroup=lab-ng")


def test_gke_reboot_rewrites_the_kubelets_files_as_its_startup_scripts_do(workers, tmp_path):
    """configure.sh (kubelet-config.yaml, umask 077) and configure-helper.sh start-kubelet (/etc/default/kubelet
    with `--config /home/kubernetes/kubelet-config.yaml`, the unit) run at every boot."""
    lab = workers("gke")
    files = {p: lab.layout.host(p) for p in ("/home/kubernetes/kubelet-config.yaml", "/etc/default/kubelet",
                                             "/etc/systemd/system/kubelet.service")}
    fresh = {p: f.read_bytes() for p, f in files.items()}
    assert files["/home/kubernetes/kubelet-config.yaml"].stat().st_mode & 0o777 == 0o600
    assert b" --config /home/kubernetes/kubelet-config.yaml --cgroup-driver=systemd\"\n" in fresh["/etc/default/kubelet"]
    assert b"\nWatchdogSec=30s\n" in fresh["/etc/systemd/system/kubelet.service"]
    for path, host in files.items():
        host.write_bytes(fresh[path].replace(b"10255", b"10256").replace(b"RestartSec=10", b"RestartSec=11"))
    result = lab_cli("reboot", str(lab.root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "the startup scripts rewrote /home/kubernetes/kubelet-config.yaml" in result.stdout
    assert {p: f.read_bytes() for p, f in files.items()} == fresh
    assert configz(lab, tmp_path)["readOnlyPort"] == 10255


def test_bad_worker_input_is_one_line_and_exit_2(tmp_path):
    result = lab_cli("create", str(tmp_path / "x"), "--distribution", "eks-al3")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "eks-al2023" in result.stderr
    assert not (tmp_path / "x").exists()
    result = lab_cli("create", str(tmp_path / "old"), "--distribution", "eks-al2", "--k8s-version", "1.33")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    root = create(tmp_path / "al2023", "eks-al2023").root
    layout = Lab(root).layout
    before = {p: p.read_bytes() for p in (layout.host(nodeadm.CONFIG), layout.host(nodeadm.ENVIRONMENT))}
    bare = ("apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    name: c\n"
            "    apiServerEndpoint: https://c\n    certificateAuthority: Y2E=\n    cidr: 10.100.0.0/16\n")
    layout.host(nodeadm.USER_DATA).write_text(bare)  # EC2 user data that is one NodeConfig, no MIME
    assert nodeadm.boot(layout) == [nodeadm.CONFIG, nodeadm.ENVIRONMENT]
    assert not layout.host(nodeadm.DROPIN).exists() and "--config-dir" not in environment_file(layout)
    layout.host(nodeadm.USER_DATA).write_text(bare.replace("    cidr: 10.100.0.0/16\n", ""))
    result = lab_cli("reboot", str(root))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "CIDR is missing" in result.stderr
    before = {p: p.read_bytes() for p in before}
    layout.host(nodeadm.USER_DATA).write_text("apiVersion: v1\nkind: ConfigMap\n")
    result = lab_cli("reboot", str(root))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and nodeadm.USER_DATA in result.stderr
    layout.host(nodeadm.USER_DATA).unlink()
    result = lab_cli("reboot", str(root))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "No such file" in result.stderr
    result = lab_cli("create", str(tmp_path / "joined"), "--distribution", "gke", "--join", str(root))
    assert result.returncode == 2 and "only a kubeadm lab joins" in result.stderr
    for action in ("upgrade", "upgrade-node"):
        result = lab_cli(action, str(root))
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "kubeadm's upgrade, and this lab is eks-al2023" in result.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert processes_under(root) == []


def test_exec_start_is_expanded_by_systemds_rules(tmp_path):
    """Drop-ins in name order over the unit (/etc hiding /usr/lib's of the same name), an emptied ExecStart
    replaced, Environment= later wins, EnvironmentFile= (optional `-`) over Environment=, `${X}` one word,
    `$X` alone split at whitespace, quoted values in environment files."""
    from cisfix.lab.layout import Layout
    from cisfix.lab.systemd import UnitError, load_service, parse_environment_file

    layout = Layout(tmp_path)

    def put(path: str, text: str) -> None:
        layout.host(path).parent.mkdir(parents=True, exist_ok=True)
        layout.host(path).write_text(text)

    put("/usr/lib/systemd/system/kubelet.service", "[Service]\nExecStart=/usr/bin/kubelet --old\n")
    put("/usr/lib/systemd/system/kubelet.service.d/20-x.conf", "[Service]\nEnvironment=LATE=from-usr-lib\n")
    put("/etc/systemd/system/kubelet.service.d/20-x.conf", "[Service]\nEnvironment=LATE=from-etc\n")
    put("/etc/systemd/system/kubelet.service.d/10-a.conf", (
        '[Service]\nEnvironment="A=one two" "LABELS=a=1,b=2" FROM_FILE=unit\nSlice=runtime.slice\n'
        "EnvironmentFile=-/etc/missing\nEnvironmentFile=/etc/default/kubelet\nExecStart=\n"
        'ExecStart=/opt/kubelet \\\n  --node-labels="${LABELS}" --late=${LATE} $A $FLAGS $EMPTY\n'))
    put("/etc/default/kubelet", "# comment\nFROM_FILE=file\nFLAGS=--x=<1% --y='q r'   \nQUOTED=\"a \\\"b\\\" c\"\n")
    service = load_service(layout, "kubelet.service")
    assert service.argv == ["/opt/kubelet", "--node-labels=a=1,b=2", "--late=from-etc", "one", "two", "--x=<1%",
                            "--y='q", "r'"]
    assert service.slice == "runtime.slice"
    assert parse_environment_file(layout.host("/etc/default/kubelet").read_text())["QUOTED"] == 'a "b" c'
    layout.host("/etc/default/kubelet").unlink()
    with pytest.raises(UnitError, match="/etc/default/kubelet"):
        load_service(layout, "kubelet.service")


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_every_supported_version_makes_a_kubelet_command_line_and_config_the_kubelet_accepts(name, tmp_path):
    """The provider's flags the version's kubelet removed are left out (AKS's --cloud-config from 1.34,
    --pod-infra-container-image from 1.35), and its files load: the lab's kubelet would start."""
    from cisfix.lab.flags import parse_command_line
    from cisfix.lab.kubelet import load_effective

    for minor in (PROVIDERS[name].minors[0], PROVIDERS[name].minors[-1]):
        layout = Lab(create(tmp_path / minor, name, minor).root).layout
        version = layout.settings().version
        flags = parse_command_line("kubelet", version, kubelet_command(layout)[1:])
        effective = load_effective(layout, flags, version)
        assert effective.config["authentication"]["x509"]["clientCAFile"] == PROVIDERS[name].client_ca
        assert layout.settings().kubelet_restart_sec == {"gke": 10, "aks": 2}.get(name, 5)  # the unit's RestartSec


def test_the_restart_program_cisfix_is_given_restarts_the_kubelet_with_its_edited_flags(workers, tmp_path):
    lab = workers("aks")
    before = lab.status()["kubelet"].pid
    defaults = lab.layout.host("/etc/default/kubelet")
    original = defaults.read_text()
    defaults.write_text(original.replace("--max-pods=110", "--max-pods=111"))  # nothing EXPECTED looks at
    try:
        result = subprocess.run(lab.node_config()["components"]["kubelet"]["restart"], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        status = lab.wait_healthy(30)["kubelet"]
        assert status.pid != before and status.restarts == 1
        assert configz(lab, tmp_path)["maxPods"] == 111
    finally:
        defaults.write_text(original)


def test_a_unit_drop_in_edit_reaches_the_kubelet_only_after_daemon_reload(workers, tmp_path):
    """As systemd: a restart runs the unit as last loaded; the reload program cisfix is given re-reads it."""
    lab = workers("eks-al2")
    kubelet = lab.node_config()["components"]["kubelet"]
    dropin = lab.layout.host("/etc/systemd/system/kubelet.service.d/30-kubelet-extra-args.conf")
    original = dropin.read_text()

    def run(command) -> None:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr

    def restarted(before: int) -> dict:
        run(kubelet["restart"])
        status = lab.wait_healthy(30)["kubelet"]
        assert status.pid != before
        return configz(lab, tmp_path)

    dropin.write_text(original.replace("--read-only-port=10255", "--read-only-port=10256"))
    try:
        assert restarted(lab.status()["kubelet"].pid)["readOnlyPort"] == 10255, "restarted as loaded"
        run(kubelet["reload"])
        assert restarted(lab.status()["kubelet"].pid)["readOnlyPort"] == 10256
    finally:
        dropin.write_text(original)
        run(kubelet["reload"])
        assert restarted(lab.status()["kubelet"].pid)["readOnlyPort"] == 10255
