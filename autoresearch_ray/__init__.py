"""autoresearch_ray: multi-agent research loops on Ray or a process pool.

>>> from autoresearch_ray import load_config, get_executor
>>> with get_executor(load_config("configs/process.yaml")) as ex:   # doctest: +SKIP
...     response = ex.run_query("What is a lease?")
"""

from .brokers import get_message_broker
from .config import ConfigModel, DistributedConfig, load_config
from .errors import AutoresearchError, BadInputError, ConfigError, RetryableAgentError
from .executors import LocalExecutor, ProcessExecutor, RayExecutor, RunCallbacks, get_executor
from .models import Claim, QueryResponse, QueryState

__all__ = [
    "AutoresearchError",
    "BadInputError",
    "Claim",
    "ConfigError",
    "ConfigModel",
    "DistributedConfig",
    "LocalExecutor",
    "ProcessExecutor",
    "QueryResponse",
    "QueryState",
    "RayExecutor",
    "RetryableAgentError",
    "RunCallbacks",
    "get_executor",
    "get_message_broker",
    "load_config",
]

__version__ = "0.1.0"
