"""The code verifier's public API, its parent-side comparison, the CLI, and the fallback mode."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import typer
from typer.testing import CliRunner

from scalinglab.errors import UserError
from scalinglab.verify.code import CodeResult, _verdict, judge, judge_many, same
from scalinglab.verify.sandbox import Isolation, RawRun, SandboxWarning, isolation

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")


@pytest.mark.parametrize(
    "got, want, ok",
    [
        (3, 3, True),
        (3, 4, False),
        (3.0, 3, True),
        (0.1 + 0.2, 0.3, True),  # 5.6e-17 apart: 1.9e-16 relative
        (1.0 + 2e-9, 1.0, False),
        (1.0 + 5e-10, 1.0, True),
        (1e-13, 0.0, True),
        (1e-6, 0.0, False),
        (True, 1, False),
        (1, True, False),
        (False, False, True),
        (None, None, True),
        (None, 0, False),
        ("a", "a", True),
        ("1", 1, False),
        ([1, [2, 3]], (1, (2, 3)), True),
        ([1, 2], [1, 2, 3], False),
        ({"a": [1.0]}, {"a": [1]}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        (float("nan"), float("nan"), True),
        (float("inf"), float("inf"), True),
        (10**400, 1.0, False),
    ],
)
def test_same_is_json_normalised_equality(got, want, ok):
    assert same(got, want) is ok


def _raw(events, stop="done", forged=0, ready=True, rc=0):
    return RawRun(ready, events, stop, rc, "tail", forged, 0.01)


CASES = [{"input": [1], "output": 2}, {"input": [2], "output": 4}]


def test_verdict_from_raw_runs():
    ok = [{"case": 0, "value": 2}, {"case": 1, "value": 4}, {"done": True}]
    assert _verdict(_raw(ok), CASES) == ("passed", 2, "")
    status, n, detail = _verdict(_raw([{"case": 0, "value": 2}, {"case": 1, "value": 5}, {"done": True}]), CASES)
    assert (status, n) == ("wrong_answer", 1) and "got 5, want 4" in detail
    assert _verdict(_raw(ok, forged=1), CASES)[0] == "runtime_error"  # someone wrote to our channel
    assert (
        _verdict(_raw([{"case": 1, "value": 4}, {"case": 0, "value": 2}, {"done": True}]), CASES)[0] == "runtime_error"
    )
    assert _verdict(_raw(ok[:1], stop="eof"), CASES)[:2] == ("runtime_error", 1)  # exited early
    assert _verdict(_raw(ok[:1], stop="eof", rc=-24), CASES)[0] == "timeout"  # SIGXCPU
    assert _verdict(_raw([], stop="deadline"), CASES)[0] == "timeout"
    assert _verdict(_raw([], stop="not_ready", ready=False), CASES)[0] == "sandbox_error"
    assert _verdict(_raw([{"status": "syntax_error", "detail": "x"}], stop="status"), CASES)[0] == "syntax_error"
    assert _verdict(_raw([{"status": "passed"}], stop="status"), CASES)[0] == "runtime_error"  # no self-promotion


def test_to_verdict_separates_sandbox_faults():
    v = CodeResult("a", False, "sandbox_error", 0, 2, 0.0, "bwrap died").to_verdict()
    assert v.error and not v.correct and v.reward == 0.0
    w = CodeResult("a", False, "wrong_answer", 1, 2, 0.0, "case 1").to_verdict()
    assert not w.error and not w.correct
    assert CodeResult("a", True, "passed", 2, 2, 0.0).to_verdict().correct


def test_bad_cases_are_user_errors():
    with pytest.raises(UserError, match="cases"):
        judge("def f(): pass", "f", [])
    with pytest.raises(UserError, match="case 0"):
        judge("def f(): pass", "f", [{"input": 1, "output": 2}])
    with pytest.raises(UserError, match="item 0"):
        judge_many([{"id": "x", "program": 3, "entry_point": "f", "cases": CASES}])


@needs_bwrap
@pytest.mark.parametrize(
    "program, status, passed",
    [
        ("def f(x):\n    return 2 * x\n", "passed", 2),
        ("def f(x):\n    return (2 * x, 0)[0]\n", "passed", 2),
        ("def f(x):\n    return x + 1\n", "wrong_answer", 1),
        ("def g(x):\n    return 2 * x\n", "missing_entry_point", 0),
        ("def f(x) return 2 * x\n", "syntax_error", 0),
        ("def f(x):\n    return 1 // (x - 1)\n", "runtime_error", 0),
        ("raise ValueError('at import')\n", "runtime_error", 0),
    ],
)
def test_judge_statuses(program, status, passed):
    r = judge(program, "f", CASES, timeout_s=3)
    assert (r.status, r.cases_passed, r.cases_total, r.passed) == (status, passed, 2, status == "passed"), r


@needs_bwrap
def test_tuples_and_floats_come_back_as_json():
    prog = "def f(a, b):\n    return (a / b, [a, {'k': b}])\n"
    assert judge(prog, "f", [{"input": [1, 3], "output": [1 / 3 + 1e-12, [1, {"k": 3}]]}]).passed


@needs_bwrap
def test_large_and_odd_return_values():
    big = list(range(100_000))  # ~600 kB of JSON: under the 16 MB result cap
    assert judge("def f(xs):\n    return xs\n", "f", [{"input": [big], "output": big}]).passed
    odd = '\ud800\u00e9\n"' + chr(0)  # a lone surrogate, non-ASCII, escapes, NUL
    prog = 'def f():\n    return "\\ud800\\u00e9\\n\\"" + chr(0)\n'
    assert judge(prog, "f", [{"input": [], "output": odd}]).passed
    assert (
        judge("def f():\n    return ['x' * 100] * 200_000\n", "f", [{"input": [], "output": 1}]).status
        == "output_limit"
    )


@needs_bwrap
def test_sandbox_view_is_minimal():
    prog = (
        "import os\ndef f():\n    return [sorted(os.listdir('/')), sorted(os.environ), os.getcwd(), "
        "os.getuid() == 0, os.path.exists('/etc/passwd'), os.path.exists('/work')]\n"
    )
    r = judge(prog, "f", [{"input": [], "output": None}])
    got = json.loads(r.detail.split("got ", 1)[1].rsplit(", want", 1)[0])
    root_dirs, env, cwd, is_root, etc, work = got
    assert set(root_dirs) <= {
        "bin",
        "dev",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "proc",
        "root",
        "sbin",
        "tmp",
        "usr",
        "opt",
        "home",
    }
    assert set(env) <= {"HOME", "PATH", "LANG", "LC_CTYPE", "PWD"} and cwd == "/tmp"
    assert not etc and not work
    assert is_root is False or not isolation().drop_uid


def _cli() -> typer.Typer:
    from scalinglab.commands import common, verify_code  # noqa: F401  (registers the commands)

    app = typer.Typer()
    app.add_typer(common.verify_app, name="verify")
    app.add_typer(common.bench_app, name="bench")
    return app


@needs_bwrap
def test_cli_verify_code_json(tmp_path):
    f = tmp_path / "in.jsonl"
    lines = [
        {"id": "ok", "program": "def f(x):\n    return 2 * x\n", "entry_point": "f", "cases": CASES},
        {"id": "bad", "program": "def f(x):\n    return x\n", "entry_point": "f", "cases": CASES},
    ]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    res = CliRunner().invoke(_cli(), ["verify", "code", "--input", str(f), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [(r["id"], r["status"]) for r in out["results"]] == [("ok", "passed"), ("bad", "wrong_answer")]
    assert set(out["results"][0]) >= {"id", "passed", "status", "cases_passed", "cases_total", "seconds"}
    assert out["programs_per_s"] > 0


def test_cli_bad_input_names_the_line(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_text('{"id": 1}\nnot json\n')
    res = CliRunner().invoke(_cli(), ["verify", "code", "--input", str(f), "--json"])
    assert isinstance(res.exception, UserError) and "line 2" in str(res.exception)


def test_fallback_warns_and_still_judges(monkeypatch):
    with pytest.warns(SandboxWarning, match="NOT covered"):
        iso = isolation.__wrapped__("fallback")
    assert iso.mode == "fallback" and iso.not_covered
    items = [
        {"id": "ok", "program": "def f(x):\n    return 2 * x\n", "entry_point": "f", "cases": CASES},
        {
            "id": "env",
            "program": "import os\ndef f(x):\n    return os.environ.get('FALLBACK_SECRET')\n",
            "entry_point": "f",
            "cases": [{"input": [1], "output": "s"}],
        },
        {"id": "loop", "program": "def f(x):\n    while True: pass\n", "entry_point": "f", "cases": CASES},
    ]
    monkeypatch.setenv("FALLBACK_SECRET", "s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        res = judge_many(items, workers=3, timeout_s=1, iso=iso)
    assert [r.status for r in res] == ["passed", "wrong_answer", "timeout"]


def test_isolation_argv_uses_bwrap_namespaces():
    iso = Isolation("bwrap", drop_uid=True)
    from scalinglab.verify.sandbox import SandboxLimits

    argv = iso.argv(SandboxLimits(tmp_mb=8), 1_000_001)
    assert argv[0] == "bwrap" and "--unshare-net" in argv and "--unshare-pid" in argv
    assert "--die-with-parent" in argv and "--clearenv" in argv
    assert argv[argv.index("--size") + 1] == str(8 << 20)
    assert argv[-2:] == ["1000001", "1000001"] and "-I" in argv and "-S" in argv
