"""pytest fixtures for users' test suites (registered through the pytest11 entry point)."""
