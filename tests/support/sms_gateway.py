"""A local stand-in for an SMS gateway, faithful to Twilio's Messages API.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` with HTTP basic auth (SID,
auth token) and form fields ``To``/``From``/``Body``[/``StatusCallback``]; answers
``201`` with the message resource (``sid``, ``status: queued``), ``401`` with Twilio's
error 20003 for bad credentials, ``400`` with error 21211 for an invalid ``To``, and
(our test hook) ``503`` for numbers ending in ``9999``, as a gateway in trouble would.
This is the mock the brief allows: no SMS can leave this machine.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class Gateway:
    account_sid: str
    auth_token: str
    url: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)


@contextmanager
def sms_gateway(
    account_sid: str = "AC" + "0" * 32, auth_token: str = "t0ken-s3cret"
) -> Iterator[Gateway]:
    gateway = Gateway(account_sid, auth_token)
    path = f"/2010-04-01/Accounts/{account_sid}/Messages.json"
    expected = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path != path:
                return self._answer(404, {"code": 20404, "message": "not found", "status": 404})
            if self.headers.get("Authorization") != expected:
                return self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            to = form.get("To", "")
            if not to.startswith("+") or not to[1:].isdigit():
                return self._answer(
                    400,
                    {
                        "code": 21211,
                        "message": f"The 'To' number {to} is not a valid phone number.",
                        "status": 400,
                    },
                )
            if to.endswith("9999"):
                return self._answer(503, {"code": 20503, "message": "Service unavailable"})
            sid = "SM" + secrets.token_hex(16)
            gateway.messages.append({**form, "sid": sid})
            return self._answer(
                201, {"sid": sid, "status": "queued", "to": to, "body": form.get("Body")}
            )

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    gateway.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        server.shutdown()
        server.server_close()
