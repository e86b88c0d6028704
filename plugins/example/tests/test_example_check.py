"""The example check against a kubeadm-shaped node: fails fresh, fixed by its plan, verified."""


def test_fresh_kubeadm_node_fails(cisfix_node):
    result = cisfix_node.audit("EXAMPLE-1")["EXAMPLE-1"]
    assert result["status"] == "FAIL"
    assert result["actual"] == "true (default)"


def test_fix_sets_the_flag_and_the_audit_passes(cisfix_node):
    outcome = cisfix_node.fix("EXAMPLE-1")
    assert outcome["status"] == "FIXED", outcome
    assert b"    - --profiling=false\n" in cisfix_node.read("/etc/kubernetes/manifests/kube-scheduler.yaml")
    assert cisfix_node.audit("EXAMPLE-1")["EXAMPLE-1"]["status"] == "PASS"
    assert cisfix_node.fix("EXAMPLE-1")["status"] == "ALREADY_COMPLIANT"


def test_the_plugin_is_listed(cisfix_node):
    plugins = cisfix_node.run("plugins", "--format", "json").json()
    example = next(p for p in plugins if p["name"] == "example")
    assert example["version"] == "1.0.0" and example["checks"] == 1
