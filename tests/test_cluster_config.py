"""`cluster.yaml` and its local twin pass Ray's own cluster-config validation, and the
application config for a cluster joins it instead of starting one."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoresearch_ray.config import load_config

from .conftest import CONFIGS, REPO


def launcher_config(path: Path) -> dict[str, Any]:
    """A cluster-launcher YAML as Ray sees it after filling in its provider's defaults."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(path.read_text())
    # The wheel ships no defaults file for fake_multinode, so the twin is written out in full
    # and validated as it is; cloud providers' defaults are merged in first, as `ray up` does.
    config: dict[str, Any] = (
        raw if raw["provider"]["type"] == "fake_multinode" else prepare_config(copy.deepcopy(raw))
    )
    validate_config(config)  # Ray's JSON schema plus its own cross-field checks
    return config


def test_cluster_yaml_passes_ray_validation() -> None:
    config = launcher_config(REPO / "cluster.yaml")
    assert config["provider"]["type"] == "aws"
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # agents never land on the head
    worker = config["available_node_types"]["worker"]
    assert 0 < worker["min_workers"] <= worker["max_workers"] <= config["max_workers"]
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start  # the dashboard is not exposed publicly
    assert "--port=6380" in start and "--port=6380" in " ".join(
        config["worker_start_ray_commands"]
    ).replace("$RAY_HEAD_IP:6380", "--port=6380")
    assert any("pip install" in c and "autoresearch_ray" in c for c in config["setup_commands"])
    assert "~/autoresearch_ray" in config["file_mounts"]


def test_local_twin_has_the_same_node_roles_and_passes_validation() -> None:
    twin = launcher_config(CONFIGS / "cluster.local.yaml")
    real = launcher_config(REPO / "cluster.yaml")
    assert twin["provider"]["type"] == "fake_multinode"
    assert twin["available_node_types"][twin["head_node_type"]]["resources"] == {"CPU": 0}
    assert "worker" in twin["available_node_types"] and "worker" in real["available_node_types"]
    assert twin["provider"]["gcs_address"].startswith("127.0.0.1:")


def test_a_broken_cluster_yaml_is_refused_by_the_same_check(tmp_path: Path) -> None:
    import jsonschema

    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    raw["available_node_types"]["worker"]["min_worker"] = 1  # a typo of min_workers
    bad = tmp_path / "cluster.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        launcher_config(bad)


def test_the_cluster_application_config_joins_and_pins_nothing_local() -> None:
    cfg = load_config(CONFIGS / "cluster.yaml")
    assert cfg.distributed_config.executor == "ray"
    assert cfg.distributed_config.address == "auto"
    assert cfg.storage.resolved().is_absolute()
    assert [a.type for a in cfg.agents] == ["synthesizer", "contrarian", "fact_checker"]


def test_the_ssh_local_variant_passes_validation_once_filled_in() -> None:
    import re

    template = (CONFIGS / "cluster.ssh-local.yaml").read_text()
    names = set(re.findall(r"\$\{([A-Z_]+)\}", template))
    assert {"SSH_USER", "SSH_KEY", "SSH_PORT", "REPO", "GCS_PORT", "TEMP_DIR"} <= names
    sample = {"SSH_USER": "ray", "SSH_KEY": "/k", "REPO": "/repo", "TEMP_DIR": "/tmp/ar"}
    filled = re.sub(r"\$\{([A-Z_]+)\}", lambda m: sample.get(m[1], "6380"), template)
    config = yaml.safe_load(filled)
    assert config["provider"] == {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    start = " ".join(config["head_start_ray_commands"])
    assert "ray stop" not in start and "--dashboard-host=127.0.0.1" in start
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(config))
