"""Web apps that enqueue jobs in the same transaction as their own rows (see README.md)."""
