"""The style sheet of report.html (inline in the page: the page loads nothing)."""

CSS = """
:root { color-scheme: light dark; --fg: #1f2328; --muted: #59636e; --bg: #ffffff; --panel: #f6f8fa;
  --line: #d1d9e0; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --add: #dafbe1; --del: #ffebe9;
  --hunk: #ddf4ff; --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9198a1; --bg: #0d1117; --panel: #151b23; --line: #3d444d;
    --ok: #3fb950; --bad: #f85149; --warn: #d29922; --add: #12261e; --del: #25171c; --hunk: #121d2f; }
}
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--fg); background: var(--bg); }
main { max-width: 1100px; margin: 0 auto; }
h1 { font-size: 22px; margin: 0 0 4px; word-break: break-word; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 0; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; font-weight: 600; font-size: 13px;
  border: 1px solid currentColor; }
.s-success { color: var(--ok); } .s-failed, .s-error { color: var(--bad); }
.s-limit, .s-interrupted, .s-skipped { color: var(--warn); }
.reason { margin: 8px 0 0; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.facts td:first-child { color: var(--muted); }
pre, .text { white-space: pre-wrap; overflow-wrap: anywhere; }
pre { font: 12.5px/1.45 var(--mono); background: var(--panel); border: 1px solid var(--line);
  border-radius: 6px; padding: 8px 10px; margin: 6px 0; max-height: 40em; overflow: auto; }
.text { background: transparent; margin: 6px 0; }
.final { border-left: 4px solid var(--ok); padding: 4px 12px; background: var(--panel); border-radius: 0 6px 6px 0; }
details { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0; background: var(--bg); }
details > summary { cursor: pointer; padding: 5px 10px; list-style-position: inside; overflow-wrap: anywhere; }
details[open] > summary { border-bottom: 1px solid var(--line); }
details > .body { padding: 4px 10px 8px; }
.turn { border: 1px solid var(--line); border-radius: 8px; margin: 12px 0; padding: 8px 12px; }
.turn > header { display: flex; flex-wrap: wrap; gap: 4px 14px; align-items: baseline; margin-bottom: 4px; }
.tool-ok { color: var(--ok); } .tool-bad { color: var(--bad); } .denied { color: var(--bad); font-weight: 600; }
.code { font-family: var(--mono); font-size: 12.5px; }
.diff { padding: 0; }
.diff span { display: block; padding: 0 10px; }
.diff .add { background: var(--add); } .diff .del { background: var(--del); }
.diff .hunk { background: var(--hunk); color: var(--muted); } .diff .file { font-weight: 700; }
.event { margin: 4px 0; padding: 4px 10px; border-radius: 6px; background: var(--panel); overflow-wrap: anywhere; }
.event.warning, .event.error, .event.limit { border-left: 4px solid var(--warn); }
.event.error { border-left-color: var(--bad); }
footer { margin-top: 32px; font-size: 12px; }
"""
