"""Shared by the fuzzers: JSON values to put anywhere, and what every answer must be."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import orjson
from hypothesis import strategies as st

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),  # what JSON parsers accept
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a node of a JSON document."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, (*prefix, index))


def check_answer(reply: Any, sent: Any) -> None:
    """A clean 4xx with a JSON error, or a well-formed AdmissionReview answering `sent`."""
    assert reply.status_code < 500, reply.get_data(as_text=True)
    body = orjson.loads(reply.get_data())
    if reply.status_code != 200:
        assert 400 <= reply.status_code < 500
        assert isinstance(body["error"], str) and body["error"]
        return
    assert body["kind"] == "AdmissionReview"
    assert body["apiVersion"] == sent["apiVersion"]
    response = body["response"]
    assert response["uid"] == sent["request"]["uid"]
    assert isinstance(response["allowed"], bool)
    if not response["allowed"]:
        assert isinstance(response["status"]["message"], str)
        # 500 would mean the core raised and the controller caught it: the core must not raise.
        assert response["status"]["code"] in (403, 503), response["status"]
    for warning in response.get("warnings", []):
        assert isinstance(warning, str) and len(warning) <= 120
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        ops = orjson.loads(base64.b64decode(response["patch"]))
        assert isinstance(ops, list) and all(op["op"] == "add" for op in ops)
        assert all(isinstance(op["path"], str) and op["path"].startswith("/") for op in ops)
