"""tokenomics/ stays torch-free: no import of torch, directly (ast) or indirectly (fresh interpreter)."""

import ast
import subprocess
import sys
from pathlib import Path

import scalinglab.tokenomics as pkg

FILES = sorted(Path(pkg.__file__).parent.glob("*.py"))


def test_no_torch_import_statement():
    for f in FILES:
        for node in ast.walk(ast.parse(f.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] == "torch" for n in names), f"{f.name} imports torch"


def test_importing_every_module_loads_no_torch():
    mods = ", ".join(f"scalinglab.tokenomics.{f.stem}" for f in FILES if f.stem != "__init__")
    code = f"import sys, {mods}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
