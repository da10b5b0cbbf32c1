"""toolwire tests."""
