"""Executors: ``RayExecutor`` (native), ``ProcessExecutor`` (multiprocessing) and ``LocalExecutor``
(``enabled: false``), all running the same loop; ``get_executor`` picks one from a config."""

from __future__ import annotations

from ..config import EXECUTORS, ConfigModel
from ..errors import ConfigError
from .base import BaseExecutor
from .callbacks import RunCallbacks
from .local_executor import LocalExecutor
from .process_executor import ProcessExecutor
from .ray_executor import RayExecutor

__all__ = [
    "BaseExecutor",
    "LocalExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "RunCallbacks",
    "get_executor",
]


def get_executor(config: ConfigModel) -> BaseExecutor:
    """The executor a config asks for (not yet started)."""
    dist = config.distributed_config
    if not dist.enabled:
        return LocalExecutor(config)
    if dist.executor == "ray":
        return RayExecutor(config)
    if dist.executor == "process":
        return ProcessExecutor(config)
    raise ConfigError(f"unknown executor {dist.executor!r}; allowed: {', '.join(EXECUTORS)}")
