"""Jobs, workers, outcomes, errors and configuration: plain values, no I/O."""
