"""The local cluster behind `make run` and the end-to-end tests, without Docker.

Starts Redis (the one the environment names, else an embedded fakeredis server), the
auth and user services under uvicorn, and the gateway (nginx when installed,
else the Python fallback in gateway.py), waits until each one answers, prints
where everything runs and then `cluster ready`. Ctrl-C (SIGINT) or SIGTERM
stops every child and exits 0; a child that dies on its own stops the cluster
with a non-zero exit.

    python deploy/local/cluster.py [--gateway-port 8000] [--auth-port 8001]
        [--user-port 8002] [--data-dir .data] [--host 127.0.0.1]
        [--gateway {auto,nginx,python}]
        [--auth-app auth_service.main:create_app] [--user-app user_service.main:create_app]
        [--replicas N]

--replicas (default: $REPLICAS, else 1) runs N processes of each service,
replica i on the service's port + 10*i (8001, 8011, ...), all behind the
gateway, sharing Redis, the databases and the key directory. With more than
one, a replica that dies is started again (as a Deployment would) instead of
stopping the cluster.

Environment: REDIS_URL, or REDIS_SENTINELS + REDIS_SENTINEL_MASTER, or
REDIS_CLUSTER_NODES (exactly one) names the Redis; none starts the embedded
one. AUTH_DATABASE_URL, USER_DATABASE_URL override the databases; everything
else in the environment is passed to the services.
Mail: unless SMTP_URL is set, an embedded development mail sink
(mail_sink.py) takes every message the auth service sends and stores it as
an .eml file under <data dir>/mail/, printing "mail to <address>: <subject>".
Uses only the standard library, httpx, redis, fakeredis and aiosmtpd.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
GATEWAY_TEMPLATE = REPO_ROOT / "deploy" / "nginx" / "gateway.conf.template"
FALLBACK_GATEWAY = Path(__file__).with_name("gateway.py")
MAIL_SINK = Path(__file__).with_name("mail_sink.py")
GATEWAY_METRICS_PROGS = REPO_ROOT / "deploy" / "mtail"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
TAIL_LINES = 40
# The gateway's own loopback address: it connects to the services from here,
# and the services believe forwarded headers from this address only. Any other
# local client (127.0.0.1) calling a service port directly is not believed.
# Linux routes all of 127.0.0.0/8 to lo without setup; macOS needs
# `sudo ifconfig lo0 alias 127.0.0.2` (checked at start, see gateway_source).
GATEWAY_SOURCE_ADDRESS = "127.0.0.2"

FAKE_REDIS_WARNING = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!  WARNING: no Redis is named (REDIS_URL, REDIS_SENTINELS, nor             !!
!!  REDIS_CLUSTER_NODES), so this cluster uses an EMBEDDED FAKE REDIS       !!
!!  (fakeredis TcpFakeServer, inside this process, in memory only).         !!
!!  Sessions, refresh tokens, revocations and rate-limit counters are LOST   !!
!!  when the cluster stops. For development only, NEVER for production.     !!
!!  Use a real server with: REDIS_URL=redis://127.0.0.1:6379/0 make run      !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""

NO_GATEWAY_SOURCE_WARNING = """
WARNING: the gateway cannot connect from a loopback address of its own
({address}: {reason}), so the services believe no forwarded headers and see
every client as the gateway: per-IP rate limits are shared by all clients.
On macOS: sudo ifconfig lo0 alias 127.0.0.2
"""

NGINX_MISSING_WARNING = """
WARNING: nginx is not installed; using the Python fallback gateway
(deploy/local/gateway.py: same routes and headers, no rate limiting).
Install nginx for the real gateway: sudo apt-get install nginx
"""

_print_lock = threading.Lock()


def say(message: str, stream: str = "stdout") -> None:
    """Print whole lines, flushed, without interleaving with the child readers."""
    with _print_lock:
        out = sys.stderr if stream == "stderr" else sys.stdout
        out.write(message if message.endswith("\n") else message + "\n")
        out.flush()


class ClusterError(Exception):
    """Something the user must fix; the message says what."""


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived while the cluster was starting."""


class StopFlag:
    """Set by the signal handlers, polled by the main thread.

    Not a threading.Event: its set() takes a non-reentrant lock that the main
    thread may be holding inside wait() when the handler runs, which deadlocks.
    """

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds` (in short steps); return whether the flag is set."""
        deadline = time.monotonic() + seconds
        while not self._set and time.monotonic() < deadline:
            time.sleep(min(0.05, seconds))
        return self._set


MTAIL_MISSING_NOTE = """
NOTE: mtail is not installed, so the gateway's own refusals (limit_req 429s,
dot segments, oversized bodies) are not exported as metrics.
Install it for the gateway's metrics: sudo apt-get install mtail
"""

# --- nginx -----------------------------------------------------------------------


def find_nginx() -> str | None:
    """nginx on PATH, or in the sbin dirs that a non-root PATH often lacks."""
    return shutil.which("nginx") or shutil.which(
        "nginx", path="/usr/sbin:/usr/local/sbin:/usr/local/nginx/sbin"
    )


def nginx_command(nginx: str, prefix: Path, *, test: bool = False) -> list[str]:
    """The command line that runs (or with test=True, checks) the rendered config."""
    argv = [nginx]
    # `-e stderr` (nginx >= 1.19.5) keeps nginx from opening its compiled-in
    # error log (/var/log/nginx/error.log) before it reads the config, which
    # fails without root. Older builds get the config's `error_log stderr` only.
    version = subprocess.run(  # noqa: S603 - nginx found by find_nginx()
        [nginx, "-v"], capture_output=True, text=True, check=False
    ).stderr
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version)
    if found and tuple(int(part) for part in found.groups()) >= (1, 19, 5):
        argv += ["-e", "stderr"]
    if test:
        argv.append("-t")
    return [*argv, "-p", f"{prefix}/", "-c", "gateway.conf"]


def render_gateway_config(
    prefix: Path,
    *,
    auth_upstream: str,
    user_upstream: str,
    listen: str,
    source_address: str | None = None,
    metrics_log: Path | None = None,
    internal_port: int | None = None,
) -> Path:
    """Write `<prefix>/gateway.conf` from the template and create logs/ and tmp/.

    Args:
        auth_upstream, user_upstream: "host:port" of each service.
        listen: what nginx's `listen` takes: "8000" or "127.0.0.1:8000".
        source_address: the address nginx connects to the services from
            (`proxy_bind`, in proxy_bind.conf which the template includes).
        metrics_log: also write the lines the gateway's metrics exporter
            reads (log_format gateway_metrics) to this file.
        internal_port: also listen on 127.0.0.1:internal_port for the auth
            service's calls to the user service (internal.conf, below).
    """
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    proxy_bind = prefix / "proxy_bind.conf"
    proxy_bind.unlink(missing_ok=True)
    if source_address is not None:
        proxy_bind.write_text(f"proxy_bind {source_address};\n")
    include = prefix / "metrics_log.conf"  # the template's `include metrics_log*.conf`
    if metrics_log is None:
        include.unlink(missing_ok=True)
    else:
        metrics_log.touch()  # mtail tails it from the start, before the first request
        include.write_text(f'access_log "{metrics_log}" gateway_metrics;\n')
    internal = prefix / "internal.conf"  # the template's `include internal*.conf`
    internal.unlink(missing_ok=True)
    if internal_port is not None:
        internal.write_text(INTERNAL_SERVER.format(port=internal_port))
    # safe_substitute: nginx's own $variables are not placeholders. Several
    # replicas ("a,b"): one `server` line each in the template's upstream block.
    rendered = string.Template(GATEWAY_TEMPLATE.read_text()).safe_substitute(
        AUTH_UPSTREAM=_servers(auth_upstream),
        USER_UPSTREAM=_servers(user_upstream),
        LISTEN_PORT=listen,
    )
    left = re.findall(r"\$\{\w+\}", rendered)
    if left:
        raise ClusterError(f"{GATEWAY_TEMPLATE}: unknown placeholders {sorted(set(left))}")
    config = prefix / "gateway.conf"
    config.write_text(rendered)
    return config


# Service-to-service only: loopback, so nothing off this machine reaches it,
# and every path, /internal/ included, goes to the user replicas; one that
# refuses the connection, or dies under a kept-alive connection, is passed
# over. `non_idempotent`: nginx would otherwise not pass on a POST or PATCH
# once written to a connection that then failed; every internal call is
# idempotent by design (a profile upsert by id, a set, a delete, a read),
# so repeating one on the next replica is safe. Its own
# proxy_set_header list replaces the public server's: the caller's trace
# context and request id are the auth service's own and pass through, while
# the address headers are still replaced with the peer. Its own access log
# keeps these calls out of the gateway's metrics log.
INTERNAL_SERVER = """\
server {{
    listen 127.0.0.1:{port};
    server_name _;
    access_log logs/internal.log gateway_json;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header Forwarded $gateway_forwarded;
    proxy_next_upstream error timeout non_idempotent;
    location / {{ proxy_pass http://user_service; }}
}}
"""


def _servers(upstreams: str) -> str:
    """ "h:1,h:2" -> "h:1;\n        server h:2", for the template's `server ${X};`."""
    return ";\n        server ".join(u.strip() for u in upstreams.split(",") if u.strip())


def find_mtail() -> str | None:
    return shutil.which("mtail") or shutil.which("mtail", path="/usr/bin:/usr/local/bin")


def mtail_command(mtail: str, log: Path, *, host: str, port: int) -> list[str]:
    """mtail running deploy/mtail/gateway.mtail on `log`, serving /metrics on host:port."""
    return [
        mtail,
        "--progs",
        str(GATEWAY_METRICS_PROGS),
        "--logs",
        str(log),
        "--address",
        host,
        "--port",
        str(port),
        "--emit_prog_label=false",  # one program: the label says nothing
        "--logtostderr",
    ]


# --- child processes ---------------------------------------------------------------


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux only: children get SIGTERM if this process is killed with SIGKILL.

    Without it a killed cluster leaves services holding their ports. libc is
    loaded here, before any fork, so the hook itself only makes one syscall.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


_PREEXEC = _parent_death_signal()


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    reader: threading.Thread | None = None

    def last_output(self) -> str:
        if self.reader is not None:
            self.reader.join(timeout=1.0)  # collect what the child wrote before dying
        return "\n".join(f"    {line}" for line in self.tail) or "    (no output)"


def start_child(name: str, argv: list[str], env: Mapping[str, str]) -> Child:
    """Start a process whose output lines are printed prefixed with its name."""
    process = subprocess.Popen(  # noqa: S603 - argv is built here, not from input
        argv,
        env=dict(env),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # Own session: a terminal's Ctrl-C reaches only this script, which then
        # stops the children in order.
        start_new_session=True,
        preexec_fn=_PREEXEC,  # one prctl call, see _parent_death_signal
    )
    child = Child(name, process)

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            child.tail.append(line)
            say(f"{name:<8}| {line}")

    child.reader = threading.Thread(target=pump, name=f"{name}-output", daemon=True)
    child.reader.start()
    return child


def stop_children(children: list[Child]) -> None:
    """SIGTERM everything, wait up to STOP_TIMEOUT_SECONDS, then SIGKILL the rest."""
    for child in children:
        if child.process.poll() is None:
            child.process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(
                f"{child.name} did not stop in {STOP_TIMEOUT_SECONDS:.0f}s: SIGKILL",
                stream="stderr",
            )
            child.process.kill()
            child.process.wait()
    for child in children:
        if child.reader is not None:
            child.reader.join(timeout=1.0)


def wait_until_ok(child: Child, url: str, stop: StopFlag) -> None:
    """Poll `url` until it answers 200; fail early if the child exits."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while True:
            if stop.is_set():
                raise Interrupted
            code = child.process.poll()
            if code is not None:
                raise ClusterError(
                    f"{child.name} exited ({describe_exit(code)}) before it was ready. "
                    f"Last output:\n{child.last_output()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{child.name} did not answer 200 on {url} within "
                    f"{READY_TIMEOUT_SECONDS:.0f}s. Last output:\n{child.last_output()}"
                )
            stop.wait(0.2)


# --- Redis -----------------------------------------------------------------------


@dataclass
class RedisHandle:
    url: str  # where it is, for the summary (no credentials)
    kind: str
    close: Callable[[], None]
    # What the services' environment gets on top of ours (the embedded
    # server's URL; nothing for a Redis the environment already names).
    env: dict[str, str] = field(default_factory=dict)


_REDIS_SETTINGS = ("REDIS_URL", "REDIS_SENTINELS", "REDIS_CLUSTER_NODES")


def _addresses(value: str) -> list[tuple[str, int]]:
    out = []
    for raw in filter(None, (p.strip() for p in value.split(","))):
        host, _, port = raw.rpartition(":")
        if not host or not port.isdigit():
            raise ClusterError(f"expected host:port, got {raw!r}")
        out.append((host.strip("[]"), int(port)))
    return out


def _external_redis(env: Mapping[str, str], named: str) -> tuple[Any, str]:
    """A sync client for the Redis the environment names, and where it is."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster
    from redis.sentinel import Sentinel

    timeouts = {"socket_connect_timeout": 3, "socket_timeout": 3}
    if named == "REDIS_URL":
        url = env["REDIS_URL"]
        return redis.Redis.from_url(url, **timeouts), redact(url)
    node: dict[str, Any] = dict(timeouts)
    if env.get("REDIS_USERNAME"):
        node["username"] = env["REDIS_USERNAME"]
    if env.get("REDIS_PASSWORD"):
        node["password"] = env["REDIS_PASSWORD"]
    if env.get("REDIS_TLS", "").lower() in ("1", "true", "yes", "on"):
        node["ssl"] = True
        if env.get("REDIS_TLS_CA_FILE"):
            node["ssl_ca_certs"] = env["REDIS_TLS_CA_FILE"]
    if named == "REDIS_SENTINELS":
        master = env.get("REDIS_SENTINEL_MASTER", "")
        if not master:
            raise ClusterError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the master's name)")
        sentinel_kwargs: dict[str, Any] = dict(timeouts)
        if env.get("REDIS_SENTINEL_PASSWORD"):
            sentinel_kwargs["password"] = env["REDIS_SENTINEL_PASSWORD"]
        sentinel = Sentinel(
            _addresses(env["REDIS_SENTINELS"]), sentinel_kwargs=sentinel_kwargs, **node
        )
        return sentinel.master_for(master), f"sentinel {master}@{env['REDIS_SENTINELS']}"
    nodes = [ClusterNode(h, p) for h, p in _addresses(env["REDIS_CLUSTER_NODES"])]
    return RedisCluster(startup_nodes=nodes, **node), f"cluster {env['REDIS_CLUSTER_NODES']}"


def start_redis(env: Mapping[str, str], *, avoid: set[int] | None = None) -> RedisHandle:
    """The Redis the environment names (REDIS_URL, REDIS_SENTINELS +
    REDIS_SENTINEL_MASTER, or REDIS_CLUSTER_NODES; checked with PING), else an
    embedded fakeredis server. Naming more than one is refused, as the
    services would refuse it. The embedded one takes none of `avoid`."""
    import redis

    named = [name for name in _REDIS_SETTINGS if env.get(name, "").strip()]
    if len(named) > 1:
        raise ClusterError(
            f"set exactly one of {', '.join(_REDIS_SETTINGS)}; got {' and '.join(named)}"
        )
    if named:
        try:
            client, where = _external_redis(env, named[0])
        except redis.RedisError as exc:
            raise ClusterError(f"{named[0]} does not answer ({exc}).") from exc
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ClusterError(
                f"{named[0]}: {where} does not answer PING ({exc}). "
                f"Start that Redis, or unset {named[0]} to use the embedded fake Redis."
            ) from exc
        finally:
            client.close()
        return RedisHandle(where, "external", lambda: None)

    server = _fake_redis_server(free_port("127.0.0.1", set() if avoid is None else avoid))
    threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True).start()
    port = server.server_address[1]
    say(FAKE_REDIS_WARNING, stream="stderr")

    def close() -> None:
        server.shutdown()
        server.server_close()

    url = f"redis://127.0.0.1:{port}/0"
    return RedisHandle(url, "embedded fakeredis (IN MEMORY)", close, {"REDIS_URL": url})


def _fake_redis_server(port: int) -> Any:
    """A fakeredis TcpFakeServer on 127.0.0.1:`port`, patched to keep
    connections open across error replies.

    fakeredis 2.40's handler answers any error reply (NOSCRIPT, WRONGTYPE...)
    and then closes the connection, so redis-py's EVALSHA -> NOSCRIPT -> EVAL
    fallback, which every registered Lua script relies on, fails with
    "Connection closed by server" (cunla/fakeredis-py#432). Returning the
    error as the reply instead lets fakeredis encode it as a normal `-ERR`.
    """
    import redis
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", port))
    server.daemon_threads = True  # never let a client connection block our exit
    handler: Any = server.RequestHandlerClass

    class _Handler(handler):  # type: ignore[misc]
        def setup(self) -> None:
            super().setup()
            client = getattr(self, "current_client", None)
            if client is None:  # a fakeredis with other internals: leave it be
                return
            read_response = client.read_response

            def read_response_or_error(*args: Any, **kwargs: Any) -> Any:
                try:
                    return read_response(*args, **kwargs)
                except redis.ResponseError as exc:
                    return exc

            client.read_response = read_response_or_error

    server.RequestHandlerClass = _Handler
    return server


# --- helpers -----------------------------------------------------------------------


def start_mail(
    data_dir: Path, *, avoid: set[int] | None = None
) -> tuple[str, str, Callable[[], None]]:
    """SMTP_URL from the environment, else the embedded mail sink on a free
    loopback port, none of `avoid`: (SMTP_URL for the services, what it is,
    how to stop it)."""
    url = os.environ.get("SMTP_URL")
    if url:
        return url, "SMTP_URL from the environment", lambda: None
    import importlib.util

    # deploy/local/mail_sink.py, next to this file (deploy/ is not a package).
    spec = importlib.util.spec_from_file_location("mail_sink", MAIL_SINK)
    assert spec is not None
    assert spec.loader is not None
    sink = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sink)
    mail_dir = data_dir / "mail"
    controller = sink.start_sink(
        mail_dir, port=free_port("127.0.0.1", set() if avoid is None else avoid)
    )
    return (
        f"smtp://127.0.0.1:{controller.port}",
        f"development sink: one .eml per message in {mail_dir}",
        controller.stop,
    )


def redact(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def describe_exit(code: int) -> str:
    """ "code 3" or "killed by SIGKILL", from a Popen returncode."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"code {code}"


def connect_host(host: str) -> str:
    """Where to connect to reach a server bound on `host` (URL form for IPv6)."""
    if host in {"", "0.0.0.0"}:  # noqa: S104 - comparing, not binding
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def gateway_source(host: str) -> str | None:
    """The address the gateway connects to the services from, or None.

    None (the services then trust no proxy at all) when the services are
    reached over IPv6, which has a single loopback address, or when this
    machine has no 127.0.0.2 (macOS without the alias).
    """
    if ":" in connect_host(host):
        say(
            NO_GATEWAY_SOURCE_WARNING.format(address="::1", reason="IPv6 has one loopback"),
            stream="stderr",
        )
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((GATEWAY_SOURCE_ADDRESS, 0))
        except OSError as exc:
            say(
                NO_GATEWAY_SOURCE_WARNING.format(
                    address=GATEWAY_SOURCE_ADDRESS, reason=exc.strerror
                ),
                stream="stderr",
            )
            return None
    return GATEWAY_SOURCE_ADDRESS


def ensure_port_free(host: str, port: int, what: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ClusterError(
                f"{what} port {host}:{port} is not available ({exc.strerror}). "
                "Is another `make run` going? Pick another with --"
                f"{what}-port."
            ) from exc


# --- the cluster ---------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway-port", type=int, default=8000)
    parser.add_argument("--auth-port", type=int, default=8001)
    parser.add_argument("--user-port", type=int, default=8002)
    # mtail's own default port; on loopback (like the services' /metrics).
    # $GATEWAY_METRICS_PORT moves it; 0 takes any free port (the test suite).
    parser.add_argument(
        "--gateway-metrics-port",
        type=int,
        default=int(os.environ.get("GATEWAY_METRICS_PORT") or 3903),
    )
    parser.add_argument("--data-dir", type=Path, default=Path(".data"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--gateway",
        choices=("auto", "nginx", "python"),
        default="auto",
        help="auto: nginx when installed, else the Python fallback",
    )
    # The ASGI factories to serve; the tooling tests point these at stand-ins.
    parser.add_argument("--auth-app", default="auth_service.main:create_app")
    parser.add_argument("--user-app", default="user_service.main:create_app")
    parser.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ.get("REPLICAS") or 1),
        help="processes per service, on port + 10*i (default: $REPLICAS, else 1)",
    )
    # Several replicas: the gateway's loopback listener for the auth service's
    # calls to the user service (INTERNAL_SERVER); 0 takes any free port.
    parser.add_argument("--gateway-internal-port", type=int, default=0)
    args = parser.parse_args(argv)
    if not 1 <= args.replicas <= 9:
        parser.error("--replicas: expected 1 to 9")
    taken = own_ports(args)
    if args.replicas > 1 and args.gateway_internal_port == 0:
        args.gateway_internal_port = free_port("127.0.0.1", taken)
    if args.gateway_metrics_port == 0:
        # 0: any free port (the test suite runs several clusters at once).
        args.gateway_metrics_port = free_port(args.host, taken)
    return args


def replica_ports(port: int, replicas: int) -> list[int]:
    return [port + 10 * i for i in range(replicas)]


def own_ports(args: argparse.Namespace) -> set[int]:
    """The ports the command line gave the gateway and every replica."""
    return {
        args.gateway_port,
        *replica_ports(args.auth_port, args.replicas),
        *replica_ports(args.user_port, args.replicas),
    }


def free_port(host: str, avoid: set[int]) -> int:
    """A port free on `host` now, and none of `avoid`, which it joins.

    The services bind their ports only once they start, after the helpers
    here have taken theirs: a port the kernel offers as free may be one of
    them (the test suite picks them free as well), and the service would then
    find it taken by the mail sink or the embedded Redis.
    """
    while True:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port: int = probe.getsockname()[1]
        if port not in avoid:
            avoid.add(port)
            return port


def start_gateway(
    args: argparse.Namespace,
    *,
    nginx: str | None,
    data_dir: Path,
    auth_url: str,
    user_url: str,
    source_address: str | None,
    metrics_log: Path | None = None,
) -> tuple[Child, str, str]:
    """Start nginx on the rendered template, else the Python fallback.

    Returns the child, what kind of gateway it is, and where its access log goes.
    """
    host, reach = args.host, connect_host(args.host)
    if nginx is not None:
        prefix = data_dir / "nginx"
        # All interfaces: a bare port; otherwise the address the user chose.
        any_host = host in {"", "0.0.0.0"}  # noqa: S104 - comparing, not binding
        bracketed = f"[{host}]" if ":" in host else host
        render_gateway_config(
            prefix,
            auth_upstream=",".join(
                f"{reach}:{p}" for p in replica_ports(args.auth_port, args.replicas)
            ),
            user_upstream=",".join(
                f"{reach}:{p}" for p in replica_ports(args.user_port, args.replicas)
            ),
            listen=str(args.gateway_port) if any_host else f"{bracketed}:{args.gateway_port}",
            source_address=source_address,
            metrics_log=metrics_log,
            internal_port=args.gateway_internal_port if args.replicas > 1 else None,
        )
        child = start_child("gateway", nginx_command(nginx, prefix), os.environ)
        return child, "nginx", f"access log (JSON): {prefix / 'logs' / 'access.log'}"
    if args.gateway == "auto":
        say(NGINX_MISSING_WARNING, stream="stderr")
    argv = [sys.executable, str(FALLBACK_GATEWAY), "--host", host]
    argv += ["--port", str(args.gateway_port)]
    auth_urls = [f"http://{reach}:{p}" for p in replica_ports(args.auth_port, args.replicas)]
    user_urls = [f"http://{reach}:{p}" for p in replica_ports(args.user_port, args.replicas)]
    argv += ["--auth-upstream", ",".join(auth_urls), "--user-upstream", ",".join(user_urls)]
    if source_address is not None:
        argv += ["--source-address", source_address]
    if args.replicas > 1:
        argv += ["--internal-port", str(args.gateway_internal_port)]
    return start_child("gateway", argv, os.environ), "python fallback", "access log: this terminal"


def print_summary(rows: list[tuple[str, str, str]]) -> None:
    w0, w1 = (max(len(row[i]) for row in rows) for i in (0, 1))
    table = "\n".join(f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows)
    say(f"\n{table}\n\n  Ctrl-C to stop\n")


def run(args: argparse.Namespace, stop: StopFlag) -> int:
    host = args.host
    reach = connect_host(host)
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "keys").mkdir(mode=0o700, exist_ok=True)

    nginx = find_nginx() if args.gateway in {"auto", "nginx"} else None
    if args.gateway == "nginx" and nginx is None:
        raise ClusterError(
            "--gateway nginx: nginx is not installed "
            "(sudo apt-get install nginx), or use --gateway python"
        )
    for what, port in (
        ("gateway", args.gateway_port),
        *(("auth", p) for p in replica_ports(args.auth_port, args.replicas)),
        *(("user", p) for p in replica_ports(args.user_port, args.replicas)),
    ):
        ensure_port_free(host, port, what)
    if args.replicas > 1:
        ensure_port_free("127.0.0.1", args.gateway_internal_port, "gateway-internal")
    # The gateway's metrics: mtail on nginx's metrics log (nginx only; the
    # Python fallback has no limit_req to count). Optional, like nginx.
    mtail = find_mtail() if nginx is not None else None
    if mtail is not None:
        ensure_port_free("127.0.0.1", args.gateway_metrics_port, "gateway metrics")

    source_address = gateway_source(host)
    taken = own_ports(args) | {args.gateway_internal_port, args.gateway_metrics_port}
    redis_handle = start_redis(os.environ, avoid=taken)
    mail_url, mail_kind, stop_mail = start_mail(data_dir, avoid=taken)
    children: list[Child] = []
    try:
        auth_url = f"http://{reach}:{args.auth_port}"
        user_url = f"http://{reach}:{args.user_port}"
        gateway_url = f"http://{reach}:{args.gateway_port}"
        common = {
            **os.environ,
            **redis_handle.env,
            "KEY_DIR": str(data_dir / "keys"),
            # One replica: the user service directly. Several: the gateway's
            # loopback listener (INTERNAL_SERVER), which reaches every user
            # replica and passes over a dead one, as a Kubernetes Service does.
            "USER_SERVICE_URL": (
                f"http://127.0.0.1:{args.gateway_internal_port}" if args.replicas > 1 else user_url
            ),
            # One replica: the auth service directly. Several: through the
            # gateway, which passes over a dead replica, as a Kubernetes
            # Service would; a user replica that cannot fetch a rotated key
            # would refuse every token it signed.
            "JWKS_URL": f"{gateway_url if args.replicas > 1 else auth_url}/.well-known/jwks.json",
            "ISSUER": f"http://localhost:{args.gateway_port}",
            # Forwarded headers are believed from the gateway's own address
            # only (set here, not from the environment: only this script
            # knows it). Empty: from nobody.
            "TRUSTED_PROXIES": source_address or "",
            "SMTP_URL": mail_url,
            "PYTHONUNBUFFERED": "1",  # child output shows up as it is written
        }
        databases = {
            "auth": os.environ.get("AUTH_DATABASE_URL")
            or f"sqlite+aiosqlite:///{data_dir}/auth.db",
            "user": os.environ.get("USER_DATABASE_URL")
            or f"sqlite+aiosqlite:///{data_dir}/user.db",
        }
        services = [
            (f"{name}{i + 1 if i else ''}", name, app, port)
            for name, app, base in (
                ("auth", args.auth_app, args.auth_port),
                ("user", args.user_app, args.user_port),
            )
            for i, port in enumerate(replica_ports(base, args.replicas))
        ]
        launch: dict[str, Callable[[], Child]] = {}
        for label, name, app, port in services:
            argv = [sys.executable, "-m", "uvicorn", "--factory", app]
            argv += ["--host", host, "--port", str(port), "--app-dir", str(REPO_ROOT)]
            argv += ["--timeout-graceful-shutdown", "5"]
            # The services decide themselves which X-Forwarded-For to believe
            # (TRUSTED_PROXIES); uvicorn rewriting the peer first would hide it.
            argv += ["--no-proxy-headers"]
            env = {**common, "DATABASE_URL": databases[name]}
            launch[label] = lambda label=label, argv=argv, env=env: start_child(label, argv, env)
        # The first replica of each service migrates its database at start
        # (development); the others wait for it, since SQLite has no lock to
        # serialise two migrations. Auth and user start together: neither
        # needs the other to become ready (/readyz checks DB and Redis only).
        for wave in (services[:: args.replicas], [s for s in services if s[0][-1].isdigit()]):
            started = [(launch[label](), port) for label, _, _, port in wave]
            children.extend(child for child, _ in started)
            for child, port in started:
                wait_until_ok(child, f"http://{reach}:{port}/readyz", stop)

        metrics_log = data_dir / "nginx" / "logs" / "metrics.log" if mtail else None
        gateway, gateway_kind, gateway_log = start_gateway(
            args,
            nginx=nginx,
            data_dir=data_dir,
            auth_url=auth_url,
            user_url=user_url,
            source_address=source_address,
            metrics_log=metrics_log,
        )
        children.append(gateway)
        wait_until_ok(gateway, f"{gateway_url}/healthz", stop)
        rows = [(f"gateway ({gateway_kind})", gateway_url, gateway_log)]
        if mtail is not None and metrics_log is not None:
            port = args.gateway_metrics_port
            argv = mtail_command(mtail, metrics_log, host="127.0.0.1", port=port)
            exporter = start_child("gw-mtail", argv, os.environ)
            children.append(exporter)
            metrics_url = f"http://127.0.0.1:{port}/metrics"
            wait_until_ok(exporter, metrics_url, stop)
            rows.append(("gateway metrics (mtail)", metrics_url, "refusals at the edge"))
        elif nginx is not None:
            say(MTAIL_MISSING_NOTE, stream="stderr")

        replicas = [
            (f"{name}_service" + (f" #{i + 1}" if args.replicas > 1 else ""), f"http://{reach}:{p}")
            for name, base in (("auth", args.auth_port), ("user", args.user_port))
            for i, p in enumerate(replica_ports(base, args.replicas))
        ]
        print_summary(
            [
                *rows,
                *((label, url, f"db {redact(databases[label[:4]])}") for label, url in replicas),
                ("redis", redis_handle.url, redis_handle.kind),
                ("mail", redact(mail_url), mail_kind),
                ("data dir", str(data_dir), "SQLite files, keys/, nginx/"),
                ("logs", "this terminal", "lines prefixed auth | user | gateway"),
            ]
        )
        say("cluster ready")

        while not stop.wait(0.2):
            for n, child in enumerate(children):
                code = child.process.poll()
                if code is None:
                    continue
                if args.replicas > 1 and child.name in launch:
                    # One of several replicas: the others serve meanwhile.
                    say(
                        f"{child.name} exited ({describe_exit(code)}); starting it again",
                        stream="stderr",
                    )
                    if child.reader is not None:
                        child.reader.join(timeout=1.0)
                    children[n] = launch[child.name]()
                    continue
                say(
                    f"{child.name} exited unexpectedly ({describe_exit(code)}); stopping",
                    stream="stderr",
                )
                return 1
        say("stopping the cluster")
        return 0
    except Interrupted:
        say("interrupted while starting; stopping")
        return 0
    finally:
        stop_children(list(reversed(children)))  # gateway first, then the services
        stop_mail()
        redis_handle.close()


def main(argv: list[str] | None = None) -> int:
    stop = StopFlag()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return run(parse_args(argv), stop)
    except ClusterError as exc:
        say(f"cluster: error: {exc}", stream="stderr")
        return 1


if __name__ == "__main__":
    sys.exit(main())
