"""Configuration: files, overrides, interpolation, and a clear error for every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch_ray.config import ConfigModel, load_config, redact_url
from autoresearch_ray.errors import ConfigError, UnknownAgentError

from .conftest import CONFIGS


def test_default_yaml_equals_the_embedded_default() -> None:
    assert load_config(CONFIGS / "default.yaml") == load_config(None) == ConfigModel()


@pytest.mark.parametrize(
    ("name", "executor", "broker"),
    [
        ("default.yaml", "ray", "ray"),
        ("process.yaml", "process", "memory"),
        ("redis.yaml", "ray", "redis"),
    ],
)
def test_shipped_configs_load(name: str, executor: str, broker: str) -> None:
    dist = load_config(CONFIGS / name).distributed_config
    assert (dist.executor, dist.message_broker) == (executor, broker)


def test_overrides_dotted_and_bare_keys() -> None:
    cfg = load_config(
        None,
        [
            "loops=3",
            "executor=process",
            "message_broker=memory",
            "distributed_config.num_cpus=4",
            "agents=[noop,sleep]",
        ],
    )
    assert cfg.loops == 3
    assert cfg.distributed_config.executor == "process"
    assert cfg.distributed_config.num_cpus == 4
    assert [a.name for a in cfg.agents] == ["noop", "sleep"]
    assert cfg.agents[1].type == "sleep"


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/3")
    cfg = load_config(CONFIGS / "redis.yaml")
    assert cfg.distributed_config.broker_url == "redis://127.0.0.1:6390/3"
    monkeypatch.setenv("AR_LOOPS", "5")
    assert load_config(None, ["loops=${oc.env:AR_LOOPS}"]).loops == 5


def test_storage_path_is_resolved_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["storage.path=sub/claims.db"])
    assert cfg.storage.resolved() == tmp_path / "sub" / "claims.db"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["mesage_broker=redis"],
            [
                "mesage_broker: unknown key",
                "did you mean 'message_broker'",
                "allowed keys: agents, allowed_base, corpus, distributed_config",
            ],
        ),
        (
            ["distributed_config.brokr_url=x"],
            ["distributed_config.brokr_url: unknown key", "broker_url"],
        ),
        (
            ["message_broker=redsi"],
            [
                "distributed_config.message_broker: 'redsi' is not allowed",
                "'memory', 'redis' or 'ray'",
            ],
        ),
        (
            ["executor=threads"],
            ["distributed_config.executor: 'threads' is not allowed", "'ray' or 'process'"],
        ),
        (["loops=many"], ["loops:", "valid integer", "'many'"]),
        (["loops=0"], ["loops:", "greater than or equal to 1"]),
        (["executor=ray", "message_broker=memory"], ["cannot cross Ray"]),
        (["executor=process", "message_broker=ray"], ["needs executor='ray'"]),
        (["message_broker=redis", "broker_url=null"], ["needs broker_url"]),
        (["message_broker=redis", "broker_url=http://x"], ["scheme 'http' is not allowed"]),
        (["executor=process", "message_broker=memory", "address=auto"], ["needs executor='ray'"]),
        (["enabled=false"], ["enabled=false", "message_broker=memory"]),
        (["storage.path=a\x00b"], ["storage.path", "NUL"]),
        (["agents=[noop,noop]"], ["appears twice"]),
        (
            ["agents=[{name: a, type: noop, colour: red}]"],
            ["agents.0.colour: unknown key", "allowed keys: name, params, type"],
        ),
        (["loops"], ["not of the form key=value"]),
    ],
)
def test_bad_overrides_name_the_key_and_what_is_allowed(
    overrides: list[str], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    message = str(info.value)
    for fragment in expected:
        assert fragment in message, message


def test_unknown_agent_type_lists_registered_ones() -> None:
    with pytest.raises(UnknownAgentError, match=r"unknown agent type 'serch'.*registered: .*noop"):
        load_config(None, ["agents=[{name: a, type: serch}]"])
    with pytest.raises(UnknownAgentError, match="cannot import module 'no_such_module'"):
        load_config(None, ["agents=[{name: a, type: 'no_such_module:Agent'}]"])
    cfg = load_config(
        None, ["agents=[{name: a, type: 'autoresearch_ray.agents.synthetic:NoopAgent'}]"]
    )
    assert cfg.agents[0].type.endswith(":NoopAgent")


def test_bad_files(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("loops: [1, 2\nagents: {")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        load_config(bad_yaml)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(listing)
    wrong = tmp_path / "conf.txt"
    wrong.write_text("loops: 1\n")
    with pytest.raises(ConfigError, match=r"\.yaml or \.yml"):
        load_config(wrong)
    typo = tmp_path / "typo.yaml"
    typo.write_text("distributed_config:\n  exector: ray\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: distributed_config\.exector: unknown key"):
        load_config(typo)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("redis://localhost/0", True),
        ("redis://[::1]:6379/0", True),
        ("redis://10.0.0.5:6379/0", False),
        ("redis://cache.example.com:6379/0", False),
        ("redis://:secret@10.0.0.5:6379/0", True),
        ("rediss://10.0.0.5:6379/0", True),
    ],
)
def test_unauthenticated_redis_beyond_loopback_is_refused(url: str, allowed: bool) -> None:
    overrides = ["message_broker=redis", f"broker_url={url}"]
    if allowed:
        assert load_config(None, overrides).distributed_config.broker_url == url
        return
    with pytest.raises(ConfigError, match=r"refusing redis://.* without credentials"):
        load_config(None, overrides)
    explicit = load_config(None, [*overrides, "allow_insecure_redis=true"])
    assert explicit.distributed_config.allow_insecure_redis


def test_credentials_are_redacted_in_errors() -> None:
    url = "redis://user:s3cret@127.0.0.1:6379/0"
    assert "s3cret" not in redact_url(url)
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"broker_url={url}", "loops=x"])
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize("key", ["storage.path", "corpus.path", "corpus.cache_dir"])
def test_a_nul_byte_in_any_configured_path_is_refused(key: str) -> None:
    with pytest.raises(ConfigError, match="NUL"):
        load_config(None, [f"{key}=data\x00/../../etc/passwd"])


def test_paths_must_stay_inside_the_allowed_base(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "data").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (base / "escape").symlink_to(outside)
    inside = [f"allowed_base={base}", f"corpus.cache_dir={base / 'cache'}"]
    cfg = load_config(None, [*inside, f"storage.path={base / 'data' / 'claims.db'}"])
    assert cfg.storage.resolved() == base / "data" / "claims.db"
    for escaping in (base / ".." / "outside" / "claims.db", base / "escape" / "claims.db"):
        with pytest.raises(ConfigError, match=r"storage.path .* outside the allowed base"):
            load_config(None, [*inside, f"storage.path={escaping}"])
    with pytest.raises(ConfigError, match=r"corpus\.path"):
        load_config(None, [*inside, f"corpus.path={outside}"])


def test_the_operator_s_base_cannot_be_lifted_by_a_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoresearch_ray.config import ALLOWED_BASE_ENV

    monkeypatch.setenv(ALLOWED_BASE_ENV, str(tmp_path / "jail"))
    elsewhere = [f"allowed_base={tmp_path}", f"corpus.cache_dir={tmp_path / 'jail'}"]
    with pytest.raises(ConfigError, match="outside the allowed base"):
        load_config(None, [*elsewhere, f"storage.path={tmp_path / 'claims.db'}"])
    load_config(None, [*elsewhere, f"storage.path={tmp_path / 'jail' / 'claims.db'}"])
