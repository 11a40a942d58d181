"""Reading the policy file: YAML in, a validated Policy, or an error naming file, line and field.

`PolicyStore` keeps the policy in force and reloads it when the file changes (a ConfigMap mount
swaps it atomically); a bad new version is logged and the last good one stays in force.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from webhook.core.policy import Policy
from webhook.core.policy_advice import policy_advice
from webhook.core.wording import sentence

log = logging.getLogger(__name__)

EMBEDDED_DEFAULT = "policy.example.yaml"
"""The example policy shipped inside the package: what local runs use without --config."""


class PolicyFileError(ValueError):
    """The policy file cannot be used; the message names the file, the place and the problem."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which plain YAML silently overwrites."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a key must be a plain name, not a list or a mapping",
                key_node.start_mark,
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} is given twice (first on line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The line of the YAML node at a pydantic error location (or of its nearest parent)."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
            if node is None:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            break
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _describe(err: ValidationError, source: str, root: yaml.Node | None) -> str:
    lines = [f"policy file {source} is not valid:"]
    for problem in err.errors(include_url=False):
        loc = tuple(
            p for p in problem["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown field (a typo?)"
        line = _line_of(root, loc)
        where = f"line {line}: " if line else ""
        lines.append(f"  {where}{_field_path(loc)}: {message}")
    return "\n".join(lines)


def parse_policy(text: str, source: str) -> Policy:
    """Validate policy text; `source` names it in errors. Raises PolicyFileError and nothing
    else: a server reloading a ConfigMap must be able to keep its last good policy whatever the
    new text holds."""
    try:
        return _parse(text, source)
    except PolicyFileError:
        raise
    except (RecursionError, MemoryError, ValueError, TypeError) as err:
        raise PolicyFileError(f"policy file {source} cannot be read: {err}") from None


def _parse(text: str, source: str) -> Policy:
    try:
        document = yaml.load(text, Loader=_StrictLoader)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise PolicyFileError(f"policy file {source} is not valid YAML:{where} {problem}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise PolicyFileError(
            f"policy file {source} must be a mapping (labelPrefix, profiles, ...), "
            f"not a {type(document).__name__}"
        )
    try:
        return Policy.model_validate(document)
    except ValidationError as err:
        raise PolicyFileError(_describe(err, source, root)) from None


def read_policy_text(path: Path | None) -> tuple[str, str]:
    """The policy text and a name for it: the file at `path`, or the embedded example."""
    if path is None:
        data = resources.files("webhook.data").joinpath(EMBEDDED_DEFAULT)
        return data.read_text(encoding="utf-8"), f"<embedded {EMBEDDED_DEFAULT}>"
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as err:
        raise PolicyFileError(f"policy file {path} cannot be read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise PolicyFileError(f"policy file {path} is not UTF-8 text: {err}") from None


def load_policy(path: Path | None) -> Policy:
    return parse_policy(*read_policy_text(path))


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class FixedPolicy:
    """A PolicySource whose policy never changes: the offline CLI, and tests."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def current(self) -> Policy:
        return self.policy


class PolicyStore:
    """The policy in force; re-reads the file when it changes, at most every `check_interval` s.

    Checking costs one stat() per interval, on the request path, so no thread is needed and a
    forked worker is never left with a stale one.

    `snapshot` is a file where the last good policy text is kept (the server's workers share one):
    a worker that starts while the file is broken (gunicorn replaced a crashed one) serves the last
    good policy, like its siblings, instead of failing to boot and taking the server down.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        snapshot: Path | None = None,
        check_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_reload: Callable[[Policy], None] | None = None,
    ) -> None:
        self.path = path
        self._snapshot = snapshot
        self._interval = check_interval
        self._clock = clock
        self._on_reload = on_reload
        self._lock = threading.Lock()
        self._signature = _signature(path) if path else None
        self.last_error: str | None = None
        try:
            self._policy = self._load(path)
        except PolicyFileError as err:
            if snapshot is None or not snapshot.is_file():
                raise
            self._policy = parse_policy(snapshot.read_text(encoding="utf-8"), str(snapshot))
            self.last_error = str(err)
            log.error("policy file not valid; serving the last good policy: %s", err)
        self._next_check = clock() + check_interval

    def _load(self, path: Path | None) -> Policy:
        text, source = read_policy_text(path)
        policy = parse_policy(text, source)
        for finding in policy_advice(policy):
            log.warning("policy %s: %s", source, sentence(finding))
        if self._snapshot is not None:
            try:
                tmp = self._snapshot.with_name(f".{self._snapshot.name}.{os.getpid()}")
                tmp.write_text(text, encoding="utf-8")
                tmp.replace(self._snapshot)
            except OSError as err:
                log.warning("cannot keep a copy of the last good policy in %s: %s", tmp, err)
        return policy

    def current(self) -> Policy:
        if self.path is not None and self._clock() >= self._next_check:
            self._maybe_reload(self.path)
        return self._policy

    def _maybe_reload(self, path: Path) -> None:
        if not self._lock.acquire(blocking=False):
            return  # another thread is checking; serve the current policy meanwhile
        try:
            self._next_check = self._clock() + self._interval
            signature = _signature(path)
            if signature == self._signature:
                return
            self._signature = signature
            try:
                policy = self._load(path)
            except PolicyFileError as err:
                self.last_error = str(err)
                log.error("policy reload failed; the previous policy stays in force: %s", err)
                return
            self._policy = policy
            self.last_error = None
            log.info("policy reloaded from %s", path)
            if self._on_reload is not None:
                self._on_reload(policy)
        finally:
            self._lock.release()
