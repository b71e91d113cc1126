"""Where the local Neo4j server lives and how it is configured: paths, ports, memory, the
`neo4j.conf` kgrec writes, the JVM command line and the stored password."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from kg import settings as env
from kg.errors import KgrecError

NEO4J_VERSION = "5.26.30"
DEFAULT_BOLT_PORT = 7687
DEFAULT_HTTP_PORT = 7474
# Small on purpose: the machine is shared with model training.
DEFAULT_HEAP = "1g"
DEFAULT_PAGECACHE = "512m"
USER = "neo4j"

# The flags the official 5.26 launcher passes (its default neo4j.conf `server.jvm.additional`),
# minus -XX:+AlwaysPreTouch, which would commit the whole heap up front on a shared machine.
JVM_FLAGS: tuple[str, ...] = (
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
    "-Dlog4j2.disable.jmx=true",
    "-Dfile.encoding=UTF-8",
)
ENTRY_POINT = "org.neo4j.server.CommunityEntryPoint"
ADMIN_TOOL = "org.neo4j.cli.AdminTool"


class ServerError(KgrecError, RuntimeError):
    """Why the server could not be provisioned, started or stopped, worded for the user."""


@dataclass(frozen=True)
class ServerConfig:
    """One local server: its home directory (conf, data, logs, run, password), ports, memory."""

    home: Path
    bolt_port: int = DEFAULT_BOLT_PORT
    http_port: int = DEFAULT_HTTP_PORT
    heap: str = DEFAULT_HEAP
    pagecache: str = DEFAULT_PAGECACHE
    cache_dir: Path | None = None  # None: env.cache_dir()

    @classmethod
    def from_env(
        cls,
        home: Path | None = None,
        bolt_port: int | None = None,
        http_port: int | None = None,
    ) -> ServerConfig:
        """Defaults overridden by KGREC_NEO4J_* variables, overridden by explicit arguments."""
        return cls(
            home=(Path(home).expanduser() if home else env.neo4j_home()).absolute(),
            bolt_port=bolt_port or env.neo4j_port("bolt", DEFAULT_BOLT_PORT),
            http_port=http_port or env.neo4j_port("http", DEFAULT_HTTP_PORT),
            heap=env.neo4j_memory("heap", DEFAULT_HEAP),
            pagecache=env.neo4j_memory("pagecache", DEFAULT_PAGECACHE),
        )

    @property
    def dist_dir(self) -> Path:
        return (self.cache_dir or env.cache_dir()) / f"neo4j-{NEO4J_VERSION}"

    @property
    def lib_dir(self) -> Path:
        return self.dist_dir / "lib"

    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "neo4j.pid"

    @property
    def password_file(self) -> Path:
        return self.home / "password"

    @property
    def unfinished_import(self) -> Path:
        """Present while an offline import (`kg.stores.neo4j_import`) replaces the database,
        left behind when one is cut off: the database may then be partial."""
        return self.home / "bulk-import.unfinished"

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"


def render_conf(config: ServerConfig) -> str:
    """The complete neo4j.conf. Neo4j aborts on unknown keys, so only 5.26 settings appear."""
    settings = {
        "server.default_listen_address": "127.0.0.1",
        # Advertised addresses feed neo4j:// routing tables; the defaults would name port 7687.
        "server.default_advertised_address": "127.0.0.1",
        "server.bolt.enabled": "true",
        "server.bolt.listen_address": f"127.0.0.1:{config.bolt_port}",
        "server.bolt.advertised_address": f"127.0.0.1:{config.bolt_port}",
        "server.http.enabled": "true",
        "server.http.listen_address": f"127.0.0.1:{config.http_port}",
        "server.http.advertised_address": f"127.0.0.1:{config.http_port}",
        "server.https.enabled": "false",
        "server.memory.heap.initial_size": config.heap,
        "server.memory.heap.max_size": config.heap,
        "server.memory.pagecache.size": config.pagecache,
        "dbms.security.auth_enabled": "true",
        "dbms.usage_report.enabled": "false",
        "server.directories.data": str(config.data_dir),
        "server.directories.logs": str(config.logs_dir),
        "server.directories.run": str(config.run_dir),
    }
    lines = ["# Written by kgrec on every start (kg/server_conf.py); edits here are overwritten."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def jvm_command(config: ServerConfig, java: str) -> list[str]:
    """The server command line: what `bin/neo4j console` would run, without the launcher."""
    return [
        java,
        f"-Xms{config.heap}",
        f"-Xmx{config.heap}",
        *JVM_FLAGS,
        "-cp",
        f"{config.lib_dir}/*",
        ENTRY_POINT,
        f"--home-dir={config.home}",
        f"--config-dir={config.conf_dir}",
    ]


def read_password(config: ServerConfig) -> str | None:
    try:
        return config.password_file.read_text(encoding="utf-8").rstrip("\n")
    except FileNotFoundError:
        return None


def create_password(config: ServerConfig) -> str:
    """NEO4J_PASSWORD, else a generated one; stored 0600 so later runs can log in."""
    password = env.neo4j_password() or secrets.token_urlsafe(24)
    config.home.mkdir(parents=True, exist_ok=True)
    # O_EXCL + mode: the file never exists with wider permissions, not even briefly.
    fd = os.open(config.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(password + "\n")
    return password
