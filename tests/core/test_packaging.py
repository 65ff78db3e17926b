"""The built wheel works on its own: every module imports from a fresh venv, and a
provider whose SDK is missing says which extra to install."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent.parent

SDKS = {"boto3", "botocore", "google", "azure", "proton", "requests", "redis"}

CHECK = r"""
import importlib, json, pkgutil, sys
import switchboard, switchboard_conformance
names, needs_sdk = [], {}
for package in (switchboard, switchboard_conformance):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + ".", onerror=print):
        names.append(module.name)
        try:
            importlib.import_module(module.name)
        except ModuleNotFoundError as exc:
            needs_sdk[module.name] = exc.name.split(".")[0]
print(json.dumps({"modules": names, "needs_sdk": needs_sdk}))
import switchboard as sb
from switchboard.errors import ConfigError
for provider, extra in (("aws", "aws"), ("gcp", "gcp"), ("azure", "azure")):
    try:
        sb.connect(sb.App("probe"), provider)
    except ConfigError as exc:
        assert f"pip install 'switchboard-orchestrator[{extra}]'" in str(exc), exc
        print(provider, "->", exc)
    else:
        raise SystemExit(f"{provider} connected without its SDK")
"""


def _module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    parts[0] = {
        "core": "switchboard",
        "providers": "switchboard.providers",
        "conformance_tests": "switchboard_conformance",
    }[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(dist.glob("switchboard_orchestrator-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", str(wheel), "pytest"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # Importing modules that need boto3 etc. must fail only inside the factories, so
    # walk_packages may import every provider module without its SDK.
    done = subprocess.run(
        [python, "-c", CHECK], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.splitlines()[0])
    source = {
        _module_name(path)
        for folder in ("core", "providers", "conformance_tests")
        for path in (ROOT / folder).rglob("*.py")
    }
    assert set(report["modules"]) == source - {"switchboard", "switchboard_conformance"}, (
        "modules in the wheel differ from the source tree: is a package missing from "
        "[tool.setuptools] packages?"
    )
    for module, missing in report["needs_sdk"].items():
        assert missing in SDKS and module.startswith("switchboard.providers."), (module, missing)
        provider_entry = ".".join(module.split(".")[:3])
        assert provider_entry not in report["needs_sdk"], (
            f"{provider_entry} must import without its SDK"
        )
    providers = subprocess.run(
        [str(env_dir / "bin" / "switchboard"), "providers"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "missing: pip install 'switchboard-orchestrator[aws]'" in providers.stdout
