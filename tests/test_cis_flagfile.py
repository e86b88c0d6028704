"""The kubelet flag-file editor on the shared corpus: it changes only the flag it is asked to."""
from __future__ import annotations

import pytest
from corpus import changed_lines, corpus_files, node_name, read

from cisfix.errors import EditError
from cisfix.plan import AddFlagItem, RemoveFlag, SetFlag
from cisfix.editors import flagfile


def _flag_file(name: str) -> bool:
    return name.endswith((".env", ".conf"))


@pytest.mark.parametrize("path", corpus_files("kubelet", _flag_file) + corpus_files("systemd", _flag_file))
def test_corpus_flag_files(path):
    name = node_name(path)
    text = read(path)
    before = flagfile.flags_of(text)
    edited = flagfile.edit(text, [SetFlag("read-only-port", "0")] if name.endswith(".env") else
                           [SetFlag("config", "/var/lib/kubelet/config.yaml")])
    removed, added = changed_lines(text, edited.text)
    assert len(removed) == len(added) <= 1
    after = flagfile.flags_of(edited.text)
    assert {k: v for k, v in after.items() if k not in ("read-only-port",)} == before
    assert flagfile.edit(edited.text, [RemoveFlag("read-only-port")]).text == (text if "read-only-port" not in before
                                                                                else edited.text.replace(" --read-only-port=0", ""))


def test_only_the_effective_duplicate_changes():
    text = 'KUBELET_KUBEADM_ARGS="--a=1 --b=2 --a=3"   \n'
    assert flagfile.edit(text, [SetFlag("a", "4")]).text == 'KUBELET_KUBEADM_ARGS="--a=1 --b=2 --a=4"   \n'
    assert flagfile.edit(text, [RemoveFlag("a")]).text == 'KUBELET_KUBEADM_ARGS="--b=2"   \n'
    assert flagfile.edit(text, [AddFlagItem("g", "X=true")]).text == 'KUBELET_KUBEADM_ARGS="--a=1 --b=2 --a=3 --g=X=true"   \n'


def test_refuses_what_it_cannot_write_safely():
    with pytest.raises(EditError):
        flagfile.edit('A_ARGS="--a=1"\nB_ARGS="--b=1"\n', [SetFlag("c", "1")])
    with pytest.raises(EditError):
        flagfile.edit('KUBELET_KUBEADM_ARGS="--a=1"\n', [SetFlag("a", "two words")])
