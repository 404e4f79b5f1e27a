"""One writer at a time per lake, whoever writes it: a Dagster run, `petinsure refresh`, two shells.

The Dagster instance runs one run at a time (dagster.yaml), but the command line runs its jobs in
its own process, outside the instance's queue, and two lakes' users need not share an instance.
So the lake itself is locked: a second writer waits up to `PETINSURE_LOCK_WAIT_SECONDS` (default
600 s; `petinsure refresh --lock-wait`), then gives up with `LakeBusyError`, whose message names
the holder (what, run id, pid, host, since when).

Where the lock lives (storage.py): locally an `flock` on `<root>/_lake_writer.lock`, released by
the kernel when the holder dies, however it dies; on Azure a lease on the blob
`bronze/_lake_writer.lock`, of `PETINSURE_LOCK_LEASE_SECONDS` (15-60, default 60), renewed by a
background thread while held, so it expires by itself after the holder is killed. The lock's
content names the holder, for the message.

Who takes it: every Dagster run (`LakeResource.yield_for_execution`, for the whole run), and
`petinsure refresh` around its demo data and both of its runs. Within one thread the lock is
reentrant: the command line's runs take it again in the same thread and only record their run id.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from petinsure_assets.storage import redact

LOCK_WAIT_ENV = "PETINSURE_LOCK_WAIT_SECONDS"
LEASE_SECONDS_ENV = "PETINSURE_LOCK_LEASE_SECONDS"
DEFAULT_WAIT_SECONDS = 600.0
DEFAULT_LEASE_SECONDS = 60
# How often a waiting writer tries again (one flock call or one HTTP request).
POLL_SECONDS = 1.0


class LakeBusyError(Exception):
    """Another writer holds the lake; the message names it (never a secret)."""


def number_from_env(name: str, default: float) -> float:
    """A number of seconds from the environment variable `name` (`default` when unset or empty);
    ValueError naming the variable when it is not a number."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None


def lock_wait_seconds(value: float | None = None) -> float:
    """The wait asked for, else PETINSURE_LOCK_WAIT_SECONDS, else 600 s."""
    wait = number_from_env(LOCK_WAIT_ENV, DEFAULT_WAIT_SECONDS) if value is None else float(value)
    if not wait >= 0:  # also NaN
        raise ValueError(f"the lock wait must be 0 or more seconds, got {wait:g}")
    return wait


def lease_seconds() -> int:
    return int(number_from_env(LEASE_SECONDS_ENV, DEFAULT_LEASE_SECONDS))


def describe_holder(raw: bytes) -> str:
    """`petinsure refresh (run 1a2b…, pid 4242 on host etl-1, since 2026-01-31T02:00:00Z)`."""
    try:
        info = json.loads(raw)
    except ValueError:
        info = None
    if not isinstance(info, dict) or not info.get("holder"):
        return "a writer that has not named itself yet"
    parts = [f"run {info['run_id']}"] if info.get("run_id") else []
    parts += [f"pid {info.get('pid')} on host {info.get('host')}", f"since {info.get('since')}"]
    return f"{info['holder']} ({', '.join(parts)})"


@dataclass
class _Hold:
    """This process's hold on one lake's lock: which thread, how deep, and what it says."""

    thread_lock: threading.RLock = field(default_factory=threading.RLock)
    depth: int = 0
    primitive: Any = None  # storage.FileLock | storage.LeaseLock while held
    info: dict[str, Any] = field(default_factory=dict)


_HOLDS: dict[str, _Hold] = {}
_HOLDS_GUARD = threading.Lock()


def _busy(lake, who: str, wait: float) -> LakeBusyError:
    waited = "not waiting (lock wait 0 s)" if wait == 0 else f"gave up after waiting {wait:g} s"
    return LakeBusyError(
        redact(
            f"the lake ({lake.describe()}) is being written by {who}; {waited}. Run again once it has "
            f"finished, or wait longer: --lock-wait SECONDS or {LOCK_WAIT_ENV}"
        )
    )


def _acquire(lake, primitive, wait: float, deadline: float, log: Callable[[str], None]) -> None:
    said = False
    while not primitive.try_acquire():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _busy(lake, describe_holder(primitive.read_holder()), wait)
        if not said:
            log(
                redact(
                    f"waiting up to {wait:g} s for the lake ({lake.describe()}): it is being "
                    f"written by {describe_holder(primitive.read_holder())}"
                )
            )
            said = True
        time.sleep(min(POLL_SECONDS, remaining))


@contextlib.contextmanager
def writer_lock(
    lake,
    holder: str,
    *,
    run_id: str | None = None,
    wait: float | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the lake's writer lock for the block; `LakeBusyError` if another writer keeps it
    longer than `wait` seconds (None: PETINSURE_LOCK_WAIT_SECONDS or 600). `holder` and `run_id`
    name this writer to the others; `log` receives the waiting notice and lease trouble."""
    wait = lock_wait_seconds(wait)
    log = log or (lambda message: None)
    primitive = lake.files.writer_lock(lease_seconds(), log)
    with _HOLDS_GUARD:
        hold = _HOLDS.setdefault(primitive.key, _Hold())
    deadline = time.monotonic() + wait
    # Another thread of this process that holds the lake is another writer too.
    if not hold.thread_lock.acquire(timeout=min(wait, threading.TIMEOUT_MAX)):
        raise _busy(lake, describe_holder(json.dumps(hold.info).encode()), wait)
    previous = dict(hold.info)
    acquired_here = False
    try:
        if hold.depth == 0:
            _acquire(lake, primitive, wait, deadline, log)
            acquired_here = True
            hold.primitive = primitive
            hold.info = {
                "holder": holder,
                "run_id": run_id,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        elif run_id:
            hold.info = {**hold.info, "run_id": run_id}
        if hold.info != previous:
            hold.primitive.write_holder(json.dumps(hold.info).encode())
    except BaseException:
        if acquired_here:
            primitive.release()
            hold.primitive = None
        hold.info = previous
        hold.thread_lock.release()
        raise
    hold.depth += 1
    try:
        yield
    finally:
        hold.depth -= 1
        try:
            if hold.depth == 0:
                hold.primitive.release()
                hold.primitive, hold.info = None, {}
            elif hold.info != previous:
                hold.info = previous
                hold.primitive.write_holder(json.dumps(previous).encode())
        finally:
            hold.thread_lock.release()
