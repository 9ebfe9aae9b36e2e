"""Import layering (DESIGN.md): torch-free packages stay torch-free; model/ does not import
train/; only cli.py, commands/, report/ and bench/ print to a terminal."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "scalinglab"
TORCH_FREE = ["tasks", "verify", "scaling", "tokenomics"]
# modules of packages that are not torch-free as a whole: bench/engine.py drives the engine, its siblings do not
TORCH_FREE_MODULES = ["bench", "bench.fit", "bench.sandbox"]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in SRC.rglob("*.py")}


def reachable(start: str, g: dict[str, set[str]]) -> set[str]:
    """Modules reachable by static imports from `start` (package __init__s included)."""
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for imp in g.get(m, ()):
            cands = [imp] + [imp.rsplit(".", i)[0] for i in range(1, imp.count(".") + 1)]
            todo.extend(c for c in cands if c in g or not c.startswith("scalinglab"))
    return seen


@pytest.mark.parametrize("pkg", TORCH_FREE)
def test_torch_free_packages_do_not_import_torch(pkg):
    g = graph()
    for mod in [m for m in g if m == f"scalinglab.{pkg}" or m.startswith(f"scalinglab.{pkg}.")]:
        bad = {
            m
            for m in reachable(mod, g)
            if m == "torch" or m.startswith("torch.") or m in ("transformers", "safetensors.torch")
        }
        assert not bad, f"{mod} reaches {sorted(bad)}"


@pytest.mark.parametrize("pkg", TORCH_FREE)
def test_torch_free_packages_import_without_torch_at_runtime(pkg):
    code = (
        f"import sys, pkgutil, importlib, scalinglab.{pkg} as p\n"
        "for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.'):\n"
        "    if not m.name.endswith('_runner'):  # scripts run inside the sandbox, not modules\n"
        "        importlib.import_module(m.name)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("mod", TORCH_FREE_MODULES)
def test_torch_free_modules_do_not_import_torch(mod):
    bad = {
        m
        for m in reachable(f"scalinglab.{mod}", graph())
        if m == "torch" or m.startswith("torch.") or m in ("transformers", "safetensors.torch")
    }
    assert not bad, f"scalinglab.{mod} reaches {sorted(bad)}"


def test_torch_free_modules_import_without_torch_at_runtime():
    mods = [f"scalinglab.{m}" for m in TORCH_FREE_MODULES]
    code = f"import sys, importlib\nfor m in {mods!r}:\n    importlib.import_module(m)\nassert 'torch' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_does_not_import_train():
    g = graph()
    for mod in [m for m in g if m.startswith("scalinglab.model")]:
        assert not any(i.startswith("scalinglab.train") for i in g[mod]), mod


def test_only_cli_commands_and_report_print():
    allowed = ("commands", "report", "bench", "cli.py", "__main__.py")
    offenders = []
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC).as_posix()
        if rel.startswith(allowed) or p.name.startswith("_sandbox_runner"):
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                if not any(isinstance(k, ast.keyword) and k.arg == "file" for k in node.keywords):
                    offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, f"print to stdout outside the CLI: {offenders}"


def _top_level_imports(path: Path) -> set[str]:
    """Imports a module makes when it is loaded (module body, under if/try/with), not inside functions."""
    out: set[str] = set()

    def visit(nodes):
        for n in nodes:
            if isinstance(n, ast.Import):
                out.update(a.name for a in n.names)
            elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
                out.add(n.module)
            elif isinstance(n, (ast.If, ast.Try, ast.With)):
                for part in ("body", "orelse", "finalbody"):
                    visit(getattr(n, part, []))
                for h in getattr(n, "handlers", []):
                    visit(h.body)

    visit(ast.parse(path.read_text()).body)
    return out


def test_packages_do_not_import_each_other_in_a_cycle_when_loaded():
    """The package graph of load-time imports is acyclic (train/ and synth/ once imported each other
    for pick_device; tokenomics' catalog and calibrate for Hardware)."""
    edges: dict[str, set[str]] = {}
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC).parts
        pkg = rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")
        for m in _top_level_imports(p):
            if m.startswith("scalinglab."):
                dep = m.split(".")[1]
                if dep != pkg:
                    edges.setdefault(pkg, set()).add(dep)

    def reach(a: str) -> set[str]:
        seen, todo = set(), [a]
        while todo:
            for b in edges.get(todo.pop(), ()):
                if b not in seen:
                    seen.add(b)
                    todo.append(b)
        return seen

    assert [a for a in sorted(edges) if a in reach(a)] == []
    # and the two cycles this test was written for stay cut: synth/ never imports train/ (not even
    # inside a function); tokenomics' calibrate no longer needs catalog to load (Hardware is in spec.py)
    assert not any(any(m.startswith("scalinglab.train") for m in imports_of(f)) for f in (SRC / "synth").rglob("*.py"))
    assert not any(
        m.startswith("scalinglab.tokenomics.catalog") for m in _top_level_imports(SRC / "tokenomics" / "calibrate.py")
    )
