"""Files in the lake, wherever it lives: a local folder or Azure Data Lake Storage Gen2.

Paths are lake-relative, `<layer>/<rest>` (`raw/claims/claims.jsonl`, `gold/exports/...`). On Azure
the layer is the container (`raw`, `bronze`, `silver`, `gold`, names configurable) and every call
goes through the blob API, so it works against Azurite too (which has no DFS endpoint).

Secrets: every error that leaves this module is re-raised as `StorageError` with a message of our
own, scrubbed of keys, SAS tokens and signatures (`redact`); never the SDK's message, which can
carry a signed URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# A transient storage failure is retried this many times, waiting 0.5, 1, 2 ... seconds.
RETRY_ATTEMPTS = 4
RETRY_BASE_SECONDS = 0.5


def file_sha256(path: str) -> str:
    """The sha256 of a local file, read in 8 MiB chunks (never the whole file in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 * 1024 * 1024), b""):
            h.update(chunk)
    return h.hexdigest()


class StorageError(Exception):
    """A storage call failed; the message names what and where, never a secret."""


class LakeConfigError(StorageError):
    """The lake cannot be used as configured (bad credential, missing container, unreachable)."""


_SECRETS: set[str] = set()
_SIGNATURE = re.compile(r"(sig|se|sp|sv|skoid|sktid|AccountKey|SharedAccessSignature)=[^&;\s'\"]+",
                        re.IGNORECASE)


def register_secret(value: str | None) -> None:
    """Remember a secret so that `redact` removes it from any text."""
    if value and len(value) >= 8:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return _SIGNATURE.sub(lambda m: f"{m.group(1)}=***", text)


def with_retries(what: str, fn: Callable[[], T], *, transient: Callable[[Exception], bool],
                 attempts: int = RETRY_ATTEMPTS, log: Callable[[str], None] | None = None) -> T:
    """Call `fn`; retry transient failures with exponential backoff, `attempts` times at most."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as e:  # classified below; everything leaves as StorageError
            if isinstance(e, StorageError) and not transient(e):
                raise
            if attempt == attempts or not transient(e):
                reason = redact(f"{type(e).__name__}: {e}")[:500]
                raise StorageError(f"{what} failed after {attempt} attempt(s): {reason}") from None
            wait = RETRY_BASE_SECONDS * 2 ** (attempt - 1)
            if log:
                log(f"{what}: transient failure ({type(e).__name__}), retry {attempt} in {wait:.1f} s")
            time.sleep(wait)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class FileInfo:
    path: str  # lake-relative
    size_bytes: int
    modified_ns: int


class LocalFiles:
    """The lake as a local folder."""

    def __init__(self, root: str):
        self.root = Path(root)

    def _abs(self, path: str) -> Path:
        return self.root / path

    def list(self, prefix: str) -> list[FileInfo]:
        """Files directly inside the folder `prefix`."""
        folder = self._abs(prefix)
        if not folder.is_dir():
            return []
        out = []
        with os.scandir(folder) as it:
            for e in it:
                if e.is_file():
                    st = e.stat()
                    out.append(FileInfo(f"{prefix}/{e.name}", st.st_size, st.st_mtime_ns))
        return out

    def list_dirs(self, prefix: str) -> list[str]:
        folder = self._abs(prefix)
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def exists(self, path: str) -> bool:
        return self._abs(path).exists()

    def read_bytes(self, path: str) -> bytes:
        try:
            return self._abs(path).read_bytes()
        except OSError as e:
            raise StorageError(f"cannot read {path}: {e.strerror}") from None

    @contextlib.contextmanager
    def local_copy(self, path: str) -> Iterator[str]:
        yield str(self._abs(path))

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace `path` atomically: readers see the old content or the new, never a part."""
        target = self._abs(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        temp.write_bytes(data)
        os.replace(temp, target)

    def put_file(self, path: str, local_file: str) -> None:
        target = self._abs(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        shutil.copyfile(local_file, temp)
        os.replace(temp, target)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self._abs(prefix), ignore_errors=True)

    def delete_file(self, path: str) -> None:
        self._abs(path).unlink(missing_ok=True)

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def describe(self) -> str:
        return f"local folder {self.root}"


class AzureFiles:
    """The lake in an ADLS Gen2 storage account, one container per layer, through the blob API."""

    def __init__(self, service, account: str, containers: dict[str, str]):
        self.service = service  # azure.storage.blob.BlobServiceClient
        self.account = account
        self.containers = containers  # layer -> container name

    def _split(self, path: str) -> tuple[str, str]:
        layer, _, rest = path.partition("/")
        return self.containers[layer], rest

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return with_retries(what, fn, transient=azure_transient)

    def list(self, prefix: str) -> list[FileInfo]:
        container, rest = self._split(prefix)
        client = self.service.get_container_client(container)
        start = rest.rstrip("/") + "/" if rest else ""

        def run():
            out = []
            for item in client.walk_blobs(name_starts_with=start, delimiter="/"):
                if getattr(item, "size", None) is None:  # a "folder" prefix
                    continue
                modified = item.last_modified.timestamp() if item.last_modified else 0
                out.append(FileInfo(f"{prefix.split('/')[0]}/{item.name}", item.size,
                                    int(modified * 1e9)))
            return out

        return self._call(f"listing {container}/{start}", run)

    def list_dirs(self, prefix: str) -> list[str]:
        container, rest = self._split(prefix)
        client = self.service.get_container_client(container)
        start = rest.rstrip("/") + "/"

        def run():
            return sorted(item.name[len(start):].rstrip("/")
                          for item in client.walk_blobs(name_starts_with=start, delimiter="/")
                          if getattr(item, "size", None) is None)

        return self._call(f"listing {container}/{start}", run)

    def exists(self, path: str) -> bool:
        container, rest = self._split(path)
        return self._call(f"checking {container}/{rest}",
                          lambda: self.service.get_blob_client(container, rest).exists())

    def read_bytes(self, path: str) -> bytes:
        container, rest = self._split(path)
        return self._call(f"reading {container}/{rest}",
                          lambda: self.service.get_blob_client(container, rest).download_blob().readall())

    @contextlib.contextmanager
    def local_copy(self, path: str) -> Iterator[str]:
        """Download to a temporary file (streamed to disk, not held in memory)."""
        container, rest = self._split(path)
        with tempfile.TemporaryDirectory(prefix="petinsure-") as tmp:
            local = os.path.join(tmp, rest.rsplit("/", 1)[-1])

            def run():
                with open(local, "wb") as fh:
                    self.service.get_blob_client(container, rest).download_blob().readinto(fh)

            self._call(f"downloading {container}/{rest}", run)
            yield local

    def write_bytes(self, path: str, data: bytes) -> None:
        """One blob upload: Azure replaces a blob atomically."""
        container, rest = self._split(path)
        self._call(f"writing {container}/{rest}", lambda: self.service.get_blob_client(
            container, rest).upload_blob(data, overwrite=True))

    def put_file(self, path: str, local_file: str) -> None:
        container, rest = self._split(path)

        def run():
            with open(local_file, "rb") as fh:
                self.service.get_blob_client(container, rest).upload_blob(fh, overwrite=True)

        self._call(f"uploading {container}/{rest}", run)

    def delete_prefix(self, prefix: str) -> None:
        container, rest = self._split(prefix)
        client = self.service.get_container_client(container)

        def run():
            for blob in client.list_blobs(name_starts_with=rest.rstrip("/") + "/"):
                client.delete_blob(blob.name)

        self._call(f"deleting {container}/{rest}", run)

    def delete_file(self, path: str) -> None:
        container, rest = self._split(path)
        blob = self.service.get_blob_client(container, rest)

        def run():
            if blob.exists():
                blob.delete_blob()

        self._call(f"deleting {container}/{rest}", run)

    def total_bytes(self) -> int:
        total = 0
        for container in self.containers.values():
            client = self.service.get_container_client(container)
            total += self._call(f"sizing {container}", lambda c=client: sum(b.size for b in c.list_blobs()))
        return total

    def describe(self) -> str:
        return f"storage account {self.account} (containers {', '.join(self.containers.values())})"


def azure_transient(e: Exception) -> bool:
    """Connection trouble, timeouts, throttling and server errors are worth retrying; a refused
    credential, a missing container or blob is not."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
        HttpResponseError,
    )

    if isinstance(e, (ClientAuthenticationError, ResourceNotFoundError)):
        return False
    if isinstance(e, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)):
        return True
    if isinstance(e, HttpResponseError):
        return e.status_code is None or e.status_code in (408, 429) or e.status_code >= 500
    return isinstance(e, OSError)


def delta_transient(e: Exception) -> bool:
    """delta-rs reports object-store trouble as OSError / DeltaError with a message."""
    text = str(e).lower()
    if any(s in text for s in ("authoriz", "authenticat", "forbidden", "403", "not found", "404")):
        return False
    return any(s in text for s in ("connect", "timed out", "timeout", "broken pipe", "reset",
                                   "500", "502", "503", "504", "error sending request", "io error",
                                   "generic", "dns"))
