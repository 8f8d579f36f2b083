"""``make demo``'s launcher (``python -m tools.demo``): two demos side by side each get
their own stand-ins, and a port that is taken stops a demo with one clear line."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.e2e.servers import ROOT, clean_env, free_port, run_manage
from tools.demo import DemoError, ports_for


def test_stand_in_ports_follow_the_app_port() -> None:
    assert ports_for(8000) == ports_for(8000)
    assert (ports_for(8000).africastalking, ports_for(8000).daraja) == (8701, 8702)
    assert (ports_for(9000).africastalking, ports_for(9000).daraja) == (9701, 9702)
    assert (ports_for(8000).bureau, ports_for(9000).bureau) == (8703, 9703)
    assert (ports_for(8000).bank, ports_for(9000).bank) == (8704, 9704)
    with pytest.raises(DemoError, match="PORT=65000"):
        ports_for(65000)


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def demo_port() -> int:
    """An app port whose stand-in ports are free too."""
    for _ in range(200):
        port = free_port()
        if port < 60000 and all(
            _is_free(p) for p in (port + 701, port + 702, port + 703, port + 704)
        ):
            return port
    raise AssertionError("no free port triple")


def launch(port: int, env: dict[str, str], var: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.demo", "--port", str(port), "--var", str(var)],
        cwd=ROOT,
        env=clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def running_demo(port: int, env: dict[str, str], var: Path) -> Iterator[str]:
    proc = launch(port, env, var)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise AssertionError(f"demo exited {proc.returncode}: {err}")
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("demo did not start")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def registered_confirmation_url(port: int) -> str:
    daraja = f"http://127.0.0.1:{ports_for(port).daraja}"
    log = requests.get(f"{daraja}/_log", timeout=5).json()
    [register] = [r for r in log["requests"] if r["path"].endswith("/registerurl")]
    return str(register["body"]["ConfirmationURL"])


def test_two_demos_side_by_side_each_talk_to_their_own_stand_ins(tmp_path: Path) -> None:
    env = {"SACCO_ENV": "demo", "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    run_manage(["migrate"], env)
    first, second = demo_port(), None
    with running_demo(first, env, tmp_path / "a") as base_a:
        second = demo_port()
        with running_demo(second, env, tmp_path / "b") as base_b:
            assert registered_confirmation_url(first).startswith(base_a)
            assert registered_confirmation_url(second).startswith(base_b)
            sms = f"http://127.0.0.1:{ports_for(second).africastalking}/_messages"
            assert requests.get(sms, timeout=5).status_code == 200
            bureau = f"http://127.0.0.1:{ports_for(second).bureau}/_calls"
            assert requests.get(bureau, timeout=5).json() == {"calls": []}

        # A third demo asking for the first one's port stops before starting anything.
        clash = launch(first, env, tmp_path / "c")
        out, err = clash.communicate(timeout=60)
    assert clash.returncode == 1
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert f"port {first}" in err and "already in use" in err
    assert "Demo SACCO on" not in out


def test_a_taken_stand_in_port_stops_the_demo_with_one_line(tmp_path: Path) -> None:
    env = {"SACCO_ENV": "demo", "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}"}
    port = demo_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", ports_for(port).daraja))
        squatter.listen()
        proc = launch(port, env, tmp_path)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip() == (
        f"demo: port {port + 702} (the Daraja stand-in) is already in use: is another demo "
        f"running with PORT={port}? Start this one with another PORT, e.g. make demo "
        f"PORT={port + 1000}"
    )
