"""Agent types by registered name or by dotted path ``package.module:Class``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import UnknownAgentError

AgentFactory = Callable[..., Any]
F = TypeVar("F", bound=AgentFactory)

_REGISTRY: dict[str, AgentFactory] = {}
_BUILTIN_MODULES = (
    "autoresearch_ray.agents.synthetic",
    "autoresearch_ray.research.agents",
    "autoresearch_ray.research.llm",
)


def register_agent(name: str) -> Callable[[F], F]:
    """Class decorator: make an agent type available to configs under ``name``."""

    def decorate(factory: F) -> F:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not factory:
            raise ValueError(f"agent type {name!r} is already registered by {existing!r}")
        _REGISTRY[name] = factory
        return factory

    return decorate


def registered_agents() -> list[str]:
    """Names of every registered agent type."""
    _load_builtins()
    return sorted(_REGISTRY)


def resolve_agent_type(type_name: str) -> AgentFactory:
    """The factory for a registered name or a ``module:Class`` path.

    Raises :class:`UnknownAgentError` naming the registered types.
    """
    _load_builtins()
    if type_name in _REGISTRY:
        return _REGISTRY[type_name]
    if ":" in type_name:
        module_name, _, attr = type_name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UnknownAgentError(
                f"agent type {type_name!r}: cannot import module {module_name!r}: {exc}"
            ) from None
        factory = getattr(module, attr, None)
        if factory is None or not callable(factory):
            raise UnknownAgentError(
                f"agent type {type_name!r}: module {module_name!r} has no callable {attr!r}"
            )
        return factory  # type: ignore[no-any-return]
    raise UnknownAgentError(
        f"unknown agent type {type_name!r}; registered: {', '.join(sorted(_REGISTRY))} "
        "(or give a dotted path package.module:Class)"
    )


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
