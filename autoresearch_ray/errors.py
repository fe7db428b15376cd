"""One error hierarchy for the whole runtime.

Every error the runtime raises on purpose derives from :class:`AutoresearchError`, so a caller can
catch one type. The CLI maps :class:`BadInputError` subclasses to exit code 2 and everything
else to 1.
"""

from __future__ import annotations

import queue


class AutoresearchError(Exception):
    """Base class of every error raised by autoresearch_ray."""


class BadInputError(AutoresearchError):
    """Something the user supplied (config, query, URL, agent name) cannot be used."""


class ConfigError(BadInputError):
    """A configuration file or override is invalid: bad YAML, unknown key, wrong type or value."""


class UnknownAgentError(ConfigError):
    """An agent type names neither a registered agent nor an importable ``module:Class``."""


class BrokerError(AutoresearchError):
    """A message broker operation failed."""


class UnknownBrokerError(BrokerError, BadInputError):
    """``get_message_broker`` was asked for a broker name it does not know."""


class BrokerUnavailable(BrokerError, BadInputError):
    """The broker's server cannot be reached (e.g. Redis is down or the URL is wrong)."""


class QueueFull(BrokerError, queue.Full):
    """A bounded queue stayed full for longer than the put timeout."""


class QueueEmpty(BrokerError, queue.Empty):
    """No message arrived before the get timeout."""


class MessageDecodeError(AutoresearchError):
    """A payload on a wire is not a valid message (bad JSON, wrong types, oversized, not JSON)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AgentError(AutoresearchError):
    """An agent failed; recorded in the response rather than raised by ``run_query``."""


class RetryableAgentError(AgentError):
    """Raised by an agent for a transient failure (a timeout of a service it calls, say): the
    execution is run again, up to ``agent_retries`` times, before it counts as an error. Any
    other exception is recorded at once."""


class StorageError(AutoresearchError):
    """The claim store could not read or write its database."""


class AckTimeout(AutoresearchError):
    """Claims were published but the claim store did not acknowledge them in time."""


class ExecutorError(AutoresearchError):
    """The executor cannot run (already shut down, backbone actor died, Ray unavailable)."""


class RunInterrupted(AutoresearchError):
    """A run stopped on request (SIGINT/SIGTERM); what was acknowledged is kept and checkpointed
    loops can be resumed with ``--resume RUN_ID``."""
