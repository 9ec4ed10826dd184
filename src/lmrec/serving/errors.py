"""Serving errors: each carries the HTTP status the API answers with (``{"detail": message}``)."""

from __future__ import annotations

from lmrec.errors import LmrecError


class ServingError(LmrecError):
    """An error with an HTTP status; the API turns it into ``{"detail": message}``."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class NotFound(ServingError):
    status = 404


class Conflict(ServingError):
    status = 409


class InvalidField(ServingError):
    """A request field whose value the schema allows but the data does not (a ``where`` value of
    the wrong type for its catalogue column): a 422 shaped like a schema error, naming the field."""

    status = 422

    def __init__(self, message: str, loc: tuple[str | int, ...], kind: str = "value_error") -> None:
        super().__init__(message)
        self.loc = loc
        self.kind = kind


__all__ = ["Conflict", "InvalidField", "NotFound", "ServingError"]
