"""Run artifacts: what a job uploads (the template's `ghapp-outputs`), listed and zipped as
GitHub does, downloaded from the storage host through signed URLs that expire."""

from __future__ import annotations

import hashlib
import hmac
import io
import zipfile
from dataclasses import dataclass
from typing import Any

from ghapp.simulator.clock import iso_z

# The template's artifact; a workflow of several jobs names them `ghapp-outputs-<job>`.
OUTPUTS_ARTIFACT = "ghapp-outputs"
# The file upload-artifact puts in the zip (the template uploads $GHAPP_OUTPUTS under it).
OUTPUTS_FILE = "ghapp-outputs.txt"
RETENTION_SECONDS = 86_400


@dataclass
class ArtifactState:
    """One uploaded artifact: its name, the run that made it and its zip."""

    id: int
    run_id: int
    name: str
    zipped: bytes
    created: int
    expired: bool = False


def outputs_text(outputs: dict[str, str]) -> str:
    """The `name=value` lines a workflow's steps append to $GHAPP_OUTPUTS."""
    return "".join(f"{name}={value}\n" for name, value in outputs.items())


def zip_of(files: dict[str, bytes]) -> bytes:
    """A zip archive of these files, as upload-artifact makes them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def payload(api_url: str, repo_full_name: str, artifact: ArtifactState, head: dict[str, Any]
            ) -> dict[str, Any]:
    """The artifact object of GitHub's REST API."""
    base = f"{api_url}/repos/{repo_full_name}/actions/artifacts/{artifact.id}"
    return {
        "id": artifact.id,
        "node_id": f"MDg6QXJ0aWZhY3Q{artifact.id}",
        "name": artifact.name,
        "size_in_bytes": len(artifact.zipped),
        "url": base,
        "archive_download_url": f"{base}/zip",
        "expired": artifact.expired,
        "created_at": iso_z(artifact.created),
        "expires_at": iso_z(artifact.created + RETENTION_SECONDS),
        "updated_at": iso_z(artifact.created),
        "digest": "sha256:" + hashlib.sha256(artifact.zipped).hexdigest(),
        "workflow_run": {"id": artifact.run_id, **head},
    }


def sign(key: bytes, artifact_id: int, expires_ms: int) -> str:
    """The signature of an artifact's storage URL."""
    return hmac.new(key, f"artifact:{artifact_id}:{expires_ms}".encode(),
                    hashlib.sha256).hexdigest()


def signature_ok(key: bytes, artifact_id: int, expires_ms: int, signature: str) -> bool:
    """Whether a storage URL's signature is the simulator's own."""
    return hmac.compare_digest(sign(key, artifact_id, expires_ms), signature)
