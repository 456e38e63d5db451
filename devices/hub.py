"""One hub per RS485 bus: owns its driver, one request at a time, commands before polls."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from devices.driver import BusEndpoint, MeterDriver
from devices.errors import MeterTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")
COMMAND, POLL = 0, 10  # lower runs first


class BusHub:
    """Serialises every request on one bus through a priority queue and a single worker."""

    def __init__(self, bus: BusEndpoint, driver: MeterDriver, request_timeout_s: float = 2.0, frame_gap_s: float = 0.002) -> None:
        self.bus, self.driver = bus, driver
        self.request_timeout_s, self.frame_gap_s = request_timeout_s, frame_gap_s
        self._queue: asyncio.PriorityQueue[tuple[int, int, Callable[[MeterDriver], Awaitable[Any]], asyncio.Future[Any]]] = (
            asyncio.PriorityQueue()
        )
        self._seq = itertools.count()
        self._worker: asyncio.Task[None] | None = None
        self.requests = 0

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"bus {self.bus.gateway}:{self.bus.port}")

    async def stop(self) -> None:
        worker, self._worker = self._worker, None
        # A cancel can be swallowed: on Python 3.11 one that lands as asyncio.timeout expires comes
        # out as TimeoutError, and a driver may catch it. The worker would then wait on its empty
        # queue for ever (seen as a hung poller stop), so cancel again until it has ended.
        while worker is not None and not worker.done():
            worker.cancel()
            await asyncio.wait({worker}, timeout=0.5)
        while not self._queue.empty():
            *_, future = self._queue.get_nowait()
            future.cancel()
        await self.driver.close()

    async def submit(self, op: Callable[[MeterDriver], Awaitable[T]], priority: int = POLL) -> T:
        """Queue `op(driver)` and wait for its result; MeterTimeout if it overruns."""
        self.start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((priority, next(self._seq), op, future))
        return await future

    async def _run(self) -> None:
        while True:
            _, _, op, future = await self._queue.get()
            if future.done():
                continue
            try:
                async with asyncio.timeout(self.request_timeout_s):
                    result = await op(self.driver)
            except TimeoutError as ex:
                await self.driver.close()
                _settle(future, exc=MeterTimeout(f"request on {self.bus.gateway}:{self.bus.port} overran"), cause=ex)
            except Exception as ex:  # noqa: BLE001 - handed to the caller, not swallowed
                _settle(future, exc=ex)
            else:
                _settle(future, result=result)
            self.requests += 1
            if self.frame_gap_s:
                await asyncio.sleep(self.frame_gap_s)


def _settle(future: asyncio.Future[Any], result: Any = None, exc: BaseException | None = None, cause: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        exc.__cause__ = cause or exc.__cause__
        future.set_exception(exc)
    else:
        future.set_result(result)
