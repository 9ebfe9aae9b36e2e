"""`build_report(run_dir)`: one self-contained HTML page from a `scalinglab run` directory.

Reads only the run store: `DIR/summary.json` (written by the pipeline, see docs/report.md
for the contract) and the PNG figures it names. Writes `DIR/report.html`:

- every figure embedded as a base64 `data:` URI, the stylesheet inline, system fonts, no
  scripts, so the page opens offline, by e-mail attachment, or from a browser's file:// URL
  without a single network request;
- at the top, what was trained and what each scaling axis bought (one tile per stage: its
  first headline number), the stages with their models, and every fitted law with its 95%
  interval;
- then one section per stage in pipeline order: headline numbers, notes, figures with
  captions, the stage's table; a failed (or interrupted) stage shows its error in red, a
  stage the run did not reach is marked skipped.

Values are HTML-escaped everywhere; a figure file that is missing (or not a PNG, the only
kind the stages write) shows a dashed placeholder naming the path instead of a broken image.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from pathlib import Path
from typing import Any

from scalinglab.errors import UserError
from scalinglab.report.css import CSS
from scalinglab.runs.store import atomic_write_text, read_json

# Each stage's default title and the scaling axis it measures (shown on the summary tiles).
# key: (default title, axis on the summary tile, short name in the top bar)
STAGES: dict[str, tuple[str, str, str]] = {
    "pretrain": ("Pre-training ladder", "pre-training compute", "Pre-training"),
    "synth": ("Synthetic data by rejection sampling", "synthetic data", "Synthetic data"),
    "sft": ("Supervised fine-tuning", "SFT", "SFT"),
    "rl": ("Reinforcement learning (GRPO, PPO)", "RL compute", "RL"),
    "reward_models": ("Reward models (ORM and PRM)", "reward models", "Reward models"),
    "testtime": ("Test-time compute", "test-time compute", "Test-time"),
    "tradeoff": ("Trade-off: where compute buys accuracy", "compute allocation", "Trade-off"),
    "tokenomics": ("Tokenomics of serving", "serving cost", "Tokenomics"),
    "base": ("The pretrained model as it comes", "the pretrained model", "Base model"),
}
# The stages each pipeline runs, in order: the default one (pipeline/stages.py) and `--preset real`
# (pipeline/real.py, the one with a `base` stage).
DEFAULT_ORDER = ("pretrain", "synth", "sft", "rl", "reward_models", "testtime", "tradeoff", "tokenomics")
REAL_ORDER = ("base", "sft", "rl", "testtime", "tokenomics")
# Figures are drawn at figures.DPI (150); shown at ~0.62 px per pixel their text matches the
# page's ~10-11 px figure text, the same in every figure whatever its width.
FIG_SCALE = 0.62
WIDE_ASPECT = 1.9  # wider figures (side-by-side panels) span the whole row
GREEK = {
    "alpha": "α",
    "beta": "β",
    "gamma": "γ",
    "delta": "δ",
    "eta": "η",
    "kappa": "κ",
    "lambda": "λ",
    "mu": "μ",
    "sigma": "σ",
    "tau": "τ",
}
MAX_TABLE_ROWS = 10  # longer stage tables fold the rest under a <details>


def resolve_run_dir(path: str | Path) -> Path:
    """A run directory, or a file inside one (summary.json, report.html) -> the directory."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise UserError(f"{path}: no such run directory")
    if not (p / "summary.json").is_file():
        raise UserError(f"{path}: no summary.json here (not a finished `scalinglab run` directory)")
    return p


def load_summary(run_dir: str | Path) -> dict:
    summary = read_json(Path(run_dir) / "summary.json")
    if not isinstance(summary, dict):
        raise UserError(f"{run_dir}/summary.json: expected a JSON object, got {type(summary).__name__}")
    stages = summary.get("stages", {})
    if not isinstance(stages, dict) or not all(isinstance(v, dict) for v in stages.values()):
        raise UserError(f"{run_dir}/summary.json: 'stages' must be an object of objects keyed by stage name")
    return summary


def stage_status(stage: dict | None) -> str:
    """'ok', 'failed' or 'skipped' for one entry of summary['stages'].

    The pipeline writes a finished stage without a `status`, a failed one with `status: failed`
    or `interrupted` (and its `error`), and leaves out the stages it did not reach (None here).
    """
    if stage is None:
        return "skipped"
    return "failed" if stage.get("status") in ("failed", "interrupted") else "ok"


def ordered_stages(summary: dict) -> list[tuple[str, dict | None]]:
    """Every stage of the run's pipeline in order (None where the run did not reach it), then any others."""
    stages = summary.get("stages") or {}
    order = REAL_ORDER if "base" in stages else DEFAULT_ORDER
    return [(k, stages.get(k)) for k in order] + [(k, v) for k, v in stages.items() if k not in order]


def figure_paths(run_dir: Path, summary: dict) -> list[tuple[str, Path]]:
    """(stage, resolved path) for every figure the summary names, missing files included."""
    out = []
    for key, stage in ordered_stages(summary):
        for fig in (stage or {}).get("figures") or []:
            out.append((key, _resolve(run_dir, fig["path"])))
    return out


def build_report(run_dir: str | Path) -> Path:
    """Write `run_dir/report.html` from `run_dir/summary.json` and return its path."""
    run_dir = resolve_run_dir(run_dir)
    page = render(load_summary(run_dir), run_dir)
    out = run_dir / "report.html"
    atomic_write_text(out, page)
    return out


# ---------------------------------------------------------------------------- formatting


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def fmt_num(v: float | int) -> str:
    """Readable numbers: 1,234 · 0.8125 · 3.2×10<sup>18</sup>; HTML."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) and abs(v) < 10**7:
        return f"{v:,}"
    v = float(v)
    if not math.isfinite(v):
        return esc(v)
    if v == 0:
        return "0"
    a = abs(v)
    if 1e-3 <= a < 1e4:
        return f"{v:.4g}"
    if 1e4 <= a < 1e7:
        return f"{v:,.0f}"
    mant, exp = f"{v:.2e}".split("e")  # 3 significant figures
    return f"{mant.rstrip('0').rstrip('.')}×10<sup>{int(exp)}</sup>"


def fmt_value(v: Any) -> str:
    """Any JSON value as inline HTML ('—' for null)."""
    if v is None:
        return "—"
    if isinstance(v, (int, float)):
        return fmt_num(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_value(x) for x in v)
    if isinstance(v, dict):
        return " · ".join(f"{esc(k)} {fmt_value(x)}" for k, x in v.items())
    return esc(v)


def fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "—"
    s = int(round(seconds))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{seconds:.1f} s")


def fmt_time(t: Any) -> str:
    """An epoch number or an ISO string as 'YYYY-MM-DD HH:MM UTC'."""
    if isinstance(t, (int, float)) and math.isfinite(t):
        return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(t, str):
        try:
            d = _dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            return esc(t)
        if d.tzinfo is not None:
            d = d.astimezone(_dt.timezone.utc)
        return d.strftime("%Y-%m-%d %H:%M") + (" UTC" if d.tzinfo is not None else "")
    return "—"


def label(key: str) -> str:
    return esc(str(key).replace("_", " "))


def param_name(k: str) -> str:
    return GREEK.get(k, esc(k))


def badge(status: str) -> str:
    return f'<span class="badge {status}">{status}</span>'


def _resolve(run_dir: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else run_dir / p


def _display_path(run_dir: Path, path: Any) -> str:
    p = Path(str(path))
    try:
        return str(p.resolve().relative_to(run_dir.resolve())) if p.is_absolute() else str(p)
    except ValueError:
        return str(p)


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


# ---------------------------------------------------------------------------- page parts


def render(summary: dict, run_dir: Path) -> str:
    """The whole page as a string."""
    stages = ordered_stages(summary)
    preset = summary.get("preset", "?")
    nav = "".join(
        f'<a class="stage" href="#stage-{esc(k)}" title="{esc(_title(k, s))}">'
        f'<span class="dot {stage_status(s)}"></span>{esc(STAGES[k][2] if k in STAGES else k)}</a>'
        for k, s in stages
    )
    counter = [0]  # figure numbers run through the whole page
    sections = "".join(render_stage(i + 1, k, s, run_dir, counter) for i, (k, s) in enumerate(stages))
    built = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>scalinglab run · {esc(preset)} · {fmt_time(summary.get("started"))}</title>
<style>{CSS}</style></head>
<body>
<nav class="top"><div class="inner"><a class="brand" href="#top">scalinglab</a>{nav}</div></nav>
<main id="top">
{render_header(summary, stages)}
{render_overview(stages, run_dir)}
{render_laws(summary.get("laws") or {})}
{sections}
<footer>Built {built} by <code>scalinglab report</code> from <code>summary.json</code> alone.
Self-contained: figures are embedded, no network is needed to read this page.</footer>
</main></body></html>
"""


def _title(key: str, stage: Any) -> str:
    if stage and stage.get("title"):
        return str(stage["title"])
    return STAGES[key][0] if key in STAGES else key.replace("_", " ").capitalize()


def render_header(summary: dict, stages: list[tuple[str, Any]]) -> str:
    n_ok = sum(stage_status(s) == "ok" for _, s in stages)
    n_failed = sum(stage_status(s) == "failed" for _, s in stages)
    machine = summary.get("machine")
    chips = [
        ("preset", esc(summary.get("preset", "?"))),
        ("started", fmt_time(summary.get("started"))),
        ("took", fmt_duration(summary.get("seconds"))),
        (
            "stages",
            f"{n_ok} ok"
            + (f", {n_failed} failed" if n_failed else "")
            + (f", {len(stages) - n_ok - n_failed} skipped" if len(stages) - n_ok - n_failed else ""),
        ),
    ]
    if machine:
        chips.append(("machine", fmt_value(machine)))
    chip_html = "".join(f'<span class="chip">{k} <b>{v}</b></span>' for k, v in chips)
    return f"""<header class="hero">
<h1>o1 in miniature: every scaling axis, measured here</h1>
<p class="lede">Small transformers trained from scratch on a verifiable reasoning task, then improved by each of
the three scaling axes in turn: pre-training compute, post-training (synthetic data, reward models, RL) and
test-time compute, with the laws fitted to this run's own measurements and what serving it costs.</p>
<div class="chips">{chip_html}</div></header>"""


def render_overview(stages: list[tuple[str, Any]], run_dir: Path) -> str:
    tiles, rows = [], []
    for key, stage in stages:
        status, title = stage_status(stage), _title(key, stage)
        axis = STAGES[key][1] if key in STAGES else key.replace("_", " ")
        head = (stage.get("headline") or {}) if status == "ok" else {}
        if status == "ok" and head:
            name, value = next(iter(head.items()))
            tiles.append(
                f'<a class="tile" href="#stage-{esc(key)}"><div class="axis">{esc(axis)}</div>'
                f'<div class="value">{fmt_value(value)}</div><div class="what">{label(name)}</div></a>'
            )
        elif status != "ok":
            tiles.append(
                f'<a class="tile {status}" href="#stage-{esc(key)}"><div class="axis">{esc(axis)}</div>'
                f'<div class="value">{status}</div><div class="what">{esc(title)}</div></a>'
            )
        results = " · ".join(f"{label(k)} <b>{fmt_value(v)}</b>" for k, v in list(head.items())[:3])
        model = (stage or {}).get("model")
        model_html = f"<code>{esc(_display_path(run_dir, model))}</code>" if model else "—"
        if status == "failed":
            results = f'<span class="msg">{esc(_error_line(stage))}</span>'
        rows.append(
            f'<tr><td><a href="#stage-{esc(key)}">{esc(title)}</a></td><td>{badge(status)}</td>'
            f"<td>{results or '—'}</td><td>{model_html}</td></tr>"
        )
    return f"""<section class="card" id="summary"><h2>Summary</h2>
<p class="sub">What each axis bought in this run (the first headline number of each stage; click for the stage).</p>
<div class="tiles">{"".join(tiles)}</div>
<h3>What was trained and measured</h3>
<div class="scroll"><table class="wide"><thead><tr><th>stage</th><th>status</th><th>headline</th><th>model</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table></div></section>"""


def _error_line(stage: dict) -> str:
    err = str(stage.get("error") or "no error message recorded")
    return err.strip().splitlines()[-1][:200] if err.strip() else err


def render_laws(laws: dict) -> str:
    if not laws:
        return (
            '<section class="card" id="laws"><h2>Fitted laws</h2>'
            '<p class="sub">No law was fitted in this run.</p></section>'
        )
    rows = []
    for name, law in laws.items():
        law = law if isinstance(law, dict) else {}
        params, ci = law.get("params") or {}, law.get("ci95") or {}
        ok = bool(law.get("success"))
        warn = law.get("warnings") or []
        status = (
            badge("ok")
            if ok and not warn
            else badge("failed")
            if not ok
            else '<span class="badge skipped">ill-determined</span>'
        )
        msg = esc(law.get("message", "")) + ("".join(f"<br>{esc(w)}" for w in warn))
        extra = f"<br>{fmt_num(law['n_points'])} points" if isinstance(law.get("n_points"), int) else ""
        items = list(params.items()) or [("—", None)]
        for i, (k, v) in enumerate(items):
            lo_hi = ci.get(k) if isinstance(ci, dict) else None
            if isinstance(lo_hi, (list, tuple)) and len(lo_hi) == 2 and all(isinstance(x, (int, float)) for x in lo_hi):
                interval = f"[{fmt_num(lo_hi[0])}, {fmt_num(lo_hi[1])}]"
            else:
                interval = "—"
            lead = f'<td rowspan="{len(items)}"><b>{label(name)}</b>{extra}</td>' if i == 0 else ""
            tail = f'<td rowspan="{len(items)}">{status}<div class="msg">{msg}</div></td>' if i == 0 else ""
            rows.append(
                f'<tr class="{"group-start" if i == 0 else ""}">{lead}<td>{param_name(k)}</td>'
                f'<td class="n">{fmt_value(v)}</td><td class="n">{interval}</td>{tail}</tr>'
            )
    return f"""<section class="card" id="laws"><h2>Fitted laws</h2>
<p class="sub">Each law fitted to this run's measurements; intervals are 95% bootstrap percentiles
(— where the fit had no bootstrap).</p>
<div class="scroll"><table class="wide"><thead><tr><th>law</th><th>parameter</th><th class="n">estimate</th>
<th class="n">95% interval</th><th>fit</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div></section>"""


def render_stage(num: int, key: str, stage: Any, run_dir: Path, counter: list[int]) -> str:
    status, title = stage_status(stage), _title(key, stage)
    head = f'<h2><span class="num">{num}.</span> {esc(title)} {badge(status)}</h2>'
    if stage is None:
        why = "This stage was not run (the run stopped before it)."
        return f'<section class="card" id="stage-{esc(key)}">{head}<p class="skipnote">{why}</p></section>'
    parts = [head]
    model = stage.get("model")
    sub = [f"stage <code>{esc(key)}</code>"] + (
        [f"model <code>{esc(_display_path(run_dir, model))}</code>"] if model else []
    )
    parts.append(f'<p class="sub">{" · ".join(sub)}</p>')
    if status == "failed":
        error = esc(stage.get("error") or "no error message recorded")
        parts.append(f'<div class="error"><b>This stage failed</b> with this error:<pre>{error}</pre></div>')
    if stage.get("notes"):
        paras = [p.strip() for p in str(stage["notes"]).split("\n\n") if p.strip()]
        parts.append('<div class="notes">' + "".join(f"<p>{esc(p)}</p>" for p in paras) + "</div>")
    if stage.get("headline"):
        rows = "".join(
            f'<tr><th>{label(k)}</th><td class="n">{fmt_value(v)}</td></tr>' for k, v in stage["headline"].items()
        )
        parts.append(f'<h3>Headline numbers</h3><table class="kv"><tbody>{rows}</tbody></table>')
    figs = stage.get("figures") or []
    if figs:
        parts.append(
            '<h3>Figures</h3><div class="figs">' + "".join(render_figure(f, run_dir, counter) for f in figs) + "</div>"
        )
    if isinstance(stage.get("table"), list) and stage["table"]:
        parts.append("<h3>Data</h3>" + render_table(stage["table"]))
    return f'<section class="card" id="stage-{esc(key)}">{"".join(parts)}</section>'


def render_figure(fig: dict, run_dir: Path, counter: list[int]) -> str:
    rel, caption = str(fig.get("path", "")), str(fig.get("caption", ""))
    counter[0] += 1
    cap = f"<figcaption><b>Figure {counter[0]}.</b> {esc(caption)}</figcaption>"
    path = _resolve(run_dir, rel)
    png = path.suffix.lower() == ".png"
    if not rel or not png or not path.is_file():
        why = "not found" if png else "not a PNG (the only image type the stages write)"
        return f'<figure><div class="missing">figure {why}: <code>{esc(rel)}</code></div>{cap}</figure>'
    data = path.read_bytes()
    size = _png_size(data)
    dims = f' width="{size[0]}" height="{size[1]}" style="max-width:{round(size[0] * FIG_SCALE)}px"' if size else ""
    wide = ' class="wide"' if size and size[0] > WIDE_ASPECT * size[1] else ""
    uri = f"data:image/png;base64,{base64.b64encode(data).decode('ascii')}"
    return f'<figure{wide}><img src="{uri}"{dims} alt="{esc(caption or rel)}">{cap}</figure>'


def render_table(rows: list[Any]) -> str:
    rows = [r for r in rows if isinstance(r, dict)]
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    numeric = {c for c in cols if all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows)}

    def tr(r: dict) -> str:
        return (
            "<tr>"
            + "".join(f'<td class="{"n" if c in numeric else ""}">{fmt_value(r.get(c))}</td>' for c in cols)
            + "</tr>"
        )

    thead = (
        "<thead><tr>"
        + "".join(f'<th class="{"n" if c in numeric else ""}">{label(c)}</th>' for c in cols)
        + "</tr></thead>"
    )
    body = "".join(tr(r) for r in rows[:MAX_TABLE_ROWS])
    out = f'<div class="scroll"><table>{thead}<tbody>{body}</tbody></table></div>'
    if len(rows) > MAX_TABLE_ROWS:
        rest = "".join(tr(r) for r in rows[MAX_TABLE_ROWS:])
        out += (
            f"<details><summary>{len(rows) - MAX_TABLE_ROWS} more rows</summary>"
            f'<div class="scroll"><table>{thead}<tbody>{rest}</tbody></table></div></details>'
        )
    return out
