"""Reads the repository's Dockerfile into stages of instructions, for the deployment tests."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import ROOT

DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Instruction:
    keyword: str  # upper case: RUN, COPY, ...
    flags: list[str]  # --mount=..., --from=..., --interval=...
    rest: str  # what follows the flags

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for the shell form."""
        try:
            value = json.loads(self.rest)
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, list) else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base!r} has no {keyword}"
        return found[-1]


def logical_lines(text: str) -> list[str]:
    """Lines with comments dropped and backslash continuations joined."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def parse(path: Path = DOCKERFILE) -> list[Stage]:
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        flags: list[str] = []
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, flags, rest))
    return stages


def build_script_runs(stage: Stage) -> list[list[str]]:
    """The deploy/build_image.py command of each of the stage's RUN instructions that has
    one (the part before any `&&`), split as the shell would."""
    runs = []
    for run in stage.all("RUN"):
        first = re.split(r"\s&&\s", run.rest)[0]
        argv = shlex.split(first)
        if any(arg.endswith("build_image.py") for arg in argv):
            runs.append(argv)
    return runs
