"""The older runner's import path, kept so its scripts work unchanged:

    from cis_k8s_unified import CISUnifiedRunner
    runner = CISUnifiedRunner(verbose=1)   # the node at $CISFIX_ROOT, else /; REMEDIATION lines on stderr
    result = runner.update_manifest_safely(filepath, key, value)
    if result["changes_made"]: ...         # an int: the changes still applied
    shutil.copy(result["backup_path"], result["original_path"])  # the backup file of the change

`CISUnifiedRunner` is `cisfix.Runner`; see the README's "Python API".
"""
from cisfix.api import Runner as CISUnifiedRunner

__all__ = ["CISUnifiedRunner"]
