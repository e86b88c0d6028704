"""Both editors on every real file of the shared corpus: minimal diffs, or a clean EditError."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Tuple

import pytest
from corpus import changed_lines, corpus_files, node_name, read

from cisfix.editors.config import edit_paths, read_path
from cisfix.editors.manifest import edit_flags, read_flags
from cisfix.errors import EditError
from cisfix.editors.yamltext import parse
from cisfix.plan import AddFlagItem, AddHostPathMount, RemoveFlag, SetFlag, SetPath, UnsetPath

# Corpus manifests that are not a static pod for the component their node file name says.
NOT_A_STATIC_POD = {
    "checkmarx-kics__audit-log-path-negative1.yaml",  # no container named/running "audit-log-path-negative1"
    "praveen902012-k3s-conf__k3s-config.yaml",  # k3s config: no kind
    "timjones-home-k8s__kube-apiserver-daemonset.yaml",  # kind: DaemonSet
}
NOT_A_CONFIG = {
    "cecep-91-upgrade-k8s__kubeadm-flags.env",
    "cy-gu-install-tutorial__kubeadm-flags.env",
    "cy-gu-install-tutorial__10-kubeadm.conf",
    "rosi-achmad-cks-build__10-kubeadm.conf",
}
KINDS = {"davydehaas98-homelab__kubeadm-config.yaml": "KubeletConfiguration"}


# --- manifests ---------------------------------------------------------------------------------------


def _component(path: Path) -> str:
    return node_name(path).rsplit(".yaml", 1)[0]


def _single_valued(flags: List[Tuple[str, Optional[str]]]) -> List[Tuple[str, str]]:
    names = [n for n, _ in flags]
    return [(n, v) for n, v in flags if v and names.count(n) == 1]


@pytest.mark.parametrize("path", corpus_files("manifests"))
def test_manifest_minimal_edits(path: Path) -> None:
    text, component = read(path), _component(path)
    if path.name in NOT_A_STATIC_POD:
        with pytest.raises(EditError):
            read_flags(text, component)
        with pytest.raises(EditError):
            edit_flags(text, [SetFlag("profiling", "false")], component)
        return
    flags = read_flags(text, component)
    name, value = _single_valued(flags)[0]

    assert edit_flags(text, [SetFlag(name, value)], component).text == text

    added = edit_flags(text, [SetFlag("cisfix-probe", "on")], component)
    _assert_one_line_added(text, added.text, "--cisfix-probe=on")
    assert dict(read_flags(added.text, component))["cisfix-probe"] == "on"

    changed = edit_flags(text, [SetFlag(name, value + "-2")], component)
    removed_lines, added_lines = changed_lines(text, changed.text)
    assert len(removed_lines) == len(added_lines) == 1
    assert removed_lines[0].replace(value, value + "-2", 1) == added_lines[0]

    gone = edit_flags(text, [RemoveFlag(name)], component)
    removed_lines, added_lines = changed_lines(text, gone.text)
    assert added_lines == [] and len(removed_lines) == 1 and f"--{name}" in removed_lines[0]
    assert name not in dict(read_flags(gone.text, component))


@pytest.mark.parametrize("path", [p for p in corpus_files("manifests") if not p.values[0] or p.values[0].name not in NOT_A_STATIC_POD])
def test_manifest_list_item_add(path: Path) -> None:
    """Add an item to a comma-separated flag (or, where a file has none, to a single-valued one)."""
    text, component = read(path), _component(path)
    flags = _single_valued(read_flags(text, component))
    name, value = next(((n, v) for n, v in flags if "," in v), flags[-1])
    result = edit_flags(text, [AddFlagItem(name, "CisfixProbe")], component)
    removed_lines, added_lines = changed_lines(text, result.text)
    assert len(removed_lines) == len(added_lines) == 1
    assert removed_lines[0].replace(value, value + ",CisfixProbe", 1) == added_lines[0]
    assert result.notes == (f"added CisfixProbe to --{name}",)


PROBE = AddHostPathMount("cisfix-probe", "/var/lib/cisfix-probe", "/var/lib/cisfix-probe", read_only=True, type="File")


@pytest.mark.parametrize("path", [p for p in corpus_files("manifests") if not p.values[0] or p.values[0].name not in NOT_A_STATIC_POD])
def test_manifest_mount_add(path: Path) -> None:
    """A hostPath mount only adds lines (the list keys too where missing), into the container whose
    flags the editor edits, reads back, and is not added twice."""
    text, component = read(path), _component(path)
    result = edit_flags(text, [PROBE], component)
    assert result.notes == ("mounted /var/lib/cisfix-probe (hostPath volume cisfix-probe)",)

    old_spec, new_spec = parse(text).data[0]["spec"], parse(result.text).data[0]["spec"]
    assert new_spec["volumes"][-1] == {"hostPath": {"path": "/var/lib/cisfix-probe", "type": "File"}, "name": "cisfix-probe"}
    entry = {"mountPath": "/var/lib/cisfix-probe", "name": "cisfix-probe", "readOnly": True}
    holders = [i for i, c in enumerate(new_spec["containers"]) if entry in (c.get("volumeMounts") or [])]
    assert holders == [_flagged_container(text, component)]

    removed_lines, added_lines = changed_lines(text, result.text)
    expected = ["hostPath:", "mountPath: /var/lib/cisfix-probe", "name: cisfix-probe", "name: cisfix-probe",
                "path: /var/lib/cisfix-probe", "readOnly: true", "type: File"]
    expected += ["volumes:"] * ("volumes" not in old_spec)
    expected += ["volumeMounts:"] * ("volumeMounts" not in old_spec["containers"][holders[0]])
    assert removed_lines == []
    assert sorted(line.strip().lstrip("- ") for line in added_lines) == sorted(expected)

    assert edit_flags(result.text, [PROBE], component).text == result.text


def _flagged_container(text: str, component: str) -> int:
    """Index of the container a flag edit goes to."""
    flagged = parse(edit_flags(text, [SetFlag("cisfix-probe", "on")], component).text).data[0]["spec"]["containers"]
    return next(i for i, c in enumerate(flagged) if "--cisfix-probe=on" in (c.get("command") or []) + (c.get("args") or []))


def _assert_one_line_added(old: str, new: str, content: str) -> None:
    """Exactly one new line, holding `content` and ending like the file's lines."""
    removed_lines, added_lines = changed_lines(old, new)
    assert removed_lines == [] and len(added_lines) == 1
    assert content in added_lines[0]
    assert added_lines[0].endswith("\r\n" if "\r\n" in old else "\n")


# --- configs and policies ----------------------------------------------------------------------------


def _scalar_leaf(data: Any, prefix: str = "") -> Optional[Tuple[str, Any]]:
    """The first str/int/bool value reachable through mappings only, with its dotted path; `apiVersion`
    only when there is nothing else (`kind` selects documents, so it is never edited)."""
    if not isinstance(data, dict):
        return None
    for key, value in sorted(data.items(), key=lambda kv: kv[0] == "apiVersion"):
        if not isinstance(key, str) or "." in key or key == "kind":
            continue
        path = f"{prefix}{key}"
        if isinstance(value, int) or (isinstance(value, str) and "\n" not in value):
            return path, value
        found = _scalar_leaf(value, path + ".")
        if found:
            return found
    return None


def _other(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return value + "-2"


@pytest.mark.parametrize("path", corpus_files("kubelet") + corpus_files("policies") + corpus_files("systemd"))
def test_config_minimal_edits(path: Path) -> None:
    text, kind = read(path), KINDS.get(path.name)
    if path.name in NOT_A_CONFIG:
        with pytest.raises(EditError):
            edit_paths(text, [SetPath("readOnlyPort", 0)])
        with pytest.raises(EditError):
            read_path(text, "readOnlyPort")
        return
    from cisfix.editors.yamltext import parse

    data = parse(text).data
    data = next(d for d in data if isinstance(d, dict) and (kind is None or d.get("kind") == kind))
    leaf, value = _scalar_leaf(data)

    assert edit_paths(text, [SetPath(leaf, value)], kind).text == text

    changed = edit_paths(text, [SetPath(leaf, _other(value))], kind).text
    removed_lines, added_lines = changed_lines(text, changed)
    assert len(removed_lines) == len(added_lines) == 1
    assert read_path(changed, leaf, kind) == (True, _other(value))

    top = edit_paths(text, [SetPath("cisfixProbe", 1)], kind).text
    _assert_one_line_added(text, top, "cisfixProbe: 1")

    maps = [k for k, v in data.items() if isinstance(v, dict) and v]
    if maps:
        nested = edit_paths(text, [SetPath(f"{maps[0]}.cisfixProbe.enabled", True)], kind).text
        removed_lines, added_lines = changed_lines(text, nested)
        assert removed_lines == [] and len(added_lines) == 2
        assert read_path(nested, f"{maps[0]}.cisfixProbe.enabled", kind) == (True, True)

    unset = edit_paths(text, [UnsetPath(leaf)], kind).text
    removed_lines, added_lines = changed_lines(text, unset)
    assert removed_lines and all(line.rstrip().endswith(": {}") for line in added_lines)  # emptied parent
    assert read_path(unset, leaf, kind) == (False, None)
