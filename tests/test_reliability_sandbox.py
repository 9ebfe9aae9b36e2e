"""The sandbox says which isolation it used, and judging untrusted code refuses the weaker
fallback unless the user names it (issue 20 item 15)."""

import shutil
import warnings

import pytest

from scalinglab.errors import UserError
from scalinglab.verify import sandbox


@pytest.fixture
def no_bwrap(monkeypatch):
    """This host as if bubblewrap were not installed (the probe cache cleared before and after)."""
    real = shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name, *a, **k: None if name == "bwrap" else real(name, *a, **k))
    monkeypatch.delenv("SCALINGLAB_SANDBOX", raising=False)
    sandbox.isolation.cache_clear()
    yield monkeypatch
    sandbox.isolation.cache_clear()


def test_auto_refuses_the_fallback_in_one_line(no_bwrap):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sandbox.SandboxWarning)
        with pytest.raises(UserError, match=r"no bwrap sandbox here \(bwrap is not installed.*--sandbox fallback") as e:
            sandbox.untrusted_isolation("auto")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="bwrap sandbox requested but unavailable"):
        sandbox.untrusted_isolation("bwrap")


@pytest.mark.parametrize("how", ["option", "env"])
def test_the_fallback_runs_when_asked_by_name_and_says_so(no_bwrap, how):
    with pytest.warns(sandbox.SandboxWarning):
        if how == "env":
            no_bwrap.setenv("SCALINGLAB_SANDBOX", "fallback")
            iso = sandbox.untrusted_isolation("auto")
        else:
            iso = sandbox.untrusted_isolation("fallback")
    d = iso.describe()
    assert d["mode"] == "fallback" and d["reason"] and any("host filesystem" in g for g in d["not_covered"])


def test_unknown_choice_is_one_line():
    with pytest.raises(UserError, match="--sandbox 'vm'"):
        sandbox.untrusted_isolation("vm")


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_bwrap_mode_describes_itself():
    sandbox.isolation.cache_clear()
    d = sandbox.untrusted_isolation("auto").describe()
    assert d == {"mode": "bwrap", "reason": None, "not_covered": []}


def test_verify_code_reports_its_isolation_and_refuses_empty_input(tmp_path, capsys):
    """Every verdict and the --json object say which isolation judged it; an empty file is one line, as verify math."""
    import json

    from scalinglab import cli
    from scalinglab.verify.sandbox import isolation

    f = tmp_path / "c.jsonl"
    f.write_text(
        json.dumps(
            {
                "id": "a",
                "program": "def f(x):\n    return x + 1\n",
                "entry_point": "f",
                "cases": [{"input": [1], "output": 2}],
            }
        )
        + "\n"
    )
    mode = isolation().mode
    if mode != "bwrap":
        pytest.skip(f"bubblewrap is not usable here (isolation {mode}); auto refuses to run")
    cli.main(["verify", "code", "--input", str(f), "--json"])  # success returns (no SystemExit)
    out = json.loads(capsys.readouterr().out)
    assert out["isolation"]["mode"] == "bwrap" and out["results"][0]["isolation"] == "bwrap" and out["passed"] == 1
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(SystemExit) as e:
        cli.main(["verify", "code", "--input", str(tmp_path / "e.jsonl")])
    assert e.value.code == 2 and "empty" in capsys.readouterr().err
