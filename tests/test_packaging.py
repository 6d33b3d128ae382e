"""What `pip install cervixbatch` gives: TensorFlow as a dependency, the `cervixbatchd`
service script, and a CPU-only recipe that stays in step with the dependency list."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _name(requirement: str) -> str:
    for stop in "<>=!~[; ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip().lower()


def test_tensorflow_is_a_core_dependency_and_gpu_an_extra() -> None:
    """A plain install brings TensorFlow; the `gpu` extra adds its CUDA libraries."""
    assert "tensorflow" in {_name(r) for r in PROJECT["dependencies"]}
    assert PROJECT["optional-dependencies"]["gpu"] == ["tensorflow[and-cuda]>=2.16"]


def test_the_cpu_only_requirements_are_the_dependencies_with_tensorflow_cpu() -> None:
    """requirements-cpu.txt lists exactly the core dependencies, tensorflow-cpu in place
    of tensorflow (same version bound)."""
    lines = (REPO / "requirements-cpu.txt").read_text(encoding="utf-8").splitlines()
    listed = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    expected = [
        r.replace("tensorflow>=", "tensorflow-cpu>=", 1) if _name(r) == "tensorflow" else r
        for r in PROJECT["dependencies"]
    ]
    assert listed == expected


def test_cervixbatchd_is_the_services_console_script() -> None:
    """`cervixbatchd` runs cervixbatchd.__main__:main (what the systemd unit starts); where
    the project is installed the script answers --help."""
    target = PROJECT["scripts"]["cervixbatchd"]
    module_name, _, function = target.partition(":")
    entry = getattr(importlib.import_module(module_name), function)
    with pytest.raises(SystemExit) as stopped:
        entry(["--help"])
    assert stopped.value.code == 0
    script = Path(sys.executable).parent / "cervixbatchd"
    if not script.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("the project is installed without its cervixbatchd script")
        pytest.skip(
            "this environment's install predates the cervixbatchd script (pip install -e .)"
        )
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and "--config" in result.stdout


def test_the_public_api_resolves_every_name_and_imports_nothing_heavy_up_front() -> None:
    """``import cervixbatch`` loads neither TensorFlow nor SQLAlchemy; every name in its
    ``__all__`` resolves on first use; the version is pyproject's."""
    script = (
        "import sys, cervixbatch\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'sqlalchemy', 'cv2') if m in sys.modules]\n"
        "assert heavy == [], heavy\n"
        "missing = [n for n in cervixbatch.__all__ if getattr(cervixbatch, n, None) is None]\n"
        "assert missing == [], missing\n"
        "print(cervixbatch.__version__)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "daemon")])}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert done.stdout.strip() == pyproject["project"]["version"]
    import cervixbatch

    with pytest.raises(AttributeError, match="no_such_name"):
        cervixbatch.no_such_name  # noqa: B018
