"""The operator app as a PEP 3333 application, driven by werkzeug's WSGI test Client (and
checked by the standard library's WSGI validator): status lines, headers, bodies read only
within the limit, Error bodies, nothing secret in the log lines."""

from __future__ import annotations

import io
import json
import logging
import os
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest
from werkzeug.test import Client

from network.server import CBOR, NetworkApp
from protocol import messages as m


class Unreadable(io.BytesIO):
    """A request body the app must not read (its declared length is over the limit)."""

    def read(self, size: int | None = -1) -> bytes:
        raise AssertionError("the app read a body it should have refused unread")

    readline = read


@pytest.fixture
def client(app: NetworkApp) -> Client:
    return Client(app)


def test_the_app_passes_the_wsgi_validator(app: NetworkApp) -> None:
    """wsgiref.validate checks environ use, start_response and the returned iterable."""
    statuses: list[str] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> object:
        statuses.append(status)
        return lambda data: None

    for method, path, body in (("GET", "/v1/health", b""), ("POST", "/v1/drf/register", b"\xa1")):
        environ: dict[str, object] = {}
        setup_testing_defaults(environ)
        environ.update(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING="", CONTENT_TYPE=CBOR)
        environ.update(CONTENT_LENGTH=str(len(body)), **{"wsgi.input": io.BytesIO(body)})
        answer = validator(app)(environ, start_response)
        try:
            assert b"".join(answer)
        finally:
            answer.close()  # type: ignore[attr-defined]
    assert statuses == ["200 OK", "400 Bad Request"]


def error_of(body: bytes) -> m.Error:
    msg = m.decode(body)
    assert isinstance(msg, m.Error)
    return msg


def test_get_endpoints_answer_json(client: Client, app: NetworkApp) -> None:
    health = client.get("/v1/health")
    assert health.status == "200 OK" and health.headers["Content-Type"] == "application/json"
    assert health.json == {"status": "ok"}
    assert health.headers["Content-Length"] == str(len(health.data))
    trust = client.get("/v1/trust").json
    assert isinstance(trust, dict) and set(trust["shos"]) == {"sho-a", "sho-b"}
    assert app.counts == {200: 2}


def test_post_errors_are_cbor_error_messages(client: Client) -> None:
    cases = [
        (client.get("/v1/drf/register"), 405, "method"),
        (client.post("/v1/nope/x", data=b"\x00", content_type=CBOR), 404, "no-endpoint"),
        (client.post("/v1/drf/register", data=b"{}", content_type="application/json"), 415, None),
        (client.post("/v1/drf/register", data=b"\xa1\x00", content_type=CBOR), 400, "protocol"),
        (
            client.post(
                "/v1/drf/register",
                data=b"\x00",
                content_type=CBOR,
                headers={"Authorization": "Bearer x"},
            ),
            400,
            "bad-grant",
        ),
        (  # present but empty: a malformed grant, not a request without one
            client.post(
                "/v1/drf/register", data=b"\x00", content_type=CBOR, headers={"Authorization": ""}
            ),
            400,
            "bad-grant",
        ),
    ]
    for response, status, code in cases:
        assert response.status_code == status
        assert response.headers["Content-Type"] == CBOR
        assert error_of(response.data).code == (code or "content-type")


def test_body_over_the_limit_is_refused_unread(client: Client, app: NetworkApp) -> None:
    response = client.post(
        "/v1/drf/register",
        input_stream=Unreadable(),
        content_type=CBOR,
        environ_overrides={"CONTENT_LENGTH": str(app.config.max_body + 1)},
    )
    assert response.status_code == 413 and error_of(response.data).code == "too-large"
    assert app.store.audit_events() == []  # refused before any role: nothing to audit


def test_missing_length_and_short_body(client: Client) -> None:
    no_length = client.post(
        "/v1/drf/register",
        data=b"\xa1\x00",
        content_type=CBOR,
        environ_overrides={"CONTENT_LENGTH": ""},
    )
    assert no_length.status_code == 411 and error_of(no_length.data).code == "length"
    short = client.post(
        "/v1/drf/register",
        input_stream=io.BytesIO(b"\xa1\x00"),
        content_type=CBOR,
        environ_overrides={"CONTENT_LENGTH": "40"},
    )
    assert short.status_code == 400 and error_of(short.data).code == "truncated"


def test_refusal_log_names_no_grant_and_no_body(
    client: Client, app: NetworkApp, caplog: pytest.LogCaptureFixture
) -> None:
    grant = os.urandom(32)
    request = m.AttachRequest(
        session_id=os.urandom(32), transcript=m.INITIAL_TRANSCRIPT, imsi="001019999999999"
    )
    wire = m.encode(request)
    with caplog.at_level(logging.DEBUG, logger="trelab"):
        response = client.post(
            "/v1/sho/attach",
            data=wire,
            content_type=CBOR,
            headers={"Authorization": f"PCID {grant.hex()}"},
        )
    assert response.status_code == 403
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/v1/sho/attach" in logged
    assert grant.hex() not in logged and wire.hex() not in logged
    assert request.imsi not in logged and request.session_id.hex() not in logged
    assert json.loads(client.get("/v1/health").data) == {"status": "ok"}
