"""The C++ kernels' build cache (issue 19 point 3): keyed by what the build depends on, kept
with the environment that built it, never recompiled once built, and two checkouts with
different sources never evict each other."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scalinglab.engine import kernels

LOAD = "from scalinglab.engine import kernels as k; i = k.build_info(); print(i['compiled'], i['path'])"


def _copy(tmp_path: Path, name: str, extra: str = "") -> Path:
    d = tmp_path / name
    shutil.copytree(kernels._CSRC, d)
    if extra:
        f = d / "decode_loop.cpp"
        f.write_text(f.read_text() + extra)
    return d


def test_key_follows_sources_and_flags(tmp_path):
    same, edited = _copy(tmp_path, "a"), _copy(tmp_path, "b", "// another checkout's edit\n")
    assert kernels.build_key(same) == kernels.build_key(kernels._CSRC)  # identical sources share one build
    assert kernels.build_key(edited) != kernels.build_key(same)
    assert kernels.build_key(same, kernels._FLAGS + ["-g"]) != kernels.build_key(same)
    root = tmp_path / "root"
    assert kernels.build_dir(same, root) != kernels.build_dir(edited, root)  # so neither evicts the other
    assert kernels.build_dir(same, root).parent == root


def test_default_root_is_the_environment(monkeypatch):
    monkeypatch.delenv("SCALINGLAB_KERNELS_DIR", raising=False)
    assert kernels.build_root().is_relative_to(Path(sys.prefix))
    monkeypatch.setenv("SCALINGLAB_KERNELS_DIR", "/some/where")
    assert kernels.build_root() == Path("/some/where")


def test_a_built_library_is_loaded_without_compiling():
    info = kernels.build_info()  # this process: built now or loaded
    if not info:
        pytest.skip(f"C++ kernels cannot be built here: {kernels._FAILED}")
    out = subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", info["path"]]  # a later process compiles nothing


@pytest.mark.slow
def test_two_checkouts_never_evict_each_other(tmp_path):
    """A second checkout with edited sources builds its own library; the first one's still loads without compiling."""
    if not kernels.build_info():
        pytest.skip(f"C++ kernels cannot be built here: {kernels._FAILED}")
    other = _copy(tmp_path, "other", "// another checkout's edit\n")
    prog = (
        "import sys; from pathlib import Path; from scalinglab.engine import kernels as k; "
        f"i = k._load(Path({str(other)!r}), Path({str(tmp_path / 'root')!r})); print(i['compiled'])"
    )
    first = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=True).stdout.split()
    again = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=True).stdout.split()
    mine = subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, check=True).stdout.split()
    assert first == ["True"] and again == ["False"]  # the other checkout compiled once, then loads
    assert mine[0] == "False"  # and this one's build is still there
