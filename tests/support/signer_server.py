"""A signer service served on loopback in a thread, for code that talks to it over HTTP
(storage's `SignerClient`): the scenario of tests/signer/test_tsa_rollover.py and the
evidence benchmark, which make their own signer (their own SoftHSM token)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from signet.signer.app import create_app
from signet.signer.service import SignerService

from tests.conftest import free_port


@contextmanager
def served(service: SignerService) -> Iterator[str]:
    """The signer's base URL while the block runs."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service=service), host="127.0.0.1", port=port, log_level="warning",
            lifespan="off",
        )
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the signer did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
