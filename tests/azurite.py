"""Azurite for the tests: installed from npm into .cache/azurite on first use, started on a free
loopback port with its data in a temporary folder, stopped (and restartable) by the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_DIR = REPO / ".cache" / "azurite"
AZURITE_VERSION = "3.37.0"
ACCOUNT = "devstoreaccount1"
# Azurite's published development key: not a secret, but handled as one by the code under test.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def install() -> Path:
    binary = INSTALL_DIR / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        if shutil.which("npm") is None:
            raise RuntimeError("npm is needed to install Azurite for the Azure tests")
        INSTALL_DIR.mkdir(parents=True, exist_ok=True)
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Azurite:
    def __init__(self, location: Path, port: int | None = None):
        self.binary = install()
        self.location = location
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def start(self) -> Azurite:
        self.location.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                str(self.location),
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint}?comp=list", timeout=1)
            except urllib.error.HTTPError:
                return self  # it answers (403 without a signature): up
            except OSError:
                time.sleep(0.2)
                continue
            return self
        self.stop()
        raise RuntimeError(f"Azurite did not start on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(
            self.endpoint, credential={"account_name": ACCOUNT, "account_key": KEY}
        )

    def create_containers(self, names=("raw", "bronze", "silver", "gold")) -> None:
        service = self.service()
        for name in names:
            if not service.get_container_client(name).exists():
                service.create_container(name)
