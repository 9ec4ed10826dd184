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


__all__ = ["Conflict", "NotFound", "ServingError"]
