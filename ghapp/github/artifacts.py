"""The run's outputs: list its `ghapp-outputs` artifacts, download each zip from the storage
host (GitHub's 302, followed without the token) and read its `name=value` files, bounded."""

from __future__ import annotations

import io
import zipfile
from typing import Any
from urllib.parse import urljoin

from ghapp.core import outputs
from ghapp.github.client import USER_AGENT, GitHubClient, GitHubUnavailable
from ghapp.github.errors import describe
from ghapp.github.joblogs import REDIRECTS, _where

# The zip itself may be a little larger than what it holds (headers), never much more.
ZIP_MAX_BYTES = outputs.ARTIFACT_MAX_BYTES + 16 * 1024
DOWNLOAD_SECONDS = 30.0


class OutputsRefused(Exception):
    """The artifact cannot be read (too large, not a zip, gone): the message says why."""


async def read_outputs(
    github: GitHubClient, repository: str, installation_id: int, run_id: int
) -> tuple[dict[str, str], str | None]:
    """Every `name=value` the run's outputs artifacts hold, and why some could not be read."""
    url = f"/repos/{repository}/actions/runs/{run_id}/artifacts?per_page=100"
    data = await github.as_installation(installation_id, lambda gh: gh.getitem(url))
    found = [
        a
        for a in data.get("artifacts") or []
        if isinstance(a, dict) and outputs.is_outputs_artifact(str(a.get("name") or ""))
    ]
    if not found:
        return {}, f"the run uploaded no `{outputs.ARTIFACT_NAME}` artifact"
    found.sort(key=lambda a: (str(a.get("created_at") or ""), int(a.get("id") or 0)))
    texts: list[str] = []
    for artifact in found:
        name = str(artifact.get("name"))
        try:
            if artifact.get("expired"):
                raise OutputsRefused("it has expired")
            if int(artifact.get("size_in_bytes") or 0) > ZIP_MAX_BYTES:
                raise OutputsRefused(f"it is over {outputs.ARTIFACT_MAX_BYTES // 1024} KiB")
            zipped = await _download(github, repository, installation_id, artifact)
            texts.extend(_unzip(zipped))
        except OutputsRefused as exc:
            return outputs.parse(texts), f"the artifact `{name}` was not read: {exc}"
    return outputs.parse(texts), None


async def _download(
    github: GitHubClient, repository: str, installation_id: int, artifact: dict[str, Any]
) -> bytes:
    import aiohttp

    from ghapp.github.api import ClientError

    api_url = f"{github.api_url}/repos/{repository}/actions/artifacts/{int(artifact['id'])}/zip"
    headers = {
        "Authorization": f"token {await github.token(installation_id)}",
        "Accept": "application/vnd.github+json",
        "User-Agent": USER_AGENT,
    }
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_SECONDS)
    try:
        async with github.session.get(
            api_url, headers=headers, allow_redirects=False, timeout=timeout
        ) as response:
            await response.read()
            status, location = response.status, response.headers.get("Location")
    except (ClientError, TimeoutError) as exc:
        raise GitHubUnavailable(describe(exc, github.origin)) from exc
    if status >= 500:
        raise GitHubUnavailable(f"GitHub answered {status} for an artifact's download")
    if status not in REDIRECTS or not location:
        raise OutputsRefused(f"GitHub answered {status} for its download")
    storage = urljoin(api_url, location)
    where = _where(storage)
    body = bytearray()
    try:
        # A plain request to the storage host: the token never goes there, and the signed
        # URL is the only place the zip may be (no further redirect is followed).
        async with github.session.get(
            storage, headers={"User-Agent": USER_AGENT}, allow_redirects=False, timeout=timeout
        ) as response:
            if response.status != 200:
                raise OutputsRefused(f"the storage host {where} answered {response.status}")
            async for chunk in response.content.iter_chunked(16 * 1024):
                body += chunk
                if len(body) > ZIP_MAX_BYTES:
                    raise OutputsRefused(f"it is over {outputs.ARTIFACT_MAX_BYTES // 1024} KiB")
    except (ClientError, TimeoutError) as exc:
        failure = exc.__class__.__name__
        raise OutputsRefused(f"the storage host {where} failed: {failure}") from exc
    return bytes(body)


def _unzip(zipped: bytes) -> list[str]:
    """The text of each file of the zip, in order; refused past ARTIFACT_MAX_BYTES unzipped."""
    try:
        with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            # The declared sizes bound what is read (zipfile reads no more than declared).
            if sum(m.file_size for m in members) > outputs.ARTIFACT_MAX_BYTES:
                raise OutputsRefused(
                    f"it is over {outputs.ARTIFACT_MAX_BYTES // 1024} KiB unzipped"
                )
            return [archive.read(m).decode("utf-8", errors="replace") for m in members]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise OutputsRefused(f"it is not a readable zip ({exc.__class__.__name__})") from exc
