"""Workflows and batches as values: the builder, its checks at build time, what an insert
returns. No I/O: the client inserts them (db/queries/workflows.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from jobrunner.core.errors import InvalidJob
from jobrunner.core.job import Job
from jobrunner.core.new_job import NewJob


class InvalidWorkflow(InvalidJob):
    """invalid workflow."""


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a workflow: a job, the steps it waits for, and which of their endings
    (besides completing) still let it run."""

    name: str
    job: NewJob
    deps: tuple[str, ...] = ()
    ignore_cancelled: bool = False
    ignore_discarded: bool = False


@dataclass(slots=True)
class Workflow:
    """Jobs that wait on other jobs: each step runs once every step it depends on completed.

    Build it with `add` (deps may name steps added later), insert it with
    `client.insert_workflow(wf)`, all steps in one transaction. A cycle or a dep that names
    no step is refused then, naming the steps. `Workflow.adding_to(job)` adds steps to the
    workflow of a running step (dynamic fan-out); their deps may name its existing steps.

    Example:
        >>> wf = Workflow("nightly")
        >>> wf.add("extract", extract.new({"day": "2026-12-06"}))
        >>> wf.add("transform", transform.new({}), deps=["extract"])
        >>> wf.add("load", load.new({}), deps=["extract", "transform"])
        >>> run = await client.insert_workflow(wf)
    """

    name: str
    steps: dict[str, Step] = field(default_factory=dict)
    workflow_id: int | None = None  # add to this existing workflow
    of_job: int | None = None  # add to the workflow of this job

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not 1 <= len(self.name) <= 255 or "\x00" in self.name:
            raise InvalidWorkflow(
                f"a workflow name is a string of 1-255 characters, got {self.name!r}"
            )

    @classmethod
    def adding_to(cls, target: Job | int) -> Workflow:
        """Steps to add to a running workflow: the one of step `target` (a Job, as a worker
        receives it), or the workflow with id `target`."""
        if isinstance(target, Job):
            return cls("added", of_job=target.id)
        if isinstance(target, int) and not isinstance(target, bool) and target > 0:
            return cls("added", workflow_id=target)
        raise InvalidWorkflow(f"adding_to takes a step's Job or a workflow id, got {target!r}")

    @property
    def adds_to_existing(self) -> bool:
        return self.workflow_id is not None or self.of_job is not None

    def add(
        self,
        name: str,
        job: NewJob,
        *,
        deps: Iterable[str] = (),
        ignore_cancelled: bool = False,
        ignore_discarded: bool = False,
    ) -> Step:
        """Add step `name` running `job` once every step in `deps` completed.

        A dep cancelled (or discarded) cancels this step too, and so on down the graph,
        unless `ignore_cancelled` (`ignore_discarded`): then this step counts it as done.
        """
        if not isinstance(name, str) or not 1 <= len(name) <= 255 or "\x00" in name:
            raise InvalidWorkflow(f"a step name is a string of 1-255 characters, got {name!r}")
        if name in self.steps:
            raise InvalidWorkflow(f"workflow {self.name!r} already has a step {name!r}")
        if not isinstance(job, NewJob):
            raise InvalidWorkflow(f"step {name!r} takes a job built with worker.new(...)")
        if isinstance(deps, str):
            raise InvalidWorkflow(f"deps of step {name!r} must be a list of step names")
        found = tuple(dict.fromkeys(deps))
        for dep in found:
            if not isinstance(dep, str):
                raise InvalidWorkflow(f"deps of step {name!r} must be step names, got {dep!r}")
        _check_job(name, job, found)
        step = Step(name, job, found, bool(ignore_cancelled), bool(ignore_discarded))
        self.steps[name] = step
        return step

    def existing_deps(self) -> list[str]:
        """The deps that name no step of this builder: steps of the running workflow."""
        return sorted({d for s in self.steps.values() for d in s.deps if d not in self.steps})

    def check(self) -> list[Step]:
        """The steps in an order where each comes after its deps; InvalidWorkflow names an
        unknown dep or a cycle."""
        if not self.steps:
            raise InvalidWorkflow(f"workflow {self.name!r} has no steps")
        if not self.adds_to_existing:
            for step in self.steps.values():
                unknown = [d for d in step.deps if d not in self.steps]
                if unknown:
                    raise InvalidWorkflow(
                        f"step {step.name!r} of workflow {self.name!r} depends on "
                        f"{', '.join(map(repr, unknown))}, which is no step of it"
                    )
        return _ordered(self.name, self.steps)


def _check_job(name: str, job: NewJob, deps: Sequence[str]) -> None:
    if job.unique is not None:
        raise InvalidWorkflow(f"step {name!r} is unique; a workflow step cannot be (unique=False)")
    if job.chain is not None:
        raise InvalidWorkflow(f"step {name!r} has a chain; a workflow step cannot")
    if deps and (job.scheduled_at is not None or job.schedule_in):
        raise InvalidWorkflow(
            f"step {name!r} has deps and a scheduled time; it runs when its deps complete"
        )


def _ordered(workflow: str, steps: Mapping[str, Step]) -> list[Step]:
    """Depth-first topological order; a cycle raises InvalidWorkflow naming its steps."""
    done: set[str] = set()
    order: list[Step] = []
    for root in steps:
        if root in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            name, index = stack.pop()
            if index == 0:
                path.append(name)
                on_path.add(name)
            deps = [d for d in steps[name].deps if d in steps]
            if index < len(deps):
                stack.append((name, index + 1))
                dep = deps[index]
                if dep in on_path:
                    cycle = [*path[path.index(dep) :], dep]
                    raise InvalidWorkflow(
                        f"workflow {workflow!r} has a cycle: {' -> '.join(map(repr, cycle))}"
                    )
                if dep not in done:
                    stack.append((dep, 0))
                continue
            path.pop()
            on_path.discard(name)
            done.add(name)
            order.append(steps[name])
    return order


@dataclass(frozen=True, slots=True)
class InsertedWorkflow:
    """What `insert_workflow` inserted: the workflow's id and its new steps' jobs by name."""

    id: int
    name: str
    jobs: dict[str, Job]


BATCH_CONDITIONS = ("completed", "discarded", "exhausted")


def batch_callbacks(
    on_completed: NewJob | None, on_discarded: NewJob | None, on_exhausted: NewJob | None
) -> dict[str, NewJob]:
    """The callbacks of a batch by condition; InvalidJob for one that cannot be a callback."""
    given = {"completed": on_completed, "discarded": on_discarded, "exhausted": on_exhausted}
    found: dict[str, NewJob] = {}
    for condition, job in given.items():
        if job is None:
            continue
        if not isinstance(job, NewJob):
            raise InvalidJob(f"on_{condition} takes a job built with worker.new(...), got {job!r}")
        if job.unique is not None or job.chain is not None:
            raise InvalidJob(f"on_{condition} cannot be unique or chained (unique=False)")
        if job.scheduled_at is not None or job.schedule_in:
            raise InvalidJob(f"on_{condition} runs when the batch ends; it takes no scheduled time")
        found[condition] = job
    return found


def check_batch_jobs(jobs: Sequence[NewJob]) -> None:
    if not jobs:
        raise InvalidJob("a batch needs at least one job")
    for job in jobs:
        if not isinstance(job, NewJob):
            raise InvalidJob(f"insert_batch takes jobs built with worker.new(...), got {job!r}")
        if job.unique is not None or job.chain is not None:
            raise InvalidJob(
                f"a batch job cannot be unique or chained ({job.worker!r}; unique=False)"
            )


@dataclass(frozen=True, slots=True)
class InsertedBatch:
    """What `insert_batch` inserted: the batch's id and its jobs, in order."""

    id: int
    jobs: list[Job]
