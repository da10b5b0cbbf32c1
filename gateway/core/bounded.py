"""Run untrusted work (a chat template, a client's JSON schema) in a worker thread, off the event
loop, and stop it when it overruns its time.

Python cannot kill a thread, but it can raise an exception in one: when the deadline passes, a
watchdog asks the interpreter to raise `Overran` in the worker at its next bytecode boundary (a
loop's backward jump, a call), which unwinds the runaway work wherever it is. The worker clears any
such request once its work has ended, under the same lock, so it never fires in unrelated code.
Long single C calls (one huge string multiplication) are not interruptible: callers bound sizes.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


_REFIRE_SECONDS = 0.05


class Overran(Exception):
    """The work ran past its time limit and was stopped."""


def _set_async_exc(thread_id: int, exception: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception
                                               else ctypes.c_void_p(0))


class _Watch:
    """One bounded run: the worker's thread, and whether it has ended or was told to stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread_id: int | None = None
        self._finished = False
        self._fired = False

    def fire(self) -> bool:
        """Stop the work; True if it still runs (so the watchdog fires again, in case the work
        caught the exception and went on: template probes swallow render errors)."""
        with self._lock:
            if self._finished:
                return False
            self._fired = True
            if self._thread_id is None:
                return False  # still waiting for a worker thread: it will not start
            _set_async_exc(self._thread_id, Overran)
            return True

    def run(self, work: Callable[[], _T]) -> _T:
        with self._lock:
            self._thread_id = threading.get_ident()
            if self._fired:  # its time ran out while it waited for a thread
                self._finished = True
                raise Overran()
        try:
            try:
                return work()
            finally:
                self._end()
        except Overran:
            raise
        except Exception:
            if self._fired:
                raise Overran() from None  # it landed in code that turned it into another error
            raise


    def _end(self) -> None:
        """Mark the work ended and drop a stop asked for but not raised yet, so it never lands in
        the code this thread runs next; a stop raised right here is caught and the end retried."""
        while True:
            try:
                with self._lock:
                    self._finished = True
                    if self._fired:
                        _set_async_exc(threading.get_ident(), None)
                return
            except Overran:
                continue


async def run_bounded(work: Callable[[], _T], seconds: float) -> _T:
    """`work()` in a worker thread, so the event loop goes on; `Overran` after `seconds`.

    The watchdog is not cancelled when the caller stops waiting: the work goes on in its thread
    until it ends or overruns, and stopping it then is still the watchdog's job."""
    watch = _Watch()
    loop = asyncio.get_running_loop()

    def fire() -> None:
        if watch.fire():
            loop.call_later(_REFIRE_SECONDS, fire)

    loop.call_later(seconds, fire)
    return await asyncio.to_thread(watch.run, work)
