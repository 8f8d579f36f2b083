"""The Dockerfile and compose.yaml, checked without a container runtime (this machine has the
docker client but no daemon and no compose plugin, and no registry to pull the base images
from): the image installs requirements.txt only and runs gunicorn with
deploy/gunicorn.conf.py as a non-root user with a /readyz healthcheck; compose runs the app,
worker, scheduler, PostgreSQL, Redis and nginx, restarted unless stopped, every app command
one that manage.py has, every secret from an env file, and the nginx service's rewrite of
deploy/nginx.conf still matching the file. docs/operators/install.md, "Containers"."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import yaml

from manage import cli

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = {"web", "worker", "scheduler", "migrate"}
SECRETISH = re.compile(r"SECRET|PASSWORD|PEPPER|TOKEN|KEY", re.IGNORECASE)


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_the_image_is_slim_runtime_only_and_not_root() -> None:
    steps = instructions()
    assert steps[0][0] == "FROM" and re.fullmatch(r"python:3\.11-slim(-\w+)?", steps[0][1])
    installs = [arg for op, arg in steps if op == "RUN" and "pip install" in arg]
    assert installs and all("-r requirements.txt" in arg for arg in installs)
    assert not any("requirements-dev" in arg for _, arg in steps)
    for op, arg in steps:
        if op == "COPY":
            *sources, _ = shlex.split(arg)
            assert all((ROOT / source).exists() for source in sources), arg
    users = [index for index, (op, _) in enumerate(steps) if op == "USER"]
    assert users and steps[users[-1]][1] not in ("root", "0")
    assert all(op != "RUN" for op, _ in steps[users[-1] :])  # nothing runs as root after
    (cmd,) = [arg for op, arg in steps if op == "CMD"]
    assert yaml.safe_load(cmd) == ["gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"]


def test_the_image_healthcheck_asks_readyz_with_python_it_has() -> None:
    (check,) = [arg for op, arg in steps_named("HEALTHCHECK")]
    argv = yaml.safe_load(check[check.index("CMD") + 3 :])
    assert argv[:2] == ["python", "-c"] and "/readyz" in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")  # the one-liner is valid Python


def steps_named(op: str) -> list[tuple[str, str]]:
    return [step for step in instructions() if step[0] == op]


def test_the_image_leaves_out_env_files_tests_and_virtualenvs() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "*.env", "tests"} <= ignored
    assert {"sacco.env", "postgres.env"} <= set((ROOT / ".gitignore").read_text().split())


def test_compose_runs_every_process_and_restarts_them() -> None:
    services = compose()["services"]
    assert set(services) == APP_SERVICES | {"postgres", "redis", "nginx"}
    for name, service in services.items():
        expected = "no" if name == "migrate" else "unless-stopped"
        assert service["restart"] == expected, name
    assert services["migrate"]["profiles"] == ["migrate"]  # never started by `up`
    for name in ("postgres", "redis"):  # the app waits for both (depends_on: service_healthy)
        assert services[name]["healthcheck"]["test"], name
        assert services["web"]["depends_on"][name] == {"condition": "service_healthy"}
    for name in APP_SERVICES - {"web"}:  # no HTTP: the image's /readyz check is off
        assert services[name]["healthcheck"] == {"disable": True}, name


def test_every_app_command_is_one_manage_py_has() -> None:
    services = compose()["services"]
    assert services["web"]["command"] == ["gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"]
    for name in APP_SERVICES - {"web"}:
        program, script, command, *_ = services[name]["command"]
        assert (program, script) == ("python", "manage.py"), name
        assert command in cli.commands, (name, command)
        assert services[name]["build"] == "." and services[name]["env_file"] == ["sacco.env"]


def test_no_secret_is_written_in_compose() -> None:
    services = compose()["services"]
    for name, service in services.items():
        environment = service.get("environment") or {}
        pairs = (
            environment.items()
            if isinstance(environment, dict)
            else [item.partition("=")[::2] for item in environment]
        )
        for key, value in pairs:
            assert not (SECRETISH.search(key) and value), (name, key)
    assert services["postgres"]["env_file"] == ["postgres.env"]
    text = (ROOT / "compose.yaml").read_text()
    assert not re.search(r"://[^/\s:@]+:[^@\s]+@", text)  # no password inside a URL


def test_compose_nginx_rewrites_the_shipped_site_as_intended(tmp_path: Path) -> None:
    nginx = compose()["services"]["nginx"]
    assert any(volume.startswith("./deploy/nginx.conf:") for volume in nginx["volumes"])
    assert any(volume.startswith("./deploy/nginx:/etc/nginx/sacco") for volume in nginx["volumes"])
    assert all(port.startswith("${SACCO_PUBLIC_ADDRESS:?") for port in nginx["ports"])
    # The service's own sed command, run on deploy/nginx.conf (its other steps left out).
    script = nginx["command"][2]
    sed = script[script.index("sed ") : script.index(" > ")].replace(
        "/etc/sacco/nginx.conf", str(ROOT / "deploy" / "nginx.conf")
    )
    site = subprocess.run(["sh", "-c", sed], capture_output=True, text=True, check=True).stdout
    assert "server web:8000;" in site and "127.0.0.1:8000" not in site
    listens = re.findall(r"^\s*listen ([^;]+);", site, re.MULTILINE)
    assert listens == ["80", "443 ssl http2"], listens
