"""RateLimiter: exact sliding window, retry-after, bounded memory with LRU eviction."""

from __future__ import annotations

import pytest
from fakes import FakeSession

from fastwt.framework import MiddlewareRejected, RateLimiter, create_rate_limit_middleware
from fastwt.framework.ratelimit import client_ip


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limiter(clock: FakeClock, **kwargs: int) -> RateLimiter:
    options = {"max_requests": 3, "window_seconds": 10, "cleanup_interval": 60}
    options.update(kwargs)
    return RateLimiter(clock=clock, **options)


def test_admits_max_requests_then_refuses_until_the_oldest_leaves_the_window() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    assert rl.try_acquire(key="a") is None  # t=0
    clock.advance(2)
    assert rl.try_acquire(key="a") is None  # t=2
    clock.advance(2)
    assert rl.try_acquire(key="a") is None  # t=4
    clock.advance(1)
    assert rl.try_acquire(key="a") == pytest.approx(5.0)  # t=5: oldest (t=0) leaves at 10
    clock.advance(4.5)
    assert rl.try_acquire(key="a") == pytest.approx(0.5)  # t=9.5, refusals do not count
    clock.advance(0.5)
    assert rl.try_acquire(key="a") is None  # t=10: the t=0 session left the window
    # Sliding, not fixed: the window now holds t=2, 4, 10, so t=11 is refused until 12.
    clock.advance(1)
    assert rl.try_acquire(key="a") == pytest.approx(1.0)
    clock.advance(1)
    assert rl.try_acquire(key="a") is None


def test_clients_are_limited_independently() -> None:
    clock = FakeClock()
    rl = limiter(clock, max_requests=1)
    assert rl.try_acquire(key="a") is None
    assert rl.try_acquire(key="a") is not None
    assert rl.try_acquire(key="b") is None
    assert rl.tracked_clients == 2


def test_never_more_than_max_requests_in_any_window() -> None:
    clock = FakeClock()
    rl = limiter(clock, max_requests=5, window_seconds=10)
    admitted: list[float] = []
    for _ in range(2000):  # one attempt every 0.37 s for 740 s
        if rl.try_acquire(key="c") is None:
            admitted.append(clock.now)
        clock.advance(0.37)
    for i in range(len(admitted) - 5):
        assert admitted[i + 5] - admitted[i] >= 10 - 1e-9
    # ...and the limit is reached, not undershot: about 5 per 10 s over 740 s.
    assert len(admitted) >= 5 * 70  # drift: attempts land up to 0.37 s after a slot frees


@pytest.mark.anyio
async def test_middleware_rejects_with_429_and_retry_after() -> None:
    clock = FakeClock()
    rl = limiter(clock, max_requests=2, window_seconds=30)
    session = FakeSession("/", remote_address=("10.0.0.1", 1111))
    await rl(session=session)
    clock.advance(0.25)
    await rl(session=FakeSession("/", remote_address=("10.0.0.1", 2222)))  # same IP, new port
    clock.advance(0.5)
    with pytest.raises(MiddlewareRejected) as caught:
        await rl(session=session)
    assert caught.value.status_code == 429
    assert caught.value.headers == {"retry-after": "30"}  # ceil(29.25)
    clock.advance(29.2)
    with pytest.raises(MiddlewareRejected) as caught:
        await rl(session=session)
    assert caught.value.headers == {"retry-after": "1"}  # never 0
    await rl(session=FakeSession("/", remote_address=("10.0.0.2", 1111)))


def test_default_key_is_the_ip_with_ipv4_mapped_addresses_unified() -> None:
    assert client_ip(FakeSession(remote_address=("192.0.2.1", 5))) == "192.0.2.1"
    assert client_ip(FakeSession(remote_address=("::ffff:192.0.2.1", 5))) == "192.0.2.1"
    assert client_ip(FakeSession(remote_address=("2001:db8::1", 5))) == "2001:db8::1"
    assert client_ip(FakeSession(remote_address=None)) == "unknown"


@pytest.mark.anyio
async def test_custom_key_func() -> None:
    rl = RateLimiter(max_requests=1, key_func=lambda session: session.headers["user"])
    await rl(session=FakeSession(headers={"user": "alice"}, remote_address=("1.1.1.1", 1)))
    await rl(session=FakeSession(headers={"user": "bob"}, remote_address=("1.1.1.1", 1)))
    with pytest.raises(MiddlewareRejected):
        await rl(session=FakeSession(headers={"user": "alice"}, remote_address=("2.2.2.2", 1)))


def test_evicts_only_the_least_recently_seen_client() -> None:
    clock = FakeClock()
    rl = limiter(clock, max_requests=1, max_tracked_ips=3)
    for key in ("a", "b", "c"):
        assert rl.try_acquire(key=key) is None
    assert rl.try_acquire(key="a") is not None  # refused, but "a" is now most recently seen
    assert rl.try_acquire(key="d") is None  # evicts "b", the least recently seen
    assert rl.tracked_clients == 3
    assert rl.try_acquire(key="a") is not None  # still limited
    assert rl.try_acquire(key="c") is not None  # still limited
    assert rl.try_acquire(key="d") is not None  # still limited
    assert rl.try_acquire(key="b") is None  # "b" was forgotten, so it is admitted again


def test_a_million_ips_keep_memory_bounded_and_the_attacker_limited() -> None:
    clock = FakeClock()
    rl = RateLimiter(
        max_requests=5, window_seconds=60, cleanup_interval=300, max_tracked_ips=10_000, clock=clock
    )
    for _ in range(5):
        assert rl.try_acquire(key="attacker") is None
    assert rl.try_acquire(key="attacker") is not None
    largest = 0
    for i in range(1_000_000):
        # Distinct IPs spread over 50 s, all inside one window: none can be cleaned up,
        # so only eviction keeps the table small.
        clock.now = 1000.0 + i * 0.00005
        assert rl.try_acquire(key=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:{i}") is None
        if i % 100 == 0:
            # The attacker keeps hammering and must never get through.
            assert rl.try_acquire(key="attacker") is not None
            largest = max(largest, rl.tracked_clients)
    assert largest <= 10_000
    assert rl.tracked_clients == 10_000
    assert rl.try_acquire(key="attacker") is not None


def test_a_limited_client_is_not_reset_when_the_table_fills() -> None:
    """The reference cleared every client when full; a full table must only evict."""
    clock = FakeClock()
    rl = limiter(clock, max_requests=2, max_tracked_ips=100)
    for _ in range(2):
        rl.try_acquire(key="attacker")
    for i in range(99):
        rl.try_acquire(key=f"user{i}")
    assert rl.tracked_clients == 100
    assert rl.try_acquire(key="attacker") is not None  # touch: most recently seen
    for i in range(99, 150):  # fills past capacity
        rl.try_acquire(key=f"user{i}")
        assert rl.try_acquire(key="attacker") is not None
    assert rl.tracked_clients == 100


def test_cleanup_forgets_idle_clients_every_cleanup_interval() -> None:
    clock = FakeClock()
    rl = limiter(clock, max_requests=1, window_seconds=10, cleanup_interval=60)
    rl.try_acquire(key="idle")
    clock.advance(5)
    rl.try_acquire(key="active")
    clock.advance(50)  # t=55: "idle" expired; no cleanup yet (interval 60)
    rl.try_acquire(key="other")
    assert rl.tracked_clients == 3
    clock.advance(5)  # t=60: cleanup runs, "idle" and "active" both left the window
    rl.try_acquire(key="new")
    assert rl.tracked_clients == 2  # "other" (t=55) is still in its window, "new" added


@pytest.mark.anyio
async def test_exit_forgets_every_client_and_reset() -> None:
    rl = RateLimiter(max_requests=1)
    async with rl as entered:
        assert entered is rl
        assert rl.try_acquire(key="a") is None
        assert rl.try_acquire(key="a") is not None
    assert rl.tracked_clients == 0
    assert rl.try_acquire(key="a") is None
    rl.try_acquire(key="b")
    rl.reset(key="a")
    assert rl.tracked_clients == 1
    rl.reset()
    assert rl.tracked_clients == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_requests": 0},
        {"window_seconds": 0},
        {"cleanup_interval": -1},
        {"max_tracked_ips": 0},
        {"max_requests": 1.5},
        {"max_tracked_ips": True},
    ],
)
def test_invalid_settings_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RateLimiter(**kwargs)  # type: ignore[arg-type]


def test_factory_defaults_match_the_spec() -> None:
    rl = create_rate_limit_middleware()
    assert isinstance(rl, RateLimiter)
    assert (rl.max_requests, rl.window_seconds, rl.max_tracked_ips) == (100, 60, 10_000)
    custom = create_rate_limit_middleware(max_requests=7, window_seconds=3, max_tracked_ips=9)
    assert (custom.max_requests, custom.window_seconds, custom.max_tracked_ips) == (7, 3, 9)
