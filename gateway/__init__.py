"""toolwire gateway: OpenAI-style tool calling on top of raw text-completion backends."""
