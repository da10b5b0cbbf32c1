"""The characters special tokens are spelled with, for code that must keep client text from spelling one.

`<|im_end|>`, `<start_of_turn>`, `[INST]`, `<｜Assistant｜>`, `<seed:think>`: every special token a chat
template writes holds one of these. Text with none of them cannot spell one; text cut at each of them
into pieces cannot spell one in any piece.
"""

from __future__ import annotations

import re

SPECIAL_SPELLING = re.compile("[<>\\[\\]|\uff5c]")


def split_at_spelling(text: str) -> list[str]:
    """`text` cut before and after every spelling character (each stands alone), no empty pieces."""
    pieces: list[str] = []
    position = 0
    for match in SPECIAL_SPELLING.finditer(text):
        if match.start() > position:
            pieces.append(text[position : match.start()])
        pieces.append(match.group())
        position = match.end()
    if position < len(text):
        pieces.append(text[position:])
    return pieces
