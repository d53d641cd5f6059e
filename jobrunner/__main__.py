"""python -m jobrunner -> the CLI."""

from jobrunner.cli import main

main()
