"""Hosting a backbone role (coordinator, queue, claim store) as a Ray actor or locally.

Both hosts hand back a handle whose ``handle.method.remote(*args)`` returns a future; ``resolve``
and ``wait_first`` accept either kind of future, so code above this module never asks which host
it runs on. Local handles run calls on their own thread(s), like a Ray actor with the same
``max_concurrency``.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
from collections.abc import Sequence
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


def wait_first(futures: Sequence[Any], timeout: float | None) -> list[Any]:
    """Those of ``futures`` that are done, waiting up to ``timeout`` for at least one."""
    if not futures:
        return []
    if isinstance(futures[0], cf.Future):
        done, _ = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return list(done)
    import ray

    # Ask for every ready ref, not just one: results are aggregated in the order they finish.
    ready, _ = ray.wait(list(futures), num_returns=1, timeout=timeout, fetch_local=False)
    if ready:
        more, _ = ray.wait(list(futures), num_returns=len(futures), timeout=0, fetch_local=False)
        return list(more)
    return []


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
