"""Leases and fencing: one holder at a time, tokens that only grow, deposed writers refused.

Expiry uses real time with short TTLs and polls for the condition (no bare sleeps).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from dora.store import Fence, FencedOut, Lease, NotFound, Patch, Store, Write
from tests.conformance.helpers import key, new, wait_until

LONG = 60.0  # a TTL no test outlives
SHORT = 1.0  # long enough that a loaded machine still sees it valid at first


async def wait_expired(lease: Lease) -> None:
    async def passed() -> bool:
        return time.time() > lease.expires_at + 0.05

    await wait_until(passed, what=f"lease {lease.name} to expire")


async def test_acquire_refuse_renew_release(store: Store) -> None:
    assert await store.get_lease("scheduler/z1") is None
    began = time.time()
    held = await store.acquire_lease("scheduler/z1", "a", LONG)
    assert held is not None
    assert (held.name, held.holder) == ("scheduler/z1", "a")
    assert held.token >= 1
    assert held.expires_at >= began + LONG - 1
    assert await store.get_lease("scheduler/z1") == held

    assert await store.acquire_lease("scheduler/z1", "b", LONG) is None  # still valid

    again = await store.acquire_lease("scheduler/z1", "a", LONG)  # the holder renews
    assert again is not None and again.token == held.token
    assert again.expires_at >= held.expires_at
    renewed = await store.renew_lease(again, LONG * 2)
    assert renewed is not None and renewed.token == held.token
    assert renewed.expires_at > held.expires_at
    assert (await store.get_lease("scheduler/z1")) == renewed

    await store.release_lease(renewed)
    released = await store.get_lease("scheduler/z1")
    assert released is not None and released.token == held.token
    assert released.expires_at <= time.time()
    assert await store.renew_lease(renewed, LONG) is None

    taken = await store.acquire_lease("scheduler/z1", "b", LONG)
    assert taken is not None and taken.token > held.token
    await store.release_lease(renewed)  # a stale release changes nothing
    assert await store.get_lease("scheduler/z1") == taken


async def test_leases_are_independent_by_name(store: Store) -> None:
    a = await store.acquire_lease("scheduler/z1", "a", LONG)
    b = await store.acquire_lease("scheduler/z2", "b", LONG)
    assert a is not None and b is not None


async def test_tokens_are_never_reused_after_release(store: Store) -> None:
    tokens = []
    for holder in ("a", "a", "b", "a"):
        lease = await store.acquire_lease("l", holder, LONG)
        assert lease is not None
        tokens.append(lease.token)
        await store.release_lease(lease)
    assert tokens == sorted(tokens) and len(set(tokens)) == 4


async def test_takeover_after_expiry_gets_a_higher_token_and_fences_out_the_old(
    store: Store,
) -> None:
    k = key("web")
    await store.create(new(k), actor="alice")
    old = await store.acquire_lease("scheduler/z1", "a", SHORT)
    assert old is not None
    assert await store.acquire_lease("scheduler/z1", "b", LONG) is None
    taken: list[Lease] = []

    async def b_takes_over() -> bool:
        lease = await store.acquire_lease("scheduler/z1", "b", LONG)
        taken.extend([lease] if lease else [])
        return lease is not None

    await wait_until(b_takes_over, what="the expired lease to be taken over")
    new_lease = taken[0]
    assert new_lease.token > old.token
    assert await store.renew_lease(old, LONG) is None
    with pytest.raises(FencedOut):
        await store.update(
            k, Patch(computed={"by": "a"}), expected_version=1, actor="a", fence=old.fence
        )
    assert (await store.get(k)).version == 1
    done = await store.update(
        k, Patch(computed={"by": "b"}), expected_version=1, actor="b", fence=new_lease.fence
    )
    assert done.computed == {"by": "b"}
    await store.release_lease(old)
    assert await store.get_lease("scheduler/z1") == new_lease


async def test_an_expired_lease_fences_out_even_when_nobody_took_it(store: Store) -> None:
    k = key("web")
    await store.create(new(k), actor="alice")
    lease = await store.acquire_lease("l", "a", SHORT)
    assert lease is not None
    await wait_expired(lease)
    with pytest.raises(FencedOut):
        await store.update(
            k, Patch(desired="drain"), expected_version=1, actor="a", fence=lease.fence
        )
    assert await store.renew_lease(lease, LONG) is None  # expired means gone
    again = await store.acquire_lease("l", "a", LONG)  # a new tenure, a new token
    assert again is not None and again.token > lease.token
    with pytest.raises(FencedOut):
        await store.update(
            k, Patch(desired="drain"), expected_version=1, actor="a", fence=lease.fence
        )
    await store.update(k, Patch(desired="drain"), expected_version=1, actor="a", fence=again.fence)


async def test_every_kind_of_write_honours_the_fence(store: Store) -> None:
    lease = await store.acquire_lease("l", "a", LONG)
    assert lease is not None
    stale = Fence("l", lease.token - 1)
    unknown = Fence("no-such-lease", lease.token)
    k = key("web")
    for fence in (stale, unknown):
        head = await store.head("z1")
        with pytest.raises(FencedOut):
            await store.create(new(k), actor="a", fence=fence)
        with pytest.raises(FencedOut):
            await store.batch([Write(k, new=new(k))], actor="a", fence=fence)
        assert await store.head("z1") == head
        with pytest.raises(NotFound):
            await store.get(k)

    await store.create(new(k), actor="a", fence=lease.fence)
    await store.batch(
        [Write(k, patch=Patch(desired="pause"), expected_version=1)], actor="a", fence=lease.fence
    )
    with pytest.raises(FencedOut):
        await store.update(k, Patch(desired="run"), expected_version=2, actor="a", fence=stale)
    with pytest.raises(FencedOut):
        await store.delete(k, actor="a", fence=stale)
    assert (await store.get(k)).version == 2
    await store.delete(k, actor="a", fence=lease.fence)
    with pytest.raises(NotFound):
        await store.get(k)


# ------------------------------------------------------------------ one-shot claims


async def test_a_name_is_claimed_once_while_its_claim_lives(store: Store) -> None:
    assert await store.claim_once("token/a", LONG) is True
    assert await store.claim_once("token/a", LONG) is False
    assert await store.claim_once("token/a", LONG) is False
    assert await store.claim_once("token/b", LONG) is True  # names are independent


async def test_concurrent_claims_of_one_name_have_one_winner(store: Store) -> None:
    wins = await asyncio.gather(*(store.claim_once("token/race", LONG) for _ in range(12)))
    assert wins.count(True) == 1, wins


async def test_claims_and_leases_do_not_share_names(store: Store) -> None:
    lease = await store.acquire_lease("token/x", "a", LONG)
    assert lease is not None
    assert await store.claim_once("token/x", LONG) is True
    assert await store.acquire_lease("token/x", "a", LONG) is not None  # still a's
    assert await store.acquire_lease("token/x", "b", LONG) is None


async def test_an_expired_claim_is_forgotten(store: Store) -> None:
    claimed_at = time.time()
    assert await store.claim_once("token/short", SHORT) is True
    assert await store.claim_once("token/short", SHORT) is False

    async def claimable_again() -> bool:
        return await store.claim_once("token/short", SHORT)

    # CQL drops the row with a whole-second TTL, so allow it a few seconds.
    await wait_until(claimable_again, within=10, what="the expired claim to be forgotten")
    assert time.time() >= claimed_at + SHORT  # not before it expired


@pytest.mark.parametrize(("name", "ttl"), [("", LONG), ("token/a", 0.0), ("token/a", -1.0)])
async def test_a_claim_needs_a_name_and_a_positive_ttl(store: Store, name: str, ttl: float) -> None:
    with pytest.raises(ValueError):
        await store.claim_once(name, ttl)
