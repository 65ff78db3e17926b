"""The peers, each installed into its own virtual environment under `bench/.envs/`."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ENVS = BENCH / ".envs"


@dataclass(frozen=True, slots=True)
class Peer:
    """A system measured beside Switchboard, and how to install and run it."""

    name: str
    package: str
    version: str
    script: str
    workloads: tuple[str, ...]
    needs_python: tuple[int, int] | None = None
    note: str = ""


PEERS = (
    Peer(
        "py-orchestrate",
        "py-orchestrate",
        "1.0.2",
        "py_orchestrate_peer.py",
        ("W1", "W2", "W4"),
        needs_python=(3, 12),
        note="no primitive to run activities in parallel inside a workflow, so no W3",
    ),
    Peer("DBOS", "dbos", "3.4.0", "dbos_peer.py", ("W1", "W2", "W3", "W4")),
)


@dataclass(frozen=True, slots=True)
class PeerEnv:
    peer: Peer
    python: str
    interpreter: str
    script: str


def _version_of(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return (int(out[0]), int(out[1])) if len(out) == 2 else None


def find_python(wanted: tuple[int, int]) -> str | None:
    """An interpreter of version `wanted`: on PATH, else among pyenv's installed versions
    (pyenv's shim refuses versions that are installed but not selected)."""
    name = f"python{wanted[0]}.{wanted[1]}"
    candidates = [shutil.which(name)]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(
        glob.glob(os.path.join(pyenv_root, "versions", f"{wanted[0]}.{wanted[1]}*", "bin", name))
    )
    for candidate in candidates:
        if candidate and _version_of(candidate) == wanted:
            return candidate
    return None


def _installed_version(python: Path, package: str) -> str | None:
    if not python.exists():
        return None
    probe = f"import importlib.metadata as m; print(m.version({package!r}))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def ensure(peer: Peer, log: bool = True) -> PeerEnv:
    """The peer's virtual environment, created and installed on first use."""
    interpreter = sys.executable
    ignore_requires_python = False
    if peer.needs_python is not None and sys.version_info[:2] < peer.needs_python:
        found = find_python(peer.needs_python)
        if found is not None:
            interpreter = found
        else:
            ignore_requires_python = True
    env = ENVS / peer.name
    python = env / "bin" / "python"
    choice = env / "bench-interpreter.txt"
    how = f"{interpreter}" + (
        " (installed with --ignore-requires-python)" if ignore_requires_python else ""
    )
    reusable = (
        _installed_version(python, peer.package) == peer.version
        and choice.exists()
        and choice.read_text() == how
    )
    if not reusable:
        if log:
            print(f"installing {peer.package}=={peer.version} into {env} ...", flush=True)
        shutil.rmtree(env, ignore_errors=True)
        subprocess.run([interpreter, "-m", "venv", str(env)], check=True)
        command = [str(python), "-m", "pip", "install", "-q", f"{peer.package}=={peer.version}"]
        if ignore_requires_python:
            command.append("--ignore-requires-python")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"installing {peer.package} failed:\n{done.stdout}\n{done.stderr}")
        choice.write_text(how)
    version = _version_of(str(python))
    described = f"Python {version[0]}.{version[1]}" if version else "Python ?"
    described += f" from {how}"
    return PeerEnv(peer, str(python), described, str(BENCH / "peers" / peer.script))
