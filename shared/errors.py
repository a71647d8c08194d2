"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations


class SaltError(Exception):
    """An error caused by input or environment, reported to the user without a traceback.

    The CLI prints ``error: <message>`` and exits with a non-zero status.
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} ({fix})" if fix else problem)
