"""Starts one real `needle serve --qdrant-http` for the client tests.

The binary comes from NEEDLE_BIN (scripts/test.sh sets it to the release build);
both ports are picked by the OS and read from the node's log lines.
"""

import os
import re
import subprocess
import tempfile
import threading
import time

import httpx
import pytest
from qdrant_client import QdrantClient


class Node:
    def __init__(self, binary):
        self.dir = tempfile.TemporaryDirectory(prefix="needle-qdrant-")
        self.log = []
        self.proc = subprocess.Popen(
            [
                binary,
                "serve",
                "--data",
                os.path.join(self.dir.name, "data"),
                "--http",
                "127.0.0.1:0",
                "--qdrant-http",
                "127.0.0.1:0",
                "--backend",
                "cpu",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "NO_COLOR": "1", "RUST_LOG": "info"},
        )
        self.native_url = None
        self.qdrant_url = None
        ready = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.log.append(line)
                m = re.search(r"qdrant-compatible API listening on (http://\S+)", line)
                if m:
                    self.qdrant_url = m.group(1)
                elif self.native_url is None:
                    m = re.search(r"listening on (http://\S+)", line)
                    if m:
                        self.native_url = m.group(1)
                if self.native_url and self.qdrant_url:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(120):
            self.stop()
            raise RuntimeError("needle did not start:\n" + "".join(self.log[-50:]))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.dir.cleanup()


@pytest.fixture(scope="session")
def node():
    binary = os.environ.get("NEEDLE_BIN")
    if not binary:
        pytest.fail("NEEDLE_BIN must name the needle binary (scripts/test.sh sets it)")
    n = Node(binary)
    # The node answers before its first collection exists; wait for the API.
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(n.qdrant_url + "/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield n
    assert n.proc.poll() is None, "needle exited during the tests:\n" + "".join(n.log[-50:])
    n.stop()


@pytest.fixture(scope="session")
def client(node):
    c = QdrantClient(url=node.qdrant_url, prefer_grpc=False, timeout=60)
    yield c
    c.close()
