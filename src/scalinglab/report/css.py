"""The report's stylesheet, inlined into the page (no external fonts or files).

System font stacks only, so the page looks native on macOS, Windows and Linux without
fetching a web font; one light theme, because the embedded figures have white backgrounds.
"""

CSS = """
:root {
  --bg: #f5f7fa; --card: #ffffff; --ink: #1d2430; --muted: #5f6b7a; --line: #e3e8ef;
  --accent: #1f6feb; --ok: #1a7f37; --ok-bg: #e6f4ea; --bad: #c62828; --bad-bg: #fdecea;
  --skip: #6b7280; --skip-bg: #eef0f3;
  --sans: -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans",
          "Liberation Sans", Arial, sans-serif;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
}
* { box-sizing: border-box; }
html { scroll-behavior: smooth; scroll-padding-top: 64px; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 15px/1.55 var(--sans);
       -webkit-font-smoothing: antialiased; }
code, pre { font-family: var(--mono); font-size: 0.86em; }
code { background: #f0f2f5; padding: 0.05em 0.35em; border-radius: 4px; word-break: break-all; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }

nav.top { position: sticky; top: 0; z-index: 5; background: rgba(255,255,255,0.94);
          backdrop-filter: blur(6px); border-bottom: 1px solid var(--line); }
nav.top .inner { max-width: 1180px; margin: 0 auto; padding: 10px 28px; display: flex;
                 gap: 6px 16px; align-items: center; flex-wrap: wrap; }
nav.top .brand { font-weight: 700; letter-spacing: -0.01em; margin-right: 8px; color: var(--ink); }
nav.top a.stage { font-size: 13px; color: var(--muted); display: inline-flex; align-items: center; gap: 6px; }
nav.top a.stage:hover { color: var(--ink); text-decoration: none; }
.dot { width: 8px; height: 8px; border-radius: 50%; display: inline-block; background: var(--ok); }
.dot.failed { background: var(--bad); } .dot.skipped { background: #b8bec7; }

main { max-width: 1180px; margin: 0 auto; padding: 8px 28px 48px; }
header.hero { padding: 28px 0 10px; }
header.hero h1 { font-size: 30px; line-height: 1.2; margin: 0 0 6px; letter-spacing: -0.02em; }
header.hero p.lede { margin: 0 0 14px; color: var(--muted); max-width: 820px; }
.chips { display: flex; flex-wrap: wrap; gap: 8px; }
.chip { background: var(--card); border: 1px solid var(--line); border-radius: 999px; padding: 3px 12px;
        font-size: 13px; color: var(--muted); }
.chip b { color: var(--ink); font-weight: 600; }

section.card { background: var(--card); border: 1px solid var(--line); border-radius: 12px;
               padding: 22px 26px 24px; margin: 18px 0; box-shadow: 0 1px 2px rgba(16,24,40,0.04); }
section.card h2 { font-size: 21px; margin: 0 0 4px; letter-spacing: -0.01em; display: flex;
                  align-items: center; gap: 10px; flex-wrap: wrap; }
section.card h2 .num { color: var(--muted); font-weight: 500; }
section.card h3 { font-size: 14px; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted);
                  margin: 22px 0 8px; font-weight: 650; }
.sub { color: var(--muted); font-size: 13.5px; margin: 0 0 10px; }
.notes p { margin: 8px 0; max-width: 900px; }

.badge { font-size: 12px; font-weight: 600; border-radius: 999px; padding: 2px 10px; letter-spacing: 0.02em; }
.badge.ok { color: var(--ok); background: var(--ok-bg); }
.badge.failed { color: var(--bad); background: var(--bad-bg); }
.badge.skipped { color: var(--skip); background: var(--skip-bg); }

.tiles { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin: 6px 0 4px; }
.tile { border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; background: #fbfcfd; color: inherit; }
a.tile:hover { text-decoration: none; border-color: #b9c3d0; background: #f4f7fb; }
.tile .axis { font-size: 12px; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted); }
.tile .value { font-size: 24px; font-weight: 650; letter-spacing: -0.02em; margin: 2px 0 0;
               font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.tile .what { font-size: 13px; color: var(--muted); }
.tile.failed { background: var(--bad-bg); border-color: #f5c2c0; }
.tile.failed .value { color: var(--bad); font-size: 18px; }
.tile.skipped .value { color: var(--skip); font-size: 18px; }

.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12.5px; background: #f8f9fb; white-space: nowrap; }
td.n, th.n { text-align: right; white-space: nowrap; }
table.wide { width: 100%; }
table.kv { min-width: 320px; }
table.kv th { background: none; text-transform: none; font-size: 13.5px; color: var(--ink); font-weight: 500; }
tr.group-start td { border-top: 1px solid #cfd6df; }
td .msg { color: var(--muted); font-size: 12.5px; }
sup { font-size: 0.72em; }

.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 18px; margin-top: 6px;
        align-items: start; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 10px; padding: 10px 10px 12px; background: #fff; }
figure.wide { grid-column: 1 / -1; }
figure img { display: block; width: 100%; height: auto; margin: 0 auto; }
figcaption { font-size: 13.5px; color: #374151; margin: 8px 4px 0; }
figcaption b { color: var(--ink); }
.missing { border: 1px dashed #d0d5dd; border-radius: 8px; padding: 28px 14px; text-align: center;
           color: var(--muted); font-size: 13px; }

.error { background: var(--bad-bg); border: 1px solid #f5c2c0; border-radius: 8px; padding: 10px 14px; margin: 8px 0; }
.error pre { margin: 6px 0 0; white-space: pre-wrap; word-break: break-word; color: #7f1d1d; max-height: 260px; overflow: auto; }
.skipnote { color: var(--muted); margin: 4px 0 0; }
details summary { cursor: pointer; color: var(--accent); font-size: 13.5px; margin: 6px 0; }
footer { color: var(--muted); font-size: 12.5px; text-align: center; padding: 8px 0 0; }

@media (max-width: 980px) { .tiles { grid-template-columns: repeat(2, 1fr); } }
@media (max-width: 720px) {
  main { padding: 4px 12px 32px; } nav.top .inner { padding: 8px 12px; }
  section.card { padding: 16px 14px; } .figs { grid-template-columns: 1fr; } figure.wide { grid-column: auto; }
}
@media print { nav.top { display: none; } section.card { break-inside: avoid; box-shadow: none; } }
"""
