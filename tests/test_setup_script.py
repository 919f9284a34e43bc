"""``scripts/test``: the README's test command sets up a fresh machine, or says what to run.

Each test runs a copy of the script in its own folder (it works in the folder
above its own), with ``PATH`` holding only stand-ins: ``id`` answers the uid the
test chooses, ``apt-get`` and ``sudo`` log their arguments, and ``python3`` logs
that it ran and exits 42, which marks the end of the system set-up (the venv
comes next). No ``prometheus`` is on that ``PATH``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "test"
PAST_SET_UP = 42  # the stand-in python3's exit status


def _stand_in(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)


def _machine(tmp_path: Path, *, uid: int, apt: bool, sudo: bool) -> tuple[Path, Path]:
    """A checkout holding the script, and a ``bin`` folder: the machine's whole PATH."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPT, checkout / "scripts" / "test")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "env", "true"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    log = tmp_path / "log"
    _stand_in(bin_dir, "id", f'[ "$1" = -u ] && echo {uid}')
    _stand_in(bin_dir, "python3", f'echo "python3 $*" >> {log}; exit {PAST_SET_UP}')
    if apt:
        apt_log = 'echo "apt-get $* DEBIAN_FRONTEND=$DEBIAN_FRONTEND"'
        _stand_in(bin_dir, "apt-get", f"{apt_log} >> {log}")
    if sudo:
        _stand_in(bin_dir, "sudo", f'echo "sudo $*" >> {log}; [ "$1" = -n ] && shift; exec "$@"')
    return checkout, bin_dir


def _run(checkout: Path, bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "bash"), str(checkout / "scripts" / "test")],
        env={"PATH": str(bin_dir), **env},
        capture_output=True,
        text=True,
        timeout=60,  # a hang guard only
        check=False,
    )


def _log(tmp_path: Path) -> list[str]:
    log = tmp_path / "log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


REFUSAL = (
    "scripts/test: prometheus is missing; run: sudo apt-get install -y prometheus"
    " (or put a prometheus binary on PATH), then ./scripts/test"
)


@pytest.mark.parametrize(
    ("uid", "apt", "sudo", "env"),
    [
        (1000, True, False, {}),  # not root, no sudo
        (0, False, False, {}),  # root, but no apt-get (not Debian)
        (0, True, True, {"TABBY_TEST_NO_INSTALL": "1"}),  # told not to install
    ],
    ids=["no-root-no-sudo", "no-apt", "no-install-asked"],
)
def test_a_machine_that_cannot_install_prometheus_gets_one_line_saying_what_to_run(
    tmp_path: Path, uid: int, apt: bool, sudo: bool, env: dict[str, str]
) -> None:
    checkout, bin_dir = _machine(tmp_path, uid=uid, apt=apt, sudo=sudo)
    result = _run(checkout, bin_dir, **env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [REFUSAL]
    assert result.stdout == ""
    # It stopped before anything else: no apt-get, no sudo, no venv, no pip.
    assert _log(tmp_path) == []
    assert not (checkout / ".venv").exists()


def test_a_sudo_that_asks_for_a_password_counts_as_no_sudo(tmp_path: Path) -> None:
    checkout, bin_dir = _machine(tmp_path, uid=1000, apt=True, sudo=False)
    _stand_in(bin_dir, "sudo", "echo 'sudo: a password is required' >&2; exit 1")
    result = _run(checkout, bin_dir)
    assert (result.returncode, result.stderr.splitlines()) == (1, [REFUSAL])


def test_as_root_it_installs_debians_prometheus_then_goes_on(tmp_path: Path) -> None:
    checkout, bin_dir = _machine(tmp_path, uid=0, apt=True, sudo=False)
    result = _run(checkout, bin_dir)
    assert result.returncode == PAST_SET_UP, result.stderr
    assert _log(tmp_path) == [
        "apt-get update DEBIAN_FRONTEND=",
        "apt-get install -y prometheus DEBIAN_FRONTEND=noninteractive",
        "python3 -m venv .venv",
    ]


def test_with_passwordless_sudo_it_installs_through_sudo(tmp_path: Path) -> None:
    checkout, bin_dir = _machine(tmp_path, uid=1000, apt=True, sudo=True)
    result = _run(checkout, bin_dir)
    assert result.returncode == PAST_SET_UP, result.stderr
    assert _log(tmp_path) == [
        "sudo -n true",
        "sudo -n apt-get update",
        "apt-get update DEBIAN_FRONTEND=",
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus",
        "apt-get install -y prometheus DEBIAN_FRONTEND=noninteractive",
        "python3 -m venv .venv",
    ]


def test_with_prometheus_present_it_installs_nothing(tmp_path: Path) -> None:
    checkout, bin_dir = _machine(tmp_path, uid=1000, apt=True, sudo=True)
    _stand_in(bin_dir, "prometheus", "exit 0")
    result = _run(checkout, bin_dir)
    assert result.returncode == PAST_SET_UP, result.stderr
    assert _log(tmp_path) == ["python3 -m venv .venv"]


def test_the_script_is_an_executable_strict_bash_script() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert SCRIPT.stat().st_mode & 0o111 == 0o111


def test_ci_runs_exactly_the_test_command() -> None:
    commands = [
        line
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands[0] == "./scripts/test"
    assert not [line for line in commands[1:] if "pytest" in line or "scripts/test" in line]
