"""
A sans-IO parser for one HTTP/1.1 response head, for upgraded connections.

Ordinary responses go through C{twisted.web.client}; this parser only has to
find out whether an upstream answered an C{Upgrade} request with
C{101 Switching Protocols} and with which headers, and where the raw bytes of
the new protocol begin.
"""

from __future__ import annotations

from attrs import frozen

__all__ = ["HeadError", "ResponseHead", "ResponseHeadParser"]

# Go's http.Server accepts 1 MiB of request head by default; be as generous.
MAX_HEAD_BYTES = 1024 * 1024
MAX_HEADERS = 500

_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class HeadError(ValueError):
    """
    The bytes are not a valid HTTP/1.x response head.
    """


@frozen
class ResponseHead:
    """
    A parsed response status line and header fields, in wire order.
    """

    version: bytes
    code: int
    phrase: bytes
    headers: tuple[tuple[bytes, bytes], ...]

    def values(self, name: bytes) -> list[bytes]:
        """
        The values of every field called C{name} (any case), in order.
        """
        lowered = name.lower()
        return [v for (k, v) in self.headers if k.lower() == lowered]


def _parse_status(line: bytes) -> tuple[bytes, int, bytes]:
    parts = line.split(b" ", 2)
    if len(parts) < 2:
        raise HeadError("malformed status line")
    version, code_text = parts[0], parts[1]
    phrase = parts[2] if len(parts) == 3 else b""
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise HeadError("unsupported HTTP version in status line")
    if len(code_text) != 3 or not code_text.isdigit():
        raise HeadError("malformed status code")
    if any((c < 0x20 and c != 0x09) or c == 0x7F for c in phrase):
        raise HeadError("control character in reason phrase")
    return version, int(code_text), phrase


def _parse_field(line: bytes) -> tuple[bytes, bytes]:
    name, sep, value = line.partition(b":")
    if not sep or not name or any(c not in _TOKEN_CHARS for c in name):
        raise HeadError("malformed header field")
    value = value.strip(b" \t")
    if any((c < 0x20 and c != 0x09) or c == 0x7F for c in value):
        raise HeadError("control character in header value")
    return name, value


class ResponseHeadParser:
    """
    Feed bytes until a whole head is in; then L{feed} returns the head and the
    bytes that followed it (the start of the body or of the new protocol).
    """

    def __init__(self, limit: int = MAX_HEAD_BYTES) -> None:
        self._buffer = b""
        self._limit = limit
        self._done = False

    def feed(self, data: bytes) -> tuple[ResponseHead, bytes] | None:
        """
        Add C{data}; return C{(head, rest)} once the empty line has arrived,
        else L{None}.

        @raise HeadError: if the head is malformed or longer than the limit.
        """
        if self._done:
            raise HeadError("head already parsed")
        # Only search the new bytes plus the three before them.
        start = max(0, len(self._buffer) - 3)
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self._buffer) > self._limit:
                raise HeadError("response head too long")
            return None
        if end + 4 > self._limit:
            raise HeadError("response head too long")
        self._done = True
        head_bytes, rest = self._buffer[:end], self._buffer[end + 4 :]
        self._buffer = b""
        return parse_head(head_bytes), rest


def parse_head(head: bytes) -> ResponseHead:
    """
    Parse a response head without its final empty line.
    """
    lines = head.split(b"\r\n")
    version, code, phrase = _parse_status(lines[0])
    if len(lines) - 1 > MAX_HEADERS:
        raise HeadError("too many header fields")
    fields = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise HeadError("obsolete line folding")
        fields.append(_parse_field(line))
    return ResponseHead(
        version=version, code=code, phrase=phrase, headers=tuple(fields)
    )


def serialize_head(
    version: bytes, code: int, phrase: bytes, headers: list[tuple[bytes, bytes]]
) -> bytes:
    """
    The wire form of a response head (status line, fields, empty line).
    """
    out = [version, b" %03d " % (code,), phrase, b"\r\n"]
    for name, value in headers:
        out.extend((name, b": ", value, b"\r\n"))
    out.append(b"\r\n")
    return b"".join(out)
