"""Starts one real `needle serve --qdrant-http` for the client tests.

The binary comes from NEEDLE_BIN (scripts/test.sh sets it to the release build);
both ports are picked by the OS and read from the node's log lines.
"""

import os
import tempfile
import time

import httpx
import pytest
from qdrant_client import QdrantClient

from needle_process import NeedleProcess


class Node(NeedleProcess):
    """A standalone node on a temporary data directory."""

    def __init__(self, binary):
        self.dir = tempfile.TemporaryDirectory(prefix="needle-qdrant-")
        super().__init__(binary, ["--data", os.path.join(self.dir.name, "data")])

    def stop(self):
        super().stop()
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
    assert n.alive(), "needle exited during the tests:\n" + "".join(n.log[-50:])
    n.stop()


@pytest.fixture(scope="session")
def client(node):
    c = QdrantClient(url=node.qdrant_url, prefer_grpc=False, timeout=60)
    yield c
    c.close()
