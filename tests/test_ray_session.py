"""Security of the Ray a search runs on: a local search listens on loopback only and refuses a client with the
wrong token; `nas search --address auto` joins a cluster started with token authentication and is refused with
one clear line when its token is wrong; results folders are read without unpickling anything."""

import os
import pickle
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_resume import start, wait_for_children
from test_search_e2e import ENV, TINY_TOML, run, write_tiny_corpus

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _listening() -> dict[int, list[str]]:
    """Socket inode -> "ip:port" of every listening TCP socket on this machine (from /proc/net)."""
    out: dict[int, list[str]] = {}
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            ip_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(ip_hex)
            if v6:  # four little-endian 32-bit words
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                ip = socket.inet_ntop(socket.AF_INET6, raw)
            else:
                ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
            out.setdefault(int(fields[9]), []).append(f"{ip}:{int(port_hex, 16)}")
    return out


def _descendants(root: int) -> set[int]:
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in tree and pid not in tree}
        tree |= new
        grew = bool(new)
    return tree


def listening_sockets(root: int) -> list[tuple[str, str]]:
    """(process name, "ip:port") of every TCP socket the processes under ``root`` listen on."""
    inodes = _listening()
    found = []
    for pid in _descendants(root):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                found += [(name, a) for a in inodes.get(int(target[8:-1]), [])]
    return found


CLIENT = """
import sys, ray
try:
    ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
except Exception as e:
    print("refused:", type(e).__name__, e)
    sys.exit(3)
print("connected", ray.cluster_resources())
"""


def connect_with_token(address: str, token: str) -> subprocess.CompletedProcess:
    """A client from another process, on this machine, sending ``token``."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return subprocess.run([sys.executable, "-c", CLIENT, address], env=env, capture_output=True, text=True,
                          timeout=180)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from Linux's /proc")
def test_a_local_search_listens_on_loopback_only_and_refuses_a_wrong_token(tmp_path):
    data = write_tiny_corpus(tmp_path / "corpus")
    long = TINY_TOML.format(data=data).replace("trials = 4", "trials = 2000")  # still running while we look
    (tmp_path / "tiny.toml").write_text(long)
    p = start(["search", "--config", "tiny.toml"], tmp_path)
    try:
        wait_for_children(tmp_path / "results" / "tiny" / "children.jsonl", 1, p)
        sockets = listening_sockets(p.pid)
        assert any(name == "gcs_server" for name, _ in sockets), sockets
        exposed = [(name, a) for name, a in sockets if a.rsplit(":", 1)[0] not in LOOPBACK]
        assert not exposed, f"Ray listens beyond loopback: {exposed}"
        gcs_port = next(a.rsplit(":", 1)[1] for name, a in sockets if name == "gcs_server")
        client = connect_with_token(f"127.0.0.1:{gcs_port}", "0" * 64)
        assert client.returncode == 3 and "refused" in client.stdout, client.stdout + client.stderr
    finally:
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=300)
    assert "Ray: listening on 127.0.0.1 only (this machine), token authentication on" in out, out + err


@pytest.fixture
def token_cluster(tmp_path):
    """`ray start --head` on this machine with token authentication, in its own temp folder; stopped after (only
    its processes: `ray stop` would also stop any other Ray on the machine)."""
    ray = shutil.which("ray", path=os.path.dirname(sys.executable))
    token = secrets.token_hex(32)
    temp_dir = tempfile.mkdtemp(prefix="raytok", dir="/tmp")  # short: Ray's socket paths live under it
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    env.pop("RAY_ADDRESS", None)
    started = subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                              f"--temp-dir={temp_dir}", "--disable-usage-stats"], env=env, capture_output=True,
                             text=True, timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"127.0.0.1:{port}", token  # the head listens on every interface (with its token)
    finally:
        _kill_processes_mentioning(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _kill_processes_mentioning(text: str) -> None:
    def pids():
        for d in Path("/proc").iterdir():
            try:
                if d.name.isdigit() and text in (d / "cmdline").read_bytes().decode(errors="replace"):
                    yield int(d.name)
            except OSError:
                pass

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)


def test_search_joins_a_token_cluster_with_address_auto_and_a_wrong_token_is_one_clear_line(tmp_path,
                                                                                               token_cluster):
    address, token = token_cluster
    data = write_tiny_corpus(tmp_path / "corpus")
    (tmp_path / "tiny.toml").write_text(TINY_TOML.format(data=data).replace("trials = 4", "trials = 2"))
    env = {**ENV, "RAY_ADDRESS": address, "RAY_AUTH_TOKEN": token}
    env.pop("RAY_AUTH_MODE", None)  # the token alone is enough: the search sends it
    p = subprocess.run([sys.executable, "-m", "nas.cli", "search", "--config", "tiny.toml", "--address", "auto"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Ray: joined the cluster with its token" in p.stdout and "[  2/2]" in p.stdout

    wrong = {**env, "RAY_AUTH_TOKEN": "0" * 64}
    p = subprocess.run([sys.executable, "-m", "nas.cli", "search", "--config", "tiny.toml", "--name", "wrong",
                        "--address", "auto"], cwd=tmp_path, env=wrong, capture_output=True, text=True, timeout=600)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "cluster's token" in p.stderr, p.stderr
    assert not (tmp_path / "results" / "wrong").exists()  # nothing half-written


class _Trap:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_results_show_compare_export_and_train_never_unpickle_a_folder_from_elsewhere(tmp_path):
    data = write_tiny_corpus(tmp_path / "corpus")
    (tmp_path / "tiny.toml").write_text(TINY_TOML.format(data=data))
    run(["search", "--config", "tiny.toml"], cwd=tmp_path)
    sent = tmp_path / "sent"
    shutil.copytree(tmp_path / "results" / "tiny", sent)
    marker = tmp_path / "pwned"
    pkls = list(sent.rglob("*.pkl"))
    assert pkls, "Tune's state is pickled: the test needs those files to replace"
    for pkl in pkls:
        pkl.write_bytes(pickle.dumps(_Trap(marker)))
    for args in (["results", str(sent)], ["results", str(sent), "--pareto"], ["show", str(sent)],
                 ["compare", str(sent), "--plot", str(tmp_path / "c.png")],
                 ["export", str(sent), "--out", str(tmp_path / "cell.py")],
                 ["train", str(sent), "--epochs", "1", "--out", str(tmp_path / "train")]):
        run(args, cwd=tmp_path)
        assert not marker.exists(), f"nas {' '.join(args)} unpickled a file of the folder"
