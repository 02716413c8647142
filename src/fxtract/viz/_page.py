"""The HTML page of ``ModelGraph.to_html``: one file, inline style and script, nothing from the network.

``__TITLE__`` and ``__DATA__`` (the graph as JSON) are replaced. Rows are created only when
their module is expanded, so the DOM holds what is on screen, not the whole model.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__ - fxtract graph</title>
<style>
  :root { --blue: #3b6ea8; --line: #dfe3ea; --sel: #ffe9a8; --hit: #c9f0d0; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 13px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328; }
  header { position: sticky; top: 0; z-index: 2; background: #f6f8fa; border-bottom: 1px solid var(--line);
           padding: 8px 14px; display: flex; gap: 14px; align-items: center; flex-wrap: wrap; }
  header h1 { font-size: 16px; margin: 0; }
  header .cap { color: #57606a; font-size: 12px; }
  #q { width: 280px; padding: 5px 8px; border: 1px solid #c6ccd4; border-radius: 6px; font: inherit; }
  button { font: inherit; padding: 4px 10px; border: 1px solid #c6ccd4; border-radius: 6px; background: white;
           cursor: pointer; }
  main { display: flex; align-items: flex-start; }
  #tree { flex: 1; padding: 6px 0 40px; min-width: 0; overflow-x: auto; }
  #note { flex-basis: 100%; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; color: #9a6700; }
  #note:empty { display: none; }
  aside { position: sticky; top: 56px; width: 360px; max-height: calc(100vh - 60px); overflow: auto;
          border-left: 1px solid var(--line); padding: 10px 14px; font-size: 12px; }
  aside h2 { font-size: 14px; margin: 0 0 6px; word-break: break-all; }
  aside dt { color: #57606a; margin-top: 6px; }
  aside dd { margin: 0 0 0 8px; word-break: break-all; }
  .row { display: flex; gap: 10px; align-items: baseline; padding: 1px 14px 1px 0; white-space: nowrap;
         cursor: default; border-bottom: 1px solid #f3f4f6; }
  .row:hover { background: #f3f7fd; }
  .row.group { cursor: pointer; }
  .row.sel { background: var(--sel); }
  .row.match .nm { outline: 2px solid #2da44e; outline-offset: 1px; border-radius: 3px; }
  .row.hit { background: var(--hit); }
  .row.cur { box-shadow: inset 3px 0 0 var(--blue); }
  .tog { width: 14px; color: #57606a; text-align: center; flex: none; }
  .nm { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
  .nm .pre { color: #8c959f; }
  .tg { color: var(--blue); }
  .sh { color: #57606a; font-family: ui-monospace, Menlo, monospace; font-size: 12px; }
  .pm, .badge { color: #8c959f; font-size: 11px; }
  .badge.has { color: #9a6700; font-weight: 600; }
  .k-function .tg, .k-method .tg { color: #6f42c1; }
  .k-input .tg { color: #1a7f37; }
  #results { position: absolute; top: 100%; left: 0; width: 420px; max-height: 60vh; overflow: auto;
             background: white; border: 1px solid #c6ccd4; border-radius: 6px; box-shadow: 0 6px 18px #0002;
             display: none; }
  #results div { padding: 3px 8px; cursor: pointer; font-family: ui-monospace, Menlo, monospace; font-size: 12px;
                 white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  #results div:hover, #results div.on { background: #eaf1fb; }
  #results .count { color: #57606a; cursor: default; font-family: inherit; }
  .search { position: relative; }
  a.link { color: var(--blue); cursor: pointer; text-decoration: none; font-family: ui-monospace, Menlo, monospace; }
  a.link:hover { text-decoration: underline; }
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <span class="cap" id="caption"></span>
  <span class="search"><input id="q" type="search" placeholder="Search node names or types (Enter: go)"
        autocomplete="off"><div id="results"></div></span>
  <button id="collapse" title="Back to the first level">Collapse all</button>
  <button id="showsel" title="Expand the modules that hold the highlighted nodes">Show selected</button>
  <span class="cap" id="note"></span>
</header>
<main>
  <div id="tree" role="tree"></div>
  <aside id="details"><p class="cap">Click a node for its details; click a module to expand or collapse it.</p></aside>
</main>
<script type="application/json" id="graph-data">__DATA__</script>
<script>
(function () {
  "use strict";
  const G = JSON.parse(document.getElementById("graph-data").textContent);
  const items = G.items;
  const rowOf = new Map();      // item index -> its row element, for rows in the DOM only
  const kidsOf = new Map();     // item index -> the element holding its children, when expanded
  const selectedInside = new Int32Array(items.length);
  let query = "";

  items.forEach(function (it, i) {
    if (!it.x) return;
    for (let p = it.u; p >= 0; p = items[p].u) selectedInside[p] += 1;
  });

  function fmtShape(s) { return "[" + s.join(", ") + "]"; }
  function fmtCount(n) { return n.toLocaleString("en-US"); }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function matches(it) {
    return query !== "" && (it.n.toLowerCase().indexOf(query) >= 0 || it.t.toLowerCase().indexOf(query) >= 0);
  }

  function makeRow(i, level) {
    const it = items[i];
    const row = el("div", "row k-" + it.k + (it.c.length ? " group" : "") + (it.x ? " sel" : "") +
                   (matches(it) ? " match" : ""));
    row.dataset.i = i;
    row.dataset.name = it.n;
    row.setAttribute("role", "treeitem");
    row.style.paddingLeft = (8 + 18 * level) + "px";
    const tog = el("span", "tog", it.c.length ? (kidsOf.has(i) ? "\u25BE" : "\u25B8") : "\u00B7");
    const nm = el("span", "nm");
    const cut = it.n.lastIndexOf(".");
    if (cut > 0) nm.appendChild(el("span", "pre", it.n.slice(0, cut + 1)));
    nm.appendChild(el("b", "", cut > 0 ? it.n.slice(cut + 1) : it.n));
    row.append(tog, nm, el("span", "tg", it.t));
    if (it.s.length) row.appendChild(el("span", "sh", it.s.slice(0, 3).map(fmtShape).join(" ")));
    if (it.k === "module" && it.p) row.appendChild(el("span", "pm", fmtCount(it.p) + " params"));
    if (it.c.length) {
      const sel = selectedInside[i];
      row.appendChild(el("span", "badge" + (sel ? " has" : ""),
                         it.c.length + (it.c.length === 1 ? " child" : " children") +
                         (sel ? ", " + sel + " selected inside" : "")));
    }
    rowOf.set(i, row);
    return row;
  }

  function renderChildren(list, level, parentEl) {
    const frag = document.createDocumentFragment();
    list.forEach(function (c) { frag.appendChild(makeRow(c, level)); });
    parentEl.appendChild(frag);
  }

  function levelOf(i) { let l = 0; for (let p = items[i].u; p >= 0; p = items[p].u) l++; return l; }

  function expand(i) {
    if (kidsOf.has(i) || !items[i].c.length) return;
    const row = rowOf.get(i);
    if (!row) return;
    const box = el("div", "kids");
    box.setAttribute("role", "group");
    renderChildren(items[i].c, levelOf(i) + 1, box);
    row.after(box);
    kidsOf.set(i, box);
    row.querySelector(".tog").textContent = "\u25BE";
  }

  function forget(box) {
    box.querySelectorAll(".row").forEach(function (r) {
      const j = +r.dataset.i;
      rowOf.delete(j);
      kidsOf.delete(j);
    });
  }

  function collapse(i) {
    const box = kidsOf.get(i);
    if (!box) return;
    forget(box);
    box.remove();
    kidsOf.delete(i);
    const row = rowOf.get(i);
    if (row) row.querySelector(".tog").textContent = "\u25B8";
  }

  function reveal(i) {
    const chain = [];
    for (let p = items[i].u; p >= 0; p = items[p].u) chain.unshift(p);
    chain.forEach(expand);
    const row = rowOf.get(i);
    if (!row) return;
    document.querySelectorAll(".row.hit").forEach(function (r) { r.classList.remove("hit"); });
    row.classList.add("hit");
    row.scrollIntoView({block: "center"});
    show(i);
  }

  function link(j) {
    const a = el("a", "link", items[j].n);
    a.addEventListener("click", function () { reveal(j); });
    return a;
  }

  function show(i) {
    const it = items[i];
    document.querySelectorAll(".row.cur").forEach(function (r) { r.classList.remove("cur"); });
    const row = rowOf.get(i);
    if (row) row.classList.add("cur");
    const d = document.getElementById("details");
    d.textContent = "";
    d.appendChild(el("h2", "", it.n));
    const dl = el("dl");
    function add(term, value) {
      dl.appendChild(el("dt", "", term));
      const dd = el("dd");
      if (typeof value === "string") dd.textContent = value; else dd.appendChild(value);
      dl.appendChild(dd);
    }
    add("kind", it.k + (it.x ? " (selected)" : ""));
    add("target", it.t || "-");
    add("output shapes", it.s.length ? it.s.map(fmtShape).join(", ") : "unknown");
    if (it.k === "module") add("parameters", fmtCount(it.p));
    if (it.u >= 0) add("inside", link(it.u));
    function links(list) {
      const span = el("span");
      list.slice(0, 40).forEach(function (j, k) { if (k) span.append(", "); span.appendChild(link(j)); });
      if (list.length > 40) span.append(" (+" + (list.length - 40) + " more)");
      return span;
    }
    if (it.i.length) add("reads", links(it.i));
    if (it.o.length) add("read by", links(it.o));
    if (it.c.length) add("contains", it.c.length + " (" + selectedInside[i] + " selected)");
    d.appendChild(dl);
  }

  const tree = document.getElementById("tree");
  tree.addEventListener("click", function (ev) {
    const row = ev.target.closest(".row");
    if (!row) return;
    const i = +row.dataset.i;
    if (items[i].c.length) { if (kidsOf.has(i)) collapse(i); else expand(i); }
    show(i);
  });

  function expandTo(depth) {
    function walk(list, level) {
      list.forEach(function (i) {
        if (level < depth && items[i].c.length) { expand(i); walk(items[i].c, level + 1); }
      });
    }
    walk(G.roots, 1);
  }

  function reset(depth) {
    tree.textContent = "";
    rowOf.clear();
    kidsOf.clear();
    renderChildren(G.roots, 0, tree);
    expandTo(depth);
  }

  // Search
  const q = document.getElementById("q");
  const results = document.getElementById("results");
  let hits = [];
  let timer = 0;
  function search() {
    query = q.value.trim().toLowerCase();
    rowOf.forEach(function (row, i) { row.classList.toggle("match", matches(items[i])); });
    results.textContent = "";
    hits = [];
    if (!query) { results.style.display = "none"; return; }
    items.forEach(function (it, i) { if (matches(it)) hits.push(i); });
    results.appendChild(el("div", "count", hits.length ? fmtCount(hits.length) + " matches" +
                           (hits.length > 200 ? " (first 200)" : "") : "no match"));
    hits.slice(0, 200).forEach(function (i, k) {
      const r = el("div", k === 0 ? "on" : "", items[i].n + "  \u2014 " + items[i].t);
      r.dataset.i = i;
      r.addEventListener("mousedown", function (ev) { ev.preventDefault(); go(i); });
      results.appendChild(r);
    });
    results.style.display = "block";
  }
  function go(i) { results.style.display = "none"; reveal(i); }
  q.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(search, 80); });
  q.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter") { clearTimeout(timer); search(); if (hits.length) go(hits[0]); }
    if (ev.key === "Escape") { results.style.display = "none"; }
  });
  q.addEventListener("focus", function () { if (hits.length) results.style.display = "block"; });
  q.addEventListener("blur", function () { results.style.display = "none"; });

  document.getElementById("collapse").addEventListener("click", function () { reset(1); });
  document.getElementById("showsel").addEventListener("click", function () {
    let first = -1;
    items.forEach(function (it, i) {
      if (!it.x) return;
      const chain = [];
      for (let p = it.u; p >= 0; p = items[p].u) chain.unshift(p);
      chain.forEach(expand);
      if (first < 0) first = i;
    });
    if (first >= 0) reveal(first);
  });

  document.getElementById("title").textContent = G.title;
  document.getElementById("caption").textContent = G.caption + ", " +
    items.filter(function (it) { return it.x; }).length + " selected";
  const note = document.getElementById("note");
  note.textContent = G.note;
  note.title = G.note;
  const top = document.querySelector("header").offsetHeight;
  const aside = document.getElementById("details");
  aside.style.top = top + "px";
  aside.style.maxHeight = "calc(100vh - " + (top + 4) + "px)";
  reset(G.depth || 1);
  window.fxtractGraph = {rows: function () { return rowOf.size; }, reveal: reveal, expand: expand};
})();
</script>
</body>
</html>
"""
