from cis_k8s_unified import CISUnifiedRunner

runner = CISUnifiedRunner(verbose=1)

# Apply remediation with automatic health checks and rollback
result = runner.apply_remediation_with_health_gate(
    filepath="/etc/kubernetes/manifests/kube-apiserver.yaml",
    key="--audit-log-maxage=",
    value="30",
    check_id="1.2.26",
    script_dict={"path": "/path/to/Level_1_Master_Node/1.2.26_remediate.sh"},
    timeout=60
)

# Handle result
if result['success']:
    print(f"✓ Remediation successful and verified")
    if result['audit_verified']:
        print("  Audit check passed")
else:
    print(f"✗ Remediation failed: {result['reason']}")
    if result['backup_path']:
        print(f"  Manual recovery: sudo cp {result['backup_path']} {result['original_path']}")
