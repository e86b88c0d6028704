"""Layouts: how a distribution lays out a node's components (plugins answering `cisfix_describe_node`).
`kubeadm` is the built-in one; it answers last."""
