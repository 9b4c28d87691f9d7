"""The route × hostile-input table: every operation of a service's OpenAPI document, sent
each hostile input, each answer checked against the class it must have.

The routes come from the running service's own ``/openapi.json`` (so a route added
tomorrow is probed without a line here); the inputs are fixed:

- ``no token``: no ``Authorization`` header (401; the public routes answer as usual);
- ``wrong scope``: a token the service knows, without the route's scope (403);
- ``oversized``: a ``Content-Length`` of 2 GiB with a few bytes sent, on a raw socket
  (413 before the body is read, the caller holding a valid token);
- ``malformed``: the route's body broken for its media type (truncated JSON, a
  multipart form cut off mid-part, a form whose PDF is garbage, DER that is not DER);
- ``path ../``, ``path ctl``, ``path long``: each path parameter replaced by
  ``../../etc/passwd``, by NUL/ESC/CR/LF/bidi characters, and by 8 KiB of one letter
  (percent-encoded, as a client would send them; the service decodes them);
- ``query``, ``header``: each declared query and header parameter given control
  characters, huge and negative numbers, 8 KiB (any non-5xx answer).

Every refusal must be JSON ``{"error", "detail"}``.  The requests themselves are
`tests.support.hostile_wire`'s.

Every request has a client timeout (`TIMEOUT`): a timeout is a hang, reported as
``hang`` in the table and failing the test, as a 5xx does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from tests.support import hostile_wire
from tests.support.hostile_wire import (
    TIMEOUT,
    Malformed,
    Reply,
    malformed_bodies,
    media_of,
    oversized,
    streamed_document,
)

INPUTS = (
    "no token",
    "wrong scope",
    "oversized",
    "malformed",
    "path ../",
    "path ctl",
    "path long",
    "query",
    "header",
)
PATH_VALUES = {
    "path ../": "../../etc/passwd",
    "path ctl": "a\x00\x1b[31m\r\nX-Injected: 1\u202e",
    "path long": "a" * 8192,
}
#: Each declared query parameter gets each of these in turn (with the admin's token).
QUERY_VALUES = (
    "a\x00\x1b[31m\r\n\u202e",
    "9" * 40,
    "-1",
    "nan",
    "x" * 8192,
)
#: Each declared header parameter (Idempotency-Key, X-Signet-*) gets these; a header
#: cannot carry CR, LF or NUL at all, so control characters here are ESC and DEL.
HEADER_VALUES = ("a\x1b[31m\x7f", "../../etc", "x" * 8192, "é€".encode())
#: What each input must get (the public routes' "no token" answers are their own).
EXPECTED: Mapping[str, frozenset[int]] = {
    "no token": frozenset({401}),
    "wrong scope": frozenset({403}),
    "oversized": frozenset({413}),
    # 400 is `invalid_request`, the services' answer for a request they cannot parse
    # (a multipart body cut off, a malformed object name), 422 pydantic's
    "malformed": frozenset({400, 422}),
    "path ../": frozenset({400, 404, 422}),
    "path ctl": frozenset({400, 404, 422}),
    "path long": frozenset({400, 404, 422}),
    # a hostile query or header value may be answered as any value would (a search
    # for control characters finds nothing: 200); never a 5xx, refusals shaped
    "query": frozenset(),
    "header": frozenset(),
}
#: A route whose credential is in its path, sent an unknown one.
UNKNOWN_CREDENTIAL = frozenset({401, 403, 404})


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    #: path parameters in order of appearance
    params: tuple[str, ...]
    #: the request body's media type from the document (None: the route takes none)
    media: str | None
    #: the form fields that are files, from the body's schema (multipart only)
    file_fields: tuple[str, ...] = ()
    #: the query and header parameters the document declares
    query: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


@dataclass(frozen=True)
class Answer:
    """One cell: the statuses of its requests, None for a hang (the client timed out)."""

    statuses: tuple[int | None, ...]
    #: the expected statuses; empty: the route answers as it does for anyone (public)
    expected: frozenset[int]
    #: the answer of the first request that broke the rule (or of the first)
    detail: str = ""
    #: whether each refusal was JSON ``{"error", "detail"}``
    shaped: tuple[bool, ...] = ()

    @classmethod
    def of(cls, replies: Iterable[Reply], expected: frozenset[int]) -> Answer:
        listed = list(replies)
        bad = [d for s, d, shaped in listed if not (_allowed(s, expected) and shaped)]
        return cls(
            tuple(s for s, _, _ in listed),
            expected,
            (bad or [listed[0][1]])[0],
            tuple(shaped for _, _, shaped in listed),
        )

    @property
    def ok(self) -> bool:
        return all(_allowed(s, self.expected) for s in self.statuses) and all(self.shaped)

    def cell(self) -> str:
        shown = []
        for status, shaped in zip(self.statuses, self.shaped or (True,) * 99, strict=False):
            text = "hang" if status is None else str(status)
            if not _allowed(status, self.expected):
                text = f"**{text}** ✗"
            elif not shaped:
                text = f"**{text}** ✗ not `{{error, detail}}`"
            if text not in shown:
                shown.append(text)
        return " / ".join(shown)


def _allowed(status: int | None, expected: frozenset[int]) -> bool:
    if status is None or status >= 500:
        return False
    return not expected or status in expected


@dataclass
class Service:
    """A running service as the prober meets it.

    `admin` is a token allowed everywhere (the deepest reach for the bad bodies and
    parameters); `wrong_scope` names, for an operation, a known token without its scope
    (None: every caller the service knows has it, or the route is public); `public`
    says whether the route takes no token at all.  `samples` gives a valid value per
    path parameter (used while another parameter of the same route is the hostile
    one) and `forms` valid non-file fields of multipart routes, so that the garbage
    PDF reaches the parser instead of failing on a missing field."""

    name: str
    url: str
    admin: str
    wrong_scope: Callable[[Operation], str | None]
    public: Callable[[Operation], bool]
    samples: Mapping[str, str] = field(default_factory=dict)
    forms: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: operations whose malformed body gets a protocol's own answer (OCSP, RFC 3161):
    #: (method template) → the statuses allowed
    protocol: Mapping[str, frozenset[int]] = field(default_factory=dict)
    #: routes whose malformed input is not their body's media type (storage's byte
    #: upload takes any bytes: its malformed input is in its headers)
    malformed: Mapping[str, list[Malformed]] = field(default_factory=dict)
    #: routes the gate leaves unbounded as a whole, each part bounded by the route
    #: (batch uploads): their oversized input is one part over this many bytes, streamed
    part_limits: Mapping[str, int] = field(default_factory=dict)
    #: routes whose credential is in the path (the portal's links): without it, an
    #: unknown credential must be refused
    path_credential: Callable[[Operation], bool] = lambda _: False


def operations(document: Mapping[str, Any]) -> list[Operation]:
    """Every operation of an OpenAPI document, in its order."""
    found = []
    for template, item in document["paths"].items():
        for method, op in item.items():
            if method not in {"get", "post", "put", "delete", "head", "patch"}:
                continue
            content = op.get("requestBody", {}).get("content", {})
            media = next(iter(content), None)
            files: tuple[str, ...] = ()
            if media == "multipart/form-data":
                files = _file_fields(document, content[media]["schema"])
            declared = op.get("parameters", [])
            found.append(
                Operation(
                    method.upper(),
                    template,
                    tuple(re.findall(r"{([^}:]+)(?::[^}]+)?}", template)),
                    media,
                    files,
                    tuple(p["name"] for p in declared if p["in"] == "query"),
                    tuple(p["name"] for p in declared if p["in"] == "header"),
                )
            )
    return found


def _file_fields(document: Mapping[str, Any], schema: Mapping[str, Any]) -> tuple[str, ...]:
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    names = []
    for name, prop in schema.get("properties", {}).items():
        items = prop.get("items", {})
        text = json.dumps(prop)
        if (
            prop.get("format") == "binary"
            or prop.get("contentMediaType") == "application/octet-stream"
            or items.get("format") == "binary"
            or "octet-stream" in text
            or '"binary"' in text
        ):
            names.append(name)
    return tuple(names)


def path_for(operation: Operation, service: Service, hostile: tuple[str, str] | None) -> str:
    """The operation's path with sample values, one parameter replaced by `hostile`
    (name, raw value), all percent-encoded."""
    path = operation.template
    for name in operation.params:
        value = hostile[1] if hostile and hostile[0] == name else service.samples.get(name, "x")
        path = re.sub(r"{" + re.escape(name) + r"(?::[^}]+)?}", quote(value, safe=""), path)
    return path


def probe(service: Service, document: Mapping[str, Any]) -> dict[str, dict[str, Answer]]:
    """Route → input → answer, for every operation of `document`."""
    table: dict[str, dict[str, Answer]] = {}
    with httpx.Client(base_url=service.url, timeout=TIMEOUT) as client:
        for operation in operations(document):
            table[operation.name] = _probe_one(client, service, operation)
    return table


def _probe_one(client: httpx.Client, service: Service, operation: Operation) -> dict[str, Answer]:
    row: dict[str, Answer] = {}
    protocol = operation.name in service.protocol

    def send(path: str, token: str | None, **kwargs: Any) -> Reply:
        return hostile_wire.send(client, operation, path, token, protocol=protocol, **kwargs)

    plain = path_for(operation, service, None)
    public = service.public(operation)
    content, media = _valid_body(operation, service)
    expected = EXPECTED["no token"]
    if public:
        expected = frozenset()
    elif service.path_credential(operation):
        expected = UNKNOWN_CREDENTIAL
    row["no token"] = Answer.of([send(plain, None, content=content, media=media)], expected)
    wrong = None if public else service.wrong_scope(operation)
    if wrong is not None:
        reply = send(plain, wrong, content=content, media=media)
        row["wrong scope"] = Answer.of([reply], EXPECTED["wrong scope"])
    if operation.name in service.part_limits:
        reply = send(
            plain, service.admin, media=media_of(operation),
            content=streamed_document(service.part_limits[operation.name] + 1024 * 1024),
        )  # fmt: skip
    else:
        reply = oversized(service.url, operation, plain, service.admin)
    row["oversized"] = Answer.of([reply], EXPECTED["oversized"])
    replies = [
        send(plain, service.admin, content=body, media=kind, headers=extra)
        for body, kind, extra in malformed_bodies(operation, service)
    ]
    if replies:
        expected = service.protocol.get(operation.name, EXPECTED["malformed"])
        if service.path_credential(operation):
            # the credential in the path may be refused before the body is read (the
            # probe's link is unknown): that is authentication before work, not a miss
            expected = expected | UNKNOWN_CREDENTIAL
        row["malformed"] = Answer.of(replies, expected)
    for name, value in PATH_VALUES.items():
        cells = [
            send(path_for(operation, service, (param, value)), service.admin,
                 content=content, media=media)
            for param in operation.params
        ]  # fmt: skip
        if cells:
            row[name] = Answer.of(cells, service.protocol.get(operation.name, EXPECTED[name]))
    queries = [
        send(plain, service.admin, content=content, media=media, params={param: value})
        for param in operation.query
        for value in QUERY_VALUES
    ]
    if queries:
        row["query"] = Answer.of(queries, EXPECTED["query"])
    headed = [
        send(plain, service.admin, content=content, media=media, headers={name: value})
        for name in operation.headers
        if name.lower() != "content-type"
        for value in HEADER_VALUES
    ]
    if headed:
        row["header"] = Answer.of(headed, EXPECTED["header"])
    return row


def _valid_body(operation: Operation, service: Service) -> tuple[bytes | None, str | None]:
    """A body that passes validation where the route needs one, so that a hostile path
    parameter, not a missing body, decides the answer."""
    if operation.media == "application/json":
        return json.dumps(dict(service.forms.get(operation.name, {}))).encode(), operation.media
    return None, None


def markdown(tables: Mapping[str, dict[str, dict[str, Answer]]]) -> str:
    """The table as the admin guide shows it: one line per route, one column per input."""
    lines = [
        "| service | route | " + " | ".join(INPUTS) + " |",
        "|---|---|" + "---|" * len(INPUTS),
    ]
    for service, table in tables.items():
        for route, row in table.items():
            cells = [row[i].cell() if i in row else "—" for i in INPUTS]
            lines.append(f"| {service} | `{route}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def failures(tables: Mapping[str, dict[str, dict[str, Answer]]]) -> list[str]:
    return [
        f"{service} {route} [{name}]: {answer.statuses} (expected {sorted(answer.expected)}) "
        f"{answer.detail}"
        for service, table in tables.items()
        for route, row in table.items()
        for name, answer in row.items()
        if not answer.ok
    ]
