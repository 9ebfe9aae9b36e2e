"""The HTML report of a `scalinglab run`, built from the run store alone.

`build_report(run_dir)` writes `run_dir/report.html` (one self-contained page: figures as
data URIs, inline CSS, no scripts, no network); `figures` holds the matplotlib style and
`save_fig` that the stages use so every figure in the report looks alike.
"""

from scalinglab.report.html import build_report, load_summary, resolve_run_dir, stage_status

__all__ = ["build_report", "load_summary", "resolve_run_dir", "stage_status"]
