"""Certificates and keys made with the `openssl` command line (no Python crypto dependency).

Keys are generated in parallel (RSA-2048 takes a quarter second each; a kubeadm PKI needs seventeen),
then each certificate is signed by its authority. kubeadm's modes: keys 0600, certificates 0644.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

ALGORITHMS = {  # kubeadm's ClusterConfiguration.encryptionAlgorithm -> openssl genpkey options
    "RSA-2048": ("-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"),
    "ECDSA-P256": ("-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"),
}
CA_DAYS, LEAF_DAYS = 3650, 365  # kubeadm: CAs ten years, leaves one year


class PKIError(RuntimeError):
    pass


@dataclass(frozen=True)
class Cert:
    """A key pair and, unless `key_only`, a certificate. `issuer` None: a self-signed authority."""

    cert: Path
    key: Path
    subject: str = ""  # "/O=system:nodes/CN=system:node:lab-node"
    issuer: Optional["Cert"] = None
    usage: str = ""  # extendedKeyUsage: "serverAuth", "clientAuth" or both
    sans: Tuple[str, ...] = ()  # "DNS:localhost", "IP:127.0.0.1"
    key_only: bool = False  # the service-account key pair: `cert` receives the public key


def _openssl(*args: str, stdin: Optional[bytes] = None) -> bytes:
    result = subprocess.run(["openssl", *args], input=stdin, capture_output=True)
    if result.returncode != 0:
        raise PKIError(f"openssl {args[0]} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def _extensions(cert: Cert) -> str:
    if cert.issuer is None:
        return ("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,keyEncipherment,keyCertSign\n"
                "subjectKeyIdentifier=hash\n")
    lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
             f"extendedKeyUsage={cert.usage}", "authorityKeyIdentifier=keyid"]
    if cert.sans:
        lines.append("subjectAltName=" + ",".join(cert.sans))
    return "\n".join(lines) + "\n"


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def generate_keys(certs: Sequence[Cert], algorithm: str) -> None:
    """Every key at once: one openssl process each, run concurrently."""
    for cert in certs:
        cert.key.parent.mkdir(parents=True, exist_ok=True)
    procs = [(cert, subprocess.Popen(["openssl", "genpkey", *ALGORITHMS[algorithm], "-out", str(cert.key)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)) for cert in certs]
    for cert, proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise PKIError(f"openssl genpkey {cert.key} failed: {err.decode(errors='replace').strip()}")
        os.chmod(cert.key, 0o600)


def sign(cert: Cert) -> None:
    """Write the certificate (or, for a key pair, the public key) of a cert whose key exists."""
    if cert.key_only:
        _write(cert.cert, _openssl("pkey", "-in", str(cert.key), "-pubout"), 0o600)
        return
    with tempfile.TemporaryDirectory(prefix="lab-pki-") as tmp:
        ext = Path(tmp, "ext.cnf")
        ext.write_text(_extensions(cert))
        if cert.issuer is None:
            pem = _openssl("req", "-x509", "-new", "-key", str(cert.key), "-subj", cert.subject, "-days", str(CA_DAYS),
                           "-extensions", "v3", "-config", _req_config(tmp, ext.read_text()))
        else:
            csr = _openssl("req", "-new", "-key", str(cert.key), "-subj", cert.subject,
                           "-config", _req_config(tmp, ""))
            pem = _openssl("x509", "-req", "-CA", str(cert.issuer.cert), "-CAkey", str(cert.issuer.key),
                           "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", str(LEAF_DAYS),
                           "-extfile", str(ext), stdin=csr)
    _write(cert.cert, pem, 0o644)


def _req_config(tmp: str, v3: str) -> str:
    """A minimal openssl.cnf, so that no system configuration leaks into the certificates."""
    path = Path(tmp, "req.cnf")
    path.write_text("[req]\ndistinguished_name=dn\nprompt=no\n[dn]\n[v3]\n" + v3)
    return str(path)


def issue_all(certs: Sequence[Cert], algorithm: str) -> None:
    """Keys for all, then authorities before the certificates they sign."""
    generate_keys(certs, algorithm)
    for cert in sorted(certs, key=lambda c: c.issuer is not None):
        sign(cert)


