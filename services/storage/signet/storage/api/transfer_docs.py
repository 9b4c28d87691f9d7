"""The byte routes' entry in the storage API's OpenAPI document.

`signet.storage.api.transfers` serves them as plain ASGI, so FastAPI does not
see them and would leave them out of ``/openapi.json`` and ``/docs``: an
integrator reading the document would find no way to store or read an object.
This adds them by hand, with the same headers, answers and errors the routes
give (a test compares the document with what the routes really answer).
"""

from __future__ import annotations

from typing import Any

from signet.common.contracts.storage import ENVELOPE_ID_PATTERN, ObjectKind

_OBJECT_INFO = {"$ref": "#/components/schemas/ObjectInfo"}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["error", "detail"],
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _header(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string", **schema},
    }


_SHA256 = {
    "name": "sha256",
    "in": "path",
    "required": True,
    "description": "the object's name: the SHA-256 of its bytes, 64 lower-case hex digits",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}
_OBJECT_HEADERS = {
    name: {"description": description, "schema": {"type": "string"}}
    for name, description in (
        ("X-Signet-Sha256", "the object's SHA-256"),
        (
            "X-Signet-Kind",
            "original, revision, final, report, ledger, evidence, certificate or attachment",
        ),
        ("X-Signet-Retain-Until", "the end of its retention (ISO 8601)"),
        ("X-Signet-Legal-Hold", "on or off"),
        ("X-Signet-Envelope", "the envelope it belongs to, when it has one"),
    )
}
_COMMON_ERRORS = {
    "401": _error("no service token, or the wrong one"),
    "405": _error("another method (objects are never deleted)"),
    "503": _error("the object store is unreachable"),
}
_READ_ERRORS = {
    **_COMMON_ERRORS,
    "400": _error("the name is not a SHA-256"),
    "404": _error("no such object"),
}

PATHS: dict[str, dict[str, Any]] = {
    "/v1/objects": {
        "put": {
            "tags": ["objects"],
            "summary": "Store an object (write once, retained)",
            "description": (
                "The request body is streamed in and stored under the SHA-256 this server "
                "computes, with COMPLIANCE retention; the answer comes once it is durable. "
                "There is no overwrite and no delete. Needs the service token "
                "(Authorization: Bearer), like every route but health."
            ),
            "operationId": "put_object",
            "parameters": [
                _header(
                    "Content-Type",
                    "kept with the object (type/subtype; parameters dropped)",
                    maxLength=255,
                ),
                _header("X-Signet-Kind", "what the object is", enum=[k.value for k in ObjectKind]),
                _header(
                    "X-Signet-Envelope",
                    "the envelope it belongs to",
                    maxLength=64,
                    pattern=ENVELOPE_ID_PATTERN,
                ),
                _header(
                    "X-Signet-Sha256",
                    "the SHA-256 the client expects: other bytes are refused and nothing is stored",
                    pattern="^[0-9a-f]{64}$",
                ),
            ],
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            },
            "responses": {
                "201": {
                    "description": "stored (Location names the object)",
                    "content": {"application/json": {"schema": _OBJECT_INFO}},
                },
                "200": {
                    "description": "these bytes were already stored",
                    "content": {"application/json": {"schema": _OBJECT_INFO}},
                },
                "400": _error("the body's SHA-256 is not the one in X-Signet-Sha256"),
                "413": _error("larger than the service's object limit"),
                "422": _error(
                    "a header outside its allowed values (invalid_request), "
                    "or an empty body (empty_object)"
                ),
                **_COMMON_ERRORS,
            },
        }
    },
    "/v1/objects/{sha256}": {
        "get": {
            "tags": ["objects"],
            "summary": "Read an object's bytes (streamed)",
            "operationId": "get_object",
            "parameters": [_SHA256],
            "responses": {
                "200": {
                    "description": "the bytes, with the object's content type",
                    "headers": _OBJECT_HEADERS,
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                **_READ_ERRORS,
            },
        },
        "head": {
            "tags": ["objects"],
            "summary": "An object's metadata, without its bytes",
            "operationId": "head_object",
            "parameters": [_SHA256],
            "responses": {
                "200": {"description": "the object's headers", "headers": _OBJECT_HEADERS},
                **_READ_ERRORS,
            },
        },
    },
}


def add_byte_routes(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (FastAPI's generated document) with the byte routes added, in place."""
    paths: dict[str, dict[str, Any]] = schema.setdefault("paths", {})
    for path, operations in PATHS.items():
        paths.setdefault(path, {}).update(operations)
    return schema
