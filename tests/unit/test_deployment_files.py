"""The deployment files (Dockerfile, docker-compose.yml, deploy/) checked by the tools that will read them.

No container engine runs here, so the image is never built nor the stack started: Docker Compose v2
resolves the compose file exactly as ``docker compose up`` would (``config``), Caddy adapts and validates the
Caddyfile, and the shell pieces (the image's entrypoint, the jobs loop) run for real with a stand-in for
``hospiconnect``. A missing tool fails these tests: .ci/run installs both.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hospiconnect.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "deploy" / "docker-entrypoint.sh"
CONSTRAINTS = ROOT / "deploy" / "constraints.txt"

#: Where .ci/run installs Docker Compose v2 (as a plugin of the docker command; it also runs on its own).
COMPOSE_PLUGIN = Path("/usr/local/lib/docker/cli-plugins/docker-compose")
IDP_SERVICES = ("idp-1", "idp-2")
HOSPICONNECT_SERVICES = ("init", *IDP_SERVICES, "jobs")
KEY_DIR = "/var/lib/hospiconnect/keys"
SERVICE_UID = "10001"


# --- tools ---------------------------------------------------------------------------------------------------

def _compose_binary() -> str:
    candidates = [str(COMPOSE_PLUGIN)] if COMPOSE_PLUGIN.is_file() else []
    candidates += [found for found in [shutil.which("docker-compose")] if found]
    for candidate in candidates:
        version = subprocess.run([candidate, "version", "--short"], capture_output=True, text=True)
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2."):
            return candidate
    pytest.fail("Docker Compose v2 is missing: .ci/run installs it at " + str(COMPOSE_PLUGIN))


def _caddy_binary() -> str:
    found = shutil.which("caddy")
    if found is None:
        pytest.fail("caddy is missing: .ci/run installs Debian's package (apt-get install caddy)")
    return found


def _clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: compose interpolates the process environment before the env file, so the
    test run's own HOSPICONNECT_* variables must not leak into what is checked."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **extra}


def _compose(home: Path, *args: str, env_file: Path | None = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    command = [_compose_binary(), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=_clean_env(home), cwd=ROOT,
                          timeout=60)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose project as Docker Compose v2 resolves it with the example env file."""
    result = _compose(tmp_path_factory.mktemp("compose-home"), "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def caddy_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Caddyfile adapted to Caddy's JSON, with the variables compose gives the proxy."""
    home = tmp_path_factory.mktemp("caddy-home")
    result = subprocess.run([_caddy_binary(), "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                            capture_output=True, text=True, timeout=60,
                            env=_clean_env(home, HOSPICONNECT_ISSUER="https://idp.chu.example:8443",
                                           HOSPICONNECT_SITE_ADDRESS="idp.chu.example"))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _service(project: dict[str, Any], name: str) -> dict[str, Any]:
    assert name in project["services"], sorted(project["services"])
    return project["services"][name]


def _depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


# --- docker-compose.yml ---------------------------------------------------------------------------------------

def test_compose_file_is_valid_with_the_example_env(tmp_path: Path) -> None:
    result = _compose(tmp_path, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_any_other_setting_reaches_every_hospiconnect_container_from_an_optional_file(tmp_path: Path) -> None:
    """deploy/hospiconnect.env (not committed) carries the settings the compose file does not list."""
    project_dir = tmp_path / "project"
    shutil.copytree(ROOT / "deploy", project_dir / "deploy")
    shutil.copy(COMPOSE_FILE, project_dir / "docker-compose.yml")
    (project_dir / "deploy" / "hospiconnect.env").write_text("HOSPICONNECT_LOCKOUT_THRESHOLD=7\n"
                                                              "HOSPICONNECT_ENV=development\n")
    result = subprocess.run([_compose_binary(), "--project-directory", str(project_dir), "-f",
                             str(project_dir / "docker-compose.yml"), "--env-file", str(ENV_EXAMPLE), "config",
                             "--format", "json"], capture_output=True, text=True, env=_clean_env(tmp_path),
                            cwd=project_dir, timeout=60)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    hospiconnect = [s for s in services.values() if s["image"].startswith("hospiconnect:")]
    assert len(hospiconnect) >= 4  # init, idp-1, idp-2, jobs
    for service in hospiconnect:
        assert service["environment"]["HOSPICONNECT_LOCKOUT_THRESHOLD"] == "7"
        assert service["environment"]["HOSPICONNECT_ENV"] == "production"  # the compose file's own value wins


def test_compose_refuses_to_start_without_the_required_settings(tmp_path: Path) -> None:
    result = _compose(tmp_path, "config", "--quiet", env_file=None)
    assert result.returncode != 0
    assert "deploy/.env" in result.stderr  # the message says where the missing value goes


def test_topology(project: dict[str, Any]) -> None:
    assert set(project["services"]) == {"postgres", "redis", "init", *IDP_SERVICES, "proxy", "jobs"}
    assert _service(project, "postgres")["image"].startswith("postgres:15")
    assert _service(project, "redis")["image"].startswith("redis:7")
    assert _service(project, "proxy")["image"].startswith("caddy:")
    init = _service(project, "init")
    assert init["command"] == ["init"]
    assert init["build"]["dockerfile"] == "Dockerfile"
    assert init["restart"] == "no"
    assert _depends(init) == {"postgres": "service_healthy"}
    assert "pg_isready" in _service(project, "postgres")["healthcheck"]["test"]


def test_the_two_instances_are_the_same_server(project: dict[str, Any]) -> None:
    first, second = (_service(project, name) for name in IDP_SERVICES)
    for key in ("image", "environment", "command", "volumes", "secrets", "healthcheck", "networks", "read_only"):
        assert first.get(key) == second.get(key), key
    assert first["image"] == _service(project, "init")["image"] == _service(project, "jobs")["image"]
    assert first["command"][:5] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    for name in IDP_SERVICES:
        assert _depends(_service(project, name)) == {
            "postgres": "service_healthy", "redis": "service_healthy", "init": "service_completed_successfully"}


def test_instances_run_in_production_behind_one_proxy_with_redis(project: dict[str, Any]) -> None:
    for name in HOSPICONNECT_SERVICES:
        env = _service(project, name)["environment"]
        assert env["HOSPICONNECT_ENV"] == "production", name
        assert env["HOSPICONNECT_REDIS_URL"].startswith("redis://redis:6379/"), name
        assert env["HOSPICONNECT_DATABASE_URL"].startswith("postgresql://hospiconnect@postgres:5432/"), name
        assert env["HOSPICONNECT_TRUSTED_PROXIES"] == "1", name
        assert env["HOSPICONNECT_ISSUER"].startswith("https://"), name
        assert env["HOSPICONNECT_SECRET_KEY_FILE"] == KEY_DIR + "/keys.json", name


def test_instances_use_the_production_settings_without_insecure_defaults(project: dict[str, Any]) -> None:
    env = {k: v for k, v in _service(project, "idp-1")["environment"].items() if v is not None}
    settings = Settings.from_env(env)
    assert settings.is_production and settings.trusted_proxies == 1
    assert not settings.uses_sqlite
    # The example leaves the shipped access policy in force: the establishment must copy and decide it.
    assert [w for w in settings.insecure_defaults() if not w.startswith("HOSPICONNECT_POLICY_FILE")] == []


def test_instances_are_checked_on_readyz(project: dict[str, Any]) -> None:
    for name in IDP_SERVICES:
        test = " ".join(_service(project, name)["healthcheck"]["test"])
        assert "http://127.0.0.1:8000/readyz" in test
    for name in ("init", "jobs"):
        assert _service(project, name)["healthcheck"]["disable"] is True


def test_only_init_may_write_the_key_file(project: dict[str, Any]) -> None:
    def key_mount(name: str) -> dict[str, Any]:
        mounts = [m for m in _service(project, name)["volumes"] if m["target"] == KEY_DIR]
        assert len(mounts) == 1, name
        assert mounts[0]["type"] == "volume" and mounts[0]["source"] == "keys"
        return mounts[0]

    assert not key_mount("init").get("read_only", False)
    for name in (*IDP_SERVICES, "jobs"):
        assert key_mount(name)["read_only"] is True, name
        assert _service(project, name)["read_only"] is True, name


def test_secrets_come_from_files_never_from_the_compose_file(project: dict[str, Any]) -> None:
    assert project["secrets"]["db_password"]["file"].endswith("/deploy/secrets/db_password")
    assert _service(project, "postgres")["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"
    for name in ("postgres", *HOSPICONNECT_SERVICES):
        assert [s["source"] for s in _service(project, name)["secrets"]] == ["db_password"], name
    for name in HOSPICONNECT_SERVICES:
        env = _service(project, name)["environment"]
        assert env["HOSPICONNECT_DATABASE_PASSWORD_FILE"] == "/run/secrets/db_password"
        assert ":" not in env["HOSPICONNECT_DATABASE_URL"].split("//", 1)[1].split("@", 1)[0]  # no password
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition("=")
        if not line.startswith("#") and re.search(r"SECRET|PASSWORD|TOKEN", name) and not name.endswith("_FILE"):
            assert value == "", f"{name} must stay empty in the committed example"
    assert "@" not in _service(project, "idp-1")["environment"]["HOSPICONNECT_SMTP_URL"].split("//", 1)[1]


def test_local_env_and_secrets_are_not_committed() -> None:
    for path in ("deploy/.env", "deploy/secrets/db_password", "deploy/certs/hospiconnect.key"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert ignored.returncode == 0, f"{path} is not ignored by git"
    kept = subprocess.run(["git", "check-ignore", "-q", "deploy/.env.example"], cwd=ROOT)
    assert kept.returncode == 1


def test_only_the_proxy_is_published_and_the_data_stores_are_internal(project: dict[str, Any]) -> None:
    published = {name for name, service in project["services"].items() if service.get("ports")}
    assert published == {"proxy"}
    assert sorted(p["target"] for p in _service(project, "proxy")["ports"]) == [8080, 8443]
    assert project["networks"]["backend"]["internal"] is True
    for name in ("postgres", "redis"):
        assert list(_service(project, name)["networks"]) == ["backend"], name
    assert "backend" not in _service(project, "proxy")["networks"]


def test_jobs_run_periodically(project: dict[str, Any]) -> None:
    jobs = _service(project, "jobs")
    assert jobs["entrypoint"] == ["/bin/sh", "-c"]
    assert "hospiconnect-entrypoint jobs run" in jobs["command"][0]
    assert jobs["environment"]["HOSPICONNECT_JOBS_INTERVAL"] == "300"
    assert jobs["restart"] == "unless-stopped"


def test_jobs_loop_runs_again_and_stops_on_sigterm(project: dict[str, Any], tmp_path: Path) -> None:
    # The container runs the command after compose turned "$$" into "$"; the stand-in fails, as a run that
    # cannot reach the database would: the loop reports it and goes on.
    script = _service(project, "jobs")["command"][0].replace("$$", "$")
    calls = tmp_path / "calls"
    _stand_in(tmp_path / "bin", "hospiconnect-entrypoint", f'echo "$*" >> {calls}\nexit 3\n')
    env = _clean_env(tmp_path, HOSPICONNECT_JOBS_INTERVAL="1")
    env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
    loop = subprocess.Popen(["/bin/sh", "-c", script], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while (not calls.exists() or len(calls.read_text().splitlines()) < 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert calls.read_text().splitlines()[:2] == ["jobs run --json", "jobs run --json"]
        loop.send_signal(signal.SIGTERM)
        assert loop.wait(timeout=30) == 0
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
    assert "hospiconnect jobs run : échec (code 3)" in (loop.stderr.read() if loop.stderr else "")


def test_jobs_loop_falls_back_to_five_minutes_on_a_bad_interval(project: dict[str, Any], tmp_path: Path) -> None:
    script = _service(project, "jobs")["command"][0].replace("$$", "$")
    calls = tmp_path / "calls"
    _stand_in(tmp_path / "bin", "hospiconnect-entrypoint", f'echo "$*" >> {calls}\n')
    _stand_in(tmp_path / "bin", "sleep", f'echo "sleep $*" >> {calls}\nexit 0\n')
    env = _clean_env(tmp_path, HOSPICONNECT_JOBS_INTERVAL="soon")
    env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
    loop = subprocess.Popen(["/bin/sh", "-c", script], env=env)
    try:
        deadline = time.monotonic() + 30
        while (not calls.exists() or len(calls.read_text().splitlines()) < 4) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        loop.kill()
        loop.wait()
    assert calls.read_text().splitlines()[:4] == ["jobs run --json", "sleep 300"] * 2


# --- deploy/Caddyfile -----------------------------------------------------------------------------------------

def test_caddyfile_is_valid(tmp_path: Path) -> None:
    result = subprocess.run([_caddy_binary(), "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
                            capture_output=True, text=True, env=_clean_env(tmp_path), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def _routes(server: dict[str, Any]) -> list[dict[str, Any]]:
    """Every route of a server, the nested ones (subroutes) included."""
    found: list[dict[str, Any]] = []
    pending = list(server.get("routes", []))
    while pending:
        route = pending.pop(0)
        found.append(route)
        for handler in route.get("handle", []):
            pending.extend(handler.get("routes", []))
    return found


def _server_on(caddy_config: dict[str, Any], port: int) -> dict[str, Any]:
    servers = [s for s in caddy_config["apps"]["http"]["servers"].values() if s["listen"] == [f":{port}"]]
    assert len(servers) == 1, caddy_config["apps"]["http"]["servers"]
    return servers[0]


def test_proxy_balances_both_instances_checked_on_readyz(caddy_config: dict[str, Any]) -> None:
    handlers = [h for route in _routes(_server_on(caddy_config, 8443)) for h in route.get("handle", [])
                if h["handler"] == "reverse_proxy"]
    assert len(handlers) == 1
    proxy = handlers[0]
    assert sorted(u["dial"] for u in proxy["upstreams"]) == ["idp-1:8000", "idp-2:8000"]
    assert proxy["health_checks"]["active"]["uri"] == "/readyz"
    assert proxy["health_checks"]["active"]["expect_status"] == 200
    assert "passive" in proxy["health_checks"]


def test_proxy_serves_https_with_its_local_ca_and_hides_metrics(caddy_config: dict[str, Any]) -> None:
    server = _server_on(caddy_config, 8443)
    assert server["routes"][0]["match"] == [{"host": ["idp.chu.example"]}]
    policies = caddy_config["apps"]["tls"]["automation"]["policies"]
    assert any(issuer["module"] == "internal" for policy in policies for issuer in policy.get("issuers", []))
    metrics = [r for r in _routes(server) for m in r.get("match", []) if "/metrics" in m.get("path", [])]
    assert [h["status_code"] for r in metrics for h in r["handle"]] == [404]


def test_plain_http_redirects_to_the_issuer(caddy_config: dict[str, Any]) -> None:
    server = _server_on(caddy_config, 8080)
    (route,) = server["routes"]
    (handler,) = route["handle"]
    assert handler["status_code"] == 301
    assert handler["headers"]["Location"] == ["https://idp.chu.example:8443{http.request.uri}"]
    assert "match" not in route  # whatever the host name


# --- Dockerfile, .dockerignore, entrypoint ---------------------------------------------------------------------

def _final_stage(dockerfile: str) -> list[str]:
    """The instructions of the last stage, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def test_dockerfile_runs_as_a_fixed_non_root_user() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    stage = _final_stage(text)
    users = [line.split(None, 1)[1] for line in stage if line.upper().startswith("USER ")]
    assert users == ["${HOSPICONNECT_UID}:${HOSPICONNECT_GID}"]
    assert f"ARG HOSPICONNECT_UID={SERVICE_UID}" in stage and f"ARG HOSPICONNECT_GID={SERVICE_UID}" in stage
    assert stage[-2:] == ['ENTRYPOINT ["hospiconnect-entrypoint"]', 'CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]']
    healthchecks = [line for line in stage if line.upper().startswith("HEALTHCHECK ")]
    assert len(healthchecks) == 1 and "http://127.0.0.1:8000/healthz" in healthchecks[0]


def test_dockerfile_bakes_in_no_secret() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        if re.match(r"\s*(ENV|ARG)\s", line):
            for name, value in re.findall(r"([A-Z_]+)=(\S+)", line):
                if re.search(r"SECRET|PASSWORD|TOKEN|KEY", name):
                    assert name.endswith("_FILE") and value.startswith("/"), f"{name} holds a value, not a path"
    copied = [line.split()[1:-1] for line in joined.splitlines() if line.startswith("COPY ") and "--from=" not in line]
    sources = [source for group in copied for source in group if not source.startswith("--")]
    assert sources and not [s for s in sources if re.search(r"\.env|secret|keys\.json|instance", s)]
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignored[ignored.index("*") if "*" in ignored else -1] == "*"  # everything excluded first...
    for source in sources:  # ...then each source the Dockerfile copies is let in explicitly
        assert "!" + source.rstrip("/") in [line.rstrip("/") for line in ignored], source
        assert (ROOT / source).exists(), source
    for pattern in ("**/.env", "**/keys.json"):
        assert pattern in ignored


def _stand_in(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)
    return path


def test_entrypoint_hands_the_password_file_to_libpq_and_runs_hospiconnect(tmp_path: Path) -> None:
    _stand_in(tmp_path / "bin", "hospiconnect", 'printf "%s|%s" "$PGPASSWORD" "$*"\n')
    secret = tmp_path / "db_password"
    secret.write_text("mot-de-passe\n", encoding="utf-8")
    env = _clean_env(tmp_path, HOSPICONNECT_DATABASE_PASSWORD_FILE=str(secret))
    env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
    result = subprocess.run(["/bin/sh", str(ENTRYPOINT), "serve", "--port", "8000"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "mot-de-passe|serve --port 8000"


def test_entrypoint_stops_on_an_unreadable_password_file(tmp_path: Path) -> None:
    _stand_in(tmp_path / "bin", "hospiconnect", "echo started\n")
    env = _clean_env(tmp_path, HOSPICONNECT_DATABASE_PASSWORD_FILE=str(tmp_path / "missing"))
    env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
    result = subprocess.run(["/bin/sh", str(ENTRYPOINT), "init"], env=env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 78
    assert result.stdout == ""
    assert "HOSPICONNECT_DATABASE_PASSWORD_FILE" in result.stderr and "illisible" in result.stderr


# --- deploy/constraints.txt -----------------------------------------------------------------------------------

def _constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_image_constraints_repeat_the_pins_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = _constraints()
    for raw in project["dependencies"]:
        requirement = Requirement(raw)
        (spec,) = requirement.specifier
        assert spec.operator == "==", raw
        assert pins.get(canonicalize_name(requirement.name)) == spec.version, \
            f"{raw}: deploy/constraints.txt says {pins.get(canonicalize_name(requirement.name))}"


def test_image_constraints_pin_every_dependency_of_what_they_pin() -> None:
    """Every requirement of a pinned package is pinned too, so that the image installs nothing unpinned.
    Checked where this environment has the pinned version installed (its metadata is then the image's)."""
    pins = _constraints()
    environment = {"python_version": f"{sys.version_info.major}.{sys.version_info.minor}", "extra": ""}
    checked = 0
    for name, version in pins.items():
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if distribution.version != version:
            continue
        checked += 1
        for raw in distribution.requires or []:
            requirement = Requirement(raw)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                assert canonicalize_name(requirement.name) in pins, f"{name} needs {raw}, not pinned"
    assert checked >= len(pins) // 2, "too few pinned versions installed here to check the closure"


def test_an_installed_package_carries_its_migrations(tmp_path: Path) -> None:
    """`pip install .` (the image's install, not an editable one) must bring the migrations that
    `hospiconnect init` applies: they are package data of hospiconnect."""
    import zipfile

    source = tmp_path / "src"  # a copy: building writes build/ and *.egg-info/ beside the sources
    shutil.copytree(ROOT / "hospiconnect", source / "hospiconnect",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                    str(source)], check=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("hospiconnect-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (ROOT / "hospiconnect" / "migrations" / "versions").glob("*.py")}
    assert shipped and {f"hospiconnect/migrations/versions/{name}" for name in shipped} <= names
    assert {"hospiconnect/migrations/env.py", "hospiconnect/migrations/script.py.mako"} <= names
