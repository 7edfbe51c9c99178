"""Small pieces of technician-facing English, in one place so every command says it alike."""

from __future__ import annotations


def plural(n: int, one: str, many: str) -> str:
    """``plural(1, "reply", "replies")`` → "1 reply"; ``plural(0, …)`` → "0 replies"."""
    return f"{n} {one if n == 1 else many}"


def humanise_key(key: str) -> str:
    """A snake_case key as words for a person: ``consecutive_failures`` → "consecutive
    failures" (``last_success_at`` → "last success at")."""
    return key.replace("_", " ")
