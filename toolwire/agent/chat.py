"""A conversation as a list of OpenAI chat messages, with the helpers LM Studio's `Chat` has."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any


class Chat:
    """OpenAI chat messages. `act()` copies the chat it is given and leaves it as it was; pass
    `on_message=chat.append` to keep the run's messages in it."""

    def __init__(self, system_prompt: str | None = None, messages: Iterable[Mapping[str, Any]] = ()) -> None:
        self.messages: list[dict[str, Any]] = []
        if system_prompt is not None:
            self.add_system_prompt(system_prompt)
        for message in messages:
            self.append(message)

    def add_system_prompt(self, content: str) -> None:
        self.append({"role": "system", "content": content})

    def add_user_message(self, content: str) -> None:
        self.append({"role": "user", "content": content})

    def add_assistant_response(self, content: str) -> None:
        self.append({"role": "assistant", "content": content})

    def append(self, message: Mapping[str, Any]) -> None:
        if not isinstance(message, Mapping) or "role" not in message:
            raise TypeError(f"a chat message is a mapping with a 'role', not {message!r}")
        self.messages.append(dict(message))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)


ChatOrPrompt = str | Chat | Iterable[Mapping[str, Any]]


def starting_messages(chat_or_prompt: ChatOrPrompt) -> list[dict[str, Any]]:
    """The messages a run starts from: a prompt is one user message; a chat or list is copied."""
    if isinstance(chat_or_prompt, str):
        return Chat(messages=[{"role": "user", "content": chat_or_prompt}]).messages
    return Chat(messages=chat_or_prompt).messages
