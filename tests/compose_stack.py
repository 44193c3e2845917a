"""What tests/test_compose.py and tests/test_compose_cluster.py check in a compose file, written once:
Compose's variable interpolation as the specification describes it, the Compose specification's
JSON schema, and the properties of a stack that matter in operation (health checks, start order,
state in named volumes, no secret in the file, ports, bind mounts, firewatch's settings).

A `Stack` is one compose file with its .env.example; the checks take one.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from core.settings import CONFIG_ENV, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent

# Environment variables firewatch reads that are not Settings fields: the config file's path
# (core/settings.py) and the log level switch (firewatch/cli.py).
NON_SETTINGS = {CONFIG_ENV: ROOT / "core" / "settings.py", "FIREWATCH_LOG": ROOT / "firewatch" / "cli.py"}


# --- Compose interpolation, as the specification describes it ---------------------------------------


class MissingVariableError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"required variable {name} is missing a value: {message}")
        self.name = name


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _braced_end(text: str, start: int) -> int:
    """Index of the '}' closing the '${' that starts at `start`."""
    depth, i = 0, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def interpolate(text: str, env: dict[str, str], used: set[str] | None = None) -> str:
    """${VAR}, $VAR, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt},
    ${VAR+alt}, nested in the default, error or alternative; $$ is a literal $."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("${", i):
            end = _braced_end(text, i)
            body = text[i + 2 : end]
            match = _NAME.match(body)
            assert match, f"bad variable in {text!r}"
            name, rest = match.group(), body[match.end() :]
            if used is not None:
                used.add(name)
            is_set, value = name in env, env.get(name, "")
            if rest == "":
                out.append(value)
            else:
                op = next(o for o in (":-", ":?", ":+", "-", "?", "+") if rest.startswith(o))
                arg = rest[len(op) :]
                present = is_set and (value != "" or not op.startswith(":"))
                if op.endswith("-"):
                    out.append(value if present else interpolate(arg, env, used))
                elif op.endswith("?"):
                    if not present:
                        raise MissingVariableError(name, interpolate(arg, env, used))
                    interpolate(arg, env, used)  # names in the message count as used
                    out.append(value)
                else:
                    out.append(interpolate(arg, env, used) if present else "")
            i = end + 1
            continue
        match = _NAME.match(text, i + 1)
        if match:
            if used is not None:
                used.add(match.group())
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def interpolate_all(node: Any, env: dict[str, str], used: set[str] | None = None) -> Any:
    """Every string value of a loaded compose file (keys are not interpolated)."""
    if isinstance(node, dict):
        return {k: interpolate_all(v, env, used) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_all(v, env, used) for v in node]
    if isinstance(node, str):
        return interpolate(node, env, used)
    return node


# --- the Compose specification's schema -----------------------------------------------------------------


def compose_schema() -> dict[str, Any]:
    # check-jsonschema ships the Compose specification's schema (a dev dependency, pyproject.toml).
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec is not None, "pip install check-jsonschema (.[dev])"
    assert spec.origin is not None
    path = Path(spec.origin).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def schema_errors(document: dict[str, Any]) -> list[str]:
    jsonschema = importlib.import_module("jsonschema")  # installed with check-jsonschema; no type stubs
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


# --- a stack: one compose file and its .env.example -------------------------------------------------


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    @property
    def named_volume(self) -> bool:
        return not self.source.startswith((".", "/", "~"))


def mounts(service: dict[str, Any]) -> list[Mount]:
    out = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            parts = entry.split(":")
            out.append(Mount(parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        else:
            out.append(Mount(entry["source"], entry["target"], bool(entry.get("read_only"))))
    return out


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


@dataclass(frozen=True)
class Stack:
    compose_file: Path
    env_file: Path
    # Secrets with a fallback, which may be left empty.
    optional_secrets: frozenset[str] = field(default_factory=frozenset)

    @property
    def folder(self) -> Path:
        """Where the compose file's relative paths start (bind mounts, build contexts)."""
        return self.compose_file.parent

    def raw(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.compose_file.read_text(encoding="utf-8"))
        return data

    def env_example(self) -> dict[str, str]:
        env = {}
        for line in self.env_file.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, sep, value = line.partition("=")
                assert sep, f"{self.env_file.name}: {line!r} is not KEY=VALUE"
                env[key.strip()] = value.strip()
        return env

    def filled_env(self) -> dict[str, str]:
        """.env.example filled in the way the walk-through says: every secret made with openssl
        rand -hex, the optional ones left empty."""
        return {
            k: v or ("" if k in self.optional_secrets else secrets.token_hex(16))
            for k, v in self.env_example().items()
        }

    def compose(self, env: dict[str, str] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = interpolate_all(self.raw(), self.filled_env() if env is None else env)
        return data

    def secret_names(self) -> set[str]:
        return {k for k in self.env_example() if re.search(r"PASSWORD|TOKEN", k)}

    def source(self, mount: Mount) -> Path:
        """The file or folder in the repository a bind mount shows."""
        return (self.folder / mount.source).resolve()

    def host_path(self, service: dict[str, Any], container_path: str) -> Path:
        """The file in the repository that a container path of a bind mount shows."""
        path = PurePosixPath(container_path)
        for m in mounts(service):
            if not m.named_volume and (
                path == PurePosixPath(m.target) or PurePosixPath(m.target) in path.parents
            ):
                return self.source(m) / path.relative_to(m.target)
        raise AssertionError(f"{container_path} is not on a bind mount")


# --- checks every stack passes ------------------------------------------------------------------------


def check_env_example_holds_no_secret_value(stack: Stack) -> None:
    assert stack.secret_names()  # sanity: the pattern finds them
    assert {k: v for k, v in stack.env_example().items() if k in stack.secret_names() and v} == {}


def check_a_missing_secret_stops_compose(stack: Stack) -> None:
    """.env.example copied but not filled in stops compose; so does any one secret left out, with a
    message naming it and saying where to set it (the optional ones excepted)."""
    with pytest.raises(MissingVariableError) as shipped:
        stack.compose(stack.env_example())
    assert shipped.value.name in stack.secret_names()
    for name in sorted(stack.secret_names() - stack.optional_secrets):
        env = stack.filled_env()
        del env[name]
        with pytest.raises(MissingVariableError) as missing:
            stack.compose(env)
        assert missing.value.name == name
        assert ".env" in str(missing.value), "the message should say where to set it"


def check_env_example_documents_exactly_the_variables_used(stack: Stack) -> None:
    used: set[str] = set()
    interpolate_all(stack.raw(), stack.filled_env(), used)
    assert used == set(stack.env_example())
    lines = stack.env_file.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "=" not in line or line.startswith("#"):
            continue
        above = number - 1
        while above >= 0 and "=" in lines[above] and not lines[above].startswith("#"):
            above -= 1  # a group of related variables under one comment
        assert above >= 0, f"{stack.env_file.name}: {line} has no comment"
        assert lines[above].startswith("#"), f"{stack.env_file.name}: {line} has no comment"


_CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:([^@\s]+)@")


def _variables_as_placeholders(text: str) -> str:
    """Each ${...} (its default or message included) as the bare `${}`."""
    out, i = [], 0
    while (start := text.find("${", i)) >= 0:
        out.append(text[i:start] + "${}")
        i = _braced_end(text, start) + 1
    return "".join(out) + text[i:]


def check_no_secret_is_written(stack: Stack) -> None:
    """Every password, token or credential in a URL comes from a variable."""
    for name, service in stack.raw()["services"].items():
        for key, value in environment(service).items():
            if re.search(r"PASSWORD|TOKEN|SECRET|_KEY$", key):
                # A variable, or one in double quotes (a value nats-server parses, deploy/cluster).
                assert re.fullmatch(r"\$\{.*\}|\"\$\{.*\}\"", value), f"{name}: {key} is written in the file"
            for password in _CREDENTIALS_IN_URL.findall(_variables_as_placeholders(value)):
                assert password == "${}", f"{name}: {key} has a password written in it"
    text = stack.compose_file.read_text(encoding="utf-8")
    for password in re.findall(r"-P\s+\"?([^\s\"]+)", text):
        assert password.startswith("$$"), "a health check's password must come from the environment"


def check_every_long_running_service_has_a_health_check(stack: Stack) -> None:
    for name, service in stack.compose()["services"].items():
        if one_shot(service):
            continue
        check = service.get("healthcheck")
        assert check, f"{name} has no health check"
        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), f"{name}'s health check is disabled"
        assert service.get("restart") in ("always", "unless-stopped"), f"{name} is not restarted"


def check_every_dependency_waits_for_a_condition_that_can_be_met(stack: Stack) -> None:
    services = stack.compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec.get("condition")
            if one_shot(services[target]):
                assert condition == "service_completed_successfully", f"{name} -> {target}"
            elif condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s missing health check"
            else:
                assert condition == "service_started", f"{name} -> {target}: {condition}"


def check_state_lives_in_named_volumes(stack: Stack, state: dict[str, list[str]]) -> None:
    """`state`: each service's folders that hold state. Each is a writable named volume, and every
    declared volume is used."""
    document = stack.compose()
    services = document["services"]
    declared = set(document["volumes"])
    for name, paths in state.items():
        by_target = {m.target: m for m in mounts(services[name])}
        for path in paths:
            m = by_target.get(path)
            assert m is not None, f"{name}: nothing is mounted at {path}"
            assert m.named_volume, f"{name}: {path} is not on a named volume"
            assert m.source in declared
            assert not m.read_only
    used = {m.source for service in services.values() for m in mounts(service) if m.named_volume}
    assert used == declared, "a volume is declared but not used, or used but not declared"


def published_ports(services: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(service, container port) -> the host address it is published on."""
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            host_ip, _host_port, container_port = str(port).rsplit(":", 2)
            published[(name, container_port)] = host_ip
    return published


def check_bind_mounted_configuration_exists(stack: Stack) -> None:
    for name, service in stack.compose()["services"].items():
        for m in mounts(service):
            if not m.named_volume:
                source = stack.source(m)
                assert ROOT in source.parents, f"{name} mounts {m.source}, outside the repository"
                assert source.exists(), f"{name} mounts {m.source}, which is not in the repository"
                assert m.read_only, f"{name}: {m.source} should be mounted read-only"


# --- firewatch's settings --------------------------------------------------------------------------------


def setting_exists(path: list[str]) -> bool:
    model: type[BaseModel] = Settings
    for i, part in enumerate(path):
        field_info = model.model_fields.get(part)
        if field_info is None:
            return False
        annotation = field_info.annotation
        if i < len(path) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def load_service_settings(stack: Stack, service: dict[str, Any], environ: pytest.MonkeyPatch) -> Settings:
    """The settings a firewatch container builds from its environment, with its config file found
    through the bind mounts. Every FIREWATCH_ variable must be a setting or one read elsewhere.
    `environ` (the test's monkeypatch) loses every other FIREWATCH_ variable first."""
    for key in list(os.environ):
        if key.startswith("FIREWATCH_"):
            environ.delenv(key)
    env = environment(service)
    for key in env:
        assert key.startswith("FIREWATCH_"), key
        if key in NON_SETTINGS:
            assert key in NON_SETTINGS[key].read_text(encoding="utf-8"), f"{key} is no longer read"
            continue
        path = key.removeprefix("FIREWATCH_").lower().split("__")
        assert setting_exists(path), f"{key} is not a setting (core/settings.py)"
    for key, value in env.items():
        environ.setenv(key, value)
    if CONFIG_ENV in env:
        environ.setenv(CONFIG_ENV, str(stack.host_path(service, env[CONFIG_ENV])))
    return load_settings()


# --- the registry seed (a one-shot before firewatch) ----------------------------------------------------


def check_the_registry_seed(stack: Stack, init_name: str, service_name: str, tmp_path: Path) -> Path:
    """The one-shot `init_name` copies a seed registry into `service_name`'s data volume on the first
    run and keeps the service's copy afterwards; run here with its two folders moved to tmp_path.
    Returns the seed file."""
    services = stack.compose()["services"]
    init, fw = services[init_name], services[service_name]
    assert fw["depends_on"][init_name]["condition"] == "service_completed_successfully"
    registry_path = environment(fw)["FIREWATCH_REGISTRY"]
    data = next(m for m in mounts(init) if m.named_volume)
    assert data.source == next(m.source for m in mounts(fw) if m.target == data.target)
    seed = re.search(r"cp (\S+) " + re.escape(registry_path), init["command"][0])
    assert seed, f"{init_name} should copy a seed registry to the service's registry path"
    seed_file = stack.host_path(init, seed.group(1))

    etc, volume = tmp_path / "etc", tmp_path / "volume"
    shutil.copytree(seed_file.parent, etc)
    volume.mkdir()
    conf_dir = next(m.target for m in mounts(init) if not m.named_volume)
    script = init["command"][0].replace(conf_dir + "/", f"{etc}/").replace(data.target + "/", f"{volume}/")

    def run() -> None:
        result = subprocess.run(["/bin/sh", "-euc", script], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr

    run()
    copied = volume / PurePosixPath(registry_path).relative_to(data.target)
    assert copied.read_bytes() == seed_file.read_bytes()
    copied.write_text("# changed through the API\n", encoding="utf-8")
    run()
    assert copied.read_text(encoding="utf-8") == "# changed through the API\n"
    return seed_file
