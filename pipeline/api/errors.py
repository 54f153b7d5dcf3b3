"""Lago's error bodies, so that Lago's clients raise their own `LagoApiError` on ours.

Lago answers `{"status", "error"}` plus a `code` for most errors and `error_details` for
validation errors (lago-api `app/controllers/concerns/api_errors.rb`).
"""

from __future__ import annotations

from typing import Any

from pipeline.kernel.errors import TollgateError

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ApiError(TollgateError):
    """An answer other than success: its status, Lago's `code`, and details for the client."""

    def __init__(
        self, status: int, code: str, message: str = "", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message or code)
        self.status, self.code, self.message, self.details = status, code, message, details

    def body(self) -> dict[str, Any]:
        error = _REASONS.get(self.status, "Error")
        if self.status == 400 and self.message:
            error = f"BadRequest: {self.message}"
        body: dict[str, Any] = {"status": self.status, "error": error, "code": self.code}
        if self.details is not None:
            body["error_details"] = self.details
        elif self.message and self.status != 400:
            body["message"] = self.message
        return body


def not_found(resource: str) -> ApiError:
    """Lago's `{resource}_not_found` 404."""
    return ApiError(404, f"{resource}_not_found")


def invalid(details: dict[str, Any]) -> ApiError:
    """Lago's 422 `validation_errors`, with `error_details` {field: [problems]}."""
    return ApiError(422, "validation_errors", details=details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def unavailable(message: str) -> ApiError:
    """The state or the broker cannot answer now (rebalancing, broker away): retry."""
    return ApiError(503, "service_unavailable", message)
