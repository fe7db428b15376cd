"""Hosting a backbone role (coordinator, queue, claim store) as a Ray actor or locally.

Both hosts hand back a handle whose ``handle.method.remote(*args)`` returns a future;
``resolve`` and ``CompletionQueue`` accept either kind of future, so code above this module never
asks which host it runs on. Local handles run calls on their own thread(s), like a Ray actor
with the same ``max_concurrency``.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import queue
from typing import Any


class _LocalMethod:
    def __init__(self, handle: LocalActorHandle, name: str) -> None:
        self._handle = handle
        self._name = name

    def remote(self, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Call the method on the handle's thread; returns a future."""
        return self._handle._submit(self._name, args, kwargs)


class LocalActorHandle:
    """An object behind a thread pool, called as ``handle.method.remote(...)`` like a Ray actor."""

    def __init__(self, instance: Any, max_concurrency: int = 1, name: str = "actor") -> None:
        self._instance = instance
        self._name = name
        self._pool = cf.ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix=name)

    def __getattr__(self, name: str) -> _LocalMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        if not callable(getattr(self._instance, name, None)):
            raise AttributeError(f"{type(self._instance).__name__} has no method {name!r}")
        return _LocalMethod(self, name)

    def _submit(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> cf.Future[Any]:
        return self._pool.submit(getattr(self._instance, name), *args, **kwargs)

    def _kill(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def resolve(future: Any, timeout: float | None = None) -> Any:
    """The value of a local future or a Ray ``ObjectRef``, re-raising the call's own exception."""
    if isinstance(future, cf.Future):
        return future.result(timeout)
    import ray

    try:
        return ray.get(future, timeout=timeout)
    except ray.exceptions.RayTaskError as exc:
        # Surface the actor method's own exception (an AckTimeout, say), not Ray's wrapper.
        cause = exc.as_instanceof_cause()
        if isinstance(cause, Exception):
            raise cause from None
        raise


class CompletionQueue:
    """Futures (local or Ray ``ObjectRef``) reported in the order they complete.

    Each future registers one done-callback, so taking n results costs O(n), where calling
    ``concurrent.futures.wait`` or ``ray.wait`` over the pending set each time costs O(n^2).
    """

    def __init__(self) -> None:
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def add(self, future: Any) -> None:
        """Watch a future."""
        if isinstance(future, cf.Future):
            future.add_done_callback(self._done.put)
        else:
            # A Ray ObjectRef: its future() is resolved by Ray's core worker when the object is.
            future.future().add_done_callback(lambda _f, ref=future: self._done.put(ref))

    def wait(self, timeout: float | None) -> list[Any]:
        """Futures completed since the last call, waiting up to ``timeout`` for at least one."""
        try:
            first = self._done.get(timeout=timeout) if timeout != 0 else self._done.get_nowait()
        except queue.Empty:
            return []
        out = [first]
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out


class Host(abc.ABC):
    """Where backbone roles live."""

    @abc.abstractmethod
    def spawn(
        self,
        cls: type,
        *args: Any,
        name: str,
        max_concurrency: int = 1,
        options: dict[str, Any] | None = None,
    ) -> Any:
        """Create ``cls(*args)`` and return its handle."""

    @abc.abstractmethod
    def kill(self, handle: Any) -> None:
        """Stop a handle's host; idempotent."""


class ThreadHost(Host):
    """Roles as objects in this process, each behind its own thread pool."""

    def spawn(
        self,
        cls: type,
        *args: Any,
        name: str,
        max_concurrency: int = 1,
        options: dict[str, Any] | None = None,
    ) -> LocalActorHandle:
        """Build the object here."""
        return LocalActorHandle(cls(*args), max_concurrency=max_concurrency, name=name)

    def kill(self, handle: Any) -> None:
        """Shut the handle's threads down."""
        handle._kill()


class RayHost(Host):
    """Roles as Ray actors (``ray.remote(cls).options(...)`` in this one place)."""

    def spawn(
        self,
        cls: type,
        *args: Any,
        name: str,
        max_concurrency: int = 1,
        options: dict[str, Any] | None = None,
    ) -> Any:
        """Start an actor; by default it reserves no CPU, so agents get every core."""
        import ray

        opts: dict[str, Any] = {"num_cpus": 0, "max_concurrency": max_concurrency}
        opts.update(options or {})
        return ray.remote(cls).options(**opts).remote(*args)

    def kill(self, handle: Any) -> None:
        """Kill the actor; one already dead is fine."""
        import ray

        try:
            ray.kill(handle)
        except Exception:  # dead already, or Ray is gone: nothing left to stop
            pass
