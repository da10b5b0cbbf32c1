"""Adapters: the backends toolwire talks to and the tool-call formats models write."""
