"""Deploy keys load back, fingerprint like OpenSSH, and secrets seal for GitHub."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.public import PrivateKey, SealedBox

from ghapp.github.deploykeys import DeployKey, fingerprint_sha256, generate_deploy_key, seal_secret


@pytest.fixture(scope="module")
def key() -> DeployKey:
    """One generated key, shared: generation is the slow part."""
    return generate_deploy_key("acme/shop")


def test_private_key_is_unencrypted_openssh_pem(key: DeployKey) -> None:
    """OpenSSH PEM, loadable without a passphrase, ending with a newline (ssh requires it)."""
    assert key.private_openssh.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert key.private_openssh.endswith("-----END OPENSSH PRIVATE KEY-----\n")
    private = serialization.load_ssh_private_key(key.private_openssh.encode(), password=None)
    assert isinstance(private, Ed25519PrivateKey)


def test_public_key_matches_the_private_half(key: DeployKey) -> None:
    """The public line parses and is the public half of the private key."""
    public = serialization.load_ssh_public_key(key.public_openssh.encode())
    assert isinstance(public, Ed25519PublicKey)
    private = serialization.load_ssh_private_key(key.private_openssh.encode(), password=None)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert public.public_bytes(*raw) == private.public_key().public_bytes(*raw)


def test_comment_names_the_repository(key: DeployKey) -> None:
    """Three fields: type, base64 blob, comment ghapp-deploy@owner/name."""
    kind, blob, comment = key.public_openssh.split(" ")
    assert kind == "ssh-ed25519"
    assert blob.startswith("AAAA")
    assert comment == "ghapp-deploy@acme/shop"
    assert "\n" not in key.public_openssh


def test_fingerprint_is_unpadded_sha256_of_the_blob(key: DeployKey) -> None:
    """SHA256:<base64 of sha256(blob)> without '=' padding."""
    blob = base64.b64decode(key.public_openssh.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert key.fingerprint == f"SHA256:{digest}"
    assert not key.fingerprint.endswith("=")
    assert fingerprint_sha256(key.public_openssh) == key.fingerprint


def test_fingerprint_matches_ssh_keygen(key: DeployKey, tmp_path: Path) -> None:
    """`ssh-keygen -lf` prints the same fingerprint and comment."""
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        pytest.skip("ssh-keygen not installed")
    pub = tmp_path / "deploy_key.pub"
    pub.write_text(key.public_openssh + "\n", encoding="ascii")
    out = subprocess.run(
        [ssh_keygen, "-E", "sha256", "-lf", str(pub)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    # "256 SHA256:... ghapp-deploy@acme/shop (ED25519)"
    assert out[0] == "256"
    assert out[1] == key.fingerprint
    assert out[2] == "ghapp-deploy@acme/shop"


def test_private_key_is_accepted_by_ssh_keygen(key: DeployKey, tmp_path: Path) -> None:
    """ssh itself can read the private key and derive the same public key from it."""
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        pytest.skip("ssh-keygen not installed")
    path = tmp_path / "deploy_key"
    path.write_text(key.private_openssh, encoding="ascii")
    path.chmod(0o600)
    out = subprocess.run(
        [ssh_keygen, "-y", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    assert out[:2] == key.public_openssh.split()[:2]


def test_keys_are_fresh_each_time() -> None:
    """Two calls never return the same key."""
    assert generate_deploy_key("a/b").fingerprint != generate_deploy_key("a/b").fingerprint


def test_repr_and_str_hide_the_private_key(key: DeployKey) -> None:
    """An accidental log line shows the public half only."""
    body = key.private_openssh.splitlines()[1]
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert "PRIVATE KEY" not in text
        assert body not in text
        assert key.fingerprint in text


@pytest.mark.parametrize("bad", ["acme", "acme/", "/shop", "acme/shop/x", "acme/sh op", "a/b\n"])
def test_repository_must_be_owner_slash_name(bad: str) -> None:
    """Anything else would make a malformed or multi-line authorized_keys comment."""
    with pytest.raises(ValueError):
        generate_deploy_key(bad)


def test_sealed_secret_opens_with_the_matching_private_key() -> None:
    """What GitHub does with its private key: open the sealed box, get the value back."""
    recipient = PrivateKey.generate()
    public_b64 = base64.b64encode(bytes(recipient.public_key)).decode()
    value = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret ✓\n"
    sealed = seal_secret(public_b64, value)
    opened = SealedBox(recipient).decrypt(base64.b64decode(sealed, validate=True))
    assert opened.decode("utf-8") == value
    # Sealed boxes use a fresh ephemeral key each time.
    assert seal_secret(public_b64, value) != sealed


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"short").decode()])
def test_seal_secret_rejects_a_bad_public_key(bad: str) -> None:
    """A wrong key fails loudly instead of sealing for nobody."""
    with pytest.raises(ValueError):
        seal_secret(bad, "value")
