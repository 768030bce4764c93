"""Interactive search-tree viewer for the report: inline JS + SVG, no server, no network, no CDN.

``normalize_tree`` accepts the tree JSON strategies put in ``SearchResult.tree`` in either shape
    nested: {"step"|"text", "score"|"value", "visits", "chosen"|"on_path", "children": [...]}
    flat:   {"nodes": [{"id", "parent", "step"|"text", "score", "visits", "chosen"}], "chosen"|"path": [ids]}
and returns the compact nested form the page draws: {t: text, s: score|None, v: visits|None, c: on chosen path,
x: {other numeric fields}, k: [children]}. Clicking a node collapses/expands it; hovering shows its text and numbers.
"""

from __future__ import annotations

import html
import json
import math

MAX_NODES = 300  # per tree; bigger trees keep the chosen path and the most-visited/best-scored nodes
TEXT_KEYS = ("step", "text", "label", "state")
SCORE_KEYS = ("score", "value", "q", "reward")
CHOSEN_KEYS = ("chosen", "on_path", "selected", "best")
SKIP = {"children", "id", "parent", *TEXT_KEYS, "visits", "n", *CHOSEN_KEYS}


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _first(d: dict, keys) -> object:
    return next((d[k] for k in keys if k in d), None)


def _node(d: dict, chosen_ids: set) -> dict:
    score_key = next((k for k in SCORE_KEYS if k in d), None)
    extra = {k: _num(v) for k, v in d.items() if k not in SKIP and k != score_key and _num(v) is not None}
    visits = d.get("visits", d.get("n"))
    return {"t": str(_first(d, TEXT_KEYS) or ""), "s": _num(d.get(score_key)), "v": _num(visits),
            "c": bool(_first(d, CHOSEN_KEYS)) or d.get("id") in chosen_ids, "x": extra, "k": []}


def normalize_tree(tree: dict) -> dict:
    """Compact nested tree (see module doc). Raises ValueError for JSON that is neither shape."""
    if not isinstance(tree, dict):
        raise ValueError(f"a search tree must be a JSON object, got {type(tree).__name__}")
    if isinstance(tree.get("nodes"), list):
        chosen = set(tree.get("chosen") or tree.get("path") or [])
        nodes = [n for n in tree["nodes"] if isinstance(n, dict)]
        made = {n.get("id", i): _node(n, chosen) for i, n in enumerate(nodes)}
        roots = []
        for i, n in enumerate(nodes):
            parent = n.get("parent")
            (made[parent]["k"] if parent in made else roots).append(made[n.get("id", i)])
        if not roots:
            raise ValueError("flat search tree has no root (a node whose parent is missing or null)")
        root = roots[0] if len(roots) == 1 else {"t": "(root)", "s": None, "v": None, "c": True, "x": {}, "k": roots}
    elif "children" in tree or any(k in tree for k in TEXT_KEYS):
        def build(d: dict) -> dict:
            node = _node(d, set())
            node["k"] = [build(c) for c in d.get("children") or [] if isinstance(c, dict)]
            return node
        root = build(tree)
    else:
        raise ValueError("search tree JSON needs 'nodes' (flat) or 'children'/'step' (nested)")
    root["c"] = True
    return root


def count_nodes(node: dict) -> int:
    return 1 + sum(count_nodes(c) for c in node["k"])


def prune(node: dict, max_nodes: int = MAX_NODES) -> dict:
    """Keep at most ``max_nodes``: breadth-first, chosen children first, then by visits and score."""
    kept = 1
    queue = [node]
    while queue:
        cur = queue.pop(0)
        ranked = sorted(cur["k"], key=lambda c: (not c["c"], -(c["v"] or 0), -(c["s"] or -1)))
        chosen = [c for c in ranked if c["c"]]
        room = max(0, max_nodes - kept - len(chosen))
        cur["k"] = chosen + [c for c in ranked if not c["c"]][:room]
        kept += len(cur["k"])
        queue.extend(cur["k"])
    return node


def _json_for_script(obj) -> str:
    # "</" would end the <script> element early; "<\/" is the same string to JSON.parse.
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/")


def tree_section(trees: list[dict]) -> str:
    """HTML for the viewer. trees: metrics ``tree`` records ({strategy, question, answer, gold, correct, tree})."""
    items = []
    for i, rec in enumerate(trees):
        try:
            root = normalize_tree(rec["tree"])
        except ValueError as e:
            items.append(f"<p class='warn'>Tree {i + 1} ({html.escape(str(rec.get('strategy')))}) could not be drawn: "
                         f"{html.escape(str(e))}</p>")
            continue
        total = count_nodes(root)
        root = prune(root)
        shown = count_nodes(root)
        verdict = {True: "correct", False: "wrong"}.get(rec.get("correct"), "unchecked")
        caption = (f"<b>{html.escape(str(rec.get('strategy')))}</b> on <i>{html.escape(str(rec.get('question')))}</i>"
                   f" &rarr; answer {html.escape(str(rec.get('answer') or 'none'))} ({verdict}"
                   + (f", gold {html.escape(str(rec.get('gold')))}" if rec.get("gold") is not None else "") + ")"
                   + (f" &middot; showing {shown} of {total} nodes" if shown < total else f" &middot; {total} nodes"))
        items.append(f"<div class='tree'><p>{caption}</p><div class='treebox' id='tree{i}'></div>"
                     f"<script type='application/json' id='tree{i}-data'>{_json_for_script(root)}</script></div>")
    if not trees:
        items.append("<p>No search trees were recorded (tree strategies were not part of this sweep).</p>")
    return "\n".join(items) + f"\n<div id='tip' class='tip'></div>\n<script>{TREE_JS}</script>"


TREE_JS = r"""
(function () {
  var NS = "http://www.w3.org/2000/svg", DX = 150, DY = 22, R = 6;
  var tip = document.getElementById("tip");
  function color(s) {
    if (s === null || s === undefined) return "#9aa";
    var v = Math.max(0, Math.min(1, s)), r = Math.round(215 * (1 - v) + 30 * v), g = Math.round(60 * (1 - v) + 160 * v);
    return "rgb(" + r + "," + g + ",70)";
  }
  function el(tag, attrs) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function fmt(x) { return x === null || x === undefined ? "-" : (Math.round(x * 1000) / 1000).toString(); }
  function describe(n) {
    var s = "<div class='tipstep'>" + (n.t ? n.t.replace(/&/g, "&amp;").replace(/</g, "&lt;") : "(root)") + "</div>" +
      "score " + fmt(n.s) + " &middot; visits " + fmt(n.v) + (n.c ? " &middot; <b>chosen path</b>" : "");
    for (var k in n.x) s += "<br>" + k + " " + fmt(n.x[k]);
    if (n.k.length) s += "<br>" + n.k.length + " children" + (n._closed ? " (collapsed: click to expand)" : "");
    return s;
  }
  function layout(n, depth, next) {  // leaves get consecutive rows, parents sit at their children's mean row
    n._d = depth;
    var kids = n._closed ? [] : n.k;
    if (!kids.length) { n._r = next.row++; return; }
    kids.forEach(function (c) { layout(c, depth + 1, next); });
    n._r = (kids[0]._r + kids[kids.length - 1]._r) / 2;
  }
  function draw(box, root) {
    var next = {row: 0}, maxd = 0;
    layout(root, 0, next);
    box.innerHTML = "";
    var gEdges = el("g", {}), gNodes = el("g", {});
    (function walk(n) {
      maxd = Math.max(maxd, n._d);
      var x = 12 + n._d * DX, y = 14 + n._r * DY;
      (n._closed ? [] : n.k).forEach(function (c) {
        var cx = 12 + (n._d + 1) * DX, cy = 14 + c._r * DY;
        gEdges.appendChild(el("path", {d: "M" + x + "," + y + " C" + (x + DX / 2) + "," + y + " " + (cx - DX / 2) +
          "," + cy + " " + cx + "," + cy, fill: "none", stroke: c.c && n.c ? "#e08a00" : "#bbb",
          "stroke-width": c.c && n.c ? 3 : 1}));
        walk(c);
      });
      var g = el("g", {"class": "node", transform: "translate(" + x + "," + y + ")"});
      var rad = R + (n.v ? Math.min(6, Math.log(1 + n.v)) : 0);
      g.appendChild(el("circle", {r: rad, fill: n._closed ? "#fff" : color(n.s), stroke: n.c ? "#e08a00" : "#555",
        "stroke-width": n.c ? 2.5 : 1}));
      var label = el("text", {x: rad + 3, y: 4, "font-size": 10});
      label.textContent = (n.t || "(root)").slice(0, 22) + ((n.t || "").length > 22 ? "\u2026" : "") +
        (n._closed ? "  [+" + n.k.length + "]" : "");
      g.appendChild(label);
      g.addEventListener("mouseenter", function (ev) {
        tip.innerHTML = describe(n); tip.style.display = "block";
        tip.style.left = (ev.pageX + 12) + "px"; tip.style.top = (ev.pageY + 12) + "px";
      });
      g.addEventListener("mouseleave", function () { tip.style.display = "none"; });
      g.addEventListener("click", function () { if (n.k.length) { n._closed = !n._closed; draw(box, root); } });
      gNodes.appendChild(g);
    })(root);
    var svg = el("svg", {width: 40 + (maxd + 1) * DX + 120, height: 20 + next.row * DY});
    svg.appendChild(gEdges); svg.appendChild(gNodes);
    box.appendChild(svg);
  }
  document.querySelectorAll(".treebox").forEach(function (box) {
    var root = JSON.parse(document.getElementById(box.id + "-data").textContent);
    (function fold(n, d) {  // start with deep off-path subtrees collapsed
      if (d >= 4 && !n.c && n.k.length) n._closed = true;
      n.k.forEach(function (c) { fold(c, d + 1); });
    })(root, 0);
    draw(box, root);
  });
})();
"""
