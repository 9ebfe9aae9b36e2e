"""`scalinglab report RUN_OR_DIR`: (re)build a run's self-contained HTML report.

Thin wrapper over `scalinglab.report.build_report`: parse, build, emit.
"""

from __future__ import annotations

from pathlib import Path

import typer

from scalinglab.commands import common


def report(
    run: Path = typer.Argument(
        ...,
        metavar="RUN_OR_DIR",
        help="A `scalinglab run` directory (the one holding summary.json), or its summary.json / report.html.",
    ),
    screenshot: Path = typer.Option(
        None,
        "--screenshot",
        help="Also open the page in headless Chromium and "
        "save a full-page PNG here (width 1280 px); reports console errors and "
        "network requests (there should be none).",
    ),
    as_json: bool = common.JSON_OPT,
) -> None:
    """(Re)build DIR/report.html from DIR/summary.json and the figures it names.

    The page is self-contained: figures are embedded as data URIs, the CSS is inline and there are no scripts, so it opens offline from a file:// URL or as an attachment.

    It reads the run store only, so it can be rebuilt after editing captions in summary.json, or on a machine without the models.

    Examples:
      scalinglab report runs/smoke            then open runs/smoke/report.html
      scalinglab report runs/smoke --screenshot docs/img/report.png
    """
    from scalinglab.report.html import build_report, figure_paths, load_summary, ordered_stages, stage_status

    path = build_report(run)
    summary = load_summary(path.parent)
    figs = figure_paths(path.parent, summary)
    result = {
        "report": str(path),
        "bytes": path.stat().st_size,
        "stages": {k: stage_status(s) for k, s in ordered_stages(summary)},
        "figures": sum(p.is_file() for _, p in figs),
        "missing_figures": [str(p) for _, p in figs if not p.is_file()],
    }
    if screenshot is not None:
        from scalinglab.report.browser import visit

        v = visit(path)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(v.screenshot)
        result.update(screenshot=str(screenshot), browser_errors=v.errors, network_requests=v.network_requests)
    missing = (
        f", [yellow]{len(result['missing_figures'])} figure(s) missing[/yellow]" if result["missing_figures"] else ""
    )
    human = (
        f"wrote [bold]{path}[/bold] ({result['bytes'] / 1e6:.2f} MB, {result['figures']} figures{missing}); "
        + ", ".join(f"{k} {v}" for k, v in result["stages"].items())
    )
    if screenshot is not None:
        human += (
            f"\nscreenshot [bold]{screenshot}[/bold]; browser errors: {len(result['browser_errors'])}, "
            f"network requests: {len(result['network_requests'])}"
        )
    common.emit(result, as_json, human)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
