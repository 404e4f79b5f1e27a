"""Azurite for the tests: installed from npm into .cache/azurite on first use (under a file lock:
parallel test workers of a fresh clone install it once), started on a port it binds itself (port
0, read back from the line it prints once it listens: no free-port race), with its data in a
temporary folder.

One server serves the whole session (conftest's `azurite_server`); each test gets an account of
its own on it (`Azurite.account()`), so tests never see each other's containers. A test that
stops the server starts a private one."""

from __future__ import annotations

import fcntl
import os
import queue
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_DIR = REPO / ".cache" / "azurite"
AZURITE_VERSION = "3.37.0"
ACCOUNT = "devstoreaccount1"
# Azurite's published development key: not a secret, but handled as one by the code under test.
# Every account of a test server has this key.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# The accounts a server knows (AZURITE_ACCOUNTS is read at start-up): the default one and enough
# for one per test of a session.
ACCOUNTS = (ACCOUNT, *(f"petinsuretest{n:03d}" for n in range(1, 65)))
START_TIMEOUT_SECONDS = 120  # a safety net only: start() returns as soon as Azurite says it listens
LISTENING = re.compile(r"Azurite Blob service successfully listens on http://[^:]+:(\d+)")


def install() -> Path:
    binary = INSTALL_DIR / "node_modules" / ".bin" / "azurite-blob"
    if binary.exists():
        return binary
    if shutil.which("npm") is None:
        raise RuntimeError("npm is needed to install Azurite for the Azure tests")
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    with open(INSTALL_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test worker may be installing it right now
        if not binary.exists():
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--prefix",
                    str(INSTALL_DIR),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    f"azurite@{AZURITE_VERSION}",
                ],
                check=True,
                timeout=600,
            )
    return binary


class Azurite:
    """An Azurite blob server; `port` is known once started (and changes on a restart)."""

    def __init__(self, location: Path, *, in_memory: bool = False):
        self.binary = install()
        self.location = location
        self.in_memory = in_memory
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._next_account = 0

    def start(self) -> Azurite:
        self.location.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                # on disk (a restart finds the data again), or in memory (faster)
                *(
                    ["--inMemoryPersistence"]
                    if self.in_memory
                    else ["--location", str(self.location)]
                ),
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
            ],
            env={
                **os.environ,
                "AZURITE_ACCOUNTS": ";".join(f"{name}:{KEY}" for name in ACCOUNTS),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def read(stream) -> None:  # drains the pipe for the server's whole life
            for line in stream:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, args=(self.process.stdout,), daemon=True).start()
        seen = []
        while True:
            try:
                line = lines.get(timeout=START_TIMEOUT_SECONDS)
            except queue.Empty:
                line = None
            if line is None:  # exited, or said nothing within the safety net
                self.stop()
                raise RuntimeError(f"Azurite did not start: {''.join(seen)}")
            seen.append(line)
            if match := LISTENING.search(line):
                self.port = int(match.group(1))
                return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def account(self, name: str | None = None) -> AzuriteAccount:
        """An account of this server: `name`, else the next one no test has had yet."""
        if name is None:
            self._next_account += 1
            if self._next_account >= len(ACCOUNTS):
                raise RuntimeError(f"all {len(ACCOUNTS) - 1} test accounts of Azurite are in use")
            name = ACCOUNTS[self._next_account]
        return AzuriteAccount(self, name)


@dataclass
class AzuriteAccount:
    """One storage account of an Azurite server: what a test talks to."""

    server: Azurite
    name: str
    key: str = KEY

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/{self.name}"

    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(
            self.endpoint, credential={"account_name": self.name, "account_key": self.key}
        )

    def create_containers(self, names=("raw", "bronze", "silver", "gold")) -> None:
        service = self.service()
        for name in names:
            if not service.get_container_client(name).exists():
                service.create_container(name)
