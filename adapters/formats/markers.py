"""Finding marker strings in streamed text while holding back as little as possible."""

from __future__ import annotations


def find_first(text: str, markers: tuple[str, ...], start: int = 0) -> tuple[int, str] | None:
    """The earliest occurrence of any marker in `text[start:]`, as (position, marker)."""
    best: tuple[int, str] | None = None
    for marker in markers:
        position = text.find(marker, start)
        if position >= 0 and (best is None or position < best[0]):
            best = (position, marker)
    return best


def partial_marker_length(text: str, markers: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some marker.

    Those characters may be the start of a marker split across chunks, so they are held back;
    the cost is bounded by the marker lengths, not by the text.
    """
    longest = 0
    for marker in markers:
        for length in range(min(len(marker) - 1, len(text)), longest, -1):
            if text.endswith(marker[:length]):
                longest = length
                break
    return longest
