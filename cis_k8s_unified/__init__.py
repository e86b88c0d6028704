"""The older runner's import path, kept so its scripts work unchanged:

    from cis_k8s_unified import CISUnifiedRunner
    runner = CISUnifiedRunner(verbose=1)   # REMEDIATION lines on stderr
    result = runner.update_manifest_safely(filepath, key, value)
    if result["changes_made"]: ...         # an int
    shutil.copy(result["backup_path"], filepath)  # the backup file of a one-file change

`CISUnifiedRunner` is `cisfix.Runner`; see the README's "Python API".
"""
from cisfix.api import Runner as CISUnifiedRunner

__all__ = ["CISUnifiedRunner"]
