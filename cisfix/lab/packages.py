"""The package step of kubeadm's documented upgrade procedure (`apt-get install kubeadm=...` before
`kubeadm upgrade`; `apt-get install kubelet=...`, `systemctl daemon-reload`, `systemctl restart kubelet`
after): the packages' own files come back with the packages' content and modes (the kubeadm package's
spec installs its kubelet drop-in with `install -m 644`), whatever was changed in them on the node.
"""
from __future__ import annotations

from typing import Dict, Tuple

from . import kubeadm
from .layout import KUBELET_DROPIN, Layout
from .tree import write

# path -> (content, mode), per package.
KUBEADM_PACKAGE: Dict[str, Tuple[str, int]] = {KUBELET_DROPIN: (kubeadm.KUBELET_DROPIN, 0o644)}
KUBELET_PACKAGE: Dict[str, Tuple[str, int]] = {"/usr/lib/systemd/system/kubelet.service": (kubeadm.KUBELET_UNIT, 0o644)}


def install(layout: Layout, package: Dict[str, Tuple[str, int]]) -> None:
    for path, (content, mode) in package.items():
        write(layout.host(path), content, mode)
