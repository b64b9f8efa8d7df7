"""The official qdrant-client (REST) against a real needle node.

Every answer is checked against numpy / plain-Python ground truth computed from the
data the test wrote, never against needle's own answers.
"""

import uuid
import warnings

import httpx
import numpy as np
import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse
from qdrant_client.qdrant_remote import QdrantRemote

RNG = np.random.default_rng(7)
DIM = 24
N = 3000
COLORS = ["red", "green", "blue", "black"]
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon"]


def make_payload(i):
    """Deterministic payloads exercising every filter kind."""
    p = {
        "group": i % 10,
        "color": COLORS[i % 4],
        "price": float(i % 97) / 2.0,
        "tags": [WORDS[i % 5], WORDS[(i * 3) % 5]],
        "title": f"item {WORDS[i % 5]} number {i}",
        "shop": {"city": ["Berlin", "Paris", "Rome"][i % 3], "rank": i % 7},
        "items": [{"k": "a", "v": i % 3}, {"k": "b", "v": (i + 1) % 3}],
    }
    if i % 11 == 0:
        p["maybe"] = None
    elif i % 11 == 1:
        p["maybe"] = []
    elif i % 11 == 2:
        p["maybe"] = [1, 2, 3]
    return p


@pytest.fixture(scope="module")
def data():
    vectors = RNG.standard_normal((N, DIM)).astype(np.float32)
    payloads = [make_payload(i) for i in range(N)]
    return vectors, payloads


def create(client, name, distance, size=DIM):
    if client.collection_exists(name):
        client.delete_collection(name)
    assert client.create_collection(
        name, vectors_config=models.VectorParams(size=size, distance=distance)
    )


@pytest.fixture(scope="module")
def loaded(client, data):
    """One collection per distance, loaded with the same points in batches."""
    vectors, payloads = data
    names = {}
    for distance in [models.Distance.COSINE, models.Distance.EUCLID, models.Distance.DOT]:
        name = f"ground_{distance.value.lower()}"
        create(client, name, distance)
        for start in range(0, N, 500):
            ids = list(range(start, min(start + 500, N)))
            client.upsert(
                name,
                points=models.Batch(
                    ids=ids,
                    vectors=vectors[ids].tolist(),
                    payloads=[payloads[i] for i in ids],
                ),
                wait=True,
            )
        names[distance] = name
    return names


def truth_scores(distance, vectors, q):
    if distance == models.Distance.COSINE:
        norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(q)
        return (vectors @ q) / norms, True
    if distance == models.Distance.DOT:
        return vectors @ q, True
    return np.linalg.norm(vectors - q, axis=1), False


def truth_top(distance, vectors, q, k, allowed=None):
    scores, larger_better = truth_scores(distance, vectors.astype(np.float64), q.astype(np.float64))
    ids = np.arange(len(vectors)) if allowed is None else np.array(sorted(allowed))
    s = scores[ids]
    order = np.argsort(-s if larger_better else s, kind="stable")[:k]
    return [int(ids[o]) for o in order], [float(s[o]) for o in order]


def test_the_client_finds_a_compatible_server(node):
    info = httpx.get(node.qdrant_url + "/").json()
    assert info["title"] == "qdrant - vector search engine"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The check the client's constructor runs on a thread, run here so its
        # warnings are seen.
        QdrantRemote._check_compatibility(node.qdrant_url, {}, None, 10)
    assert [str(w.message) for w in caught] == []


def test_collections_are_created_listed_described_and_deleted(client, node):
    create(client, "lifecycle", models.Distance.EUCLID, size=3)
    assert client.collection_exists("lifecycle")
    assert not client.collection_exists("never_made")
    assert "lifecycle" in [c.name for c in client.get_collections().collections]
    info = client.get_collection("lifecycle")
    assert info.points_count == 0
    assert info.config.params.vectors.size == 3
    assert info.config.params.vectors.distance == models.Distance.EUCLID
    # The same collection through the native API.
    native = httpx.get(f"{node.native_url}/collections/lifecycle").json()
    assert native["dimensions"] == 3 and native["distance"] == "euclidean"
    with pytest.raises(UnexpectedResponse) as taken:
        client.create_collection(
            "lifecycle", vectors_config=models.VectorParams(size=3, distance=models.Distance.DOT)
        )
    assert taken.value.status_code == 409
    assert client.delete_collection("lifecycle") is True
    assert client.delete_collection("lifecycle") is False
    assert not client.collection_exists("lifecycle")


def test_native_collections_and_ids_are_visible_through_qdrant(client, node):
    r = httpx.post(
        f"{node.native_url}/collections",
        json={"name": "from_native", "dimensions": 2, "distance": "dot"},
    )
    assert r.status_code == 201, r.text
    for vid in ["doc-7", "42"]:
        r = httpx.post(
            f"{node.native_url}/collections/from_native/vectors",
            json={"id": vid, "vector": [1.0, 0.5], "metadata": {"src": "native"}},
        )
        assert r.status_code == 201, r.text
    info = client.get_collection("from_native")
    assert info.config.params.vectors.distance == models.Distance.DOT
    points, _ = client.scroll("from_native", limit=10)
    # "42" is the canonical text of an integer id, so it is that integer; "doc-7"
    # stays the string it is.
    assert [p.id for p in points] == [42, "doc-7"]
    assert all(p.payload == {"src": "native"} for p in points)


def test_integer_and_uuid_ids_round_trip_with_their_type(client):
    create(client, "ids", models.Distance.COSINE, size=2)
    u = uuid.UUID("9f2c6a57-5d2e-4c8e-8a9b-0123456789ab")
    client.upsert(
        "ids",
        points=[
            models.PointStruct(id=18446744073709551615, vector=[1.0, 0.0], payload={"n": 1}),
            models.PointStruct(id=str(u), vector=[0.0, 1.0], payload={"n": 2}),
            models.PointStruct(id=u.hex.upper(), vector=[0.5, 0.5], payload={"n": 3}),
        ],
    )
    got = client.retrieve("ids", ids=[str(u), 18446744073709551615], with_vectors=True)
    assert [p.id for p in got] == [str(u), 18446744073709551615]
    # The upper-case spelling is the same UUID, so the last write won.
    assert got[0].payload == {"n": 3}
    assert got[0].vector == pytest.approx([0.5, 0.5])
    assert client.count("ids").count == 2
    with pytest.raises(UnexpectedResponse) as bad:
        client.http.points_api.get_point("ids", "not-a-uuid")
    assert bad.value.status_code == 400
    with pytest.raises(UnexpectedResponse) as missing:
        client.http.points_api.get_point("ids", "12345")
    assert missing.value.status_code == 404
    one = client.http.points_api.get_point("ids", str(u)).result
    assert one.id == str(u) and one.payload == {"n": 3}


@pytest.mark.parametrize(
    "distance", [models.Distance.COSINE, models.Distance.EUCLID, models.Distance.DOT]
)
def test_query_results_equal_numpy_ground_truth(client, loaded, data, distance):
    vectors, payloads = data
    name = loaded[distance]
    for _ in range(10):
        q = RNG.standard_normal(DIM).astype(np.float32)
        want_ids, want_scores = truth_top(distance, vectors, q, 25)
        got = client.query_points(name, query=q.tolist(), limit=25, with_payload=True).points
        assert [p.id for p in got] == want_ids
        assert [p.score for p in got] == pytest.approx(want_scores, rel=1e-4, abs=1e-4)
        assert [p.payload for p in got] == [payloads[i] for i in want_ids]
        # offset pages through the same ranking; nearest is the same query.
        page = client.query_points(
            name, query=models.NearestQuery(nearest=q.tolist()), limit=10, offset=5, with_payload=False
        ).points
        assert [p.id for p in page] == want_ids[5:15]
        assert all(p.payload is None and p.vector is None for p in page)
        # score_threshold keeps what Qdrant users expect.
        # (between the 8th and 9th scores: at least / at most it keeps exactly 8)
        threshold = (want_scores[7] + want_scores[8]) / 2
        kept = client.query_points(name, query=q.tolist(), limit=25, score_threshold=threshold).points
        assert [p.id for p in kept] == want_ids[:8]


def test_vectors_come_back_as_written(client, node, loaded, data):
    vectors, _ = data
    name = loaded[models.Distance.DOT]
    got = client.retrieve(name, ids=[5, 6, 2999, 123456], with_vectors=True, with_payload=False)
    assert [p.id for p in got] == [5, 6, 2999], "missing ids are left out"
    for p in got:
        assert p.vector == pytest.approx(vectors[p.id].tolist(), rel=1e-6)
        assert p.payload is None
    # Searches return them too when asked.
    hits = client.query_points(name, query=vectors[7].tolist(), limit=3, with_vectors=True, with_payload=False).points
    assert all(h.vector == pytest.approx(vectors[h.id].tolist(), rel=1e-6) for h in hits)
    legacy = httpx.post(
        f"{node.qdrant_url}/collections/{name}/points/search",
        json={"vector": vectors[7].tolist(), "limit": 2, "with_vector": True},
    ).json()["result"]
    assert [h["vector"] for h in legacy] == [pytest.approx(vectors[h["id"]].tolist(), rel=1e-6) for h in legacy]


FILTER_CASES = [
    (
        models.Filter(must=[models.FieldCondition(key="color", match=models.MatchValue(value="red"))]),
        lambda i, p: p["color"] == "red",
    ),
    (
        models.Filter(
            must=[models.FieldCondition(key="group", match=models.MatchAny(any=[1, 2, 3]))],
            must_not=[models.FieldCondition(key="color", match=models.MatchValue(value="green"))],
        ),
        lambda i, p: p["group"] in (1, 2, 3) and p["color"] != "green",
    ),
    (
        models.Filter(
            should=[
                models.FieldCondition(key="price", range=models.Range(gte=40.0)),
                models.FieldCondition(key="tags", match=models.MatchValue(value="gamma")),
            ]
        ),
        lambda i, p: p["price"] >= 40.0 or "gamma" in p["tags"],
    ),
    (
        models.Filter(
            min_should=models.MinShould(
                conditions=[
                    models.FieldCondition(key="color", match=models.MatchValue(value="blue")),
                    models.FieldCondition(key="group", range=models.Range(lt=5)),
                    models.FieldCondition(key="shop.city", match=models.MatchValue(value="Rome")),
                ],
                min_count=2,
            )
        ),
        lambda i, p: sum([p["color"] == "blue", p["group"] < 5, p["shop"]["city"] == "Rome"]) >= 2,
    ),
    (
        models.Filter(must=[models.FieldCondition(key="color", match=models.MatchExcept(**{"except": ["red", "blue"]}))]),
        lambda i, p: p["color"] not in ("red", "blue"),
    ),
    (
        models.Filter(must=[models.FieldCondition(key="title", match=models.MatchText(text="gamma number 1"))]),
        lambda i, p: "gamma number 1" in p["title"],
    ),
    (
        models.Filter(must=[models.HasIdCondition(has_id=[3, 30, 300, 2999, 5000])]),
        lambda i, p: i in (3, 30, 300, 2999),
    ),
    (
        models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="maybe"))]),
        lambda i, p: p.get("maybe") in (None, []),
    ),
    (
        models.Filter(must=[models.IsNullCondition(is_null=models.PayloadField(key="maybe"))]),
        lambda i, p: "maybe" in p and p["maybe"] is None,
    ),
    (
        models.Filter(must=[models.FieldCondition(key="maybe", values_count=models.ValuesCount(gte=2))]),
        lambda i, p: isinstance(p.get("maybe"), list) and len(p["maybe"]) >= 2,
    ),
    (
        models.Filter(must=[models.FieldCondition(key="items[].v", match=models.MatchValue(value=2))]),
        lambda i, p: any(it["v"] == 2 for it in p["items"]),
    ),
    (
        models.Filter(
            must=[
                models.NestedCondition(
                    nested=models.Nested(
                        key="items",
                        filter=models.Filter(
                            must=[
                                models.FieldCondition(key="k", match=models.MatchValue(value="b")),
                                models.FieldCondition(key="v", match=models.MatchValue(value=0)),
                            ]
                        ),
                    )
                )
            ]
        ),
        lambda i, p: any(it["k"] == "b" and it["v"] == 0 for it in p["items"]),
    ),
    (
        models.Filter(
            must=[
                models.Filter(
                    should=[
                        models.FieldCondition(key="shop.rank", range=models.Range(gt=4, lte=6)),
                        models.FieldCondition(key="group", match=models.MatchValue(value=0)),
                    ]
                )
            ],
            must_not=[models.FieldCondition(key="shop.city", match=models.MatchValue(value="Paris"))],
        ),
        lambda i, p: (4 < p["shop"]["rank"] <= 6 or p["group"] == 0) and p["shop"]["city"] != "Paris",
    ),
]


@pytest.mark.parametrize("case", range(len(FILTER_CASES)))
def test_filters_select_what_the_ground_truth_selects(client, loaded, data, case):
    vectors, payloads = data
    flt, predicate = FILTER_CASES[case]
    allowed = {i for i in range(N) if predicate(i, payloads[i])}
    assert allowed, "every case selects something"
    name = loaded[models.Distance.COSINE]
    assert client.count(name, count_filter=flt, exact=True).count == len(allowed)
    q = RNG.standard_normal(DIM).astype(np.float32)
    want_ids, _ = truth_top(models.Distance.COSINE, vectors, q, 15, allowed)
    got = client.query_points(name, query=q.tolist(), query_filter=flt, limit=15).points
    assert [p.id for p in got] == want_ids
    scrolled, offset = [], None
    while True:
        page, offset = client.scroll(name, scroll_filter=flt, limit=700, offset=offset)
        scrolled += [p.id for p in page]
        if offset is None:
            break
    assert scrolled == sorted(allowed)


def test_scroll_pages_through_every_point_once_in_id_order(client, loaded, data):
    _, payloads = data
    name = loaded[models.Distance.EUCLID]
    seen, offset, pages = [], None, 0
    while True:
        page, offset = client.scroll(name, limit=256, offset=offset, with_payload=True)
        pages += 1
        seen += [p.id for p in page]
        assert all(p.payload == payloads[p.id] for p in page)
        if offset is None:
            break
    assert seen == list(range(N))
    assert pages == (N + 255) // 256


def test_batch_queries_and_the_legacy_search_endpoints(client, node, loaded, data):
    vectors, payloads = data
    name = loaded[models.Distance.DOT]
    qs = RNG.standard_normal((4, DIM)).astype(np.float32)
    red = models.Filter(must=[models.FieldCondition(key="color", match=models.MatchValue(value="red"))])
    reds = {i for i in range(N) if payloads[i]["color"] == "red"}
    requests = [
        models.QueryRequest(query=qs[0].tolist(), limit=5),
        models.QueryRequest(query=qs[1].tolist(), limit=7, filter=red),
        models.QueryRequest(query=qs[2].tolist(), limit=5),
        models.QueryRequest(query=qs[3].tolist(), limit=3, offset=2),
    ]
    answers = client.query_batch_points(name, requests=requests)
    assert [p.id for p in answers[0].points] == truth_top(models.Distance.DOT, vectors, qs[0], 5)[0]
    assert [p.id for p in answers[1].points] == truth_top(models.Distance.DOT, vectors, qs[1], 7, reds)[0]
    assert [p.id for p in answers[2].points] == truth_top(models.Distance.DOT, vectors, qs[2], 5)[0]
    assert [p.id for p in answers[3].points] == truth_top(models.Distance.DOT, vectors, qs[3], 5)[0][2:]
    # The legacy routes, which this client version no longer calls.
    url = f"{node.qdrant_url}/collections/{name}/points/search"
    one = httpx.post(url, json={"vector": qs[0].tolist(), "limit": 5, "with_payload": True}).json()
    assert one["status"] == "ok"
    assert [h["id"] for h in one["result"]] == truth_top(models.Distance.DOT, vectors, qs[0], 5)[0]
    assert one["result"][0]["payload"] == payloads[one["result"][0]["id"]]
    batch = httpx.post(
        url + "/batch",
        json={"searches": [{"vector": q.tolist(), "limit": 4} for q in qs[:2]]},
    ).json()
    assert [[h["id"] for h in r] for r in batch["result"]] == [
        truth_top(models.Distance.DOT, vectors, q, 4)[0] for q in qs[:2]
    ]
    # A read that asks for a majority is served (as a linearizable read).
    strict = client.query_points(
        name, query=qs[0].tolist(), limit=5, consistency=models.ReadConsistencyType.MAJORITY
    ).points
    assert [p.id for p in strict] == truth_top(models.Distance.DOT, vectors, qs[0], 5)[0]


def test_deletes_by_ids_and_by_filter(client):
    create(client, "deletes", models.Distance.EUCLID, size=2)
    client.upsert(
        "deletes",
        points=[
            models.PointStruct(id=i, vector=[float(i), 0.0], payload={"even": i % 2 == 0})
            for i in range(100)
        ],
    )
    result = client.delete("deletes", points_selector=models.PointIdsList(points=[1, 3, 500]))
    assert result.status == models.UpdateStatus.COMPLETED
    assert client.count("deletes").count == 98
    client.delete(
        "deletes",
        points_selector=models.FilterSelector(
            filter=models.Filter(must=[models.FieldCondition(key="even", match=models.MatchValue(value=True))])
        ),
    )
    left = [p.id for p in client.scroll("deletes", limit=1000)[0]]
    assert left == [i for i in range(100) if i % 2 == 1 and i not in (1, 3)]
    # wait=False is acknowledged, and durable where it was ordered.
    ack = client.delete("deletes", points_selector=models.PointIdsList(points=[5]), wait=False)
    assert ack.status == models.UpdateStatus.ACKNOWLEDGED
    assert client.retrieve("deletes", ids=[5]) == []


def test_payload_keys_are_set_and_deleted(client):
    create(client, "payloads", models.Distance.COSINE, size=2)
    client.upsert(
        "payloads",
        points=[
            models.PointStruct(id=i, vector=[1.0, float(i)], payload={"a": i, "nested": {"x": 1, "y": 2}})
            for i in range(10)
        ],
    )
    client.set_payload("payloads", payload={"b": "new", "a": -1}, points=[1, 2])
    client.delete_payload("payloads", keys=["nested.x"], points=[2])
    client.set_payload(
        "payloads",
        payload={"big": True},
        points=models.Filter(must=[models.FieldCondition(key="a", range=models.Range(gte=8))]),
    )
    got = {p.id: p.payload for p in client.retrieve("payloads", ids=list(range(10)), with_vectors=True)}
    assert got[1] == {"a": -1, "b": "new", "nested": {"x": 1, "y": 2}}
    assert got[2] == {"a": -1, "b": "new", "nested": {"y": 2}}
    assert got[8] == {"a": 8, "nested": {"x": 1, "y": 2}, "big": True}
    assert got[3] == {"a": 3, "nested": {"x": 1, "y": 2}}
    # The vectors are untouched by payload changes.
    vectors = {p.id: p.vector for p in client.retrieve("payloads", ids=[1, 8], with_vectors=True)}
    assert vectors[1] == pytest.approx([1.0, 1.0]), "needle returns vectors as written"
    with pytest.raises(UnexpectedResponse) as missing:
        client.set_payload("payloads", payload={"c": 1}, points=[77])
    assert missing.value.status_code == 404


def test_errors_have_qdrant_status_codes_and_shape(client, node):
    create(client, "errors", models.Distance.DOT, size=3)
    cases = [
        (lambda: client.get_collection("nope"), 404),
        (lambda: client.query_points("nope", query=[1.0, 2.0, 3.0]), 404),
        (lambda: client.upsert("errors", points=[models.PointStruct(id=1, vector=[1.0, 2.0])]), 400),
        (lambda: client.query_points("errors", query=[1.0, 2.0]), 400),
        (lambda: client.upsert("errors", points=[models.PointStruct(id=1, vector={"image": [1.0, 2.0, 3.0]})]), 400),
        (
            lambda: client.query_points(
                "errors", query=models.RecommendQuery(recommend=models.RecommendInput(positive=[1]))
            ),
            400,
        ),
        (
            lambda: client.create_collection(
                "multi",
                vectors_config={"a": models.VectorParams(size=2, distance=models.Distance.DOT)},
            ),
            400,
        ),
        (
            lambda: client.create_collection(
                "sparse",
                vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT),
                sparse_vectors_config={"s": models.SparseVectorParams()},
            ),
            400,
        ),
        (
            lambda: client.create_collection(
                "manhattan", vectors_config=models.VectorParams(size=2, distance=models.Distance.MANHATTAN)
            ),
            400,
        ),
        (
            lambda: client.count(
                "errors",
                count_filter=models.Filter(
                    must=[
                        models.FieldCondition(
                            key="loc",
                            geo_radius=models.GeoRadius(center=models.GeoPoint(lat=0, lon=0), radius=1.0),
                        )
                    ]
                ),
            ),
            400,
        ),
    ]
    for call, status in cases:
        with pytest.raises(UnexpectedResponse) as err:
            call()
        assert err.value.status_code == status, err.value.content
    raw = httpx.get(f"{node.qdrant_url}/collections/nope")
    body = raw.json()
    assert raw.status_code == 404 and "nope" in body["status"]["error"] and "time" in body
    assert not client.collection_exists("multi")


def test_the_readme_example_works_as_written(node, capsys):
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Using Qdrant clients", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) == 5
    import threading

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(code.replace("http://127.0.0.1:6333", node.qdrant_url), {})
        # The constructor checks the server's version on a thread: let it finish.
        for t in threading.enumerate():
            if getattr(t, "_target", None) is QdrantRemote._check_compatibility:
                t.join(30)
    assert [str(w.message) for w in caught] == []
    printed = capsys.readouterr().out
    assert "id=1" in printed and "'lang': 'en'" in printed, printed


def test_qdrant_semantics_at_the_edges(client, node):
    create(client, "edges", models.Distance.DOT, size=1)
    client.upsert(
        "edges",
        points=[
            models.PointStruct(id=1, vector=[1.0], payload={"tags": ["x", "y"], "prices": [1, 10], "uid": 1234567890123456768}),
            models.PointStruct(id=2, vector=[1.0], payload={"tags": ["x"], "prices": [5], "uid": 1234567890123456789}),
            models.PointStruct(id=3, vector=[1.0], payload={}),
        ],
    )

    def ids(flt):
        return sorted(p.id for p in client.scroll("edges", scroll_filter=flt, limit=10)[0])

    # except: some element not listed; missing fields do not match.
    assert ids(models.Filter(must=[models.FieldCondition(key="tags", match=models.MatchExcept(**{"except": ["x"]}))])) == [1]
    # an empty should matches nothing.
    assert ids(models.Filter(should=[])) == []
    # a range's bounds hold for one element of an array.
    assert ids(models.Filter(must=[models.FieldCondition(key="prices", range=models.Range(gte=4, lte=6))])) == [2]
    # 64-bit integers match exactly.
    assert ids(models.Filter(must=[models.FieldCondition(key="uid", match=models.MatchValue(value=1234567890123456789))])) == [2]
    # A misspelt option is refused, not ignored.
    r = httpx.post(f"{node.qdrant_url}/collections/edges/points/query", json={"query": [1.0], "score_treshold": 2})
    assert r.status_code == 400 and "score_treshold" in r.json()["status"]["error"]
    # A scroll page larger than the collection is simply all of it.
    assert len(client.scroll("edges", limit=100_000_000)[0]) == 3
    # Non-canonical UUID-like native ids page correctly (the offset is what was given out).
    for nid in ["+", "9f2c6a575d2e4c8e8a9b0123456789ab", "Z"]:
        httpx.post(f"{node.native_url}/collections/edges/vectors", json={"id": nid, "vector": [0.5]})
    seen, offset = [], None
    for _ in range(10):
        page, offset = client.scroll("edges", limit=1, offset=offset)
        seen += [p.id for p in page]
        if offset is None:
            break
    assert seen == [1, 2, 3, "+", "9f2c6a575d2e4c8e8a9b0123456789ab", "Z"]


def test_unsupported_routes_say_so_and_payload_indexes_are_accepted(client, node):
    create(client, "routes", models.Distance.COSINE, size=2)
    result = client.create_payload_index("routes", field_name="city", field_schema=models.PayloadSchemaType.KEYWORD)
    assert result.status == models.UpdateStatus.COMPLETED
    client.delete_payload_index("routes", field_name="city")
    for method, path in [
        ("POST", "/collections/routes/snapshots"),
        ("GET", "/snapshots"),
        ("POST", "/collections/routes/points/recommend"),
        ("POST", "/collections/routes/points/query/groups"),
        ("POST", "/collections/routes/points/payload/clear"),
        ("PATCH", "/collections/routes"),
    ]:
        r = httpx.request(method, node.qdrant_url + path, json={})
        assert r.status_code == 400, (method, path, r.status_code)
        assert "not supported" in r.json()["status"]["error"]
    with pytest.raises(UnexpectedResponse) as err:
        client.create_snapshot("routes")
    assert err.value.status_code == 400
