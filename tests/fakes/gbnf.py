"""GBNF (llama.cpp's grammar language) for the fakes: parse a grammar and decode under it as a
model does, so a fake backend honors a `grammar` constraint.

The matcher keeps every way the text read so far can go on (stacks of grammar elements still to
match, as llama.cpp's sampler does). `constrained(grammar, intended)` is what a deterministic model
writes under the grammar: its own next character whenever the grammar admits it, characters the
grammar forbids are skipped (the probability goes elsewhere), it stops where the grammar is
complete and its own text goes elsewhere, and if its text runs out first it writes the shortest
completion the grammar allows.

Supported: rules `name ::= ...` (one per line, `#` comments), literals with `\\n \\t \\r \\" \\\\ \\xHH
\\uHHHH` escapes, character classes with ranges and `^`, groups, `|`, and `* + ?`.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

# Elements: ("lit", text) | ("cls", negated, ((lo, hi), ...)) | ("ref", name) | ("seq", items) |
# ("alt", options) | ("star", item) | ("opt", item)
Node = tuple
Stack = tuple[Node, ...]

_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    '"': '"',
    "\\": "\\",
    "]": "]",
    "[": "[",
    "-": "-",
    "/": "/",
    "^": "^",
}
_RULE = re.compile(r"^([A-Za-z0-9_-]+)\s*::=\s*(.*)$")
# Characters tried for a negated class when the model's own text runs out before the grammar completes.
_FILLERS = "a0 "


class GrammarError(ValueError):
    pass


def _unescape(text: str, i: int) -> tuple[str, int]:
    """The character at text[i] (after a backslash if any) and the index after it."""
    if text[i] != "\\":
        return text[i], i + 1
    kind = text[i + 1]
    if kind == "x":
        return chr(int(text[i + 2 : i + 4], 16)), i + 4
    if kind == "u":
        return chr(int(text[i + 2 : i + 6], 16)), i + 6
    if kind in _ESCAPES:
        return _ESCAPES[kind], i + 2
    raise GrammarError(f"unknown escape \\{kind}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0

    def skip(self) -> None:
        while self.i < len(self.text) and self.text[self.i] in " \t":
            self.i += 1

    def alternatives(self) -> Node:
        options = [self.sequence()]
        self.skip()
        while self.i < len(self.text) and self.text[self.i] == "|":
            self.i += 1
            options.append(self.sequence())
            self.skip()
        return options[0] if len(options) == 1 else ("alt", tuple(options))

    def sequence(self) -> Node:
        items: list[Node] = []
        while True:
            self.skip()
            if self.i >= len(self.text) or self.text[self.i] in "|)":
                return ("seq", tuple(items))
            item = self.atom()
            self.skip()
            if self.i < len(self.text) and self.text[self.i] in "*+?":
                op = self.text[self.i]
                self.i += 1
                item = (
                    ("star", item)
                    if op == "*"
                    else ("opt", item)
                    if op == "?"
                    else ("seq", (item, ("star", item)))
                )
            items.append(item)

    def atom(self) -> Node:
        text, char = self.text, self.text[self.i]
        if char == '"':
            self.i += 1
            out = []
            while text[self.i] != '"':
                value, self.i = _unescape(text, self.i)
                out.append(value)
            self.i += 1
            return ("lit", "".join(out))
        if char == "[":
            self.i += 1
            negated = text[self.i] == "^"
            self.i += negated
            ranges = []
            while text[self.i] != "]":
                lo, self.i = _unescape(text, self.i)
                hi = lo
                if text[self.i] == "-" and text[self.i + 1] != "]":
                    hi, self.i = _unescape(text, self.i + 1)
                ranges.append((lo, hi))
            self.i += 1
            return ("cls", negated, tuple(ranges))
        if char == "(":
            self.i += 1
            inner = self.alternatives()
            if text[self.i] != ")":
                raise GrammarError(f"expected ')' at {self.i}")
            self.i += 1
            return inner
        match = re.compile(r"[A-Za-z0-9_-]+").match(text, self.i)
        if match is None:
            raise GrammarError(f"unexpected {char!r} at {self.i}")
        self.i = match.end()
        return ("ref", match.group())


@dataclass(frozen=True)
class Grammar:
    rules: dict[str, Node]

    @classmethod
    def parse(cls, text: str) -> Grammar:
        rules: dict[str, Node] = {}
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            match = _RULE.match(line)
            if match is None:
                raise GrammarError(f"not a rule: {line!r}")
            parser = _Parser(match.group(2))
            rules[match.group(1)] = parser.alternatives()
            if parser.i != len(parser.text):
                raise GrammarError(f"trailing text in rule {match.group(1)!r}")
        if "root" not in rules:
            raise GrammarError("no root rule")
        return cls(rules)

    def start(self) -> frozenset[Stack]:
        return self._expand({(("ref", "root"),)})

    def _expand(self, stacks: set[Stack]) -> frozenset[Stack]:
        """Every stack whose head is a character to match (or which is empty: the grammar is done)."""
        done: set[Stack] = set()
        seen: set[Stack] = set()
        todo = list(stacks)
        while todo:
            stack = todo.pop()
            if stack in seen:
                continue
            seen.add(stack)
            if not stack:
                done.add(stack)
                continue
            head, rest = stack[0], stack[1:]
            kind = head[0]
            if kind == "lit":
                if head[1]:
                    done.add(stack)
                else:
                    todo.append(rest)
            elif kind == "cls":
                done.add(stack)
            elif kind == "ref":
                todo.append((self.rules[head[1]], *rest))
            elif kind == "seq":
                todo.append((*head[1], *rest))
            elif kind == "alt":
                todo.extend((option, *rest) for option in head[1])
            elif kind == "star":
                todo.append(rest)
                todo.append((head[1], head, *rest))
            else:  # opt
                todo.append(rest)
                todo.append((head[1], *rest))
        return frozenset(done)

    def step(self, stacks: frozenset[Stack], char: str) -> frozenset[Stack]:
        after: set[Stack] = set()
        for stack in stacks:
            if not stack:
                continue
            head = stack[0]
            if head[0] == "lit" and head[1][0] == char:
                after.add((("lit", head[1][1:]), *stack[1:]))
            elif head[0] == "cls" and head[1] != any(lo <= char <= hi for lo, hi in head[2]):
                after.add(stack[1:])
        return self._expand(after)


def accepts(stacks: frozenset[Stack]) -> bool:
    return () in stacks


def shortest_completion(grammar: Grammar, stacks: frozenset[Stack], limit: int = 64) -> str:
    """The shortest text over a small alphabet that completes the grammar ("" if none found)."""
    queue: deque[tuple[frozenset[Stack], str]] = deque([(stacks, "")])
    seen = {stacks}
    while queue:
        state, text = queue.popleft()
        if accepts(state):
            return text
        if len(text) >= limit:
            continue
        for char in _candidates(state):
            after = grammar.step(state, char)
            if after and after not in seen:
                seen.add(after)
                queue.append((after, text + char))
    return ""


def _candidates(stacks: frozenset[Stack]) -> list[str]:
    """Characters some stack can take next: a literal's first, a class's first, or a filler."""
    found: set[str] = set()
    for stack in stacks:
        if not stack:
            continue
        head = stack[0]
        if head[0] == "lit":
            found.add(head[1][0])
        elif not head[1]:
            found.update(lo for lo, _ in head[2])
        else:
            found.update(_FILLERS)
    return sorted(found)


def constrained(grammar_text: str, intended: str) -> str:
    """What a deterministic model that meant to write `intended` writes under the grammar."""
    grammar = Grammar.parse(grammar_text)
    state = grammar.start()
    out: list[str] = []
    for char in intended:
        after = grammar.step(state, char)
        if after:
            out.append(char)
            state = after
        elif accepts(state):
            return "".join(out)  # complete, and the model's text goes elsewhere: it ends here
    if not accepts(state):
        out.append(shortest_completion(grammar, state))
    return "".join(out)
