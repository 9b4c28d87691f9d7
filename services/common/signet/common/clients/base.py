"""What every client shares: one pooled connection set, the caller's token, error mapping."""

from __future__ import annotations

from typing import Any

import httpx
from signet.common.errors import ServiceUnavailable, SignetError


class RemoteError(SignetError):
    """The other service refused the request: its status and code, passed on unchanged
    (a 409 from storage is a 409 for the portal's caller too, not a 500)."""

    def __init__(self, service: str, status_code: int, code: str, detail: str) -> None:
        super().__init__(f"{service}: {detail}")
        self.status_code, self.code, self.service = status_code, code, service


class ServiceClient:
    """A connection pool to one service with the caller's own token (never the admin's)."""

    #: the service's name in error messages
    service = "service"

    def __init__(self, base_url: str, token: str, *, timeout: float = 60) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=5),
            headers={"Authorization": f"Bearer {token}"},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"the {self.service} at {self.base_url} did not answer ({type(exc).__name__})"
            ) from exc
        if response.status_code >= 500:
            raise ServiceUnavailable(
                f"the {self.service} failed ({response.status_code}): {_detail(response)}"
            )
        if response.status_code >= 400:
            raise RemoteError(
                self.service, response.status_code, _code(response), _detail(response)
            )
        return response


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _code(response: httpx.Response) -> str:
    code = _body(response).get("error")
    return code if isinstance(code, str) else "remote_error"


def _detail(response: httpx.Response) -> str:
    detail = _body(response).get("detail")
    return detail if isinstance(detail, str) else response.reason_phrase
