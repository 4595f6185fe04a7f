// The lab's page: four views behind the URL's fragment (#/, #/run/NAME, #/compare/A,B, #/explain).
// Everything comes from the lab's JSON API; text is always set as text, never parsed as HTML.
"use strict";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
const SVG = "http://www.w3.org/2000/svg";
let timer = null; // the live-curve poll of the run page
let sortKey = "started_unix", sortDesc = true;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : v === null || v === undefined ? "" : String(v));
const when = (s) => (s ? new Date(s * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "");
function duration(s) {
  s = Math.round(s || 0);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
// Axis ticks short enough for the chart's margin: 0.00094 as 9.4e-4.
const tick = (v) => (v !== 0 && Math.abs(v) < 1e-2) || Math.abs(v) >= 1e5 ? v.toExponential(1) : String(+v.toPrecision(3));
const runLink = (name) => el("a", { href: "#/run/" + encodeURIComponent(name), class: "run-link" }, name);
const statusCell = (s) => el("td", { class: "status status-" + s }, s);
const view = () => document.getElementById("view");

// A line chart of several series [{name, color, points: [[x, y], ...]}], axes from the data.
function lineChart(title, series, opts) {
  opts = opts || {};
  const W = opts.width || 360, H = opts.height || 220, L = 48, R = 10, T = 10, B = 28;
  const all = series.flatMap((s) => s.points);
  const box = el("div", { class: "chart", "data-series": title });
  box.append(el("div", { class: "title" }, title));
  const s = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, "data-points": all.length });
  box.append(s);
  if (!all.length) return box;
  let [x0, x1] = opts.xRange || [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = opts.yRange || [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R), Y = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4, xv = x0 + ((x1 - x0) * i) / 4;
    s.append(svg("line", { x1: L, x2: W - R, y1: Y(yv), y2: Y(yv), stroke: "#eee" }));
    const ty = svg("text", { x: L - 4, y: Y(yv) + 3, "text-anchor": "end" }); ty.textContent = tick(yv); s.append(ty);
    const tx = svg("text", { x: X(xv), y: H - B + 14, "text-anchor": "middle" }); tx.textContent = tick(+xv.toPrecision(4)); s.append(tx);
  }
  const xl = svg("text", { x: W - R, y: H - 2, "text-anchor": "end" }); xl.textContent = opts.xLabel || "step"; s.append(xl);
  for (const sr of series) {
    const pts = sr.points.slice().sort((a, b) => a[0] - b[0]);
    if (pts.length > 1) {
      s.append(svg("polyline", { points: pts.map((p) => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" "), fill: "none", stroke: sr.color, "stroke-width": 1.6 }));
    }
    for (const p of pts.length <= 60 ? pts : []) s.append(svg("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.2, fill: sr.color }));
  }
  if (series.length > 1 || opts.legend) {
    const lg = el("div", { class: "legend" });
    series.forEach((sr, i) => lg.append(el("span", {}, el("i", { class: "swatch-" + (i % 8) }), sr.name)));
    box.append(lg);
  }
  return box;
}

// ---------- Runs ----------
async function showRuns() {
  const v = view();
  const data = await api("/api/runs");
  const filter = el("input", { type: "search", id: "runs-filter", placeholder: "filter: name, model, status, dataset" });
  const statusSel = el("select", { id: "runs-status" }, ...["all", "running", "finished", "failed", "killed"].map((s) => el("option", { value: s }, s)));
  const compareBtn = el("button", { id: "compare-selected" }, "Compare selected");
  const table = el("table", { id: "runs-table" });
  const cols = [["", null], ["run", "name"], ["status", "status"], ["models", null], ["dataset", "dataset"], ["steps", null], ["val AUC", "classifier.val_auc"], ["test AUC", "classifier.auc"], ["image AUC", "image.auc"], ["sens@1FP", "detection.sensitivity_at_1fpi"], ["started", "started_unix"], ["duration", "duration_s"]];
  const thead = el("thead", {}, el("tr", {}, ...cols.map(([label, key]) => {
    const th = el("th", key ? { class: "sortable" + (key === sortKey ? (sortDesc ? " sorted-desc" : " sorted-asc") : ""), "data-key": key } : {}, label);
    if (key) th.addEventListener("click", () => { sortDesc = sortKey === key ? !sortDesc : false; sortKey = key; showRuns(); });
    return th;
  })));
  const tbody = el("tbody");
  table.append(thead, tbody);
  const val = (r, k) => (k in r ? r[k] : r.metrics[k]);
  function render() {
    const q = filter.value.toLowerCase(), st = statusSel.value;
    const rows = data.runs.filter((r) => (st === "all" || r.status === st) && [r.name, r.status, r.models.join(" "), r.dataset || ""].join(" ").toLowerCase().includes(q));
    rows.sort((a, b) => {
      const x = val(a, sortKey), y = val(b, sortKey);
      const c = x === undefined ? 1 : y === undefined ? -1 : x < y ? -1 : x > y ? 1 : 0;
      return sortDesc ? -c : c;
    });
    tbody.replaceChildren(...rows.map((r) => el("tr", { "data-run": r.name, "data-status": r.status },
      el("td", {}, el("input", { type: "checkbox", class: "pick", value: r.name })),
      el("td", {}, runLink(r.name)),
      statusCell(r.status),
      el("td", {}, r.models.join(", ")),
      el("td", { class: "hash", title: r.dataset || "" }, (r.dataset || "").slice(0, 12)),
      el("td", { class: "num" }, Object.entries(r.steps).map(([m, s]) => m + " " + s).join(", ")),
      ...["classifier.val_auc", "classifier.auc", "image.auc", "detection.sensitivity_at_1fpi"].map((k) => el("td", { class: "num" }, fmt(r.metrics[k]))),
      el("td", {}, when(r.started_unix)),
      el("td", { class: "num" }, duration(r.duration_s)))));
    document.getElementById("runs-count").textContent = rows.length + " of " + data.runs.length + " runs";
  }
  filter.addEventListener("input", render);
  statusSel.addEventListener("change", render);
  compareBtn.addEventListener("click", () => {
    const picked = [...document.querySelectorAll("input.pick:checked")].map((c) => c.value);
    if (picked.length < 2) { alert("Pick two or more runs"); return; }
    location.hash = "#/compare/" + picked.map(encodeURIComponent).join(",");
  });
  v.replaceChildren(el("section", { class: "card" }, el("h2", {}, "Runs"),
    el("div", { class: "toolbar" }, filter, statusSel, compareBtn, el("span", { id: "runs-count", class: "muted" })), table));
  render();
}

// ---------- One run ----------
function groupPoints(points, into) {
  for (const p of points) (into[p.series] = into[p.series] || []).push([p.step, p.value]);
  return into;
}
function kvTable(obj, id) {
  return el("table", id ? { id } : {}, el("tbody", {}, ...Object.entries(obj).filter(([, v]) => v !== null && typeof v !== "object").map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { class: "num" }, fmt(v))))));
}
function frocChart(froc) {
  const pts = froc.slice().sort((a, b) => a[0] - b[0]);
  return lineChart("FROC (metrics.json): sensitivity vs false positives per image", [{ name: "FROC", color: COLORS[1], points: pts }], { xLabel: "FP / image", yRange: [0, 1] });
}
async function showRun(name) {
  const d = await api("/api/run?run=" + encodeURIComponent(name));
  const s = d.summary;
  const curves = {};
  const curveBox = el("div", { class: "grid", id: "curves" });
  const count = el("span", { id: "curve-count", "data-count": "0" }, "0");
  const statusEl = el("span", { id: "run-status", class: "status status-" + s.status }, s.status);
  function drawCurves() {
    const names = Object.keys(curves).sort();
    curveBox.replaceChildren(...names.map((n, i) => lineChart(n, [{ name: n, color: COLORS[i % 8], points: curves[n] }])));
    const total = names.reduce((a, n) => a + curves[n].length, 0);
    count.textContent = String(total);
    count.setAttribute("data-count", String(total));
  }
  let next = 0;
  async function poll() {
    try {
      const c = await api("/api/curves?run=" + encodeURIComponent(name) + "&from=" + next);
      next = c.next;
      if (c.points.length) { groupPoints(c.points, curves); drawCurves(); }
      if (c.status) { statusEl.textContent = c.status; statusEl.className = "status status-" + c.status; }
      if (c.status !== "running") stopPoll();
    } catch (e) { stopPoll(); }
  }
  const evalRows = Object.fromEntries(Object.entries(d.eval).filter(([, v]) => typeof v === "number"));
  const charts = el("div", { class: "figs" }, ...d.charts.map((c) => el("figure", {}, el("img", { src: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(c.svg), alt: c.label, width: 300, height: 300 }), el("figcaption", { class: "muted" }, c.caption))));
  const gallery = el("table", { class: "gallery" }, el("tbody", {}, ...d.gallery.slice(0, 12).map((g) => el("tr", {}, el("td", { class: "muted" }, g.item), ...g.images.map((im) => el("td", {}, el("img", { src: im.url, alt: im.kind, title: im.kind })))))));
  view().replaceChildren(
    el("section", { class: "card", id: "run-summary" }, el("h2", {}, "Run ", el("span", { id: "run-name" }, name), " — ", statusEl),
      el("p", {}, "Models: " + s.models.join(", ") + " · dataset ", el("span", { class: "hash" }, s.dataset || "none"), " · started " + when(s.started_unix) + " · " + duration(s.duration_s)),
      s.error ? el("p", { class: "error" }, s.error) : null,
      d.report ? el("p", {}, el("a", { href: d.report, target: "_blank", rel: "noopener", id: "report-link" }, "Full report (report.html)")) : el("p", { class: "muted" }, "Not evaluated yet (mammogan evaluate)."),
      el("p", {}, el("a", { href: "#/compare/" + encodeURIComponent(name) }, "Compare with…"))),
    el("section", { class: "card" }, el("h2", {}, "Training curves (", count, " points, live while it trains)"), curveBox),
    el("section", { class: "card" }, el("h2", {}, "Evaluation"), Object.keys(evalRows).length ? kvTable(evalRows, "eval-table") : el("p", { class: "muted" }, "No eval/metrics.json yet."),
      el("div", { class: "grid" }, d.froc.length ? frocChart(d.froc) : null), d.charts.length ? el("h3", {}, "ROC and FROC from report.html") : null, charts),
    d.gallery.length ? el("section", { class: "card" }, el("h2", {}, "Sample galleries"), gallery) : null,
    el("section", { class: "card" }, el("h2", {}, "Config"), el("pre", { id: "config" }, JSON.stringify(d.config, null, 2)), el("h3", {}, "Seeds"), kvTable(d.seeds)),
    el("section", { class: "card" }, el("h2", {}, "Environment"), kvTable(Object.assign({}, d.environment, { gpus: (d.environment.gpus || []).length, build: d.build.version + " " + (d.build.commit || "").slice(0, 10) + (d.build.dirty ? " (dirty)" : "") }))));
  await poll();
  if (s.status === "running") timer = setInterval(poll, 1000);
}
function stopPoll() { if (timer) { clearInterval(timer); timer = null; } }

// ---------- Compare ----------
async function showCompare(arg) {
  const names = arg ? arg.split(",").map(decodeURIComponent).filter(Boolean) : [];
  if (names.length < 2) {
    const data = await api("/api/runs");
    const pick = el("div", {}, ...data.runs.map((r) => el("label", { class: "pickline" }, el("input", { type: "checkbox", class: "pick", value: r.name }), " " + r.name + " (" + r.status + ")", el("br"))));
    const go = el("button", { id: "compare-go", onclick: () => {
      const p = [...document.querySelectorAll("input.pick:checked")].map((c) => c.value);
      if (p.length >= 2) location.hash = "#/compare/" + p.map(encodeURIComponent).join(",");
    } }, "Compare");
    view().replaceChildren(el("section", { class: "card" }, el("h2", {}, "Compare runs"), el("p", { class: "muted" }, "Pick two or more runs."), pick, go));
    return;
  }
  const q = names.map((n) => "run=" + encodeURIComponent(n)).join("&");
  const d = await api("/api/compare?" + q);
  const diffTable = (id, rows) => el("table", { id }, el("thead", {}, el("tr", {}, el("th", {}, "group"), el("th", {}, "key"), el("th", {}, "A"), el("th", {}, "B"))),
    el("tbody", {}, ...rows.map((c) => el("tr", { "data-key": c.key }, el("td", {}, c.group), el("td", {}, c.key), el("td", {}, fmt(c.a)), el("td", {}, fmt(c.b) + (c.ratio ? " (×" + c.ratio.toFixed(2) + ")" : ""))))));
  const sections = d.diffs.map((df, i) => el("section", { class: "card" },
    el("h2", {}, "A = " + df.a + "  →  B = " + df.b),
    el("h3", {}, "Causes (what was different going in)"), df.causes.length ? diffTable(i === 0 ? "diff-causes" : "diff-causes-" + i, df.causes) : el("p", { class: "muted" }, "none"),
    el("h3", {}, "Effects (what came out differently)"), df.effects.length ? diffTable(i === 0 ? "diff-effects" : "diff-effects-" + i, df.effects) : el("p", { class: "muted" }, "none")));
  const per = await Promise.all(names.map((n) => api("/api/curves?run=" + encodeURIComponent(n) + "&from=0")));
  const grouped = per.map((c) => groupPoints(c.points, {}));
  const seriesNames = [...new Set(grouped.flatMap((g) => Object.keys(g)))].sort();
  const charts = el("div", { class: "grid", id: "compare-curves" }, ...seriesNames.map((sn) =>
    lineChart(sn, names.map((n, i) => ({ name: n, color: COLORS[i % 8], points: grouped[i][sn] || [] })), { legend: true })));
  const runsTable = el("table", {}, el("tbody", {}, ...d.runs.map((r, i) => el("tr", {}, el("td", {}, el("i", { class: "swatch-" + (i % 8) }), " ", runLink(r.name)), statusCell(r.status), el("td", { class: "hash" }, (r.dataset || "").slice(0, 12))))));
  view().replaceChildren(el("section", { class: "card" }, el("h2", {}, "Comparing " + names.length + " runs"), runsTable), ...sections,
    el("section", { class: "card" }, el("h2", {}, "Curves overlaid"), charts));
}

// ---------- Explain ----------
async function showExplain() {
  const data = await api("/api/runs");
  const withModel = data.runs.filter((r) => r.has_model);
  const sel = el("select", { id: "explain-run" }, ...withModel.map((r) => el("option", { value: r.name }, r.name + " (" + r.status + ")")));
  const input = el("input", { type: "file", id: "explain-file", accept: ".dcm,.png,.pgm,application/dicom,image/png" });
  const spacing = el("input", { type: "number", id: "explain-spacing", step: "0.01", min: "0.01", max: "1", placeholder: "spacing mm (if the file has none)" });
  const drop = el("div", { class: "drop", id: "drop" }, "Drop a DICOM, PNG or PGM mammogram here, or choose one: ", input);
  const out = el("div", { id: "explain-out" });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) send(e.dataTransfer.files[0]); });
  input.addEventListener("change", () => { if (input.files[0]) send(input.files[0]); });
  async function send(file) {
    out.replaceChildren(el("p", { id: "explain-busy" }, "Explaining…"));
    let q = "run=" + encodeURIComponent(sel.value);
    if (spacing.value) q += "&spacing_mm=" + encodeURIComponent(spacing.value);
    try {
      const r = await api("/api/explain?" + q, { method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" } });
      showExplanation(out, r);
    } catch (e) {
      out.replaceChildren(el("p", { class: "error", id: "explain-error" }, e.message));
    }
  }
  view().replaceChildren(el("section", { class: "card" }, el("h2", {}, "Explain a mammogram"),
    withModel.length ? el("div", { class: "toolbar" }, "Model of run ", sel, spacing) : el("p", { class: "error" }, "No run here has an exported model."), drop), out);
}
function showExplanation(out, r) {
  const res = r.result;
  const img = el("img", { id: "explain-image", alt: "explained mammogram", draggable: "false" });
  const viewer = el("div", { class: "viewer", id: "viewer" }, img);
  const layers = el("div", { class: "layers toolbar" });
  let scale = 1, tx = 0, ty = 0;
  const apply = () => { img.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`; };
  function fit() {
    const vw = viewer.clientWidth || 800, vh = viewer.clientHeight || 600;
    scale = Math.min(vw / res.width, vh / res.height); tx = (vw - res.width * scale) / 2; ty = (vh - res.height * scale) / 2; apply();
  }
  const names = { map: "highlight map", saliency: "saliency baseline", raw: "raw", heatmap: "heatmap only" };
  function choose(k) {
    img.src = r.layers[k]; img.setAttribute("data-layer", k);
    for (const b of layers.children) b.classList.toggle("active", b.dataset.layer === k);
  }
  for (const k of ["map", "saliency", "raw", "heatmap"]) if (r.layers[k]) layers.append(el("button", { "data-layer": k, id: "layer-" + k, onclick: () => choose(k) }, names[k]));
  layers.append(el("button", { id: "zoom-in", onclick: () => zoomAt(1.5) }, "+"), el("button", { id: "zoom-out", onclick: () => zoomAt(1 / 1.5) }, "−"), el("button", { id: "zoom-fit", onclick: fit }, "fit"), el("button", { id: "zoom-1", onclick: () => { scale = 1; apply(); } }, "1:1"));
  function zoomAt(f, cx, cy) {
    cx = cx === undefined ? viewer.clientWidth / 2 : cx; cy = cy === undefined ? viewer.clientHeight / 2 : cy;
    tx = cx - (cx - tx) * f; ty = cy - (cy - ty) * f; scale *= f; apply();
  }
  viewer.addEventListener("wheel", (e) => { e.preventDefault(); const b = viewer.getBoundingClientRect(); zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - b.left, e.clientY - b.top); }, { passive: false });
  let drag = null;
  viewer.addEventListener("pointerdown", (e) => { drag = [e.clientX - tx, e.clientY - ty]; viewer.classList.add("dragging"); viewer.setPointerCapture(e.pointerId); });
  viewer.addEventListener("pointermove", (e) => { if (drag) { tx = e.clientX - drag[0]; ty = e.clientY - drag[1]; apply(); } });
  viewer.addEventListener("pointerup", () => { drag = null; viewer.classList.remove("dragging"); });
  const regions = el("table", { id: "regions" }, el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "x"), el("th", {}, "y"), el("th", {}, "w × h"), el("th", {}, "P(malignant)"))),
    el("tbody", {}, ...res.regions.map((g, i) => el("tr", {}, el("td", {}, i + 1), el("td", { class: "num" }, g.x), el("td", { class: "num" }, g.y), el("td", { class: "num" }, g.w + " × " + g.h), el("td", { class: "num" }, g.score.toFixed(3))))));
  out.replaceChildren(el("section", { class: "card" },
    el("p", {}, "Score (P(malignant) of the most suspicious tile): ", el("span", { class: "score", id: "explain-score" }, res.score.toFixed(3)),
      el("span", { class: "muted" }, "  · " + res.width + " × " + res.height + " px at " + res.spacing_mm.toFixed(3) + " mm (" + res.spacing_source + "), " + res.tiles + " tiles")),
    layers, viewer, el("h3", {}, "Regions"), regions));
  choose("map");
  img.addEventListener("load", () => { if (!img.dataset.fitted) { img.dataset.fitted = "1"; fit(); } });
}

// ---------- Routing ----------
async function route() {
  stopPoll();
  const h = location.hash.replace(/^#\/?/, "");
  const [page, ...rest] = h.split("/");
  const arg = rest.join("/");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === "nav-" + (page || "runs") || (page === "run" && a.id === "nav-runs"));
  try {
    if (page === "run") await showRun(decodeURIComponent(arg));
    else if (page === "compare") await showCompare(arg);
    else if (page === "explain") await showExplain();
    else await showRuns();
  } catch (e) {
    view().replaceChildren(el("p", { class: "error", id: "page-error" }, e.message));
  }
}
window.addEventListener("hashchange", route);
route();
