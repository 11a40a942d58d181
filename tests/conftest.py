"""Shared fixtures. Builders of objects and reviews live in builders.py."""

from __future__ import annotations

import pytest

from webhook.config.policy_file import load_policy
from webhook.policy.model import Policy


@pytest.fixture(scope="session")
def policy() -> Policy:
    """The embedded example policy (profiles none, stripe, internal, web-via-proxy)."""
    return load_policy(None)
