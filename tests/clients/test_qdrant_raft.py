"""The Qdrant-compatible API on a three-member Raft cluster: writes through any
member (followers forward them), payload changes resolved by the log on every
member, and majority reads that see them everywhere."""

import os
import socket
import tempfile
import time

import pytest
from qdrant_client import QdrantClient, models

from needle_process import NeedleProcess


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def member(binary, data, node_id, addrs):
    peers = ",".join(f"{j + 1}={a}" for j, a in enumerate(addrs) if j != node_id - 1)
    return NeedleProcess(
        binary,
        ["--data", data, "--raft", "--node-id", str(node_id), "--cluster-addr", addrs[node_id - 1],
         "--peers", peers, "--insecure-dev"],
    )


@pytest.fixture(scope="module")
def cluster():
    binary = os.environ["NEEDLE_BIN"]
    root = tempfile.TemporaryDirectory(prefix="needle-qdrant-raft-")
    addrs = [f"127.0.0.1:{free_udp_port()}" for _ in range(3)]
    members = [member(binary, os.path.join(root.name, f"n{i + 1}"), i + 1, addrs) for i in range(3)]
    clients = [QdrantClient(url=m.qdrant_url, prefer_grpc=False, timeout=60) for m in members]
    yield clients
    for c in clients:
        c.close()
    for m in members:
        m.stop()
    root.cleanup()


def test_writes_through_any_member_and_payload_changes_agree_everywhere(cluster):
    a, b, c = cluster
    # The election may still be running: creating retries until a leader takes it.
    for _ in range(100):
        try:
            a.create_collection("shared", vectors_config=models.VectorParams(size=2, distance=models.Distance.EUCLID))
            break
        except Exception:
            time.sleep(0.1)
    b.upsert(
        "shared",
        points=[models.PointStruct(id=i, vector=[float(i), 0.0], payload={"n": i}) for i in range(50)],
        wait=True,
    )
    c.set_payload("shared", payload={"tag": "even"}, points=models.Filter(
        must=[models.FieldCondition(key="n", range=models.Range(lt=10))]))
    a.delete_payload("shared", keys=["n"], points=[0, 1])
    b.delete("shared", points_selector=models.PointIdsList(points=[49]))
    majority = models.ReadConsistencyType.MAJORITY
    for client in cluster:
        # Majority reads first: after one, this member has applied every write above.
        got = client.query_points("shared", query=[0.2, 0.0], limit=3, consistency=majority).points
        assert [p.id for p in got] == [0, 1, 2]
        assert [p.payload for p in got] == [{"tag": "even"}, {"tag": "even"}, {"n": 2, "tag": "even"}]
        points, _ = client.scroll("shared", limit=100, consistency=majority)
        assert [p.id for p in points] == list(range(49))
        # count takes no consistency in this client: it reads this member's state,
        # which the majority reads above brought up to date.
        assert client.count("shared", exact=True).count == 49
        tagged = client.count(
            "shared",
            count_filter=models.Filter(must=[models.FieldCondition(key="tag", match=models.MatchValue(value="even"))]),
        ).count
        assert tagged == 10
