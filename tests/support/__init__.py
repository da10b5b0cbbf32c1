"""Helpers the tests share: real servers, the gateway runner."""
