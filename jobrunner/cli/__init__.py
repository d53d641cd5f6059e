"""The jobrunner command line: thin Typer commands over the client and the runner.

`app` holds the daemon's commands (start, migrate); the operator's commands (pause, resume,
scale, stop, drain, status, jobs, enqueue, workflows) live in their own modules, which
register on `app` when imported here.
"""

from jobrunner.cli import jobs, ops, triggers, web, workflows
from jobrunner.cli.app import app, main

__all__ = ["app", "jobs", "main", "ops", "triggers", "web", "workflows"]
