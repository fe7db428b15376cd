"""Configuration: OmegaConf YAML files plus ``key=value`` overrides, validated by pydantic.

``load_config(path, overrides)`` is the only entry point. Every failure is a :class:`ConfigError`
whose message names the file, the key and what is allowed. With no file, the model defaults are
the embedded default (a local Ray run on the ``ray`` broker), the same as ``configs/default.yaml``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

ExecutorName = Literal["ray", "process"]
BrokerName = Literal["memory", "redis", "ray"]

EXECUTORS: tuple[str, ...] = get_args(ExecutorName)
BROKERS: tuple[str, ...] = get_args(BrokerName)

_MODEL = ConfigDict(extra="forbid", validate_default=True)


class DistributedConfig(BaseModel):
    """How the run is distributed: executor, broker and the limits of the backbone."""

    model_config = _MODEL

    enabled: bool = Field(
        default=True,
        description="false runs agents in threads of the driver (no Ray, no process pool)",
    )
    executor: ExecutorName = "ray"
    message_broker: BrokerName = "ray"
    broker_url: str | None = Field(default=None, description="redis:// or rediss:// URL")
    address: str | None = Field(
        default=None,
        description="Ray cluster to join ('auto', 'host:port', 'ray://...'); unset: a local Ray",
    )
    num_cpus: int = Field(default=2, ge=1, description="CPUs of a local Ray / size of the pool")
    agent_num_cpus: float = Field(default=1.0, gt=0, description="CPUs reserved per agent task")
    agent_workers: int | None = Field(
        default=None,
        ge=1,
        description=(
            "AgentWorker actors (ray executor); null: the cluster's CPUs at start divided by "
            "agent_num_cpus. More than fit makes an autoscaling cluster add nodes; each worker "
            "joins as soon as it is placed"
        ),
    )
    queue_size: int = Field(default=100_000, ge=1, description="capacity of the in-process queues")
    lease_seconds: float = Field(
        default=30.0, gt=0, description="an unacknowledged message is delivered again after this"
    )
    max_deliveries: int = Field(
        default=5, ge=1, description="deliveries before a message goes to the dead-letter list"
    )
    agent_timeout_s: float = Field(default=120.0, gt=0)
    agent_retries: int = Field(
        default=2,
        ge=0,
        description="re-runs of an execution whose worker died or that raised RetryableAgentError",
    )
    ack_timeout_s: float = Field(default=60.0, gt=0)
    batch_size: int = Field(default=1000, ge=1, description="messages per broker round trip")
    worker_pipeline: int = Field(
        default=4,
        ge=1,
        le=64,
        description="agent calls queued per Ray agent worker (hides the call round trip)",
    )
    namespace: str = Field(
        default="autoresearch",
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="prefix of Redis keys and of Ray actor names",
    )
    dashboard: bool = Field(default=False, description="start Ray's dashboard (on 127.0.0.1)")
    allow_insecure_redis: bool = Field(
        default=False,
        description="allow a redis:// URL without credentials to a host beyond loopback",
    )

    @field_validator("broker_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"scheme {scheme or '(none)'!r} is not allowed; allowed: redis://, rediss://, unix://"
            )
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> DistributedConfig:
        broker, executor = self.message_broker, self.executor
        if not self.enabled:
            if broker != "memory":
                raise ValueError(
                    "enabled=false runs in one process and needs message_broker=memory, "
                    f"not {broker!r}"
                )
            return self
        if broker == "memory" and executor == "ray":
            raise ValueError(
                "message_broker='memory' is an in-process queue and cannot cross Ray's actor "
                "processes; with executor='ray' use message_broker 'ray' or 'redis'"
            )
        if broker == "ray" and executor != "ray":
            raise ValueError(
                "message_broker='ray' is backed by a Ray actor and needs executor='ray'; "
                "with executor='process' use 'memory' or 'redis'"
            )
        if broker == "redis" and not self.broker_url:
            raise ValueError("message_broker='redis' needs broker_url (redis://host:port/db)")
        if broker == "redis" and self.broker_url and not self.allow_insecure_redis:
            parts = urlsplit(self.broker_url)
            if parts.scheme == "redis" and parts.password is None and not _loopback(parts.hostname):
                raise ValueError(
                    f"refusing redis://{parts.hostname} without credentials: anyone on the network "
                    "could read and forge claims; use rediss:// or user:password@, or set "
                    "allow_insecure_redis=true"
                )
        if self.address and executor != "ray":
            raise ValueError("address names a Ray cluster and needs executor='ray'")
        return self


def _loopback(host: str | None) -> bool:
    """Whether a URL's host is this machine (localhost, 127.0.0.0/8, ::1) or a unix socket."""
    if not host:
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AgentSpec(BaseModel):
    """One named agent of a run: its type (registered name or ``module:Class``) and parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    type: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        # "- noop" in YAML means an agent named noop of type noop.
        if isinstance(data, str):
            return {"name": data, "type": data}
        if isinstance(data, dict) and "type" not in data and "name" in data:
            return {**data, "type": data["name"]}
        return data


class StorageConfig(BaseModel):
    """Where the claim store keeps its SQLite database."""

    model_config = _MODEL

    path: str = "autoresearch_claims.db"

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("contains a NUL byte")
        if not value.strip():
            raise ValueError("is empty")
        return value

    def resolved(self) -> Path:
        """The absolute path: workers of a Ray cluster do not share the driver's working dir."""
        return Path(self.path).expanduser().resolve()


class CorpusConfig(BaseModel):
    """What research agents search: the standard library's docstrings, or a directory."""

    model_config = _MODEL

    path: str | None = Field(
        default=None, description="directory of .md/.rst/.txt/.py files; unset: the stdlib"
    )
    cache_dir: str = Field(
        default="~/.cache/autoresearch_ray/index", description="where built indexes are kept"
    )

    @field_validator("path", "cache_dir")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("contains a NUL byte")
        return value or None


def _default_agents() -> list[AgentSpec]:
    return [
        AgentSpec(name="synthesizer", type="synthesizer"),
        AgentSpec(name="contrarian", type="contrarian"),
        AgentSpec(name="fact_checker", type="fact_checker"),
    ]


#: An allowed base for config-supplied paths set by whoever runs the process, not the config.
ALLOWED_BASE_ENV = "AUTORESEARCH_ALLOWED_BASE"


class ConfigModel(BaseModel):
    """A whole run's configuration."""

    model_config = _MODEL

    query: str | None = Field(default=None, description="used when the CLI is given no query")
    run_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    loops: int = Field(default=3, ge=1, le=10_000)
    agents: list[AgentSpec] = Field(default_factory=_default_agents, min_length=1)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    distributed_config: DistributedConfig = Field(default_factory=DistributedConfig)
    allowed_base: str | None = Field(
        default=None,
        description=(
            "if set, storage.path, corpus.path and corpus.cache_dir must resolve (symlinks "
            f"followed) inside this directory; {ALLOWED_BASE_ENV} sets one a config cannot lift"
        ),
    )

    @field_validator("agents")
    @classmethod
    def _unique_names(cls, agents: list[AgentSpec]) -> list[AgentSpec]:
        seen: set[str] = set()
        for spec in agents:
            if spec.name in seen:
                raise ValueError(f"agent name {spec.name!r} appears twice; names must be unique")
            seen.add(spec.name)
        return agents

    @model_validator(mode="after")
    def _check_paths_inside_base(self) -> ConfigModel:
        # Resolved here, before anything opens them: `..` and symlinks cannot step outside.
        bases = [b for b in (self.allowed_base, os.environ.get(ALLOWED_BASE_ENV)) if b]
        if "\x00" in "".join(bases):
            raise ValueError("allowed_base contains a NUL byte")
        paths = {
            "storage.path": self.storage.path,
            "corpus.path": self.corpus.path,
            "corpus.cache_dir": self.corpus.cache_dir,
        }
        for base in bases:
            root = Path(base).expanduser().resolve()
            for key, value in paths.items():
                if value is None:
                    continue
                resolved = Path(value).expanduser().resolve()
                if not resolved.is_relative_to(root):
                    raise ValueError(
                        f"{key} {value!r} resolves to {resolved}, outside the allowed base "
                        f"{root}; use a path inside it"
                    )
        return self

    @model_validator(mode="after")
    def _check_agent_types(self) -> ConfigModel:
        # Resolve every agent type now so a typo fails at load, not after Ray has started.
        from .agents.registry import resolve_agent_type

        for spec in self.agents:
            resolve_agent_type(spec.type)
        return self

    def uses_corpus(self) -> bool:
        """Whether any configured agent searches the corpus."""
        from .agents.registry import resolve_agent_type

        return any(getattr(resolve_agent_type(a.type), "uses_corpus", False) for a in self.agents)

    def new_run_id(self) -> str:
        """The configured run id, or a fresh one."""
        return self.run_id or uuid.uuid4().hex[:12]


#: Keys of ``distributed_config`` that may be given bare on the command line (``executor=process``).
SHORT_KEYS = frozenset(DistributedConfig.model_fields) - frozenset(ConfigModel.model_fields)


def load_config(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> ConfigModel:
    """Load a YAML file (or the embedded default), apply ``key=value`` overrides and validate.

    Overrides use OmegaConf's dotted syntax (``distributed_config.num_cpus=4``); keys of
    ``distributed_config`` may be given bare (``executor=process``). ``${oc.env:VAR,default}``
    interpolation works in files and overrides.
    """
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    origin = str(path) if path is not None else "<embedded default>"
    if overrides:
        origin += " with overrides " + " ".join(_redact_override(o) for o in overrides)
    try:
        base = OmegaConf.create({})
        if path is not None:
            base = _read_yaml(Path(path))
        dotlist = [_expand_short_key(item) for item in overrides]
        merged = OmegaConf.merge(base, OmegaConf.from_dotlist(dotlist))
        data = OmegaConf.to_container(merged, resolve=True)
    except ConfigError:
        raise
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        raise ConfigError(f"{origin}: {_first_line(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of keys, not {type(data)}")
    try:
        return ConfigModel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_validation(exc, ConfigModel)}") from None


def _read_yaml(path: Path) -> Any:
    from omegaconf import OmegaConf

    if "\x00" in str(path):
        raise ConfigError("config path contains a NUL byte")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (or not a regular file)")
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{path}: config files must end in .yaml or .yml")
    try:
        loaded = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and OmegaConf errors alike
        raise ConfigError(f"{path}: invalid YAML: {_first_line(exc)}") from None
    if not isinstance(loaded, type(OmegaConf.create({}))):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not a list")
    return loaded


def _expand_short_key(item: str) -> str:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    if "\x00" in item:
        raise ConfigError(f"override {key}: the value contains a NUL byte")
    if key in SHORT_KEYS:
        return f"distributed_config.{key}={value}"
    return item


def _redact_override(item: str) -> str:
    item = item.replace("\x00", "\\x00")
    key, _, value = item.partition("=")
    return f"{key}={redact_url(value)}" if "url" in key else item


def redact_url(url: str | None) -> str:
    """A URL with its password (and user) replaced, safe for logs and error messages."""
    if not url:
        return str(url)
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return parts._replace(netloc=f"***@{host}").geturl()


def describe_validation(exc: ValidationError, model: type[BaseModel]) -> str:
    """One readable line per error: the dotted key, what was wrong and what is allowed."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "<top level>"
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            candidates = allowed + (sorted(SHORT_KEYS) if len(loc) == 1 else [])
            close = difflib.get_close_matches(loc[-1], candidates, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            bare = (
                f"; or a distributed_config key given bare: {', '.join(sorted(SHORT_KEYS))}"
                if len(loc) == 1
                else ""
            )
            lines.append(f"{key}: unknown key{hint}; allowed keys: {', '.join(allowed)}{bare}")
        elif kind == "literal_error":
            got = err.get("input")
            expected = err.get("ctx", {}).get("expected", "")
            lines.append(f"{key}: {got!r} is not allowed; allowed values: {expected}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{key}: {msg} (got {_short(err.get('input'))})")
    return "; ".join(lines)


def _allowed_keys(model: type[BaseModel], loc: Iterable[str]) -> list[str]:
    current: Any = model
    for part in loc:
        if part.isdigit():  # a list index (agents.0) keeps the item type
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        if annotation is not None and getattr(annotation, "__origin__", None) is list:
            annotation = get_args(annotation)[0]
        current = annotation
    return sorted(getattr(current, "model_fields", {}))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
