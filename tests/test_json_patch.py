"""The offline commands apply the mutating webhook's patch as the API server does: the result
must equal an independent JSONPatch implementation's."""

from __future__ import annotations

from typing import Any

import pytest
from builders import PROFILE, apply_patch, container, pod, pod_spec, request

from webhook.core.evaluate import mutate
from webhook.core.json_patch import PatchError
from webhook.core.json_patch import apply_patch as apply_offline
from webhook.core.policy import Policy

PROXY_ALL = {"egress-guard.io/mode": "enforce", "egress-guard.io/inject": "proxy"}


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(pod({PROFILE: "none"}), id="no-env"),
        pytest.param(
            pod(
                {PROFILE: "none"},
                spec=pod_spec(
                    container("a", env=[{"name": "X", "value": "1"}]),
                    container("b/c~d"),
                    initContainers=[container("init")],
                ),
                annotations={"keep": "me"},
            ),
            id="env-init-annotations",
        ),
        pytest.param(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": pod_spec()}, id="bare"
        ),
    ],
)
def test_offline_patching_equals_the_jsonpatch_package(obj: dict[str, Any], policy: Policy) -> None:
    decision = mutate(request(obj), PROXY_ALL, policy)
    assert decision.patch
    assert apply_offline(obj, decision.patch) == apply_patch(obj, decision.patch)
    assert "env" not in obj["spec"]["containers"][-1], "the original is left untouched"


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        pytest.param(
            [{"op": "remove", "path": "/a"}],
            "only add operations are supported, not 'remove'",
            id="remove",
        ),
        pytest.param([{"op": "add", "value": 1}], "path '' is not a JSON pointer", id="no-path"),
        pytest.param([{"op": "add", "path": "a", "value": 1}], "not a JSON pointer", id="pointer"),
        pytest.param(
            [{"op": "add", "path": "/x/y", "value": 1}], "^/x/y: 'x' does not exist", id="parent"
        ),
        pytest.param(
            [{"op": "add", "path": "/l/5", "value": 1}], "^/l/5: .*out of range", id="index"
        ),
        pytest.param(
            [{"op": "add", "path": "/l/1/k", "value": 1}], "^/l/1/k: .*out of range", id="index-in"
        ),
        pytest.param([{"op": "add", "path": "/l/01", "value": 1}], "not an array index", id="zero"),
        pytest.param([{"op": "add", "path": "/s/k", "value": 1}], "neither an object", id="scalar"),
        pytest.param(
            [{"op": "add", "path": "/s/k/j", "value": 1}],
            "^/s/k/j: cannot descend into a scalar at 'k'",
            id="through-a-scalar",
        ),
    ],
)
def test_patches_that_do_not_apply_are_refused(ops: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(PatchError, match=message):
        apply_offline({"l": [1], "s": "text"}, ops)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        pytest.param(("metadata", "annotations", "a/b"), "/metadata/annotations/a~1b", id="slash"),
        pytest.param(("metadata", "annotations", "a~b"), "/metadata/annotations/a~0b", id="tilde"),
        pytest.param(("x", "~1"), "/x/~01", id="tilde-before-slash-escape"),
        pytest.param(("spec", "containers", 0, "env"), "/spec/containers/0/env", id="index"),
        pytest.param((), "", id="whole-document"),
    ],
)
def test_pointers_escape_tilde_first_then_slash(tokens: tuple[Any, ...], expected: str) -> None:
    """RFC 6901: `~` becomes `~0` before `/` becomes `~1`, or `~1` in a key would be read back
    as `/`."""
    from webhook.core.json_patch import pointer

    assert pointer(*tokens) == expected


def test_adds_land_where_the_path_says_and_never_share_the_patch_values() -> None:
    value = {"name": "X", "value": "1", "valueFrom": {"keys": ["k"]}}
    ops = [
        {"op": "add", "path": "/l/0", "value": value},
        {"op": "add", "path": "/l/-", "value": 9},
        {"op": "add", "path": "/m/a~1b~0c", "value": "escaped"},
        {"op": "add", "path": "/l/1/name", "value": "in-list"},
    ]
    patched = apply_offline({"l": [{"name": "first"}], "m": {}}, ops)
    assert patched == {
        "l": [{"name": "X", "value": "1", "valueFrom": {"keys": ["k"]}}, {"name": "in-list"}, 9],
        "m": {"a/b~c": "escaped"},
    }
    patched["l"][0]["valueFrom"]["keys"].append("changed")
    assert value["valueFrom"] == {"keys": ["k"]}, "the patch's values are copied, not shared"
