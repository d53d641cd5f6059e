"""One node's daemon: the Runner (engine and plugins assembled) and its control loop."""
