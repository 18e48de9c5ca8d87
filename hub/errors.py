"""Named refusals: each carries the HTTP status the API answers with and a one-line reason."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError


class HubError(Exception):
    """A request the hub refuses; rendered as `{"detail": reason}` with `status`."""

    status: ClassVar[int] = 400

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class BadRequest(HubError):
    status = 400


class Unauthorized(HubError):
    status = 401


class Forbidden(HubError):
    status = 403


class NotFound(HubError):
    status = 404


class RequestTimeout(HubError):
    """A body that stopped arriving: the hub answers and closes the connection."""

    status = 408


class Conflict(HubError):
    status = 409


class TooLarge(HubError):
    status = 413


class UnsupportedMediaType(HubError):
    status = 415


class Invalid(HubError):
    """Schema-invalid input: the device drops such records after isolating them."""

    status = 422


class Unavailable(HubError):
    """The database is busy or down: the device keeps its records and retries."""

    status = 503


def invalid(exc: ValidationError, what: str, *, max_errors: int = 20) -> Invalid:
    """A 422 whose detail names the first offending fields: the device logs it, a human reads it."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    shown = [f"{_location(e['loc'])}: {e['msg']}" for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return Invalid(f"invalid {what}: {'; '.join(shown)}{more}",
                   extra={"errors": [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
                                     for e in errors[:max_errors]]})


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"
