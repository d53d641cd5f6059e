"""The Workflow builder's checks, without a database."""

from __future__ import annotations

import pytest

from jobrunner import InvalidJob, InvalidWorkflow, Unique, Workflow, worker
from jobrunner.core.workflow import batch_callbacks, check_batch_jobs


@worker(queue="wf-unit", name="tests.unit.wf.step")
async def step(job: object) -> None:
    return None


def names(wf: Workflow) -> list[str]:
    return [s.name for s in wf.check()]


def test_steps_come_after_their_deps_whatever_the_order_they_were_added() -> None:
    wf = Workflow("etl")
    wf.add("load", step.new({}), deps=["transform", "extract"])
    wf.add("transform", step.new({}), deps=["extract"])
    wf.add("extract", step.new({}))
    wf.add("audit", step.new({}))
    order = names(wf)
    assert order.index("extract") < order.index("transform") < order.index("load")
    assert sorted(order) == ["audit", "extract", "load", "transform"]


def test_a_long_chain_is_ordered_without_recursion() -> None:
    wf = Workflow("long")
    for i in range(5000, 0, -1):
        wf.add(f"s{i}", step.new({}), deps=[f"s{i - 1}"])
    wf.add("s0", step.new({}))
    assert names(wf) == [f"s{i}" for i in range(5001)]


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ({"a": ["b"], "b": ["a"]}, "workflow 'w' has a cycle: 'a' -> 'b' -> 'a'"),
        ({"a": ["a"]}, "workflow 'w' has a cycle: 'a' -> 'a'"),
        ({"x": [], "a": ["x", "c"], "b": ["a"], "c": ["b"]}, "cycle: 'a' -> 'c' -> 'b' -> 'a'"),
        ({"a": ["nope"]}, "step 'a' of workflow 'w' depends on 'nope', which is no step of it"),
    ],
)
def test_cycles_and_unknown_deps_are_refused_naming_the_steps(
    edges: dict[str, list[str]], message: str
) -> None:
    wf = Workflow("w")
    for name, deps in edges.items():
        wf.add(name, step.new({}), deps=deps)
    with pytest.raises(InvalidWorkflow, match=message.replace("(", r"\(").replace(")", r"\)")):
        wf.check()


def test_what_a_step_cannot_be() -> None:
    wf = Workflow("w")
    wf.add("a", step.new({}))
    with pytest.raises(InvalidWorkflow, match="already has a step 'a'"):
        wf.add("a", step.new({}))
    with pytest.raises(InvalidWorkflow, match="a step name is a string"):
        wf.add("", step.new({}))
    with pytest.raises(InvalidWorkflow, match="deps of step 'b' must be a list"):
        wf.add("b", step.new({}), deps="a")
    with pytest.raises(InvalidWorkflow, match="step 'u' is unique"):
        wf.add("u", step.new({}, unique=Unique(period=60)))
    with pytest.raises(InvalidWorkflow, match="step 'c' has a chain"):
        wf.add("c", step.new({}, chain="k"))
    with pytest.raises(InvalidWorkflow, match="step 's' has deps and a scheduled time"):
        wf.add("s", step.new({}, schedule_in=60), deps=["a"])
    with pytest.raises(InvalidWorkflow, match="has no steps"):
        Workflow("empty").check()
    with pytest.raises(InvalidWorkflow, match="a workflow name is a string"):
        Workflow("")
    with pytest.raises(InvalidWorkflow, match="adding_to takes a step's Job or a workflow id"):
        Workflow.adding_to(0)
    assert isinstance(InvalidWorkflow("x"), ValueError)


def test_steps_added_to_a_running_workflow_may_name_its_steps() -> None:
    more = Workflow.adding_to(12)
    more.add("part", step.new({}), deps=["extract"])
    more.add("merge", step.new({}), deps=["part", "split"])
    assert names(more) == ["part", "merge"]
    assert more.existing_deps() == ["extract", "split"]


def test_batch_checks() -> None:
    with pytest.raises(InvalidJob, match="a batch needs at least one job"):
        check_batch_jobs([])
    with pytest.raises(InvalidJob, match="cannot be unique or chained"):
        check_batch_jobs([step.new({}, chain="k")])
    assert batch_callbacks(step.new({}), None, None).keys() == {"completed"}
    with pytest.raises(InvalidJob, match="on_discarded cannot be unique or chained"):
        batch_callbacks(None, step.new({}, unique=Unique(period=5)), None)
