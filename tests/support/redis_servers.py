"""Real Redis topologies on loopback for tests: one server, a Sentinel group, a Cluster.

Every process is a `redis-server` child of the test run (Debian's Redis 7),
without persistence, in a temporary directory, on ports the caller picks
(tests/topologies uses 24000-24999). `stop()` kills each process it started
by its own handle and waits for it, so nothing outlives the fixture.

Start-up is fast: all servers are spawned at once, then polled (PING every
20 ms); the cluster is made with `redis-cli --cluster create` and is ready
when every node reports `cluster_state:ok` and knows every other node.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

__all__ = ["RedisCluster", "RedisServer", "SentinelGroup", "start_cluster", "start_sentinel_group"]

_HOST = "127.0.0.1"
CLUSTER_BUS_OFFSET = 500  # a node on port p gossips on p + 500


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    command: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{_HOST}:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host=_HOST, port=self.port, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL, as a crashed host would go: nothing flushed, nothing said."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: alive to the kernel, silent to everyone (a stalled host)."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Start it again, same port and folder, after kill() (the host comes
        back: empty, since nothing is persisted; the group makes it a replica)."""
        assert self.process.poll() is not None, "restart() follows kill()"
        self.process = _popen(self.command, self.directory)
        _wait_ping([self], time.monotonic() + 10)


def _popen(command: list[str], directory: Path) -> subprocess.Popen[bytes]:
    # The child keeps its own copy of the log descriptor; ours closes at once.
    with (directory / "log").open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _spawn(port: int, directory: Path, *args: str) -> RedisServer:
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        _HOST,
        "--dir",
        str(directory),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        *args,
    ]
    return RedisServer(port, _popen(command, directory), directory, command)


def _wait_ping(servers: list[RedisServer], deadline: float) -> None:
    for server in servers:
        client = server.client()
        try:
            while True:
                if server.process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server on {server.port} exited: "
                        + (server.directory / "log").read_text()[-400:]
                    )
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {server.port} did not answer PING")
                time.sleep(0.02)
        finally:
            client.close()


def _stop_all(servers: list[RedisServer]) -> None:
    for server in servers:
        if server.process.poll() is None:
            server.process.terminate()
    for server in servers:
        try:
            server.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)


def wait_until(condition: object, *, timeout: float, what: str) -> None:
    """Poll `condition()` every 50 ms until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- Cluster -------------------------------------------------------------------------


@dataclass
class RedisCluster:
    nodes: list[RedisServer]
    replicas_per_master: int
    stopped: bool = field(default=False)

    @property
    def nodes_setting(self) -> str:
        """REDIS_CLUSTER_NODES for the services."""
        return ",".join(n.address for n in self.nodes)

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def primary_of(self, key: str) -> RedisServer:
        """The node serving `key`'s slot now (asked of a live node)."""
        for candidate in self.nodes:
            if candidate.process.poll() is not None:
                continue
            client = candidate.client()
            try:
                slot = client.cluster("keyslot", key)
                for start, end, primary, *_ in client.cluster("slots"):
                    if start <= slot <= end:
                        return self.node(int(primary[1]))
            except redis.RedisError:
                continue
            finally:
                client.close()
        raise RuntimeError("no live node answers CLUSTER SLOTS")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        info = primary.client().info("replication")
        return self.node(int(info["slave0"]["port"]))

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            _stop_all(self.nodes)


def start_cluster(
    directory: Path, *, first_port: int, masters: int = 3, replicas_per_master: int = 1
) -> RedisCluster:
    """A Redis Cluster of `masters` primaries, each with its replicas, on
    consecutive ports from `first_port`, their cluster bus 500 ports higher
    (node timeout 1 s: failover is quick)."""
    count = masters * (1 + replicas_per_master)
    nodes = [
        _spawn(
            port,
            directory / str(port),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            # The bus port (default: port + 10000) stays in the caller's range.
            "--cluster-port",
            str(port + CLUSTER_BUS_OFFSET),
            "--cluster-node-timeout",
            "1000",
            # A replica takes over however long it lost its primary for.
            "--cluster-replica-validity-factor",
            "0",
        )
        for port in range(first_port, first_port + count)
    ]
    cluster = RedisCluster(nodes, replicas_per_master)
    try:
        _wait_ping(nodes, time.monotonic() + 30)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(n.address for n in nodes),
                "--cluster-replicas",
                str(replicas_per_master),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

        def ready() -> bool:
            for node in nodes:
                client = node.client()
                try:
                    info = client.cluster("info")
                    if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) != count:
                        return False
                    if int(info["cluster_slots_assigned"]) != 16384:
                        return False
                finally:
                    client.close()
            # Replicas must have synced, or WAIT 1 cannot be answered.
            for node in nodes:
                repl = node.client().info("replication")
                if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                    return False
            return True

        wait_until(ready, timeout=60, what="the cluster to converge")
    except BaseException:
        cluster.stop()
        raise
    return cluster


# --- Sentinel --------------------------------------------------------------------------


@dataclass
class SentinelGroup:
    master_name: str
    servers: list[RedisServer]  # data nodes: the first starts as master
    sentinels: list[RedisServer]
    stopped: bool = field(default=False)

    @property
    def sentinels_setting(self) -> str:
        """REDIS_SENTINELS for the services."""
        return ",".join(s.address for s in self.sentinels)

    def current_master(self) -> RedisServer:
        for sentinel in self.sentinels:
            if sentinel.process.poll() is not None:
                continue
            client = sentinel.client()
            try:
                _host, port = client.sentinel_get_master_addr_by_name(self.master_name)
                return next(s for s in self.servers if s.port == int(port))
            except redis.RedisError:
                continue
            finally:
                client.close()
        raise RuntimeError("no sentinel answers")

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            _stop_all(self.sentinels + self.servers)


def start_sentinel_group(
    directory: Path, *, first_port: int, replicas: int = 1, sentinels: int = 3
) -> SentinelGroup:
    """One master and `replicas` replicas watched by `sentinels` sentinels
    (quorum 2, down after 1 s), on consecutive ports from `first_port`."""
    name = "idp"
    master = _spawn(first_port, directory / "master")
    servers = [master] + [
        _spawn(
            first_port + 1 + i,
            directory / f"replica{i}",
            "--replicaof",
            _HOST,
            str(first_port),
        )
        for i in range(replicas)
    ]
    watchers: list[RedisServer] = []
    group = SentinelGroup(name, servers, watchers)
    try:
        for i in range(sentinels):
            port = first_port + 1 + replicas + i
            folder = directory / f"sentinel{i}"
            folder.mkdir(parents=True)
            # Sentinel rewrites its own config file, so it gets one per process.
            (folder / "sentinel.conf").write_text(
                f"port {port}\nbind {_HOST}\nprotected-mode no\ndir {folder}\n"
                f"sentinel monitor {name} {_HOST} {first_port} 2\n"
                f"sentinel down-after-milliseconds {name} 1000\n"
                f"sentinel failover-timeout {name} 5000\n"
                f"sentinel parallel-syncs {name} 1\n"
            )
            command = ["redis-server", str(folder / "sentinel.conf"), "--sentinel"]
            watchers.append(RedisServer(port, _popen(command, folder), folder, command))
        _wait_ping(servers + watchers, time.monotonic() + 30)

        def ready() -> bool:
            for replica in servers[1:]:
                if replica.client().info("replication").get("master_link_status") != "up":
                    return False
            for sentinel in watchers:
                state = sentinel.client().sentinel_master(name)
                if int(state["num-other-sentinels"]) != sentinels - 1:
                    return False
                if int(state["num-slaves"]) != replicas:
                    return False
            return True

        wait_until(ready, timeout=60, what="the sentinels to see each other")
    except BaseException:
        group.stop()
        raise
    return group


@contextlib.contextmanager
def running(topology: RedisCluster | SentinelGroup) -> Iterator[RedisCluster | SentinelGroup]:
    try:
        yield topology
    finally:
        topology.stop()
