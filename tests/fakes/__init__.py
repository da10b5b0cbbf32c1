"""Fake backend servers that speak the real backends' wire formats, for tests."""
