"""
Receive-window auto-tuning of the sans-IO session machine: a stream's window
grows while its whole window is consumed within two round trips of the carrier,
and never past C{max_window}.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.internet.task import Clock

from clusternet.tunnel import Hello, MemoryLink, Role, SessionConfig, TunnelSession
from clusternet.tunnel._machine import (
    GROWTH_INTERVAL,
    MIN_AUTO_WINDOW,
    ROUND_TRIPS_TO_GROW,
    DataReceived,
    Event,
    SessionMachine,
    SessionTerminated,
    StreamOpenRequested,
    StreamReset,
)

WINDOW = 64 * 1024
RTT = 0.010


class Time:
    """
    A clock the test moves by hand.
    """

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def exchange(a: SessionMachine, b: SessionMachine) -> tuple[list[Event], list[Event]]:
    """
    Deliver what each side queued to the other until both are quiet; the
    events each side saw.
    """
    seen_a: list[Event] = []
    seen_b: list[Event] = []
    while True:
        to_b = b"".join(bytes(chunk) for chunk in a.data_to_send())
        to_a = b"".join(bytes(chunk) for chunk in b.data_to_send())
        if not to_a and not to_b:
            return seen_a, seen_b
        if to_b:
            seen_b += b.receive(to_b)
        if to_a:
            seen_a += a.receive(to_a)


def stream_pair(
    time: Time,
    max_window: int = 8 * WINDOW,
    rtt: float | None = RTT,
    window: int = WINDOW,
) -> tuple[SessionMachine, SessionMachine, int]:
    """
    A hub (acceptor, receiving, with an initial window of C{window}) and an
    agent (dialer, sending) with one open stream: hub, agent, stream id.
    """
    hub = SessionMachine(
        Role.ACCEPTOR,
        Hello(initial_window=window),
        max_window=max_window,
        clock=time,
    )
    agent = SessionMachine(Role.DIALER, Hello(initial_window=WINDOW), clock=time)
    exchange(hub, agent)
    stream_id = agent.open_stream("target:1")
    hub_events, _ = exchange(hub, agent)
    assert [type(e) for e in hub_events] == [StreamOpenRequested]
    hub.accept_stream(stream_id)
    exchange(hub, agent)
    if rtt is not None:
        for _ in range(ROUND_TRIPS_TO_GROW):
            hub.rtt_sample(rtt)
    return hub, agent, stream_id


def send_window_per_round_trip(
    hub: SessionMachine, agent: SessionMachine, stream_id: int, time: Time, rounds: int
) -> list[int]:
    """
    A sender limited by its window only: every round trip it sends all the
    window allows, and the hub consumes it at once.  The agent's send window
    after each round trip.
    """
    windows = []
    for _ in range(rounds):
        carry_a_window(hub, agent, stream_id)
        time.now += RTT
        windows.append(agent.send_window(stream_id))
    return windows


def carry_a_window(hub: SessionMachine, agent: SessionMachine, stream_id: int) -> None:
    """
    The agent sends all its window allows; the hub consumes it at once and
    its credit arrives.
    """
    agent.send_data(stream_id, b"x" * agent.send_window(stream_id))
    hub_events, _ = exchange(hub, agent)
    for event in hub_events:
        assert isinstance(event, DataReceived)
        hub.consumed(stream_id, len(event.data))
    exchange(hub, agent)


def test_a_window_limited_stream_doubles_its_window_up_to_the_maximum() -> None:
    time = Time()
    hub, agent, stream_id = stream_pair(time, max_window=8 * WINDOW)
    windows = send_window_per_round_trip(hub, agent, stream_id, time, 24)
    # Its rate is measured over four round trips (longer than GROWTH_INTERVAL
    # here), and each time it carried a window per round trip: the window
    # doubles every four or five round trips, up to the maximum.
    assert 4 * RTT > GROWTH_INTERVAL
    assert windows == sorted(windows)
    assert sorted(set(windows)) == [WINDOW, 2 * WINDOW, 4 * WINDOW, 8 * WINDOW]
    assert windows[:4] == [WINDOW] * 4
    assert windows[-5:] == [8 * WINDOW] * 5
    assert all(4 <= windows.count(w) <= 5 for w in (WINDOW, 2 * WINDOW, 4 * WINDOW))


def test_a_window_is_not_grown_before_enough_round_trips() -> None:
    time = Time()
    hub, agent, stream_id = stream_pair(time, rtt=None)
    for _ in range(ROUND_TRIPS_TO_GROW - 1):
        hub.rtt_sample(RTT)
    assert send_window_per_round_trip(hub, agent, stream_id, time, 8) == [WINDOW] * 8


def test_bursts_within_the_interval_are_no_sign_of_a_fast_link() -> None:
    """
    On a carrier with a tiny round trip, windows consumed back to back in one
    burst (as from one large read) do not make it grow: the rate counts over
    GROWTH_INTERVAL.
    """
    time = Time()
    hub, agent, stream_id = stream_pair(time, rtt=0.0002)
    windows = []
    for _ in range(20):
        # Two windows at once every millisecond: 128 KiB/ms, which a window
        # of 64 KiB carries over a round trip of 0.2 ms two and a half times
        # over.
        carry_a_window(hub, agent, stream_id)
        carry_a_window(hub, agent, stream_id)
        time.now += 0.001
        windows.append(agent.send_window(stream_id))
    assert windows == [WINDOW] * 20


def test_a_link_limited_stream_keeps_its_window() -> None:
    """
    A window consumed over more than two round trips was not what held the
    sender back: no growth.
    """
    time = Time()
    hub, agent, stream_id = stream_pair(time)
    for _ in range(20):
        # The link delivers an eighth of a window every half round trip.
        agent.send_data(stream_id, b"x" * (WINDOW // 8))
        hub_events, _ = exchange(hub, agent)
        for event in hub_events:
            assert isinstance(event, DataReceived)
            hub.consumed(stream_id, len(event.data))
        exchange(hub, agent)
        time.now += RTT / 2
    assert agent.send_window(stream_id) == WINDOW


def test_without_a_round_trip_windows_keep_their_initial_size() -> None:
    time = Time()
    hub, agent, stream_id = stream_pair(time, rtt=None)
    assert send_window_per_round_trip(hub, agent, stream_id, time, 4) == [WINDOW] * 4


def test_a_maximum_below_the_initial_window_turns_growing_off() -> None:
    time = Time()
    hub, agent, stream_id = stream_pair(time, max_window=WINDOW // 2)
    assert hub.max_window == WINDOW
    assert send_window_per_round_trip(hub, agent, stream_id, time, 4) == [WINDOW] * 4


def test_the_smallest_round_trip_counts() -> None:
    hub = SessionMachine(Role.ACCEPTOR, Hello(initial_window=WINDOW), clock=Time())
    for sample in (0.030, 0.010, 0.020, -1.0):
        hub.rtt_sample(sample)
    assert hub.min_rtt == 0.010


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=12 * WINDOW),  # bytes offered
            st.integers(min_value=0, max_value=4 * WINDOW),  # bytes consumed
            st.floats(min_value=0, max_value=5 * RTT),  # time passing
        ),
        max_size=80,
    )
)
def test_any_schedule_keeps_flow_control_whole(
    steps: list[tuple[int, int, float]],
) -> None:
    """
    Whatever the sender offers, the receiver consumes and the clock does:
    the sender never overruns the receiver's window, windows stay between
    MIN_AUTO_WINDOW and the maximum, and the sender's window is the
    receiver's limit less what it holds and has not credited yet.
    """
    assert MIN_AUTO_WINDOW == WINDOW
    time = Time()
    hub, agent, stream_id = stream_pair(time, max_window=16 * WINDOW, window=4 * WINDOW)
    held = 0
    for offered, consume, elapsed in steps:
        agent.send_data(stream_id, b"x" * offered)
        hub_events, agent_events = exchange(hub, agent)
        for event in hub_events + agent_events:
            assert not isinstance(event, (StreamReset, SessionTerminated)), event
            if isinstance(event, DataReceived):
                held += len(event.data)
        take = min(consume, held)
        if take:
            hub.consumed(stream_id, take)
            held -= take
        exchange(hub, agent)
        time.now += elapsed
        limit = hub._streams[stream_id].window_limit
        assert MIN_AUTO_WINDOW <= limit <= 16 * WINDOW
        assert held <= limit
        unacknowledged = hub._streams[stream_id].unacknowledged
        # What the window allows is either still the sender's to send, held by
        # the receiver, or consumed and not yet credited: nothing is lost
        # and nothing granted twice.
        assert agent.send_window(stream_id) + held + unacknowledged == limit


def test_a_slow_link_shrinks_the_window_to_the_floor_and_keeps_it_full() -> None:
    """
    A stream that carries far less than its window per round trip (a slow
    uplink) gets its window cut (by up to half at a time, out of the credit
    it is owed) until MIN_AUTO_WINDOW: what it can queue
    ahead of other streams' messages shrinks with it, and the sender still
    always has credit (the link, not the window, sets the pace).
    """
    time = Time()
    hub, agent, stream_id = stream_pair(time, window=8 * WINDOW, rtt=0.001)
    limits = []
    for _ in range(200):
        # 16 KiB every 4 ms: 4 MiB/s, 4 KiB per round trip of 1 ms.
        assert agent.send_window(stream_id) >= 16 * 1024
        agent.send_data(stream_id, b"x" * (16 * 1024))
        hub_events, _ = exchange(hub, agent)
        for event in hub_events:
            assert isinstance(event, DataReceived)
            hub.consumed(stream_id, len(event.data))
        exchange(hub, agent)
        time.now += 0.004
        limits.append(hub._streams[stream_id].window_limit)
    assert limits == sorted(limits, reverse=True)
    assert limits[0] == 8 * WINDOW
    assert limits[-1] == MIN_AUTO_WINDOW


def test_an_idle_stream_is_not_judged_by_its_idle_time() -> None:
    """
    Credit after a long pause does not count as a slow link.
    """
    time = Time()
    hub, agent, stream_id = stream_pair(time, window=8 * WINDOW, rtt=0.001)
    for _ in range(5):
        carry_a_window(hub, agent, stream_id)
        time.now += 1.0
    assert hub._streams[stream_id].window_limit == 8 * WINDOW


def deliver(link: MemoryLink, side: int) -> None:
    """
    Deliver what the end C{side} has written so far to the other end.
    """
    transport = link.transports[side]
    data, transport.written = b"".join(transport.written), []
    if data:
        link.ends[1 - side].data_received(data)


def test_sessions_measure_the_carrier_round_trip_from_the_handshake_on() -> None:
    """
    Each session PINGs as soon as the handshake is done, and its PONG gives
    the machine the round trip that windows grow by; so do keepalive PINGs.
    """
    clock = Clock()
    config = SessionConfig(ping_interval=5.0)
    hub = TunnelSession(Role.ACCEPTOR, clock, config=config)
    agent = TunnelSession(Role.DIALER, clock, config=config)
    link = MemoryLink(agent, hub)
    deliver(link, 0)  # the agent's HELLO: the hub's handshake is done; it PINGs
    deliver(link, 1)  # HELLO and PING: the agent PONGs and PINGs
    clock.advance(0.004)
    deliver(link, 0)  # the hub has its PONG after 4 ms
    clock.advance(0.002)
    deliver(link, 1)  # the agent has its PONG after 6 ms
    assert (hub._machine.min_rtt, agent._machine.min_rtt) == (0.004, 0.006)
    # Each PINGs again on its PONG until it has ROUND_TRIPS_TO_GROW of them.
    clock.advance(0.001)
    link.pump()
    assert hub._machine.rtt_samples == agent._machine.rtt_samples == 3
    assert (hub._machine.min_rtt, agent._machine.min_rtt) == (0.0, 0.0)
    assert hub._ping is agent._ping is None
    clock.advance(5.0)  # keepalive PINGs count too
    link.pump()
    assert hub._machine.rtt_samples == agent._machine.rtt_samples == 4
