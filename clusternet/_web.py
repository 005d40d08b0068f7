"""
Small twisted.web pieces shared by the hub, the agent and the sandbox.
"""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request

from clusternet.apis.status import status_body

__all__ = ["StatusResource", "StatusRoot", "write_status"]


def write_status(
    request: Request, code: int, message: str, reason: str | None = None
) -> bytes:
    """
    Set C{code} and a JSON content type on C{request} and return a Status body.
    """
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-cache, private")
    return status_body(code, message, reason)


class StatusResource(Resource):
    """
    A leaf that answers every method with one Status error.
    """

    isLeaf = True

    def __init__(self, code: int, message: str) -> None:
        super().__init__()
        self._code = code
        self._message = message

    def render(self, request: Request) -> bytes:
        return write_status(request, self._code, self._message)


class StatusRoot(Resource):
    """
    A root whose unknown children are a 404 Status rather than HTML.
    """

    def getChild(self, path: bytes, request: Request) -> Resource:
        return StatusResource(404, "the server could not find the requested resource")

    def render(self, request: Request) -> bytes:
        return write_status(
            request, 404, "the server could not find the requested resource"
        )
