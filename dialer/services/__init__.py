"""Use cases: each function or method owns its transaction and calls the store to write."""
