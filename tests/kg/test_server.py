"""The local Neo4j server, for real: one start/stop cycle on its own home and free ports (not the
shared test instance, which these tests must not stop)."""

from __future__ import annotations

import ipaddress
import socket
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import neo4j
import pytest
from neo4j.exceptions import AuthError
from typer.testing import CliRunner

from fusion.cli import app
from kg import server
from kg.server_conf import ServerConfig, ServerError

runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listen_addresses(port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Local addresses of the sockets listening on `port`, from /proc/net/tcp{,6}."""
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            host, _, hex_port = local.partition(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            # The kernel prints each 32-bit word in host (little-endian) byte order.
            raw = b"".join(bytes.fromhex(host[i : i + 8])[::-1] for i in range(0, len(host), 8))
            addresses.append(ipaddress.ip_address(raw))
    return addresses


def _is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerConfig]:
    home = tmp_path_factory.mktemp("server") / "neo4j"
    cfg = ServerConfig(home, _free_port(), _free_port(), heap="512m", pagecache="64m")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("NEO4J_URI", "NEO4J_USER", "NEO4J_PASSWORD"):
            mp.delenv(var, raising=False)  # a generated password, and no external server
        yield cfg
        server.stop(cfg)  # disposable, unlike the shared test instance


@pytest.fixture(scope="module")
def started(config: ServerConfig) -> server.ServerStatus:
    return server.start(config, timeout=600)


def test_start_is_idempotent(config: ServerConfig, started: server.ServerStatus) -> None:
    again = server.start(config)
    assert again.running and again.pid == started.pid
    assert server.status(config) == again
    assert again.uri == f"bolt://127.0.0.1:{config.bolt_port}"


def test_status_command_reports_running(config: ServerConfig, started: server.ServerStatus) -> None:
    result = runner.invoke(app, ["neo4j", "status", "--home", str(config.home)])
    assert result.exit_code == 0, result.output
    assert "Neo4j 5.26.30: running" in result.output
    assert f"pid:  {started.pid}" in result.output
    assert config.uri in result.output


def test_authentication_is_on(config: ServerConfig, started: server.ServerStatus) -> None:
    settings = server.connection_settings(config)
    wrong = (settings.user, "wrong-password")
    with neo4j.GraphDatabase.driver(settings.uri, auth=wrong) as bad, pytest.raises(AuthError):
        bad.verify_connectivity()
    with neo4j.GraphDatabase.driver(settings.uri, auth=(settings.user, settings.password)) as ok:
        records, _, _ = ok.execute_query("CALL dbms.components() YIELD versions RETURN versions")
    assert records[0]["versions"] == ["5.26.30"]


def test_bound_to_loopback_only(config: ServerConfig, started: server.ServerStatus) -> None:
    conf = (config.conf_dir / "neo4j.conf").read_text()
    assert "server.default_listen_address=127.0.0.1\n" in conf
    assert "dbms.security.auth_enabled=true\n" in conf
    for port in (config.bolt_port, config.http_port):
        addresses = _listen_addresses(port)
        assert addresses, f"nothing listens on {port}"
        assert all(_is_loopback(address) for address in addresses), addresses


def test_password_file_is_private(config: ServerConfig, started: server.ServerStatus) -> None:
    assert stat.S_IMODE(config.password_file.stat().st_mode) == 0o600


def test_no_file_of_the_server_is_open_to_others(
    config: ServerConfig, started: server.ServerStatus
) -> None:
    """The database files and data/dbms/auth.ini included: nothing in the home grants group or
    other users any access, and the home itself is 0700."""
    open_to_others = [
        f"{path.relative_to(config.home)} {stat.filemode(path.lstat().st_mode)}"
        for path in [config.home, *config.home.rglob("*")]
        if not path.is_symlink() and stat.S_IMODE(path.lstat().st_mode) & 0o077
    ]
    assert (config.data_dir / "dbms" / "auth.ini").is_file()
    assert open_to_others == []
    assert stat.S_IMODE(config.home.stat().st_mode) == 0o700


def test_start_makes_an_older_home_private(
    config: ServerConfig, started: server.ServerStatus
) -> None:
    # As kgrec left homes before: directories 0755, the password file 0644.
    for path in (config.home, config.data_dir, config.logs_dir):
        path.chmod(0o755)
    config.password_file.chmod(0o644)
    assert server.start(config).running  # the running server is reused, and its home fixed
    for path in (config.home, config.data_dir, config.logs_dir):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert stat.S_IMODE(config.password_file.stat().st_mode) == 0o600


def test_neo4j_uri_override_provisions_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEO4J_URI", "bolt://db.example:7687")
    monkeypatch.setenv("NEO4J_USER", "alice")
    monkeypatch.setenv("NEO4J_PASSWORD", "secret-pw")
    cfg = ServerConfig(tmp_path / "home", cache_dir=tmp_path / "cache")
    expected = server.Neo4jSettings("bolt://db.example:7687", "alice", "secret-pw")
    assert server.ensure_running(cfg) == expected
    assert server.connection_settings(cfg) == expected
    result = runner.invoke(app, ["neo4j", "start", "--home", str(cfg.home)])
    assert result.exit_code == 0, result.output
    assert "Nothing provisioned" in result.output
    assert list(tmp_path.iterdir()) == []


def test_occupied_bolt_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        busy = other.getsockname()[1]
        cfg = ServerConfig(tmp_path / "home", busy, _free_port())
        with pytest.raises(ServerError, match=f"bolt port {busy} .* already in use"):
            server.start(cfg)
        args = ["neo4j", "start", "--home", str(cfg.home), "--bolt-port", str(busy)]
        result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert f"error: bolt port {busy} on 127.0.0.1 is already in use" in result.output
    assert "Traceback" not in result.output
    assert not server.status(cfg).running


def test_stop_then_status_reports_stopped(
    config: ServerConfig, started: server.ServerStatus
) -> None:
    assert server.stop(config) == started.pid
    assert not server.status(config).running
    assert not config.pid_file.exists()
    assert _listen_addresses(config.bolt_port) == []
    result = runner.invoke(app, ["neo4j", "status", "--home", str(config.home)])
    assert "Neo4j 5.26.30: stopped" in result.output
    assert server.stop(config) is None


def test_start_up_failure_shows_the_log(config: ServerConfig, started: server.ServerStatus) -> None:
    server.stop(config)
    # The JVM rejects this at once; the database already exists, so no admin tool runs first.
    broken = replace(config, heap="lots")
    with pytest.raises(ServerError, match="(?s)stopped during start-up.*console.log.*heap size"):
        server.start(broken)
    assert not server.status(config).running
