"""Provider choice (pure): who is eligible, in what order, and why the others are not."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storaged.client.select import Ask, eligible, why_not
from storaged.errors import ProtocolViolation


def ask(peer: str, price: int = 10, free: int = 1 << 20, max_size: int = 1 << 20,
        lo: int = 10, hi: int = 1000) -> Ask:
    return Ask(bytes(32), peer, price, lo, hi, max_size, free, 0)


def test_cheapest_first_then_most_free_then_peer_id() -> None:
    asks = [ask("d", price=5, free=100_000), ask("c", price=5, free=200_000),
            ask("b", price=1), ask("a", price=5, free=200_000)]
    assert [a.peer_id for a in eligible(asks, size=4096, duration=100, price_max=10)] == [
        "b", "a", "c", "d"]


def test_each_rule_excludes_and_says_why() -> None:
    cases = {"price 11 > price-max 10": ask("p", price=11),
             "free 1000": ask("f", free=1000),
             "max deal 2048": ask("m", max_size=2048),
             "duration 100 outside [200, 1000]": ask("d", lo=200),
             "duration 100 outside [10, 99]": ask("e", hi=99)}
    for reason, a in cases.items():
        assert eligible([a], size=4096, duration=100, price_max=10) == []
        assert reason in why_not(a, size=4096, duration=100, price_max=10)


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 1 << 14)), max_size=12),
       st.integers(0, 20), st.integers(1, 1 << 14))
def test_eligible_is_exactly_the_fitting_asks(terms: list[tuple[int, int]], price_max: int,
                                              size: int) -> None:
    asks = [ask(f"p{i}", price=p, free=f, max_size=f) for i, (p, f) in enumerate(terms)]
    fit = eligible(asks, size=size, duration=100, price_max=price_max)
    assert {a.peer_id for a in fit} == {a.peer_id for a in asks
                                        if a.price <= price_max and a.free >= size}
    assert [a.price for a in fit] == sorted(a.price for a in fit)


def test_ask_parse_checks_fields_and_peer() -> None:
    body = {"provider": bytes(32), "peer_id": "P", "price": 1, "min_duration": 1,
            "max_duration": 2, "max_size": 3, "free": 4, "collateral": 5,
            "min_start_delay": 6}
    assert Ask.parse("P", body).min_start_delay == 6
    with pytest.raises(ProtocolViolation, match="names peer"):
        Ask.parse("Q", body)
    with pytest.raises(ProtocolViolation, match="'price'"):
        Ask.parse("P", {**body, "price": "1"})
    with pytest.raises(ProtocolViolation, match="32 bytes"):
        Ask.parse("P", {**body, "provider": b"x"})
