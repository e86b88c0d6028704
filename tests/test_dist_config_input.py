"""Odd real-world input in an RKE2/k3s configuration folder: cisfix reads the drop-ins the distribution
reads (and only those), and thousands of them, or one flag repeated thousands of times, cost linear time."""
from __future__ import annotations

import json
import os

import pytest

from cisfix.editors import distconfig
from hostile import mallory  # noqa: F401 (fixture)
from test_distribution_layouts import RKE2_CONFIG, cisfix, rke2, status  # noqa: F401 (fixture)

DROPINS = "/etc/rancher/rke2/config.yaml.d"


def test_a_yml_dropin_decides_as_the_distribution_reads_it(rke2):
    """k3s's dotDFiles reads *.yaml and *.yml in any case: a later .yml that sets the flag decides it."""
    rke2.write(RKE2_CONFIG, b"kube-apiserver-arg: [profiling=false]\n", 0o600)
    rke2.write(f"{DROPINS}/95-site.YML", b"kube-apiserver-arg:\n- profiling=true\n", 0o600)
    assert status(rke2, "1.2.15") == "FAIL"
    done = cisfix(rke2, "fix", "--check", "1.2.15")
    assert done.returncode == 0, done.stdout + done.stderr
    assert rke2.read(f"{DROPINS}/95-site.YML") == b"kube-apiserver-arg:\n- profiling=false\n"
    assert status(rke2, "1.2.15") == "PASS"


def test_a_directory_named_like_a_dropin_is_skipped_as_the_distribution_skips_it(rke2):
    rke2.write(RKE2_CONFIG, b"kube-apiserver-arg: [profiling=false]\n", 0o600)
    rke2.path(f"{DROPINS}/50-old.yaml").mkdir()
    rke2.write(f"{DROPINS}/README", b"kube-apiserver-arg: [profiling=true]\n", 0o600)  # not a drop-in
    assert status(rke2, "1.2.15") == "PASS"


def test_thousands_of_dropins_are_read_once_per_run(rke2):
    rke2.write(RKE2_CONFIG, b"kube-apiserver-arg: [profiling=false]\n", 0o600)
    for i in range(2000):
        rke2.write(f"{DROPINS}/{i:05d}.yaml", b"kube-apiserver-arg+: [v=2]\n", 0o600)
    done = cisfix(rke2, "audit", "--format", "json")  # read once per run (NodeState.dist_config), not per check
    assert {r["id"]: r["status"] for r in json.loads(done.stdout)["results"]}["1.2.15"] == "PASS"


def test_one_flag_repeated_many_times_is_merged_in_linear_time():
    items = "".join(f"- v+={i}\n" for i in range(100_000))
    config = distconfig.load([("/etc/rancher/k3s/config.yaml", f"kube-apiserver-arg:\n{items}- v-=first\n")])
    values, _ = config.flags("kube-apiserver-arg", {"v": "0"}, distconfig.K3S)  # linear (each item copied all before: minutes)
    assert values["v"].split(",")[:3] == ["first", "0", "0"] and values["v"].endswith(",99999")


@pytest.mark.parametrize("how", ["her folder", "a link to her folder"])
def test_a_dropin_folder_another_user_owns_is_refused_even_when_empty(rke2, mallory, how):
    """She cannot put a drop-in of hers there unseen, nor have root write cisfix's into her folder."""
    rke2.write(RKE2_CONFIG, b"kube-apiserver-arg: [profiling=false]\n", 0o600)
    folder = rke2.path(DROPINS)
    folder.rmdir()
    hers = rke2.path("/home/mallory/rke2.d") if how != "her folder" else folder
    hers.mkdir(parents=True)
    os.chown(hers, *mallory)
    if hers != folder:
        os.symlink("../../../home/mallory/rke2.d", folder)
    files = {p: p.read_bytes() for p in rke2.root.rglob("*") if p.is_file()}
    done = cisfix(rke2, "fix", "--check", "1.2.16")
    assert done.returncode == 2 and "owned by uid" in done.stderr, done.stdout + done.stderr
    assert list(hers.iterdir()) == []
    assert {p: p.read_bytes() for p in rke2.root.rglob("*") if p.is_file()} == files
    edit = cisfix(rke2, "edit", RKE2_CONFIG, "--component", "kube-apiserver", "--flag", "profiling=true")
    assert edit.returncode == 2 and len(edit.stderr.strip().splitlines()) == 1, edit.stderr
    assert rke2.read(RKE2_CONFIG) == b"kube-apiserver-arg: [profiling=false]\n"


@pytest.mark.parametrize("change", [["--flag-drop", "enable-admission-plugins=NodeRestriction"],
                                    ["--unflag", "enable-admission-plugins"]])
def test_an_edit_no_configuration_can_give_is_a_one_line_error_naming_the_file(rke2, change):
    """RKE2 itself passes NodeRestriction: no item can remove it (this was an internal error, exit 70)."""
    rke2.write(RKE2_CONFIG, b"kube-apiserver-arg: [profiling=false]\n", 0o600)
    files = {p: p.read_bytes() for p in rke2.path("/etc").rglob("*") if p.is_file()}
    done = cisfix(rke2, "edit", RKE2_CONFIG, "--component", "kube-apiserver", *change)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert str(rke2.path(RKE2_CONFIG)) in line and "NodeRestriction" in line
    assert {p: p.read_bytes() for p in rke2.path("/etc").rglob("*") if p.is_file()} == files


def test_a_yaml_merge_key_is_refused_naming_the_file_and_line(rke2):
    """k3s's yaml.v2 splices `<<`'s pairs into its key order: here a plain list that drops the `+` one."""
    rke2.write(RKE2_CONFIG, b"kube-apiserver-arg: [profiling=false]\n", 0o600)
    merged = b"kube-apiserver-arg+: [v=2]\n<<: {kube-apiserver-arg: [profiling=true]}\n"
    dropin = rke2.write(f"{DROPINS}/50-merged.yaml", merged, 0o600)
    done = cisfix(rke2, "audit", "--check", "1.2.15", "--format", "json")
    [result] = [r for r in json.loads(done.stdout)["results"] if r["id"] == "1.2.15"]
    assert result["status"] == "ERROR" and result["reason"].startswith(f"{dropin}:2: a YAML merge key"), result
    fix = cisfix(rke2, "fix", "--check", "1.2.15")
    assert fix.returncode == 2 and f"{dropin}:2" in fix.stderr
    assert rke2.read(f"{DROPINS}/50-merged.yaml") == merged and not rke2.path(f"{DROPINS}/90-cisfix.yaml").exists()


@pytest.mark.parametrize("name", [b"50-\xff.yaml", b"50-a\nb.yaml", b"50-\x1b[2J.yml"])
def test_a_dropin_name_no_message_could_show_is_a_one_line_error_and_nothing_changes(rke2, name):
    """A name that is no UTF-8 crashed the fix after it wrote (exit 70); control characters reached the terminal."""
    rke2.write(RKE2_CONFIG, b"kube-apiserver-arg: [profiling=false]\n", 0o600)
    path = os.path.join(bytes(rke2.path(DROPINS)), name)
    with open(path, "wb") as f:
        f.write(b"kube-apiserver-arg+: [profiling=true]\n")
    os.chmod(path, 0o600)
    files = {p: p.read_bytes() for p in rke2.path("/etc").rglob("*") if p.is_file()}
    done = cisfix(rke2, "fix", "--check", "1.2.15")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "a drop-in name that is no UTF-8" in line and "\x1b" not in line, line
    assert {p: p.read_bytes() for p in rke2.path("/etc").rglob("*") if p.is_file()} == files


def test_a_plan_parses_again_only_the_files_it_edits():
    """A drop-in of 100,000 items is parsed once when a plan is checked against the re-read files, not once
    per candidate edit (a fix with a megabyte drop-in took minutes)."""
    from cisfix.plan import SetFlag

    items = ", ".join(["v=2"] * 100_000)
    config = distconfig.load([("/etc/rancher/k3s/config.yaml", "write-kubeconfig-mode: '0600'\n"),
                              ("/etc/rancher/k3s/config.yaml.d/50-big.yaml", f"kube-apiserver-arg+: [{items}]\n")])
    plan = config.plan("kube-apiserver-arg", SetFlag("profiling", "false"), "/etc/rancher/k3s/config.yaml.d/90-cisfix.yaml",
                       distconfig.K3S)
    assert [path for path, _ in plan] == ["/etc/rancher/k3s/config.yaml.d/90-cisfix.yaml"]
