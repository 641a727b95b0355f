"""The node's middleware defaults leave a user's explicit choice alone."""

from __future__ import annotations

from depth_ft_ros.node.middleware import PUBLICATION_MODE_VAR, prefer_async_publication


def test_async_publication_is_the_default_but_a_users_choice_wins() -> None:
    environ: dict[str, str] = {}
    assert prefer_async_publication(environ) == "ASYNCHRONOUS" and environ[PUBLICATION_MODE_VAR] == "ASYNCHRONOUS"
    chosen = {PUBLICATION_MODE_VAR: "SYNCHRONOUS"}
    assert prefer_async_publication(chosen) == "SYNCHRONOUS" and chosen[PUBLICATION_MODE_VAR] == "SYNCHRONOUS"
