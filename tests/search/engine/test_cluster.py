"""`hwsearch run --address` on a real two-node Ray cluster: both nodes run trials, a lost node's trials run
again elsewhere, and a driver killed with SIGKILL is resumed against the same cluster.

The cluster is two `ray start` nodes on this machine (one CPU each, token authentication on), each
with its own temp dir, its own free ports, and its own process group, so that the test stops and
kills exactly its own processes and never another Ray instance of the machine (``ray stop`` would
stop them all). Every address is a loopback one: the head on 127.0.0.2 and the worker on 127.0.0.3
(Ray replaces 127.0.0.1 itself by the machine's outward address, other loopback addresses are kept),
and the test stops if Ray reports any node outside 127.0.0.0/8. ``make test-cluster`` runs it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]  # the repository
RAY = Path(sys.executable).parent / "ray"
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
METRICS = ["val_acc", "macs", "choice"]

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


# ---- the cluster ---------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host) in LOOPBACK
    except ValueError:
        return False


def _free_ports(host: str, n: int) -> list[int]:
    """``n`` distinct ports free on ``host`` now (all held open together, so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process this user can see."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        out[int(d.name)] = (int(fields[1]), int(fields[2]))
    return out


class Node:
    """One `ray start` node: its address, temp dir and process group (the `ray start` process's pid)."""

    def __init__(self, name: str, ip: str, temp_dir: Path, pgid: int):
        self.name, self.ip, self.temp_dir, self.pgid = name, ip, temp_dir, pgid

    def pids(self) -> set[int]:
        """The node's processes: its process group and anything they started (Ray workers)."""
        procs = _processes()
        mine = {pid for pid, (_, pgid) in procs.items() if pgid == self.pgid}
        grew = True
        while grew:
            more = {pid for pid, (ppid, _) in procs.items() if ppid in mine} - mine
            mine |= more
            grew = bool(more)
        return mine

    def signal(self, sig: int) -> None:
        """Send ``sig`` to every process of the node."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):  # it exited on its own meanwhile
                os.kill(pid, sig)

    def stop(self, grace_s: float = 3.0) -> None:
        """SIGTERM the node's processes, then SIGKILL what is left after ``grace_s``."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.signal(signal.SIGKILL)
        while self.pids():
            time.sleep(0.1)


class LoopbackCluster:
    """A head and a worker node on loopback addresses, one CPU each, with token authentication."""

    def __init__(self, scratch: Path):
        self.scratch = scratch
        self.token = secrets.token_hex(32)
        self.head: Node | None = None
        self.worker: Node | None = None
        self.started: list[Node] = []  # every node, a lost worker too: stop() cleans up all of them
        self.port = 0

    @property
    def address(self) -> str:
        """The head's GCS address, what ``hwsearch run --address`` takes."""
        return f"{HEAD_IP}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """The environment of `hwsearch` and of the nodes: only the token, as a user sets it; the
        nodes add RAY_AUTH_MODE themselves, hwsearch must turn it on for the client on its own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env.update(RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=path, OMP_NUM_THREADS="1",
                   HWSEARCH_CACHE=str(self.scratch / "cache"))
        return env

    def _start(self, name: str, ip: str, head: bool) -> Node:
        temp_dir = Path(tempfile.mkdtemp(prefix=f"hw{name[0]}", dir="/tmp"))  # Ray's socket paths must be short
        ports = _free_ports(ip, 20)
        args = [str(RAY), "start", "--node-ip-address", ip, "--num-cpus", "1", "--num-gpus", "0",
                "--temp-dir", str(temp_dir), "--object-store-memory", str(80 * 2**20), "--disable-usage-stats",
                "--node-manager-port", str(ports[1]), "--object-manager-port", str(ports[2]),
                "--dashboard-agent-listen-port", str(ports[3]), "--dashboard-agent-grpc-port", str(ports[4]),
                "--runtime-env-agent-port", str(ports[5]), "--metrics-export-port", str(ports[6]),
                "--worker-port-list", ",".join(map(str, ports[8:]))]
        if head:
            self.port = ports[0]
            args += ["--head", "--port", str(ports[0]), "--include-dashboard", "false",
                     "--dashboard-host", HEAD_IP, "--dashboard-port", str(ports[7])]
        else:
            args += ["--address", self.address]
        env = {**self.client_env(), "RAY_AUTH_MODE": "token"}
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)  # its own process group: see Node.pids
        node = Node(name, ip, temp_dir, proc.pid)
        self.started.append(node)
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start ({name}) failed:\n{out[-3000:]}")
        return node

    def start(self) -> None:
        """Start the head, then the worker, and check that Ray sees both on loopback addresses only."""
        self.head = self._start("head", HEAD_IP, head=True)
        self.ensure_worker()

    def ensure_worker(self) -> None:
        """Start a worker node unless one is running (the lost-node test kills it)."""
        if self.worker is not None and self.worker.pids():
            return
        self.worker = self._start("worker", WORKER_IP, head=False)
        self.check_loopback(expect_nodes=2)

    def alive_nodes(self) -> list[dict[str, Any]]:
        """Ray's view of the cluster's live nodes, asked from another process (as a client would)."""
        code = ("import json, sys, ray; ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False, "
                "logging_level='error'); print(json.dumps([{k: n[k] for k in ('NodeID', 'NodeManagerAddress', "
                "'Alive')} for n in ray.nodes()]))")
        env = {**self.client_env(), "RAY_AUTH_MODE": "token"}
        out = subprocess.run([sys.executable, "-c", code, self.address], env=env, capture_output=True, text=True, timeout=120,
                             check=True).stdout
        return [n for n in json.loads(out.strip().splitlines()[-1]) if n["Alive"]]

    def check_loopback(self, expect_nodes: int, timeout_s: float = 120) -> None:
        """Stop unless every address in use is in 127.0.0.0/8; wait until ``expect_nodes`` nodes are alive
        (a killed node stays listed until the head's health checks give it up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = self.alive_nodes()
            outside = [n["NodeManagerAddress"] for n in nodes if not _is_loopback(n["NodeManagerAddress"])]
            if outside or not _is_loopback(self.address.rsplit(":", 1)[0]):
                self.stop()
                pytest.fail(f"Ray uses addresses outside 127.0.0.0/8: {outside or self.address}; "
                            "stopped the cluster")
            if len(nodes) == expect_nodes or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert sorted(n["NodeManagerAddress"] for n in nodes) == [HEAD_IP, WORKER_IP][:expect_nodes], nodes

    def stop(self) -> None:
        """Stop the workers, then the head (only their own processes), and remove their temp dirs."""
        for node in reversed(self.started):
            node.stop()
            shutil.rmtree(node.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running two-node loopback cluster for the module's tests."""
    for ip in (HEAD_IP, WORKER_IP):
        try:
            _free_ports(ip, 1)
        except OSError:
            pytest.skip(f"{ip} is not a local loopback address here (Linux routes all of 127.0.0.0/8 to lo)")
    c = LoopbackCluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


# ---- runs on it ----------------------------------------------------------------------------------
def _optuna(root: Path, name: str, trials: int, **ray: Any) -> dict[str, Any]:
    """configs/optuna.yaml shrunk: an 8x8 ofa-mbv3, one epoch, a few trials, two at a time."""
    raw = yaml.safe_load((ROOT / "configs" / "optuna.yaml").read_text())
    raw.update(name=name, budget={"trials": trials}, output={"root": str(root)},
               ray={"workers": 2, "cpus_per_trial": 1, **ray})
    raw["space"]["options"] = {"resolutions": [8], "widths": [8, 8, 16, 16, 16], "head_width": 32,
                               "expand_ratios": [3], "kernels": [3, 5, 7], "depths": [2, 3]}
    raw["evaluation"].update(epochs=1, recipe={"batch_size": 128})
    raw["constraints"] = []
    return raw


def _naas(root: Path, name: str) -> dict[str, Any]:
    """The default NAAS co-search at its smallest (tests/search/naas/test_naas_engine.py), two at a time."""
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    raw["searcher"]["settings"].update(
        supernet_schedule="tiny", predictor_samples=16, population=2, generations=2, parents=1, inner_population=8,
        inner_generations=1, top_k=1, agent_episodes=1, finetune_epochs=0, penalty_reference="smallest")
    raw.update(name=name, budget={"trials": 2 * 2 + 1}, ray={"workers": 2, "cpus_per_trial": 1},
               output={"root": str(root)})
    return raw


def _write(raw: dict[str, Any], folder: Path) -> Path:
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _hwsearch(cluster: LoopbackCluster, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """``hwsearch ARGS --address CLUSTER`` as a user runs it, with only RAY_AUTH_TOKEN set."""
    proc = subprocess.run([sys.executable, "-m", "hwsearch.cli", *args, "--address", cluster.address, "--quiet"],
                          cwd=ROOT, env=cluster.client_env(), capture_output=True, text=True, timeout=timeout_s)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _ip(node: str) -> str:
    return str(node).split("/", 1)[0]


def _trials(run_path: Path) -> Any:
    from hwsearch.search.engine.rundir import RunDir

    return RunDir(run_path).trials()


def test_an_optuna_search_runs_trials_on_both_nodes(cluster, tmp_path):
    cluster.ensure_worker()
    _hwsearch(cluster, "run", str(_write(_optuna(tmp_path, "optuna", trials=6), tmp_path)))
    df = _trials(tmp_path / "optuna")
    assert len(df) == 6 and df["trial_id"].is_unique and set(df["status"]) == {"ok"}
    assert {_ip(n) for n in df["node"]} == {HEAD_IP, WORKER_IP}
    assert df["node"].nunique() == 2 and (df["failures"] == 0).all()


def test_a_naas_co_search_runs_trials_on_both_nodes(cluster, tmp_path):
    cluster.ensure_worker()
    _hwsearch(cluster, "run", str(_write(_naas(tmp_path, "naas"), tmp_path)))
    df = _trials(tmp_path / "naas")
    assert len(df) == 5 and df["trial_id"].is_unique and set(df["status"]) == {"ok"}
    assert {_ip(n) for n in df["node"]} == {HEAD_IP, WORKER_IP}
    assert (df["measured"] == 1.0).sum() == 1  # the refinement ran too
    assert json.loads((tmp_path / "naas" / "naas" / "front.json").read_text())["final_front"]


def _trial_recorded_from(run_path: Path, ip: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    """Wait until the run table holds a trial evaluated on the node at ``ip``; fail if the run ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (run_path / "trials.parquet").is_file() and ip in {_ip(n) for n in _trials(run_path)["node"]}:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (code {proc.returncode}) before a trial finished on {ip}")
        time.sleep(0.2)
    raise AssertionError(f"no trial finished on {ip} within {timeout_s}s")


def _trial_running_on(node: Node, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    """Wait until a Tune trial runs on ``node`` (its actor's title is ``ray::ImplicitFunc.train``, where an
    actor that is setting up or done is plain ``ray::ImplicitFunc``); fail if the run ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in node.pids():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::ImplicitFunc.train"):
                return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (code {proc.returncode}) before a trial ran on {node.name}")
        time.sleep(0.1)
    raise AssertionError(f"no trial ran on {node.name} within {timeout_s}s")


def test_a_lost_node_s_trials_run_again_elsewhere_and_each_trial_counts_once(cluster, tmp_path):
    cluster.ensure_worker()
    budget = 6
    config = _write(_optuna(tmp_path, "lost", trials=budget, max_failures=2), tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "hwsearch.cli", "run", str(config), "--address", cluster.address,
                             "--quiet"], cwd=ROOT, env=cluster.client_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _trial_recorded_from(tmp_path / "lost", WORKER_IP, proc)  # the worker node has done some work ...
        _trial_running_on(cluster.worker, proc)  # ... and is in the middle of more
        lost_at = time.time()
        cluster.worker.signal(signal.SIGKILL)  # the worker node: raylet, agents and the trial on it
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out[-2000:] + err[-4000:]
    df = _trials(tmp_path / "lost")
    assert len(df) == budget and df["trial_id"].is_unique and set(df["status"]) == {"ok"}
    assert df["failures"].max() >= 1  # the trial on the lost node failed, and ran again ...
    later = df[df["started_at"] > lost_at]
    assert len(later) and {_ip(n) for n in later["node"]} == {HEAD_IP}  # ... where a node was left
    assert WORKER_IP in {_ip(n) for n in df["node"]}  # and what the worker finished before it was lost counts


def test_a_driver_killed_with_sigkill_resumes_against_the_same_cluster(cluster, tmp_path, killed_run):
    cluster.ensure_worker()
    budget = 6
    config = _write(_optuna(tmp_path, "driver", trials=budget), tmp_path)
    run_path = tmp_path / "driver"
    before = killed_run(config, run_path, at_least=2, env=cluster.client_env(), args=["--address", cluster.address])
    assert 2 <= len(before) < budget
    cluster.check_loopback(expect_nodes=2)  # the cluster outlived its driver

    proc = _hwsearch(cluster, "run", "--resume", str(run_path))
    assert f"{budget}/{budget} trials" in proc.stdout
    after = _trials(run_path)
    assert len(after) == budget and after["trial_id"].is_unique and set(after["status"]) == {"ok"}
    kept = after.set_index("trial_id").loc[before["trial_id"], METRICS]
    assert kept.equals(before.set_index("trial_id")[METRICS])  # nothing finished before the kill was redone
    assert {_ip(n) for n in after["node"]} == {HEAD_IP, WORKER_IP}
