# cisfix.testing gives the cisfix_node fixture: a kubeadm-shaped node under a temp root.
pytest_plugins = ["cisfix.testing"]
