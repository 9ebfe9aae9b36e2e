"""The shared figure helpers (`save_fig`) and the `scalinglab report` command."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import typer
from typer.testing import CliRunner

from scalinglab.commands import report as report_cmd
from scalinglab.errors import UserError
from scalinglab.report.figures import DPI, new_figure, save_fig


def _fig():
    fig, ax = new_figure(figsize=(4, 3))
    ax.plot([1, 2, 3], [3, 1, 2])
    return fig


def test_save_fig_writes_png_atomically_and_closes(tmp_path):
    fig = _fig()
    num = fig.number
    out = save_fig(fig, tmp_path / "sub" / "a.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(num)  # closed: a long pipeline does not leak figures
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.png"]  # no temp file left
    # bbox="tight" trims the margins, so the PNG is at most 4x3 in at DPI, and most of it.
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert 0.8 * 4 * DPI <= w <= 4 * DPI + 2 and 0.8 * 3 * DPI <= h <= 3 * DPI + 2
    # No timestamp metadata: the same figure gives the same bytes.
    assert save_fig(_fig(), tmp_path / "b.png").read_bytes() == data


def _app():
    app = typer.Typer()

    @app.callback()
    def _main():  # a callback keeps `report` a sub-command, as in the real CLI
        pass

    report_cmd.register(app)
    return app


def test_report_command_json(tmp_path):
    from test_report_html import make_run

    d = make_run(tmp_path)
    res = CliRunner().invoke(_app(), ["report", str(d / "summary.json"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["report"] == str(d / "report.html") and (d / "report.html").stat().st_size == out["bytes"]
    assert out["figures"] == 5 and out["missing_figures"] == [str(d / "rl" / "does_not_exist.png")]
    assert out["stages"]["reward_models"] == "failed" and out["stages"]["tradeoff"] == "skipped"
    assert out["stages"]["pretrain"] == "ok" and len(out["stages"]) == 8


def test_report_command_bad_input(tmp_path):
    res = CliRunner().invoke(_app(), ["report", str(tmp_path / "missing")])
    assert isinstance(res.exception, UserError) and "no such run directory" in str(res.exception)


def test_report_command_help_teaches():
    res = CliRunner().invoke(_app(), ["report", "--help"])
    assert res.exit_code == 0 and "self-contained" in res.stdout and "RUN_OR_DIR" in res.stdout
