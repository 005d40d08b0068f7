"""
What the end-to-end tests do against a fleet's parent by hand: one HTTPS
request as any kind of user, and waiting for a condition.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusternet.fleet import Fleet

__all__ = ["eventually", "parent_request"]


def parent_request(
    fleet: Fleet,
    method: str,
    path: str,
    *,
    token: str | None = None,
    cert: tuple[Path, Path] | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """
    One request to the parent of C{fleet} with a bearer C{token} or a client
    certificate C{cert} (or neither): the status and the body, decoded when it
    is JSON.
    """
    assert fleet.parent is not None
    host, port = fleet.parent.url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(fleet.parent.data_dir / "ca.crt"))
    if cert is not None:
        context.load_cert_chain(*cert)
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    connection = http.client.HTTPSConnection(
        host, int(port), context=context, timeout=30
    )
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def eventually(
    check: Callable[[], Any],
    timeout: float = 60.0,
    retry_on: tuple[type[Exception], ...] = (),
) -> Any:
    """
    Call C{check} every half second until it returns something true (which is
    returned), failing after C{timeout} seconds; exceptions of C{retry_on}
    count as not yet.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except retry_on:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        time.sleep(0.5)
