"""A small repetitive English-like corpus for tests that train or tokenize (no files from ../shared)."""

from __future__ import annotations

import random

WORDS = "the prince said that anna and pierre went to moscow in the winter of war and peace".split()


def corpus(n: int = 300, seed: int = 0) -> str:
    """``n`` lines of 12 words each, drawn from :data:`WORDS` with ``seed``."""
    rng = random.Random(seed)
    return "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(n))
