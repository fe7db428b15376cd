"""Agents: the protocol, the registry and the built-in synthetic agents."""

from .base import Agent, AgentContext
from .registry import register_agent, registered_agents, resolve_agent_type

__all__ = ["Agent", "AgentContext", "register_agent", "registered_agents", "resolve_agent_type"]
