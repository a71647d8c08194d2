"""The one error the domain raises: why a request is refused, in the request's terms, never in HTTP's."""

from __future__ import annotations

from typing import Literal

Kind = Literal["invalid", "too_large", "conflict", "not_found"]
"""Why: bad input, input over a configured limit, a conflict with stored state, an unknown id."""


class DomainError(Exception):
    """A refused request: ``kind`` says why (the API maps it to a status code); ``code`` and ``message``
    go to the client as they are."""

    def __init__(self, kind: Kind, code: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message
