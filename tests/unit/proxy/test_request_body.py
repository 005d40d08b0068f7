"""
The streaming request body keeps the IBodyProducer contract: once stopped, the
Deferred of startProducing never fires (Twisted's client logs a critical error
when it does after the response arrived).
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase

from clusternet.proxy._server import RequestBody


class Consumer:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def registerProducer(self, producer: object, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass


def body() -> RequestBody:
    return RequestBody(10, lambda: None, lambda: None, lambda: None)


class RequestBodyTests(SynchronousTestCase):
    def test_stopped_never_fires(self) -> None:
        producer = body()
        consumer = Consumer()
        finished = producer.startProducing(consumer)  # type: ignore[arg-type]
        producer.data_received(b"abc")
        producer.stopProducing()
        self.assertNoResult(finished)
        producer.data_received(b"def")
        producer.body_done()
        self.assertNoResult(finished)
        assert consumer.data == [b"abc"]

    def test_cancelled_fails_with_cancelled(self) -> None:
        producer = body()
        finished = producer.startProducing(Consumer())  # type: ignore[arg-type]
        finished.cancel()
        self.failureResultOf(finished, CancelledError)

    def test_all_of_it_fires(self) -> None:
        producer = body()
        consumer = Consumer()
        finished = producer.startProducing(consumer)  # type: ignore[arg-type]
        producer.data_received(b"0123456789")
        producer.body_done()
        self.successResultOf(finished)
        assert b"".join(consumer.data) == b"0123456789"
