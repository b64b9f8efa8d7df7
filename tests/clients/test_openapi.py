"""GET /openapi.json against the node that serves it: the README's examples are
valid requests of the document and their answers valid answers of it, and so are
the answers of every read route and of errors."""

import json
import pathlib
import re
import shlex

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC_URI = "urn:needle-openapi"


@pytest.fixture(scope="module")
def doc(node):
    r = httpx.get(node.native_url + "/openapi.json")
    assert r.status_code == 200
    d = r.json()
    assert d["openapi"].startswith("3.1")
    return d


def pointer(*parts):
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def validator(doc, *path):
    """A validator for the schema at `path` inside the document, whose `$ref`s
    resolve against the whole document."""
    registry = Registry().with_resource(
        DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": f"{DOC_URI}#/{pointer(*path)}"}, registry=registry)


def template_for(doc, method, path):
    """The document's path template that `path` matches, e.g. /collections/{name}."""
    for template, ops in doc["paths"].items():
        regex = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(regex, path) and method in ops:
            return template
    raise AssertionError(f"{method.upper()} {path} is not in the document")


def check_request(doc, method, path, body):
    template = template_for(doc, method, path)
    op = doc["paths"][template][method]
    if body is not None:
        validator(doc, "paths", template, method, "requestBody", "content", "application/json", "schema").validate(body)
    return template, op


def check_answer(doc, method, template, response):
    responses = doc["paths"][template][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method.upper()} {template} answered {status}, not documented"
    content = responses[status].get("content", {})
    if "application/json" in content:
        validator(doc, "paths", template, method, "responses", status, "content", "application/json", "schema").validate(
            response.json()
        )
    else:
        assert content, f"{method.upper()} {template} {status} documents no body"


def readme_curls():
    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Use it", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.startswith("curl ")]


def test_the_readme_examples_are_valid_requests_with_documented_answers(node, doc):
    curls = readme_curls()
    assert len(curls) >= 4
    for argv in curls:
        url = next(a for a in argv if a.startswith("localhost:8080"))
        path = url[len("localhost:8080"):]
        body = json.loads(argv[argv.index("-d") + 1]) if "-d" in argv else None
        method = "post" if body is not None else "get"
        template, _ = check_request(doc, method, path, body)
        r = httpx.request(method.upper(), node.native_url + path, json=body)
        assert r.status_code < 300, (path, r.text)
        check_answer(doc, method, template, r)


def test_read_routes_and_errors_answer_as_documented(node, doc):
    base = node.native_url
    httpx.post(base + "/collections", json={"name": "documented", "dimensions": 2, "distance": "dot"})
    httpx.post(base + "/collections/documented/vectors", json={"id": "v", "vector": [1, 2], "metadata": {"a": 1}})
    for path in [
        "/health",
        "/collections",
        "/collections/documented",
        "/collections/documented/checksum",
        "/collections/documented/vectors/v",
        "/replication/status",
        "/collections/missing",
        "/collections/documented/vectors/missing",
    ]:
        template = template_for(doc, "get", path)
        check_answer(doc, "get", template, httpx.get(base + path))
    searches = [
        ("/collections/documented/search", {"vector": [1, 0], "k": 1, "include_vectors": True}),
        ("/collections/documented/search/batch", {"vectors": [[1, 0], [0, 1]], "k": 2}),
        ("/collections/documented/search", {"vector": [1, 0, 0]}),
        ("/collections/documented/search", {"vector": [1, 0], "k": 0}),
    ]
    for path, body in searches:
        template, _ = check_request(doc, "post", path, body)
        check_answer(doc, "post", template, httpx.post(base + path, json=body))
    r = httpx.delete(base + "/collections/documented/vectors/v")
    check_answer(doc, "delete", "/collections/{name}/vectors/{id}", r)
    m = httpx.get(base + "/metrics")
    assert m.headers["content-type"].startswith("text/plain")
    check_answer(doc, "get", "/metrics", m)


def test_every_error_code_answered_is_a_documented_one(node, doc):
    codes = set(doc["components"]["schemas"]["ErrorCode"]["enum"])
    base = node.native_url
    for method, path, body in [
        ("GET", "/nowhere", None),
        ("PUT", "/collections", None),
        ("POST", "/collections", {"name": "bad name", "dimensions": 2, "distance": "dot"}),
        ("POST", "/collections", {"name": "ok", "dimensions": 2, "distance": "hamming"}),
        ("POST", "/collections/missing/search", {"vector": [1]}),
    ]:
        r = httpx.request(method, base + path, json=body)
        assert r.status_code >= 400
        assert r.json()["error"]["code"] in codes, r.text
