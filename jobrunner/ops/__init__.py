"""What an operator asks of the system: control commands, status, and drain."""
