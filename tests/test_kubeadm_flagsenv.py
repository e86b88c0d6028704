"""kubeadm-flags.env as kubeadm writes and rewrites it (cisfix.layouts.kubeadm.flagsenv), and what
`persist` says of a flag a fix set there: the upgrades to 1.34 and 1.35 re-serialise the file."""
from __future__ import annotations

import pytest

from cisfix.layouts.kubeadm import flagsenv
from cisfix.layouts.kubeadm.persist import flags_env_note
from cisfix.types import NetChange

SOCKET = "unix:///var/run/containerd/containerd.sock"
V133 = f'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint={SOCKET} --pod-infra-container-image=registry.k8s.io/pause:3.10"\n'


def test_the_rewrites_read_the_file_as_kubeadm_does():
    # A word without `=` takes the next word as its value (`stray` swallows `--b=1`, and `stray=--b=1` is
    # no flag); a bare last word is lost; the rest sorted by name.
    text = 'KUBELET_KUBEADM_ARGS="--v 2 --node-ip=10.0.0.1 stray --b=1 --a=x=y --alone"\n'
    assert flagsenv.read_args(text) == [("a", "x=y"), ("node-ip", "10.0.0.1"), ("v", "2")]
    assert flagsenv.read_args('KUBELET_KUBEADM_ARGS=""\n') is None
    assert flagsenv.read_args("OTHER=--a=b\n") is None
    assert flagsenv.write_args([("z", 'say "hi"'), ("a", "1")]) == 'KUBELET_KUBEADM_ARGS="--a=1 --z=say \\"hi\\""\n'


def test_upgrade_to_1_34_moves_the_endpoint_to_instance_config_and_1_35_strips_the_pause_image():
    text, instance = flagsenv.upgrade_rewrite(V133, "1.34", has_instance_config=False)
    assert text == 'KUBELET_KUBEADM_ARGS="--pod-infra-container-image=registry.k8s.io/pause:3.10"\n'
    assert instance == f'containerRuntimeEndpoint: "{SOCKET}"\n'
    assert flagsenv.upgrade_rewrite(text, "1.34.1", has_instance_config=True) == (None, None)
    assert flagsenv.upgrade_rewrite(text, "1.35", has_instance_config=True) == ('KUBELET_KUBEADM_ARGS=""\n', None)
    assert flagsenv.upgrade_rewrite(V133, "1.33.5", has_instance_config=False) == (None, None)


def note(before: str, after: str, version):
    return flags_env_note("/var/lib/kubelet/kubeadm-flags.env", NetChange("/var/lib/kubelet/kubeadm-flags.env",
                                                                          before.encode(), after.encode()), version)


@pytest.mark.parametrize("version, ahead", [("1.33.0", "1.34 and 1.35"), ("1.34.0", "1.35"), (None, "1.34 and 1.35")])
def test_a_flag_a_fix_set_as_name_value_survives_the_rewrites_and_persist_says_so(version, ahead):
    after = V133.replace('"\n', ' --read-only-port=0"\n')
    assert note(V133, after, version) == (
        f"/var/lib/kubelet/kubeadm-flags.env: node-local kubelet flags; kubeadm upgrade to {ahead} rewrites the "
        "file (sorted, as --name=value) and keeps every flag the fixes set there")


def test_a_flag_the_rewrites_would_lose_or_change_is_named():
    after = V133.replace('"\n', ' --rotate-server-certificates --v 2"\n')
    assert note(V133, after, "1.33.0") == (
        "/var/lib/kubelet/kubeadm-flags.env: kubeadm upgrade to 1.34 and 1.35 rewrites this node-local file and "
        "loses what the fixes set there: --rotate-server-certificates (becomes '--v'), --v (dropped); set it again "
        "as --name=value before the upgrade, or after it")
    # The flags kubeadm itself drops are no loss of the fixes' unless a fix set them.
    assert "keeps every flag" in note(V133, V133.replace("pause:3.10", "pause:3.10").replace('"\n', ' --a=b"\n'),
                                      "1.34.0")


def test_past_every_rewrite_the_file_stays_as_it_is():
    assert note("", 'KUBELET_KUBEADM_ARGS="--a=b"\n', "1.36.0") == (
        "/var/lib/kubelet/kubeadm-flags.env: node-local kubelet flags; kubeadm upgrade keeps them as they are")
