"""kubeadm's `/var/lib/kubelet/kubeadm-flags.env`: what `kubeadm init` writes into it per version, and the
two rewrites of it by `kubeadm upgrade` (apply and node alike) that no later upgrade undoes.

- Up to 1.33 the file holds `--container-runtime-endpoint` and `--pod-infra-container-image` and an
  upgrade leaves it as it is.
- 1.34 (NodeLocalCRISocket beta, on by default, kubernetes#131981): `init` writes the endpoint into
  `/var/lib/kubelet/instance-config.yaml` (`containerRuntimeEndpoint: "<socket>"`, Go's %q) instead of
  the flags file. kubeadm, not the kubelet, reads that file: it applies it as a strategic-merge patch
  over the kubelet configuration (after the `--patches` ones) whenever it writes `config.yaml`, so the
  kubelet reads the endpoint from its `--config` as before and has no `--config-dir`
  (phases/kubelet/config.go WriteConfigToDisk, WriteInstanceConfigToDisk). An upgrade to 1.34 that finds
  no instance-config.yaml reads the endpoint from the flags file, writes instance-config.yaml and, when
  the file named an endpoint, rewrites the file without it (phases/upgrade/postupgrade.go
  WriteKubeletConfigFiles).
- 1.35: `init` no longer passes the pause image; the post-upgrade phase rewrites the file without
  `--pod-infra-container-image` (kubernetes#133778; phases/upgrade/postupgrade.go
  RemoveKubeletArgsFromFile, its cases in postupgrade_test.go), which the 1.35 kubelet no longer has.

Both rewrites read the file as kubeadm's ReadKubeletDynamicEnvFile does (phases/kubelet/flags.go): the
text after `KUBELET_KUBEADM_ARGS=` with every `"` at either end trimmed, split at whitespace, a word
without `=` joined to the next word as its value (a bare last word is lost); then ArgumentsFromCommand
(util/arguments.go) keeps `--name=value` words only, sorted by name and value; WriteKubeletArgsToFile
writes them back as `KUBELET_KUBEADM_ARGS=<Go %q of the words joined by spaces>`. A flag written as
`--name=value` survives (moved into sorted order); a bare boolean, a value quoted or holding a space
does not survive as written.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ... import flags as flag_parser

VARIABLE = "KUBELET_KUBEADM_ARGS"
CRI_FLAG, PAUSE_FLAG = "container-runtime-endpoint", "pod-infra-container-image"
INSTANCE_CONFIG = "/var/lib/kubelet/instance-config.yaml"
NODE_LOCAL_CRI_SOCKET = (1, 34)  # from this version on, the endpoint lives in INSTANCE_CONFIG
PAUSE_STRIPPED = (1, 35)  # from this version on, an upgrade strips PAUSE_FLAG (and init no longer writes it)

Args = List[Tuple[str, str]]


def minor(version: str) -> Tuple[int, int]:
    major, number = version.lstrip("v").split(".")[:2]
    return int(major), int(number)


def go_quote(text: str) -> str:
    """Go's strconv.Quote (fmt's %q) for the text kubeadm writes: `\\`, `"` and control characters escaped."""
    named = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a", "\b": "\\b",
             "\f": "\\f", "\v": "\\v"}
    return '"' + "".join(named.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7f else c)
                         for c in text) + '"'


def read_args(text: str) -> Optional[Args]:
    """The flags of the file as kubeadm's upgrade reads them; None when kubeadm cannot read it (no
    `KUBELET_KUBEADM_ARGS=` first, or no flags at all)."""
    content = text.strip()
    prefix = f"{VARIABLE}="
    if not content.startswith(prefix):
        return None
    words = content[len(prefix):].strip('"').split()
    if not words:
        return None
    joined, i = [], 0
    while i < len(words):
        if "=" in words[i]:
            joined.append(words[i])
        elif i + 1 < len(words):
            joined.append(f"{words[i]}={words[i + 1]}")
            i += 1
        i += 1
    args = [tuple(word[2:].split("=", 1)) for word in joined if word.startswith("--") and word[2:3] not in ("", "=")]
    return sorted(args)


def write_args(args: Args) -> str:
    """The file as kubeadm writes it: `--name=value` sorted by name and value, quoted as Go's %q."""
    return f"{VARIABLE}={go_quote(' '.join(f'--{name}={value}' for name, value in sorted(args)))}\n"


def instance_config(endpoint: str) -> str:
    return f"containerRuntimeEndpoint: {go_quote(endpoint)}\n"


def init_args(version: str, cri_socket: str, pause_image: str) -> Args:
    """The flags `kubeadm init` of `version` writes (buildKubeletArgs; no taints nor hostname override)."""
    args = [] if minor(version) >= NODE_LOCAL_CRI_SOCKET else [(CRI_FLAG, cri_socket)]
    return args + ([] if minor(version) >= PAUSE_STRIPPED else [(PAUSE_FLAG, pause_image)])


def upgrade_rewrite(text: str, target: str, has_instance_config: bool) -> Tuple[Optional[str], Optional[str]]:
    """What `kubeadm upgrade` to `target` does to a flags file `text`: (its new text or None when it
    leaves it, the instance-config.yaml it writes or None)."""
    args = read_args(text)
    if args is None:
        return None, None  # kubeadm finds no flags to rewrite (it errors out before 1.34: not modelled)
    new_text, instance = None, None
    if minor(target) >= NODE_LOCAL_CRI_SOCKET and not has_instance_config:
        endpoint = next((value for name, value in args if name == CRI_FLAG), "")
        instance = instance_config(endpoint)
        if endpoint:
            args = [(n, v) for n, v in args if n != CRI_FLAG]
            new_text = write_args(args)
    if minor(target) >= PAUSE_STRIPPED:
        new_text = write_args([(n, v) for n, v in args if n != PAUSE_FLAG])
    return new_text, instance


def kubelet_flags(text: str) -> Dict[str, Optional[str]]:
    """The flags the kubelet takes from the file (systemd's word splitting of the variable's value)."""
    content = text.strip()
    if not content.startswith(f"{VARIABLE}="):
        return {}
    return flag_parser.effective(content[len(VARIABLE) + 1:].strip('"').split())


def rewrites_ahead(version: str) -> List[str]:
    """The versions whose upgrades still rewrite the flags file of a node of `version`: 1.34 once (the
    first upgrade to it writes instance-config.yaml), 1.35 at every upgrade to a 1.35 release."""
    return [f"{a}.{b}" for (a, b), last in ((NODE_LOCAL_CRI_SOCKET, minor(version) < NODE_LOCAL_CRI_SOCKET),
                                           (PAUSE_STRIPPED, minor(version) <= PAUSE_STRIPPED)) if last]


def lost_on_upgrade(text: str, version: str) -> Dict[str, Tuple[Optional[str], Optional[str]]]:
    """flag -> (value now, value after the rewrites ahead of a node of `version`; None: gone): the flags
    of `text` that the kubelet would no longer get, or get otherwise, after kubeadm's upgrades. Empty
    when no rewrite is ahead or the rewrites keep every flag."""
    now, after = kubelet_flags(text), text
    for target in rewrites_ahead(version):
        after = upgrade_rewrite(after, target, minor(target) != NODE_LOCAL_CRI_SOCKET)[0] or after
    later = kubelet_flags(after)
    return {name: (value, later.get(name)) for name, value in now.items()
            if name not in later or later[name] != value}
