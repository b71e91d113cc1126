"""Provision and run a local Neo4j 5.26 Community server (`kgrec neo4j start|status|stop`).

The jars come from Maven Central once (cached outside the repo); the server runs in the
background from its own home directory, bound to 127.0.0.1 with authentication on. When
NEO4J_URI (+ NEO4J_USER, NEO4J_PASSWORD) is set, that server is used and nothing is provisioned.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

import neo4j
from neo4j.exceptions import AuthError, DatabaseUnavailable, ServiceUnavailable, SessionExpired

from kg import settings as env
from kg.server_conf import (
    ADMIN_TOOL,
    ENTRY_POINT,
    NEO4J_VERSION,
    USER,
    ServerConfig,
    ServerError,
    create_password,
    jvm_command,
    read_password,
    render_conf,
)

# Pinned so the download does not depend on whichever plugin version Maven resolves today.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kgrec</groupId><artifactId>neo4j-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.neo4j</groupId><artifactId>neo4j</artifactId><version>{NEO4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""
_STACK_FRAME = re.compile(r"^\s+(at |\.\.\. \d+ more).*\n", re.MULTILINE)
PRIVATE_UMASK = 0o077  # files the server creates: owner only
_NOT_READY = (ServiceUnavailable, SessionExpired, DatabaseUnavailable, OSError)


@dataclass(frozen=True)
class Neo4jSettings:
    uri: str
    user: str
    password: str


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    uri: str
    pid: int | None
    version: str
    home: Path
    cut_off_import: bool = False  # an offline import was cut off: the database may be partial


def external_settings() -> Neo4jSettings | None:
    """The server named by NEO4J_URI/NEO4J_USER/NEO4J_PASSWORD, or None when NEO4J_URI is unset."""
    uri = env.neo4j_uri()
    if not uri:
        return None
    password = env.neo4j_password()
    if password is None:
        raise ServerError("NEO4J_URI is set but NEO4J_PASSWORD is not")
    return Neo4jSettings(uri, env.neo4j_user() or USER, password)


def connection_settings(config: ServerConfig | None = None) -> Neo4jSettings:
    """Where to connect: NEO4J_URI & co. when set, else the local server (which is not started)."""
    external = external_settings()
    if external:
        return external
    config = configured(config or ServerConfig.from_env())
    password = read_password(config)
    if password is None:
        raise ServerError(f"no local Neo4j server in {config.home}; run `kgrec neo4j start`")
    return Neo4jSettings(config.uri, USER, password)


def ensure_running(config: ServerConfig | None = None, timeout: float = 180.0) -> Neo4jSettings:
    """Settings of a server that answers: NEO4J_URI & co. when set, else the local server,
    provisioned and started if needed (a running one is reused)."""
    external = external_settings()
    if external:
        return external
    config = config or ServerConfig.from_env()
    start(config, timeout)
    return connection_settings(config)


def status(config: ServerConfig) -> ServerStatus:
    config = configured(config)
    pid = _live_pid(config)
    cut_off = config.unfinished_import.exists()
    return ServerStatus(pid is not None, config.uri, pid, NEO4J_VERSION, config.home, cut_off)


def start(config: ServerConfig, timeout: float = 180.0) -> ServerStatus:
    """Start the server in the background and wait until Bolt answers; reuse a running one."""
    _private_home(config)
    with _locked(config.home / ".lock"):
        current = status(config)
        if current.running:
            return current
        _check_ports(config)
        java = find_java()
        provision(config)
        _write_private(config.conf_dir / "neo4j.conf", render_conf(config))
        password = _initial_password(config, java)
        pid = _spawn(config, java)
        _wait_until_ready(config, password, pid, timeout)
        cut_off = config.unfinished_import.exists()
        return ServerStatus(True, config.uri, pid, NEO4J_VERSION, config.home, cut_off)


def stop(config: ServerConfig, timeout: float = 60.0) -> int | None:
    """SIGTERM, wait for a clean shutdown, SIGKILL after `timeout`. Returns the pid, if any."""
    pid = _live_pid(config)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        if not _wait_dead(config, pid, timeout):
            os.kill(pid, signal.SIGKILL)
            _wait_dead(config, pid, 10.0)
    config.pid_file.unlink(missing_ok=True)
    return pid


def is_provisioned(config: ServerConfig) -> bool:
    return (config.dist_dir / ".complete").exists()


def provision(config: ServerConfig) -> Path:
    """Download Neo4j and its runtime dependencies once; an unfinished download (no
    `.complete` marker) is redone."""
    if is_provisioned(config):
        return config.lib_dir
    config.dist_dir.mkdir(parents=True, exist_ok=True)
    with _locked(config.dist_dir / ".lock"):
        if is_provisioned(config):  # another process finished it while we waited
            return config.lib_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServerError(
                f"Maven (mvn) is needed once to download Neo4j {NEO4J_VERSION} into "
                f"{config.dist_dir}; install Maven 3.8+ and retry"
            )
        (config.dist_dir / "pom.xml").write_text(POM, encoding="utf-8")
        partial = config.dist_dir / "lib.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(config.lib_dir, ignore_errors=True)
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(config.dist_dir / "pom.xml"), DEPENDENCY_PLUGIN,
             f"-DoutputDirectory={partial}", "-DincludeScope=runtime"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerError(
                f"downloading Neo4j {NEO4J_VERSION} with Maven failed:\n"
                + tail_text(result.stdout + result.stderr)
            )
        partial.rename(config.lib_dir)
        (config.dist_dir / ".complete").write_text(f"org.neo4j:neo4j:{NEO4J_VERSION}\n")
    return config.lib_dir


def log_tail(config: ServerConfig, lines: int = 30) -> str:
    """The end of the server's logs (console.log holds JVM and config errors), without Java
    stack frames so that the messages and their causes fit."""
    parts = []
    for name in ("console.log", "neo4j.log"):
        path = config.logs_dir / name
        if path.exists() and path.stat().st_size:
            text = path.read_text(encoding="utf-8", errors="replace")
            text = _STACK_FRAME.sub("", text)
            parts.append(f"--- {path} ---\n{tail_text(text, lines)}")
    return "\n".join(parts) or f"(no logs in {config.logs_dir})"


def configured(config: ServerConfig) -> ServerConfig:
    """`config` with the ports of the conf last written in its home (the ones the server uses)."""
    conf = config.conf_dir / "neo4j.conf"
    if not conf.exists():
        return config
    text = conf.read_text(encoding="utf-8")
    ports = {}
    for name in ("bolt", "http"):
        match = re.search(rf"^server\.{name}\.listen_address=.*:(\d+)$", text, re.MULTILINE)
        if match:
            ports[f"{name}_port"] = int(match.group(1))
    return replace(config, **ports)


def _private_home(config: ServerConfig) -> None:
    """The home and its directories 0700, the password file 0600 — also those of a home made
    before kgrec did so: the database files and the password are readable by no one else."""
    for directory in (
        config.home,
        config.conf_dir,
        config.data_dir,
        config.logs_dir,
        config.run_dir,
    ):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
    for file in (config.password_file, config.home / ".lock", config.conf_dir / "neo4j.conf"):
        if file.exists():
            file.chmod(0o600)


def _write_private(path: Path, text: str) -> None:
    """`text` into `path`, readable by the owner only (also when it existed with wider rights)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two processes (two shells, parallel test sessions) must not start or download twice.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ports_free(config: ServerConfig) -> bool:
    """Whether both of `config`'s ports can be bound on 127.0.0.1 now."""
    return _port_free(config.bolt_port) and _port_free(config.http_port)


def _check_ports(config: ServerConfig) -> None:
    if config.bolt_port == config.http_port:
        raise ServerError(f"bolt and http ports must differ (both are {config.bolt_port})")
    for name, port in (("bolt", config.bolt_port), ("http", config.http_port)):
        if not _port_free(port):
            raise ServerError(
                f"{name} port {port} on 127.0.0.1 is already in use by another program; "
                f"choose another (--{name}-port or KGREC_NEO4J_{name.upper()}_PORT)"
            )


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise ServerError("Java 17 or 21 is needed to run Neo4j but `java` was not found")
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', result.stderr)
    if not match or int(match.group(1)) < 17:
        raise ServerError(f"Neo4j {NEO4J_VERSION} needs Java 17 or 21; {java} is:\n{result.stderr}")
    return java


def _port_free(port: int) -> bool:
    # SO_REUSEADDR as the server sets it, so a socket in TIME_WAIT does not count as taken.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _initial_password(config: ServerConfig, java: str) -> str:
    """The stored password, set as the initial one before the first start of a new database."""
    password = read_password(config)
    env_password = env.neo4j_password()
    fresh = not (config.data_dir / "databases" / "system").exists()
    if password is None:
        if not fresh:
            raise ServerError(
                f"{config.password_file} is missing but {config.data_dir} already holds a "
                "database; restore the file, or stop and delete the home to start afresh"
            )
        password = create_password(config)
    elif env_password and env_password != password:
        raise ServerError(
            f"NEO4J_PASSWORD differs from the password this server was created with "
            f"({config.password_file}); unset it or change the password in Neo4j and the file"
        )
    if fresh:
        _set_initial_password(config, java, password)
    return password


def _set_initial_password(config: ServerConfig, java: str, password: str) -> None:
    # Passed through a 0600 picocli @-file so the password never shows up in `ps`.
    args_file = config.run_dir / "set-password.args"
    args_file.unlink(missing_ok=True)
    fd = os.open(args_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f'"{quoted}"\n')
    env = {**os.environ, "NEO4J_HOME": str(config.home), "NEO4J_CONF": str(config.conf_dir)}
    try:
        result = subprocess.run(
            [java, "-cp", f"{config.lib_dir}/*", ADMIN_TOOL, "dbms", "set-initial-password",
             f"@{args_file}"],
            capture_output=True, text=True, env=env, check=False, umask=PRIVATE_UMASK,
        )  # fmt: skip
    finally:
        args_file.unlink(missing_ok=True)
    if result.returncode != 0:
        raise ServerError(
            "setting the initial Neo4j password failed (at least 8 characters are required):\n"
            + tail_text(result.stdout + result.stderr)
        )


def _spawn(config: ServerConfig, java: str) -> int:
    console = config.logs_dir / "console.log"
    # posix_spawn with its own session: the server outlives this process and its terminal. It
    # inherits the umask, so every file the server creates (store files, auth.ini) is private.
    umask = os.umask(PRIVATE_UMASK)
    try:
        pid = os.posix_spawn(
            java,
            jvm_command(config, java),
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (
                    os.POSIX_SPAWN_OPEN,
                    1,
                    str(console),
                    os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                    0o600,
                ),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
    finally:
        os.umask(umask)
    _write_private(config.pid_file, f"{pid}\n")
    return pid


def _wait_until_ready(config: ServerConfig, password: str, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if _child_exited(pid):
            config.pid_file.unlink(missing_ok=True)
            raise ServerError(f"Neo4j stopped during start-up:\n{log_tail(config)}")
        try:
            with (
                neo4j.GraphDatabase.driver(
                    config.uri, auth=(USER, password), connection_timeout=2.0
                ) as driver,
                driver.session() as session,
            ):
                session.run("RETURN 1").consume()  # a session does not retry, unlike execute_query
            return
        except AuthError as error:
            stop(config)
            raise ServerError(
                f"Neo4j refused the password in {config.password_file}: {error.message}"
            ) from None
        except _NOT_READY:
            pass
        if time.monotonic() > deadline:
            stop(config)
            raise ServerError(
                f"Neo4j did not answer on {config.uri} within {timeout:.0f} s:\n{log_tail(config)}"
            )
        time.sleep(0.5)


def _child_exited(pid: int) -> bool:
    # waitpid, not /proc: the spawned child may not have exec'd java yet.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def _live_pid(config: ServerConfig) -> int | None:
    try:
        pid = int(config.pid_file.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return pid if _is_server(config, pid) else None


def _is_server(config: ServerConfig, pid: int) -> bool:
    """`pid` is alive and is the server of this home (pids get reused after a crash)."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has exited
    if not Path("/proc/self").exists():  # no /proc (macOS): trust the pid file
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return ENTRY_POINT.encode() in cmdline and f"--home-dir={config.home}".encode() in cmdline


def _wait_dead(config: ServerConfig, pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _is_server(config, pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def tail_text(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
