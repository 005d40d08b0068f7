"""
Fuzz target: what a peer hands the sealing code (L{clusternet.sealing}): the
sealed credential in a request's status (L{open_sealed}) and the public key in
its spec (L{load_public_key}).

Feeds, by the first byte:
  - 0: the sealed text, to L{open_sealed} with a fixed key and context;
  - 1: the public key text, to L{load_public_key};
  - 2: raw bytes, sealed form C{v1.<base64url>} made from them, to
    L{open_sealed} (past the base64 check, into the key and the cipher).

Text is the rest decoded as UTF-8 with lone surrogates allowed (a JSON string
may hold them). A crash is: any exception but L{SealingError}; a value opened
that was not sealed to the key (the seed corpus holds one that was).
"""

from __future__ import annotations

import base64
import sys

import atheris  # type: ignore[import-untyped]
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

with atheris.instrument_imports(include=["clusternet"]):
    from clusternet.sealing import SealingError, load_public_key, open_sealed

KEY = X25519PrivateKey.from_private_bytes(bytes(range(32)))
CONTEXT = b"cluster=c1\nrequest=r1"
# What the seed corpus's one real sealed value holds.
SEALED_IN_SEED = b"seed-token"


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    if mode == 2:
        text = "v1." + base64.urlsafe_b64encode(rest).rstrip(b"=").decode("ascii")
    else:
        try:
            text = rest.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return
    try:
        if mode == 1:
            load_public_key(text)
            return
        opened = open_sealed(KEY, text, CONTEXT)
    except SealingError:
        return
    if opened != SEALED_IN_SEED:
        raise AssertionError(f"opened what was not sealed to the key: {opened!r}")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
