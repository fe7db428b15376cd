"""`ray up` / `ray submit` / `ray down` end to end, on Ray's `local` provider over real SSH.

The test starts its own sshd on a free loopback port with a host key and a client key it
generates, logging in as a dedicated unprivileged user: `ray down` runs `ray stop` on the head,
and as that user it can stop nothing but the cluster this test started. The cluster config is
configs/cluster.ssh-local.yaml with this test's ports and key filled in.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import pwd
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from .conftest import (
    CONFIGS,
    REPO,
    free_port,
    job_submit_command,
    kill_processes,
    stop_process,
    wait_for_port,
)

pytestmark = pytest.mark.slow

USER = "autoresearch-ssh"
BIN = Path(sys.executable).parent
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _ensure_user() -> pwd.struct_passwd:
    """The dedicated login user (created once; needs root, as CI has)."""
    if os.geteuid() != 0:
        pytest.skip(f"needs root to create the login user {USER!r}")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
    # useradd leaves the password locked ("!"), and sshd refuses locked accounts even for keys;
    # "*" is no password at all, so only the key opens it.
    subprocess.run(["usermod", "-p", "*", USER], check=True)
    return pwd.getpwnam(USER)


class LoopbackSSH:
    """An sshd on 127.0.0.1:<free port> that admits one key for one user."""

    def __init__(self, workdir: Path, user: pwd.struct_passwd) -> None:
        if not Path(SSHD).exists() or shutil.which("socat") is None:
            pytest.skip("needs sshd (openssh-server) and socat")
        self.port = free_port()
        self.user = user
        self.key = workdir / "client_key"
        for name in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / name)],
                check=True,
            )
        # sshd reads authorized_keys as the user, so it lives in the user's home.
        ssh_dir = Path(user.pw_dir) / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        authorized = ssh_dir / "authorized_keys"
        shutil.copy(workdir / "client_key.pub", authorized)
        for path in (ssh_dir, authorized):
            os.chown(path, user.pw_uid, user.pw_gid)
        authorized.chmod(0o600)
        config = workdir / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {workdir / 'host_key'}\n"
            f"AuthorizedKeysFile {authorized}\nAllowUsers {user.pw_name}\n"
            f"PidFile {workdir / 'sshd.pid'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nUsePAM no\n"
            "AllowTcpForwarding yes\nLogLevel ERROR\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(workdir / "sshd.log").open("w"),
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            probe = subprocess.run(self.ssh("true"), capture_output=True, timeout=15)
            if probe.returncode == 0:
                return
            time.sleep(0.3)
        self.stop()
        pytest.fail(f"sshd did not admit the key: {(workdir / 'sshd.log').read_text()}")

    def ssh(self, command: str) -> list[str]:
        return [
            "ssh",
            "-p",
            str(self.port),
            "-i",
            str(self.key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            f"{self.user.pw_name}@127.0.0.1",
            command,
        ]

    def stop(self) -> None:
        stop_process(self.proc)


def _user_processes(uid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["uids"]):
        uids = process.info["uids"]
        if uids is not None and uids.real == uid:
            found.append(process)
    return found


@pytest.fixture
def ssh_host(tmp_path: Path) -> Iterator[LoopbackSSH]:
    user = _ensure_user()
    home = Path(user.pw_dir)
    # Keep every address on loopback (see configs/cluster.local.yaml); `ray up`'s setup
    # commands add the venv they install to PATH below this line.
    (home / ".bashrc").write_text("export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0\n")
    for leftover in ("claims.db", "claims.db-wal", "claims.db-shm", "run_query.py"):
        (home / leftover).unlink(missing_ok=True)
    host = LoopbackSSH(tmp_path, user)
    try:
        yield host
    finally:
        host.stop()
        # Anything of the user's still running was started by this test: stop it by pid.
        kill_processes(_user_processes(user.pw_uid), timeout=0)


def test_ray_up_submit_down_over_ssh(ssh_host: LoopbackSSH, tmp_path: Path) -> None:
    user = ssh_host.user
    temp_dir = f"/tmp/ar-ssh-{os.getpid()}"
    key = Path(user.pw_dir) / ".ssh-test-key"  # readable by the user: ray up copies it over
    shutil.copy(ssh_host.key, key)
    os.chown(key, user.pw_uid, user.pw_gid)
    key.chmod(0o600)
    values = {
        "SSH_USER": user.pw_name,
        "SSH_KEY": str(key),
        "SSH_PORT": ssh_host.port,
        "GCS_PORT": free_port(),
        "DASHBOARD_PORT": free_port(),
        "CLIENT_PORT": free_port(),
        "AGENT_PORT": free_port(),
        "METRICS_PORT": free_port(),
        "TEMP_DIR": temp_dir,
        "REPO": str(REPO),
    }
    # Only ${NAME} placeholders: the shell's $PATH and $HOME in the commands stay as they are.
    template = (CONFIGS / "cluster.ssh-local.yaml").read_text()
    text = re.sub(r"\$\{([A-Z_]+)\}", lambda m: str(values[m[1]]), template)
    cluster = tmp_path / "cluster.yaml"
    name = f"autoresearch-ssh-{os.getpid()}"
    cluster.write_text(text.replace("cluster_name: autoresearch-ssh", f"cluster_name: {name}", 1))
    # The launcher caches configs in $TMPDIR: a directory of this test's, removed below.
    scratch = tmp_path / "launcher-tmp"
    scratch.mkdir()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "TMPDIR": str(scratch),
    }

    def ray(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BIN / "ray"), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return done

    up = ray("up", "-y", "--no-config-cache", str(cluster))
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        db = Path(user.pw_dir) / "claims.db"
        submitted = ray(
            "submit",
            "--no-config-cache",
            str(cluster),
            str(REPO / "scripts" / "run_query.py"),
            "--",
            # Ray joins these with spaces for the head's shell: bare words are fine, anything
            # with spaces or shell syntax is quoted (docs/cluster.md says the same).
            "How",
            "do",
            "I",
            "run",
            "coroutines",
            "concurrently",
            "--run-id",
            "over-ssh",
            f"address=127.0.0.1:{values['GCS_PORT']}",
            f"storage.path={db}",
            "loops=1",
            shlex.quote(
                "agents=[{name: a, type: claims, params: {count: 4}}, {name: b, type: claims}]"
            ),
        )
        assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
        assert "a claim 0 on" in submitted.stdout  # the answer, printed on the head
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows, distinct = con.execute(
                "SELECT COUNT(*), COUNT(DISTINCT claim_id) FROM claims WHERE run_id = 'over-ssh'"
            ).fetchone()
        assert rows == distinct == 6

        # docs/cluster.md's ways to get at results: the CLI on the head through `ray exec`, and
        # the database fetched with `ray rsync-down` and read here.
        remote = ray("exec", str(cluster), f"autoresearch-ray runs storage.path={db}")
        assert remote.returncode == 0 and "over-ssh" in remote.stdout, remote.stderr[-2000:]
        local_db = tmp_path / "fetched.db"
        fetched = ray("rsync-down", str(cluster), str(db), str(local_db))
        assert fetched.returncode == 0, fetched.stderr[-2000:]
        listed = subprocess.run(
            [str(BIN / "autoresearch-ray"), "claims", "over-ssh", f"storage.path={local_db}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0 and "a claim 0 on" in listed.stdout, listed.stderr

        # The dashboard through `ray dashboard`'s SSH tunnel, and a job submitted through it.
        local_port = free_port()
        tunnel = subprocess.Popen(
            [
                *(str(BIN / "ray"), "dashboard", "-p", str(local_port)),
                *("--remote-port", str(values["DASHBOARD_PORT"]), str(cluster)),
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(local_port, tunnel, 60, "the ray dashboard tunnel")
            job = ray(
                *job_submit_command(f"http://127.0.0.1:{local_port}")[1:],
                "a job through the tunnel",
                "--run-id=via-tunnel",
                f"address=127.0.0.1:{values['GCS_PORT']}",
                f"storage.path={db}",
                "loops=1",
                "agents=[{name: a, type: claims, params: {count: 3}}]",
            )
            assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        finally:
            stop_process(tunnel)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            (count,) = con.execute(
                "SELECT COUNT(*) FROM claims WHERE run_id = 'via-tunnel'"
            ).fetchone()
        assert count == 3
    finally:
        down = ray("down", "-y", str(cluster))
        shutil.rmtree(temp_dir, ignore_errors=True)
        # The local provider's record of the cluster's nodes, and the SSH control sockets'
        # directory of this cluster (Ray names it by hashes of the local user and the cluster).
        Path(f"/tmp/cluster-{name}.state").unlink(missing_ok=True)
        user_hash = hashlib.sha256(getpass.getuser().encode()).hexdigest()[:10]
        control = Path(f"/tmp/ray_ssh_{user_hash}")
        shutil.rmtree(control / hashlib.sha256(name.encode()).hexdigest()[:10], True)
        with contextlib.suppress(OSError):
            control.rmdir()  # only if no other cluster's sockets are in it
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
    deadline = time.monotonic() + 30
    while _ray_processes(user.pw_uid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ray_processes(user.pw_uid) == []  # `ray down` stopped the cluster


def _ray_processes(uid: int) -> list[str]:
    names = []
    for process in _user_processes(uid):
        try:
            cmdline = " ".join(process.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "raylet" in cmdline or "gcs_server" in cmdline:
            names.append(cmdline[:80])
    return names
