"""The node lab: a simulated kubeadm control-plane node (or RKE2 or k3s server node) in a directory, for tests
and demos.

`lab create DIR` writes the node's files (`tree.py`, with kubeadm's contents from `kubeadm.py` and a PKI from
`pki.py`); `lab start` runs the lab's init (`supervisor.py`, systemd's part), which runs the simulated
kubelet (`kubelet.py`), which runs the static pods (`pods.py`): stand-ins for the API server, controller
manager and scheduler (`standin.py`, parsing flags with `flags.py`) and the real etcd (`realbin.py`), each
seeing only its mounts (`container.py`). `control.py` starts, stops and inspects a lab; `cli.py` is
`cisfix lab ...`. Paths, settings and the event log are in `layout.py`.

`lab create --distribution rke2` writes an RKE2 server node instead (`rke2tree.py`, from `rke2.py`'s
paths and generators); its init runs `rke2 server` (`rke2server.py`), which regenerates the static pods
from the configuration at every start and runs the same simulated kubelet as its child.

`lab create --distribution k3s` writes a k3s server node instead (`k3s_tree.py`, with k3s's paths and
defaults from `k3s.py`): the init runs its unit `k3s`, whose one `k3s server` process (`k3s_server.py`) runs
every component in threads and writes their `Running ...` lines to /var/log/k3s.log. Its datastore is k3s's
default, SQLite through kine in that process: no etcd runs.
"""
