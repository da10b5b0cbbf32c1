"""toolwire client packages: `toolwire.agent` runs tool-calling loops against any OpenAI-compatible endpoint."""
