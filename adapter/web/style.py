"""The page's one small stylesheet (served at ``/ui/style.css``). Colours meet WCAG AA contrast on white;
nothing is told by colour alone (states are words)."""

CSS = """
:root { --fg: #1d1d1b; --muted: #4a4a48; --link: #0b4f8a; --line: #b1b4b6; --focus: #ffdd00;
        --bg-soft: #f3f2f1; --warn-bg: #fdecea; --warn-fg: #8a1c1c; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Arial, sans-serif; color: var(--fg);
       background: #fff; }
a { color: var(--link); }
a:focus, button:focus, input:focus, select:focus, textarea:focus, summary:focus {
  outline: 3px solid var(--focus); outline-offset: 0; box-shadow: 0 0 0 5px var(--fg); }
.skip { position: absolute; left: -9999px; } .skip:focus { left: 1rem; top: 1rem; background: #fff; padding: .5rem; }
header, footer { background: var(--fg); color: #fff; padding: .75rem 1.5rem; }
header a, footer a { color: #fff; }
header p { margin: 0; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
nav ul { list-style: none; margin: 0; padding: 0; display: flex; gap: 1.5rem; flex-wrap: wrap; }
h1 { font-size: 1.75rem; margin: 1rem 0 .5rem; } h2 { font-size: 1.35rem; margin-top: 2rem;
  border-bottom: 2px solid var(--fg); }
label { display: block; font-weight: 600; margin: .5rem 0 .25rem; }
.hint { color: var(--muted); font-size: .9rem; margin: 0 0 .25rem; }
input, select, textarea { font: inherit; color: var(--fg); border: 2px solid var(--fg); padding: .35rem .5rem;
  background: #fff; }
textarea { width: 100%; font-family: ui-monospace, monospace; font-size: .9rem; }
button { font: inherit; font-weight: 600; color: #fff; background: #00703c; border: 2px solid #00703c;
  padding: .4rem 1rem; cursor: pointer; margin-top: .5rem; }
button.secondary { background: #fff; color: var(--fg); border-color: var(--fg); }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { text-align: left; vertical-align: top; border-bottom: 1px solid var(--line); padding: .4rem .5rem; }
th { background: var(--bg-soft); }
.tag { display: inline-block; border: 2px solid currentColor; padding: 0 .35rem; font-weight: 700;
  font-size: .85rem; }
.tag-wnb, .tag-active { color: var(--warn-fg); background: var(--warn-bg); }
.tag-ended { color: var(--muted); }
details { border: 1px solid var(--line); padding: .5rem .75rem; margin: .5rem 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: var(--bg-soft); padding: .75rem; overflow-x: auto; white-space: pre-wrap; }
.panel { border-left: 5px solid var(--fg); background: var(--bg-soft); padding: .5rem 1rem; margin: 1rem 0; }
.inline { display: inline; }
"""
