"""A worker's revocation reads are shared (core.keyring.Keyring.current), on the real Redis: requests that arrive
while a GET is out share the next one, and a request never takes the answer of a GET sent before it arrived (so
a revocation announced before a request is always seen by it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.context import AppContext
from core.keyring import Keyring, announce_revocation
from core.keys import Keys


class CountedRedis:
    """The context's Redis, counting GETs; the first GET, once Redis has answered it, waits for `gate`."""

    def __init__(self, redis: Any, *, gated: bool) -> None:
        self.redis = redis
        self.answers: list[bytes | None] = []
        self.gate = asyncio.Event()
        self.first_answered = asyncio.Event()
        if not gated:
            self.gate.set()

    async def get(self, key: str) -> Any:
        value = await self.redis.get(key)
        self.answers.append(value)
        if len(self.answers) == 1:
            self.first_answered.set()
            await self.gate.wait()
        return value


class SharesAnyRead(Keyring):
    """The negative control: a request joins whatever read is out, even one sent before it arrived."""

    _any: asyncio.Future[bool] | None = None

    async def current(self) -> bool:
        if self._any is None or self._any.done():
            self._any = asyncio.ensure_future(self._read_version())
        return await asyncio.shield(self._any)


def _keyring(cls: type[Keyring], ctx: AppContext, redis: CountedRedis) -> Keyring:
    return cls(engine=ctx.engine, redis=redis, clock=ctx.clock,  # type: ignore[arg-type]
               version_key=Keys(ctx.settings.redis_prefix).revocations())


async def test_requests_that_arrive_together_share_a_read(ctx: AppContext) -> None:
    redis = CountedRedis(ctx.redis, gated=False)
    keyring = _keyring(Keyring, ctx, redis)
    assert all(await asyncio.gather(*(keyring.current() for _ in range(50))))
    assert 1 <= len(redis.answers) <= 2  # one GET for the first request, one for the 49 that came while it was out
    assert await keyring.current() and len(redis.answers) <= 3  # a later request sends its own


@pytest.mark.parametrize(("cls", "sees_revocation"), [(Keyring, True), (SharesAnyRead, False)])
async def test_a_request_never_takes_a_read_sent_before_it_arrived(ctx: AppContext, cls: type[Keyring],
                                                                    sees_revocation: bool) -> None:
    redis = CountedRedis(ctx.redis, gated=True)
    keyring = _keyring(cls, ctx, redis)
    before = asyncio.ensure_future(keyring.current())  # its GET is answered, then held back on its way
    await redis.first_answered.wait()
    revoked = str(await announce_revocation(redis=ctx.redis, prefix=ctx.settings.redis_prefix)).encode()
    after = asyncio.ensure_future(keyring.current())  # arrives after the revocation was announced
    await asyncio.sleep(0)
    redis.gate.set()
    assert await before and await after
    assert redis.answers[0] != revoked
    assert (keyring.version == revoked) is sees_revocation, (redis.answers, keyring.version)


async def test_a_cancelled_request_does_not_cancel_the_read_others_wait_for(ctx: AppContext) -> None:
    redis = CountedRedis(ctx.redis, gated=True)
    keyring = _keyring(Keyring, ctx, redis)
    first, second = asyncio.ensure_future(keyring.current()), asyncio.ensure_future(keyring.current())
    await redis.first_answered.wait()
    first.cancel()
    redis.gate.set()
    assert await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await keyring.current()  # and the keyring reads on
