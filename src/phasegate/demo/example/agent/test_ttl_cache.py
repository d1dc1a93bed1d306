import pytest

from ttl_cache import TTLCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def cache(clock: FakeClock, capacity: int = 3, ttl: float = 10.0) -> TTLCache:
    return TTLCache(capacity, ttl, clock)


@pytest.mark.parametrize("capacity", [0, -1])
def test_rejects_capacity_below_one(clock, capacity):
    with pytest.raises(ValueError):
        TTLCache(capacity, 10.0, clock)


@pytest.mark.parametrize("ttl", [0, -5.0])
def test_rejects_non_positive_ttl(clock, ttl):
    with pytest.raises(ValueError):
        TTLCache(3, ttl, clock)


def test_put_then_get(clock):
    c = cache(clock)
    c.put("a", 1)
    assert c.get("a") == 1


def test_get_missing_returns_default(clock):
    assert cache(clock).get("nope", "fallback") == "fallback"


def test_put_replaces_value(clock):
    c = cache(clock)
    c.put("a", 1)
    c.put("a", 2)
    assert c.get("a") == 2
    assert len(c) == 1


def test_evicts_least_recently_used(clock):
    c = cache(clock, capacity=2)
    c.put("a", 1)
    c.put("b", 2)
    c.put("c", 3)
    assert "a" not in c
    assert c.get("b") == 2 and c.get("c") == 3


def test_get_refreshes_recency(clock):
    c = cache(clock, capacity=2)
    c.put("a", 1)
    c.put("b", 2)
    c.get("a")
    c.put("c", 3)
    assert c.get("a") == 1
    assert "b" not in c


def test_contains_does_not_refresh_recency(clock):
    c = cache(clock, capacity=2)
    c.put("a", 1)
    c.put("b", 2)
    assert "a" in c
    c.put("c", 3)
    assert "a" not in c


def test_entry_alive_before_ttl(clock):
    c = cache(clock, ttl=10.0)
    c.put("a", 1)
    clock.now += 9.999
    assert c.get("a") == 1


def test_entry_expires_exactly_at_ttl(clock):
    c = cache(clock, ttl=10.0)
    c.put("a", 1)
    clock.now += 10.0
    assert c.get("a") is None
    assert "a" not in c


def test_put_restarts_expiry(clock):
    c = cache(clock, ttl=10.0)
    c.put("a", 1)
    clock.now += 8
    c.put("a", 2)
    clock.now += 8
    assert c.get("a") == 2


def test_len_counts_only_live_entries(clock):
    c = cache(clock, ttl=10.0)
    c.put("a", 1)
    clock.now += 5
    c.put("b", 2)
    clock.now += 5
    assert len(c) == 1


def test_purge_returns_number_removed(clock):
    c = cache(clock, ttl=10.0)
    c.put("a", 1)
    c.put("b", 2)
    clock.now += 10
    c.put("c", 3)
    assert c.purge() == 2
    assert len(c) == 1


def test_capacity_one_keeps_newest(clock):
    c = cache(clock, capacity=1)
    c.put("a", 1)
    c.put("b", 2)
    assert "a" not in c and c.get("b") == 2
