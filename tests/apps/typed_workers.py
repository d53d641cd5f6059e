"""A sync worker with typed args, for `jobrunner enqueue --args` tests."""

from __future__ import annotations

from dataclasses import dataclass

from jobrunner import Job, worker


@dataclass
class ResizeArgs:
    image_id: int
    width: int = 100


@worker(queue="images", name="typed.resize", args=ResizeArgs)
def resize(job: Job, args: ResizeArgs) -> None:
    """Does nothing: the tests look at what was enqueued."""
