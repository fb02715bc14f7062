"""docker-compose.yml, the Dockerfile and the files they mount.

With Docker Compose v2 installed (the `docker compose` plugin, or a
`docker-compose` v2 binary; no Docker engine needed), the file is
validated by Compose itself and the checks below run on its normalized
model (`docker compose config --format json`).  Without it, the same checks
run on a model built here from the YAML with PyYAML, which applies
Compose's `${VAR:?}`/`${VAR:-}` interpolation and long-form conversion for
the fields checked.  See docs/deploy.md for installing the validator in CI.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ami_bridge.asterisk_conf import ConfigFile, parse_config
from dialer.runtime.settings import Settings

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CONFIG_DIR = ROOT / "asterisk-config"

# Stand-ins for the secrets of .env; every one is required (no default).
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD": "test-postgres-password",
    "DIALER_AMI_SECRET": "test-ami-secret",
    "ASTERISK_DB_PASSWORD": "test-asterisk-db",
    "PHONE_1001_PASSWORD": "test-phone-1001",
    "PHONE_1002_PASSWORD": "test-phone-1002",
    "PHONE_1003_PASSWORD": "test-phone-1003",
}
SERVICES = {"asterisk", "postgres", "mosquitto", "migrate", "dialer"}
LONG_RUNNING = {"asterisk", "postgres", "mosquitto", "dialer"}


# --- getting the model --------------------------------------------------------


def _compose_command() -> list[str] | None:
    """`docker compose` or `docker-compose`, if it is Compose v2."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        try:
            result = subprocess.run(
                [*command, "version", "--short"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        version = result.stdout.strip().lstrip("v")
        if result.returncode == 0 and version.split(".")[0].isdigit():
            if int(version.split(".")[0]) >= 2:
                return command
    return None


COMPOSE = _compose_command()


def _run_compose(
    args: list[str], env: Mapping[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    env_file = tmp_path / "empty.env"  # keep a developer's .env out of it
    env_file.write_text("")
    return subprocess.run(
        [
            *COMPOSE,
            "--project-directory",
            str(ROOT),
            "--file",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **env},
    )


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    pass


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation, for the fallback model."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$$"
        name = match["name"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":?", "?") and missing:
            raise InterpolationError(f"required variable {name} is missing a value: {arg}")
        if op in (":-", "-") and missing:
            return arg
        return current or ""

    return _VARIABLE.sub(replace, value)


def _long_port(port: Any) -> dict[str, Any]:
    if isinstance(port, dict):
        return port
    text, _, protocol = str(port).partition("/")
    parts = text.rsplit(":", 2)
    host_ip = parts[0] if len(parts) == 3 else None
    published = parts[-2] if len(parts) >= 2 else None
    return {
        "host_ip": host_ip,
        "published": published,
        "target": int(parts[-1]),
        "protocol": protocol or "tcp",
    }


def _long_volume(volume: Any) -> dict[str, Any]:
    if isinstance(volume, dict):
        return volume
    source, target, *mode = str(volume).split(":")
    is_path = source.startswith((".", "/", "~"))
    return {
        "type": "bind" if is_path else "volume",
        "source": str((ROOT / source).resolve()) if source.startswith(".") else source,
        "target": target,
        "read_only": "ro" in mode,
    }


def _fallback_model(env: Mapping[str, str]) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    model: dict[str, Any] = _interpolate(raw, env)
    for name in list(model):
        if name.startswith("x-"):
            del model[name]
    for service in model["services"].values():
        if isinstance(service.get("environment"), list):
            service["environment"] = dict(item.split("=", 1) for item in service["environment"])
        if isinstance(service.get("depends_on"), list):
            service["depends_on"] = {
                name: {"condition": "service_started"} for name in service["depends_on"]
            }
        if isinstance(service.get("networks"), list):
            service["networks"] = dict.fromkeys(service["networks"])
        service["ports"] = [_long_port(port) for port in service.get("ports", [])]
        service["volumes"] = [_long_volume(volume) for volume in service.get("volumes", [])]
        if isinstance(service.get("build"), dict):
            service["build"]["context"] = str((ROOT / service["build"]["context"]).resolve())
    return model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if COMPOSE is None:
        return _fallback_model(REQUIRED_SECRETS)
    result = _run_compose(
        ["config", "--format", "json"], REQUIRED_SECRETS, tmp_path_factory.mktemp("compose")
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.fixture(scope="module")
def manager(model: dict[str, Any]) -> ConfigFile:
    return _as_mounted(model, "manager.conf")


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


# --- Compose itself -------------------------------------------------------------


@pytest.mark.skipif(COMPOSE is None, reason="Docker Compose v2 is not installed")
def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    result = _run_compose(["config", "--quiet"], REQUIRED_SECRETS, tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("secret", sorted(REQUIRED_SECRETS))
def test_every_secret_must_be_set(secret: str, tmp_path: Path) -> None:
    env = {name: value for name, value in REQUIRED_SECRETS.items() if name != secret}
    if COMPOSE is None:
        with pytest.raises(InterpolationError, match=secret):
            _fallback_model(env)
        return
    result = _run_compose(["config", "--quiet"], env, tmp_path)
    assert result.returncode != 0
    assert secret in result.stderr


@pytest.mark.skipif(COMPOSE is None, reason="Docker Compose v2 is not installed")
def test_the_fallback_model_agrees_with_compose(model: dict[str, Any]) -> None:
    fallback = _fallback_model(REQUIRED_SECRETS)
    assert set(fallback["services"]) == set(model["services"])
    for name, service in model["services"].items():
        mine = fallback["services"][name]
        assert mine.get("image") == service.get("image"), name
        assert mine.get("environment", {}) == (service.get("environment") or {}), name
        assert [(p["target"], p["host_ip"]) for p in mine["ports"]] == [
            (p["target"], p.get("host_ip")) for p in service.get("ports", [])
        ], name
        assert [(v["source"], v["target"], v["read_only"]) for v in mine["volumes"]] == [
            (v["source"], v["target"], v.get("read_only", False))
            for v in service.get("volumes", [])
        ], name


# --- the stack ----------------------------------------------------------------------


def test_the_stack_has_its_services(model: dict[str, Any]) -> None:
    assert set(model["services"]) == SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES - {"migrate", "dialer"}))
def test_public_images_are_pinned(model: dict[str, Any], name: str) -> None:
    image = model["services"][name]["image"]
    repository, _, tag = image.rpartition(":")
    assert repository and "/" not in tag, f"{image} has no tag"
    assert tag not in ("latest", "stable", "edge")
    assert re.match(r"^\d+\.\d+(\.\d+)?", tag), f"{image}: pin an exact version"


def test_asterisk_image_is_new_enough_for_the_event_filters(model: dict[str, Any]) -> None:
    tag = model["services"]["asterisk"]["image"].rpartition(":")[2]
    major, minor = (int(part) for part in tag.split("_")[0].split(".")[:2])
    # eventfilter(...) syntax: 20.11+, 21.6+, 22.1+ and every later major.
    assert (major, minor) >= {20: (20, 11), 21: (21, 6), 22: (22, 1)}.get(major, (23, 0))


def test_only_the_web_port_is_published(model: dict[str, Any]) -> None:
    published = {
        name: [port["target"] for port in service.get("ports", [])]
        for name, service in model["services"].items()
        if service.get("ports")
    }
    assert published == {"dialer": [8080]}
    (port,) = model["services"]["dialer"]["ports"]
    assert port["host_ip"] == "127.0.0.1", "by default the web port is for this host only"


def test_ami_is_never_published(model: dict[str, Any]) -> None:
    for service in model["services"].values():
        for port in service.get("ports", []):
            assert port["target"] not in (5038, 5039)
        assert "expose" not in service


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_long_running_services_have_health_checks(model: dict[str, Any], name: str) -> None:
    service = model["services"][name]
    test = service["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1
    assert service.get("restart") == "unless-stopped"


def test_data_lives_in_named_volumes(model: dict[str, Any]) -> None:
    named = set(model["volumes"])

    def volume_at(service: str, target: str) -> str:
        for volume in model["services"][service]["volumes"]:
            if volume["target"] == target:
                assert volume["type"] == "volume"
                return str(volume["source"])
        raise AssertionError(f"{service} has nothing mounted at {target}")

    assert volume_at("postgres", "/var/lib/postgresql/data") in named
    assert volume_at("mosquitto", "/mosquitto/data") in named


def test_every_asterisk_config_file_is_mounted_read_only(model: dict[str, Any]) -> None:
    mounts = {
        Path(v["source"]).name: v
        for v in model["services"]["asterisk"]["volumes"]
        if v["type"] == "bind"
    }
    for path in sorted(CONFIG_DIR.glob("*.conf")):
        assert path.name in mounts, f"{path.name} is not mounted"
        mount = mounts[path.name]
        assert Path(mount["source"]).resolve() == path.resolve()
        assert mount["target"] == f"/etc/asterisk/{path.name}"
        assert mount["read_only"] is True


def test_the_dialer_settings_are_wired(model: dict[str, Any]) -> None:
    for name in ("dialer", "migrate"):
        env = model["services"][name]["environment"]
        assert env["DIALER_DATABASE_URL"].startswith("postgresql+asyncpg://dialer:")
        assert env["DIALER_DATABASE_URL"].endswith("@postgres:5432/dialer")
        assert REQUIRED_SECRETS["POSTGRES_PASSWORD"] in env["DIALER_DATABASE_URL"]
        assert env["DIALER_AMI_HOST"] == "asterisk"
        assert env["DIALER_AMI_SECRET"] == REQUIRED_SECRETS["DIALER_AMI_SECRET"]
        assert env["DIALER_MQTT_URL"] == "mqtt://mosquitto:1883"
        assert env["DIALER_WEB_HOST"] == "0.0.0.0"
    postgres = model["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"] == REQUIRED_SECRETS["POSTGRES_PASSWORD"]


def test_the_dialer_ami_user_exists_in_manager_conf(
    model: dict[str, Any], manager: ConfigFile
) -> None:
    username = model["services"]["dialer"]["environment"]["DIALER_AMI_USERNAME"]
    assert username == _default("ami_username")
    manager.section(username)


def test_migrations_run_before_the_dialer(model: dict[str, Any]) -> None:
    migrate = model["services"]["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate.get("restart") in (None, "no")
    dialer = model["services"]["dialer"]
    assert dialer["command"] == ["serve"]
    assert dialer["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["image"] == dialer["image"]
    assert migrate["build"]["context"] == dialer["build"]["context"] == str(ROOT)


def test_the_dialer_container_is_locked_down(model: dict[str, Any]) -> None:
    for name in ("dialer", "migrate"):
        service = model["services"][name]
        assert service.get("read_only") is True
        assert service.get("cap_drop") == ["ALL"]
        assert "no-new-privileges:true" in service.get("security_opt", [])


# --- networks and the AMI ACL -----------------------------------------------------------


def test_ami_network_matches_manager_conf(model: dict[str, Any], manager: ConfigFile) -> None:
    pbx = model["networks"]["pbx"]
    assert pbx.get("internal") is True
    (ipam,) = pbx["ipam"]["config"]
    subnet = ipaddress.ip_network(ipam["subnet"])
    dynamic = ipaddress.ip_network(ipam["ip_range"])
    asterisk_ip = ipaddress.ip_address(
        model["services"]["asterisk"]["networks"]["pbx"]["ipv4_address"]
    )
    assert ipaddress.ip_address(manager.section("general").get("bindaddr") or "") == asterisk_ip
    assert asterisk_ip in subnet and asterisk_ip not in dynamic
    gateway = next(subnet.hosts())  # Docker's default gateway: the host
    user = manager.section(_default("ami_username"))
    permitted = [ipaddress.ip_network(value) for value in user.get_all("permit")]
    assert permitted == [dynamic], "permit exactly the range the dialer containers get"
    assert gateway not in dynamic


def test_only_asterisk_and_the_dialer_share_the_ami_network(model: dict[str, Any]) -> None:
    members = {name for name, s in model["services"].items() if "pbx" in (s.get("networks") or {})}
    assert members == {"asterisk", "dialer"}


def _postgres_model(env: Mapping[str, str], tmp_path: Path) -> dict[str, Any]:
    if COMPOSE is None:
        service: dict[str, Any] = _fallback_model(env)["services"]["postgres"]
        return service
    result = _run_compose(["config", "--format", "json"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)["services"]["postgres"]
    return parsed


def test_postgres_memory_is_postgres_default_unless_the_operator_sizes_it(
    tmp_path: Path,
) -> None:
    """docs/deploy.md (Sizing): a voter file of millions wants more shared_buffers."""
    default = _postgres_model(REQUIRED_SECRETS, tmp_path)
    assert default["command"] == ["postgres", "-c", "shared_buffers=128MB"]
    sized = _postgres_model({**REQUIRED_SECRETS, "POSTGRES_SHARED_BUFFERS": "2GB"}, tmp_path)
    assert sized["command"] == ["postgres", "-c", "shared_buffers=2GB"]
    # Docker's 64 MB /dev/shm is too small for parallel queries' shared memory.
    assert default["shm_size"] in ("256mb", "268435456")


def test_postgres_and_mosquitto_are_internal(model: dict[str, Any]) -> None:
    for name in ("postgres", "mosquitto"):
        for network in model["services"][name]["networks"]:
            assert model["networks"][network].get("internal") is True, (name, network)


# --- secrets rendered into the Asterisk configuration ----------------------------------------


def _rendered(model: dict[str, Any], service: str) -> dict[str, str]:
    """What Compose writes into ``service``'s file system: target path -> content."""
    return {
        item["target"]: str(model["configs"][item["source"]]["content"])
        for item in model["services"][service].get("configs", [])
    }


def _config_content(model: dict[str, Any], service: str, target: str) -> str:
    content = _rendered(model, service).get(target)
    if content is None:
        raise AssertionError(f"nothing is rendered at {target}")
    return content


def _as_mounted(model: dict[str, Any], name: str) -> ConfigFile:
    """An asterisk-config/ file as the container's Asterisk reads it, includes and all.

    Raises ConfigError, as Asterisk rejects the file, when an #include'd
    file is neither mounted nor rendered.
    """
    rendered = _rendered(model, "asterisk")
    mounted = {
        volume["target"]: Path(volume["source"])
        for volume in model["services"]["asterisk"]["volumes"]
        if volume["type"] == "bind"
    }

    def read(target: str) -> str | None:
        # Asterisk resolves a relative #include in its configuration folder.
        path = target if target.startswith("/") else f"/etc/asterisk/{target}"
        if path in rendered:
            return rendered[path]
        return mounted[path].read_text() if path in mounted else None

    source = CONFIG_DIR / name
    return parse_config(source.read_text(), source=str(source), include_loader=read)


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.conf")), ids=lambda path: path.name)
def test_compose_writes_every_file_the_asterisk_config_includes(
    model: dict[str, Any], path: Path
) -> None:
    """The secrets files are #include'd, so a missing one is fatal to its file.

    Compose renders them from .env on every start (configs: content:), so
    in this stack they are always there; none is ever a #tryinclude.
    """
    config = _as_mounted(model, path.name)
    for include in config.includes:
        assert include.found and not include.optional, (path.name, include.target)
        assert f"/etc/asterisk/{include.target}" in _rendered(model, "asterisk")


def test_the_ami_secret_reaches_manager_conf(manager: ConfigFile) -> None:
    assert [include.target for include in manager.includes] == ["manager_dialer_secret.conf"]
    user = manager.section(_default("ami_username"))
    assert user.get("secret") == REQUIRED_SECRETS["DIALER_AMI_SECRET"]


def test_every_pjsip_auth_is_rendered_with_a_password(model: dict[str, Any]) -> None:
    rendered = _as_mounted(model, "pjsip.conf")
    assert [include.target for include in rendered.includes] == ["pjsip_secrets.conf"]
    auths = {section.name: section for section in rendered.of_type("auth")}
    for endpoint in rendered.of_type("endpoint"):
        for key in ("auth", "outbound_auth"):
            name = endpoint.get(key)
            if name:
                assert name in auths, f"endpoint {endpoint.name}: {key} {name} is not defined"
                assert auths[name].get("password"), f"auth {name} has no password"
    for extension in ("1001", "1002", "1003"):
        auth = auths[f"{extension}-auth"]
        assert auth.get("username") == extension
        assert auth.get("password") == REQUIRED_SECRETS[f"PHONE_{extension}_PASSWORD"]


# --- the Dockerfile, .dockerignore and Mosquitto ---------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_the_dockerfile_builds_a_non_root_dialer_image() -> None:
    instructions = _dockerfile_instructions()
    args = dict(
        rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest
    )
    bases = [rest.split()[0] for keyword, rest in instructions if keyword == "FROM"]
    assert bases and all(base in ("${PYTHON_IMAGE}", "python:3.11-slim") for base in bases)
    assert args.get("PYTHON_IMAGE") == "python:3.11-slim"
    assert any(k == "RUN" and "pip install ." in rest for k, rest in instructions)
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("ENTRYPOINT", '["dialer"]') in instructions
    assert instructions[-1] == ("CMD", '["serve"]')


def test_the_build_context_leaves_secrets_and_clutter_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv", "tests"} <= ignored


def test_mosquitto_config_listens_for_the_dialer() -> None:
    lines = [
        line.split("#", 1)[0].split()
        for line in (ROOT / "deploy/mosquitto.conf").read_text().splitlines()
    ]
    options = {line[0]: line[1:] for line in lines if line}
    assert options["listener"] == ["1883"]
    assert options["persistence"] == ["true"]


def test_only_asterisk_and_postgres_share_the_realtime_network(model: dict[str, Any]) -> None:
    """Asterisk reads the browser phones from Postgres, and reaches nothing else there."""
    members = {
        name for name, s in model["services"].items() if "realtime" in (s.get("networks") or {})
    }
    assert members == {"asterisk", "postgres"}
    assert model["networks"]["realtime"].get("internal") is True


def test_asterisk_connects_to_postgres_as_its_read_only_role(model: dict[str, Any]) -> None:
    pgsql = _as_mounted(model, "res_pgsql.conf").section("general")
    assert pgsql.get("dbhost") == "postgres" and pgsql.get("dbname") == "dialer"
    assert pgsql.get("dbuser") == "asterisk"
    assert pgsql.get("dbpass") == REQUIRED_SECRETS["ASTERISK_DB_PASSWORD"]
    init = {
        Path(volume["source"]).name: volume
        for volume in model["services"]["postgres"]["volumes"]
        if volume["type"] == "bind"
    }["postgres-init"]
    assert init["target"] == "/docker-entrypoint-initdb.d" and init["read_only"] is True
    script = (ROOT / "deploy" / "postgres-init" / "10-asterisk-role.sh").read_text()
    assert "CREATE ROLE asterisk LOGIN" in script and "GRANT" not in script
