"""SSH deploy keys for target servers, and sealing values for GitHub Actions secrets."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["DeployKey", "fingerprint_sha256", "generate_deploy_key", "seal_secret"]

COMMENT_PREFIX = "ghapp-deploy@"


@dataclass(frozen=True)
class DeployKey:
    """An Ed25519 key pair for SSH deploys; repr hides the private half."""

    # OpenSSH private key PEM ("-----BEGIN OPENSSH PRIVATE KEY-----"), unencrypted.
    private_openssh: str
    # Public key line for authorized_keys: "ssh-ed25519 AAAA... ghapp-deploy@owner/name".
    public_openssh: str
    # "SHA256:<unpadded base64>", as `ssh-keygen -lf` prints it.
    fingerprint: str

    def __repr__(self) -> str:
        """Show the public half only, since objects end up in logs and tracebacks."""
        return (
            f"DeployKey(public_openssh={self.public_openssh!r}, "
            f"fingerprint={self.fingerprint!r}, private_openssh=<redacted>)"
        )


def fingerprint_sha256(public_openssh: str) -> str:
    """Return the OpenSSH SHA256 fingerprint of a public key line ("type base64 [comment]")."""
    parts = public_openssh.split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error as exc:
        raise ValueError("not an OpenSSH public key line") from exc
    # OpenSSH hashes the decoded key blob and prints base64 without '=' padding.
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"


def _check_repository(repository: str) -> None:
    """Reject names that are not "owner/name" (the comment must stay one token on one line)."""
    owner, sep, name = repository.partition("/")
    if not sep or not owner or not name or "/" in name or any(c.isspace() for c in repository):
        raise ValueError(f"repository must be 'owner/name', got {repository!r}")


def generate_deploy_key(repository: str) -> DeployKey:
    """Generate an Ed25519 deploy key commented ghapp-deploy@owner/name."""
    _check_repository(repository)
    key = Ed25519PrivateKey.generate()
    # No passphrase: the key is stored only as an Actions secret and used unattended by ssh.
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_raw = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode("ascii")
    )
    public = f"{public_raw} {COMMENT_PREFIX}{repository}"
    return DeployKey(
        private_openssh=private,
        public_openssh=public,
        fingerprint=fingerprint_sha256(public_raw),
    )


def seal_secret(public_key_b64: str, value: str) -> str:
    """Encrypt value for an Actions secret with the repository's public key (base64 in/out)."""
    # GitHub's PUT /repos/{owner}/{repo}/actions/secrets/{name} expects a libsodium sealed box
    # against the key from GET .../actions/secrets/public-key, base64-encoded.
    try:
        raw_key = base64.b64decode(public_key_b64, validate=True)
    except binascii.Error as exc:
        raise ValueError("public key is not valid base64") from exc
    if len(raw_key) != 32:
        raise ValueError(f"public key must be 32 bytes, got {len(raw_key)}")
    from nacl.public import PublicKey, SealedBox  # loaded by the few servers that seal secrets

    sealed: bytes = SealedBox(PublicKey(raw_key)).encrypt(value.encode("utf-8"))
    return base64.b64encode(sealed).decode("ascii")
