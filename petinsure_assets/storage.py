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
import errno
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

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
_SIGNATURE = re.compile(
    r"(sig|se|sp|sv|skoid|sktid|AccountKey|SharedAccessSignature)=[^&;\s'\"]+", re.IGNORECASE
)


def register_secret(value: str | None) -> None:
    """Remember a secret so that `redact` removes it from any text."""
    if value and len(value) >= 8:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return _SIGNATURE.sub(lambda m: f"{m.group(1)}=***", text)


def with_retries(
    what: str,
    fn: Callable[[], T],
    *,
    transient: Callable[[Exception], bool],
    attempts: int = RETRY_ATTEMPTS,
    log: Callable[[str], None] | None = None,
) -> T:
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
                log(
                    f"{what}: transient failure ({type(e).__name__}), retry {attempt} in {wait:.1f} s"
                )
            time.sleep(wait)
    raise AssertionError("unreachable")


# The one-writer lock of a lake (lock.py): a file in the local lake's root, a blob in the bronze
# container on Azure. Its content names the holder (JSON), for the message others get.
WRITER_LOCK_NAME = "_lake_writer.lock"
WRITER_LOCK_LAYER = "bronze"


class FileLock:
    """An exclusive `flock` on a file: the kernel releases it when the holding process dies,
    however it dies. The file is never deleted (a waiter would lock a file nobody else sees)."""

    def __init__(self, path: Path):
        self.path = path
        self.key = f"file:{os.path.realpath(path)}"
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def write_holder(self, data: bytes) -> None:
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def read_holder(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError:
            return b""

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)  # a later waiter sees no stale holder
            os.close(fd)  # closing the last descriptor drops the flock

    def describe(self) -> str:
        return str(self.path)


_PROCESS_LEASE_IDS: dict[int, str] = {}  # by pid: a forked child is another writer


class LeaseLock:
    """An Azure blob lease on a lock blob: finite (15-60 s), renewed by a background thread while
    held, so that it expires by itself once the holding process is gone."""

    def __init__(self, blob, lease_seconds: int, log: Callable[[str], None] | None = None):
        if not 15 <= lease_seconds <= 60:
            raise ValueError(f"an Azure lease lasts 15 to 60 seconds, not {lease_seconds}")
        self.blob = blob  # azure.storage.blob.BlobClient
        self.lease_seconds = lease_seconds
        self.log = log or (lambda message: None)
        self.key = f"blob:{blob.url.split('?')[0]}"
        self._lease = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        return with_retries(
            f"{what} the lake's writer lock {self.describe()}", fn, transient=azure_transient
        )

    def try_acquire(self) -> bool:
        from azure.core.exceptions import HttpResponseError
        from azure.storage.blob import BlobLeaseClient

        def create():
            try:
                self.blob.upload_blob(b"", overwrite=False)
            except HttpResponseError as e:
                if e.status_code != 409:  # 409: it exists already (leased or not)
                    raise

        def acquire() -> bool:
            # This process's own lease id: a lease whose release failed (storage unreachable at
            # the end of a run) is taken again at once by the same process, not waited out.
            lease = BlobLeaseClient(
                self.blob, lease_id=_PROCESS_LEASE_IDS.setdefault(os.getpid(), str(uuid.uuid4()))
            )
            try:
                lease.acquire(lease_duration=self.lease_seconds)
            except HttpResponseError as e:
                if e.status_code == 409:  # another writer's lease is active
                    return False
                raise
            self._lease = lease
            return True

        self._call("creating", create)
        if not self._call("leasing", acquire):
            return False
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="lake-writer-lease", daemon=True)
        self._renewer.start()
        return True

    def _renew(self) -> None:
        # Three renewals per lease period: one failed renewal (a network blip) is not fatal.
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self._lease.renew()
            except Exception as e:
                self.log(
                    f"renewing the lease on the lake's writer lock {self.describe()} failed "
                    f"({redact(f'{type(e).__name__}: {e}')[:300]}); it expires "
                    f"{self.lease_seconds} s after the last renewal"
                )

    def write_holder(self, data: bytes) -> None:
        self._call(
            "writing", lambda: self.blob.upload_blob(data, overwrite=True, lease=self._lease)
        )

    def read_holder(self) -> bytes:
        try:
            return self.blob.download_blob().readall()
        except Exception:  # only for the message; the lease is what counts
            return b""

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        lease, self._lease = self._lease, None
        if lease is None:
            return
        with contextlib.suppress(Exception):  # a later waiter sees no stale holder
            self.blob.upload_blob(b"", overwrite=True, lease=lease)
        try:
            lease.release()
        except Exception as e:  # the lease then expires by itself
            self.log(
                f"releasing the lake's writer lock {self.describe()} failed "
                f"({type(e).__name__}); it expires within {self.lease_seconds} s"
            )

    def describe(self) -> str:
        return f"{self.blob.container_name}/{self.blob.blob_name}"


@dataclass(frozen=True)
class FileInfo:
    path: str  # lake-relative
    size_bytes: int
    modified_ns: int
    refused: str | None = None  # why the lake will not read it (a link out of its folder's layer)


@dataclass(frozen=True)
class StagedFile:
    """What `stage` copied: the size, modification time and sha256 of exactly those bytes."""

    size_bytes: int
    modified_ns: int
    sha256: str


COPY_CHUNK_BYTES = 8 * 1024 * 1024


def _copy_hashing(source, dest: str | BinaryIO) -> tuple[str, int]:
    """Copy a binary stream (or an iterator of chunks) to a local file or an in-memory buffer,
    returning the sha256 and size of the bytes copied: the copy is what was hashed, whatever
    happens to the source meanwhile."""
    h, size = hashlib.sha256(), 0
    chunks = iter(lambda: source.read(COPY_CHUNK_BYTES), b"") if hasattr(source, "read") else source
    with open(dest, "wb") if isinstance(dest, str) else contextlib.nullcontext(dest) as out:
        out.seek(0)
        out.truncate()
        for chunk in chunks:
            h.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return h.hexdigest(), size


class LocalFiles:
    """The lake as a local folder."""

    def __init__(self, root: str):
        self.root = Path(root)

    def _abs(self, path: str) -> Path:
        return self.root / path

    def _inside_layer(self, path: str) -> bool:
        """Whether `path` (lake-relative) resolves, links followed, to a regular file inside its
        own layer folder (`raw/…` inside raw/)."""
        layer = os.path.realpath(self.root / path.split("/", 1)[0])
        target = os.path.realpath(self._abs(path))
        return target.startswith(layer + os.sep) and os.path.isfile(target)

    def list(self, prefix: str, name_prefix: str = "") -> list[FileInfo]:
        """Files directly inside the folder `prefix` (whose names start with `name_prefix`). A
        symbolic link is followed only to a file inside the same layer; any other link, or a
        special file, is listed as refused (by its own size and time) and never read. A file that
        vanishes while the folder is listed (a writer's temporary file) is not listed."""
        folder = self._abs(prefix)
        if not folder.is_dir():
            return []
        out = []
        with os.scandir(folder) as it:
            for e in it:
                if not e.name.startswith(name_prefix):
                    continue
                try:
                    info = self._info(prefix, e)
                except FileNotFoundError:
                    continue
                if info is not None:
                    out.append(info)
        return out

    def _info(self, prefix: str, e: os.DirEntry) -> FileInfo | None:
        path = f"{prefix}/{e.name}"
        if e.is_dir():
            return None
        if e.is_symlink() and not self._inside_layer(path):
            st = e.stat(follow_symlinks=False)
            layer = path.split("/", 1)[0]
            return FileInfo(
                path,
                st.st_size,
                st.st_mtime_ns,
                refused=f"symbolic link pointing outside {layer}/ (not followed)",
            )
        if e.is_file():
            st = e.stat()
            return FileInfo(path, st.st_size, st.st_mtime_ns)
        st = e.stat(follow_symlinks=False)
        return FileInfo(path, st.st_size, st.st_mtime_ns, refused="not a regular file")

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

    def stage(self, path: str, dest: str | BinaryIO) -> StagedFile | None:
        """Copy `path` to `dest` (a local file or a buffer) while hashing it; None when it no
        longer exists. Refuses (StorageError) a link that now leads out of its layer."""
        target = self._abs(path)
        try:
            try:
                fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as e:
                if e.errno != errno.ELOOP:
                    raise
                if not self._inside_layer(path):  # a link (checked only then: it costs)
                    raise StorageError(
                        f"{path} leads outside {path.split('/', 1)[0]}/; not read"
                    ) from None
                fd = os.open(target, os.O_RDONLY)
            with open(fd, "rb") as source:
                st = os.fstat(source.fileno())
                digest, size = _copy_hashing(source, dest)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"cannot read {path}: {e.strerror}") from None
        return StagedFile(size, st.st_mtime_ns, digest)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace `path` atomically: readers see the old content or the new, never a part."""
        target = self._abs(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        temp.write_bytes(data)
        os.replace(temp, target)

    def create(self, path: str, data: bytes) -> None:
        """Create `path` with `data`, all at once and never over an existing file: written under a
        hidden temporary name (which the raw listing ignores), flushed to disk, then linked to its
        name (FileExistsError if that exists). A write that stops midway leaves at most the hidden
        temporary file, never a part of `path`."""
        target = self._abs(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            # Atomic, and refuses an existing name (a rename would replace it).
            os.link(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the new name survives a crash of the machine
        finally:
            os.close(folder)

    def find(self, folder: str, name_prefix: str) -> list[FileInfo]:
        """Files directly inside `folder` whose names start with `name_prefix`."""
        return self.list(folder, name_prefix)

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

    def writer_lock(self, lease_seconds: int, log: Callable[[str], None] | None = None) -> FileLock:
        return FileLock(self.root / WRITER_LOCK_NAME)


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
                out.append(
                    FileInfo(f"{prefix.split('/')[0]}/{item.name}", item.size, int(modified * 1e9))
                )
            return out

        return self._call(f"listing {container}/{start}", run)

    def list_dirs(self, prefix: str) -> list[str]:
        container, rest = self._split(prefix)
        client = self.service.get_container_client(container)
        start = rest.rstrip("/") + "/"

        def run():
            return sorted(
                item.name[len(start) :].rstrip("/")
                for item in client.walk_blobs(name_starts_with=start, delimiter="/")
                if getattr(item, "size", None) is None
            )

        return self._call(f"listing {container}/{start}", run)

    def exists(self, path: str) -> bool:
        container, rest = self._split(path)
        return self._call(
            f"checking {container}/{rest}",
            lambda: self.service.get_blob_client(container, rest).exists(),
        )

    def read_bytes(self, path: str) -> bytes:
        container, rest = self._split(path)
        return self._call(
            f"reading {container}/{rest}",
            lambda: self.service.get_blob_client(container, rest).download_blob().readall(),
        )

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

    def stage(self, path: str, dest: str | BinaryIO) -> StagedFile | None:
        """Download `path` to `dest` (a local file or a buffer) while hashing it; None when the
        blob is gone. A retry starts the copy afresh, so the hash is that of the bytes in `dest`."""
        from azure.core.exceptions import ResourceNotFoundError

        container, rest = self._split(path)

        def run():
            try:
                download = self.service.get_blob_client(container, rest).download_blob()
            except ResourceNotFoundError:
                return None
            digest, size = _copy_hashing(download.chunks(), dest)
            modified = download.properties.last_modified
            return StagedFile(size, int(modified.timestamp() * 1e9) if modified else 0, digest)

        return self._call(f"downloading {container}/{rest}", run)

    def write_bytes(self, path: str, data: bytes) -> None:
        """One blob upload: Azure replaces a blob atomically."""
        container, rest = self._split(path)
        self._call(
            f"writing {container}/{rest}",
            lambda: self.service.get_blob_client(container, rest).upload_blob(data, overwrite=True),
        )

    def create(self, path: str, data: bytes) -> None:
        """Create `path` with `data` in one blob upload that never replaces an existing blob
        (FileExistsError): Azure commits a single-shot upload whole or not at all. When a retry
        finds the blob there with exactly `data`, it was the first attempt's: done."""
        from azure.core.exceptions import ResourceExistsError

        container, rest = self._split(path)
        blob = self.service.get_blob_client(container, rest)
        max_single = getattr(getattr(blob, "_config", None), "max_single_put_size", 64 << 20)
        if len(data) > max_single:  # a bigger one would be uploaded in blocks
            raise StorageError(f"{path}: {len(data)} bytes is too big for one upload")

        def run():
            try:
                blob.upload_blob(data, overwrite=False)
                return True
            except ResourceExistsError:
                return blob.download_blob().readall() == data

        if not self._call(f"creating {container}/{rest}", run):
            raise FileExistsError(f"{path} exists")

    def find(self, folder: str, name_prefix: str) -> list[FileInfo]:
        """Blobs directly inside `folder` whose names start with `name_prefix`."""
        container, rest = self._split(folder)
        client = self.service.get_container_client(container)
        start = (rest.rstrip("/") + "/" if rest else "") + name_prefix

        def run():
            return [
                FileInfo(
                    f"{folder.split('/')[0]}/{b.name}",
                    b.size,
                    int(b.last_modified.timestamp() * 1e9) if b.last_modified else 0,
                )
                for b in client.list_blobs(name_starts_with=start)
                if "/" not in b.name[len(start) :]
            ]

        return self._call(f"listing {container}/{start}", run)

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
            total += self._call(
                f"sizing {container}", lambda c=client: sum(b.size for b in c.list_blobs())
            )
        return total

    def describe(self) -> str:
        return f"storage account {self.account} (containers {', '.join(self.containers.values())})"

    def writer_lock(
        self, lease_seconds: int, log: Callable[[str], None] | None = None
    ) -> LeaseLock:
        return LeaseLock(
            self.service.get_blob_client(self.containers[WRITER_LOCK_LAYER], WRITER_LOCK_NAME),
            lease_seconds,
            log,
        )


def azure_transient(e: Exception) -> bool:
    """Connection trouble, timeouts, throttling and server errors are worth retrying; a refused
    credential, a missing container or blob is not."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
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
    return any(
        s in text
        for s in (
            "connect",
            "timed out",
            "timeout",
            "broken pipe",
            "reset",
            "500",
            "502",
            "503",
            "504",
            "error sending request",
            "io error",
            "generic",
            "dns",
        )
    )
