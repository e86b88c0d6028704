from cis_k8s_unified import CISUnifiedRunner

runner = CISUnifiedRunner(verbose=1)

# Example 1: update a manifest safely
result = runner.update_manifest_safely(
    filepath="/etc/kubernetes/manifests/kube-apiserver.yaml",
    key="--audit-policy-file=",
    value="/etc/kubernetes/audit-policy.yaml"
)
print(result['message'])
print(result['backup_path'])
print(result['changes_made'])
