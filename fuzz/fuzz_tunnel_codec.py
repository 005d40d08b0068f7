"""
Fuzz target: the tunnel's frame codec (L{clusternet.tunnel._codec}).

Feeds: arbitrary bytes as the stream a peer sends after the tunnel is set up.
The first byte chooses the size of the pieces the stream arrives in.

A crash is: any exception but L{ProtocolError}; a split stream that decodes
to other frames (or another error) than the whole stream; a decoded frame that
does not encode and decode back to itself; a decoder that holds more than one
frame of the limit.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports(include=["clusternet"]):
    from clusternet.tunnel._codec import (
        HEADER_SIZE,
        MIN_FRAME,
        Frame,
        FrameDecoder,
        ProtocolError,
        encode,
    )

LIMIT = MIN_FRAME


def _decode(chunks: list[bytes]) -> tuple[list[Frame], ProtocolError | None]:
    decoder = FrameDecoder(max_frame=LIMIT)
    frames: list[Frame] = []
    for chunk in chunks:
        try:
            frames.extend(decoder.feed(chunk))
        except ProtocolError as e:
            return frames, e
        if decoder.buffered > HEADER_SIZE + LIMIT:
            raise AssertionError(f"decoder holds {decoder.buffered} bytes")
    return frames, None


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    step, stream = data[0] % 32 + 1, data[1:]
    whole, whole_error = _decode([stream])
    pieces = [stream[i : i + step] for i in range(0, len(stream), step)]
    split, split_error = _decode(pieces)
    if (whole_error is None) != (split_error is None):
        raise AssertionError(f"whole: {whole_error!r}, split: {split_error!r}")
    if whole_error is not None and split_error is not None:
        if whole_error.code != split_error.code:
            raise AssertionError(f"{whole_error!r} != {split_error!r}")
        return
    if whole != split:
        raise AssertionError("a split stream decodes to other frames")
    for frame in whole:
        again, error = _decode([encode(frame)])
        if error is not None or again != [frame]:
            raise AssertionError(f"{frame!r} does not round-trip: {error!r}")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
