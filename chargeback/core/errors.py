"""Refusals: how the engine says no.

A refusal carries what a finance user needs to fix the input (file, line, column, what
to do). The CLI turns it into exit code 1 and one line per problem on stderr; nothing
is changed in the database when one is raised inside a command's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass


class Refused(Exception):
    """The command was refused: bad data, a closed period, unbalanced books."""


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in an input file, printed as `FILE:LINE: COLUMN: message`."""

    file: str
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.column}: {self.message}"


#: Problems printed for one refusal at most: past it, a count says how many more there are
#: (a file of 10,000 unknown columns is told in a screenful, not in 10,000 lines).
SHOWN = 100


class InputRefused(Refused):
    """An input file (or a book) with one or more problems, refused whole."""

    def shown(self, limit: int = SHOWN) -> list[str]:
        """The problems to print: the first `limit`, then how many more were found."""
        lines = [str(problem) for problem in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit} more errors like these (the first {limit} are shown)")
        return lines

    def __init__(self, problems: list[Problem], what: str = "import") -> None:
        self.problems = problems
        self.what = what
        noun = "error" if len(problems) == 1 else "errors"
        nothing = "nothing imported" if what == "import" else "nothing loaded"
        super().__init__(f"{what} refused: {len(problems)} {noun}, {nothing}")
