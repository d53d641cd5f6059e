"""Running jobs: the notifier, producers, executor, acker and leader election."""
