"""Deterministic token probabilities for the fake servers: what a model's would look like, made
from the token's text, so a test can work out what each token's log probability must be.

A token's own log probability is in (-1, 0]; its alternatives are the token with `~1`, `~2`, ...
appended, each half a nat less likely than the one before. The chosen token ranks first, as it
does under greedy sampling."""

from __future__ import annotations

import math
import zlib


def token_logprob(token: str) -> float:
    return -(zlib.crc32(token.encode("utf-8", "surrogatepass")) % 1000) / 1000.0


def ranked(token: str, count: int) -> list[tuple[str, float]]:
    """The `count` likeliest tokens at this place, likeliest first, the chosen one included."""
    own = token_logprob(token)
    return [(token, own)] + [(f"{token}~{rank}", own - 0.5 * rank) for rank in range(1, count)]


def utf8(token: str) -> list[int]:
    return list(token.encode("utf-8", "surrogatepass"))


def probability(logprob: float) -> float:
    return math.exp(logprob)
