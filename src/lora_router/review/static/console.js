// lora-router review console: the queue, a question's trace, and one-click (or one-key) corrections.
// Plain JavaScript, no build step. Every correction is POSTed at once to /api/corrections, which writes
// training lines to DIR/labels/; the page shows what is saved from the server's reply, never from hope.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const KEY_STORE = "lora-router-review-key";
const ROUTE_KEYS = ["1", "2", "3", "4", "5", "6"];
const LABEL_KEYS = [["q", "w", "e", "r", "t"], ["a", "s", "d", "f", "g"], ["z", "c", "v", "b"]];
const ROUTE_WORDS = {answer: "问题回答", task: "任务处理", general: "通用问题", out_of_scope: "无关问题"};
const ROW_NAMES = {question_classifier: "scene", question_type_classifier: "type"};
const REASON_WORDS = {feedback: "feedback", contradiction: "contradiction", uncertain: "uncertain", low_margin: "low margin"};
const EDGES = " \t\n\"'“”‘’《》「」『』【】()（）[]<>`，,。；;：:!！?？、";

const state = {info: null, items: [], index: -1, current: null, everything: false, kbSeen: {}};

// ---------------------------------------------------------------- the API
async function api(path, body) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const headers = {"content-type": "application/json"};
    const key = sessionStorage.getItem(KEY_STORE);
    if (key) headers.authorization = `Bearer ${key}`;
    const response = await fetch(path, body === undefined ? {headers} : {method: "POST", headers, body: JSON.stringify(body)});
    if (response.status === 401) { await askForKey(); continue; }
    const data = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }
  throw new Error("the API key was refused");
}

function askForKey() {
  const dialog = $("#key-dialog");
  return new Promise((resolve) => {
    $("#key-form").onsubmit = () => { sessionStorage.setItem(KEY_STORE, $("#key-input").value.trim()); resolve(); };
    if (!dialog.open) dialog.showModal();
    $("#key-input").focus();
  });
}

let toastTimer = null;
function toast(message, kind = "ok") {
  const el = $("#toast");
  el.textContent = message;
  el.className = `toast show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = "toast"; }, kind === "error" ? 6000 : 2200);
}

// ---------------------------------------------------------------- what the chain said
function stepResult(answer, task) {
  const step = (answer.steps || []).find((s) => s.task === task);
  return step ? step.result || {} : null;
}

function traceRows(answer) {
  const trace = answer.trace && answer.trace.steps;
  if (trace) return trace;
  return (answer.steps || []).map((s) => {  // an answer captured before traces: rebuild what it holds
    const r = s.result || {};
    const probs = Object.values(r.probabilities || {}).sort((a, b) => b - a);
    const spans = r.spans || [];
    return {task: s.task, ms: s.ms,
            label: r.predicted_label ?? (("kb_id" in r) ? r.kb_id : null),
            probability: r.confidence ?? (spans.length ? Math.min(...spans.map((x) => x.score)) : 1.0),
            margin: probs.length >= 2 ? probs[0] - probs[1] : null, threshold: null, passed: null, model: null};
  });
}

function classificationTasks() {
  return state.info.tasks.filter((t) => t.kind === "sequence_classification");
}

function savedRoute(labelled) {
  for (const route of state.info.routes) {
    const path = state.info.paths[route] || {};
    const tasks = Object.keys(path);
    if (tasks.length && tasks.every((t) => labelled[t] === path[t])
        && !state.info.routes.some((other) => other !== route && Object.keys(state.info.paths[other] || {}).length > tasks.length
            && Object.entries(state.info.paths[other]).every(([t, l]) => labelled[t] === l))) return route;
  }
  return null;
}

function savedNames(labelled) {
  const task = fileTask();
  if (!task || !(task in labelled)) return null;
  const out = labelled[task];
  return Array.isArray(out) ? out : [out];
}

function fileTask() { const t = state.info.tasks.find((x) => x.kind === "span_extraction"); return t && t.name; }
function kbTask() { const t = state.info.tasks.find((x) => x.kind === "pair_ranking"); return t && t.name; }

// ---------------------------------------------------------------- the queue
async function loadQueue(keepQuestion) {
  const data = await api(`/api/queue?everything=${state.everything}`);
  state.items = data.items;
  state.total = data.total;
  renderQueue();
  if (keepQuestion !== undefined) {
    const i = state.items.findIndex((x) => x.question === keepQuestion);
    if (i >= 0) { state.index = i; state.current = state.items[i]; renderQueue(); }
  } else if (state.index < 0 && state.items.length && !state.current) {
    select(0);
  }
}

function renderQueue() {
  const list = $("#queue-list");
  const done = state.items.filter((x) => Object.keys(x.labelled || {}).length > 0).length;
  $("#queue-progress").textContent = `${done} of ${state.total ?? state.items.length} done`;
  if (!state.items.length) {
    list.innerHTML = `<li class="queue-empty">Nothing to review. Captured answers with feedback, uncertain stops, low
      margins or contradictions show up here (start <code>lora-router serve --capture DIR</code>).</li>`;
    return;
  }
  list.innerHTML = state.items.map((item, i) => {
    const done = Object.keys(item.labelled || {}).length > 0;
    const kinds = [...new Set(item.reasons.map((r) => r.kind))];
    return `<li data-index="${i}" class="${i === state.index ? "current" : ""} ${done ? "done" : ""}">
      <div class="top"><span class="score">${item.score.toFixed(0)}</span><span class="q">${esc(item.question)}</span>
      ${item.count > 1 ? `<span class="times">×${item.count}</span>` : ""}${done ? '<span class="tick" title="labels saved">✓</span>' : ""}</div>
      <div class="chips">${kinds.map((k) => `<span class="chip ${k}">${REASON_WORDS[k] || k}</span>`).join("")}</div></li>`;
  }).join("");
  const current = list.querySelector("li.current");
  if (current) current.scrollIntoView({block: "nearest"});
}

function select(index) {
  if (!state.items.length) return;
  state.index = Math.max(0, Math.min(index, state.items.length - 1));
  state.current = state.items[state.index];
  renderQueue();
  renderDetail();
}

// ---------------------------------------------------------------- one question
function when(time) {  // "2026-12-03T10:00:00.000000Z" -> "2026-12-03 10:00:00 UTC"
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)/.exec(time || "");
  return m ? `${m[1]} ${m[2]} UTC` : (time || "");
}

function questionHtml(text, names) {
  let html = "", pos = 0;
  for (const name of names || []) {
    const at = text.indexOf(name, pos);
    if (at < 0) continue;
    html += esc(text.slice(pos, at)) + `<mark>${esc(name)}</mark>`;
    pos = at + name.length;
  }
  return html + esc(text.slice(pos));
}

function renderDetail() {
  const item = state.current;
  const pane = $("#detail");
  if (!item) return;
  const answer = item.answer || {};
  const labelled = item.labelled || {};
  const names = savedNames(labelled);
  const route = savedRoute(labelled);
  const meta = item.asked
    ? `<span>asked here</span>`
    : `<span>id <code>${esc(item.id)}</code></span>${item.count > 1 ? `<span>asked ${item.count}×</span>` : ""}
       <span>${esc(when(item.time))}</span><span>score ${item.score.toFixed(1)}</span>`;
  const reasons = (item.reasons || []).map((r) => `<li><span class="chip ${r.kind}">${REASON_WORDS[r.kind] || r.kind}</span> ${esc(r.detail)}</li>`).join("");
  const comments = (item.feedback || []).filter((f) => f.comment).map((f) => `<li><span class="chip">comment</span> ${esc(f.comment)}</li>`).join("");

  pane.innerHTML = `
    <div class="card">
      <div class="meta">${meta}</div>
      <p id="question" class="question" title="Select a file name with the mouse to save it">${questionHtml(item.question, names)}</p>
      ${reasons || comments ? `<ul class="reasons">${reasons}${comments}</ul>` : ""}
    </div>
    <div class="card">
      <h3>The chain said <span class="route-badge ${esc(answer.route)}">${esc(answer.route || "—")}</span></h3>
      ${traceTable(answer)}
      ${answer.note ? `<div class="note">${esc(answer.note)}</div>` : ""}
    </div>
    <div class="card" id="correct">
      <h3>Correct it <span class="muted saved-mark">— saved at once to labels/</span></h3>
      ${savedLine(labelled)}
      ${routeRow(answer, route)}
      ${classificationTasks().map((t, i) => labelRow(t, i, answer, labelled)).join("")}
      ${fileRow(answer, names)}
      ${kbRow(answer, item)}
      <div class="row"><span class="label"></span>
        <button id="accept" class="choice" title="Save what the chain decided as right (y)">The chain was right <kbd>y</kbd></button></div>
      <div class="legend"><span><span class="swatch model"></span>the chain's choice</span>
        <span><span class="swatch saved"></span>saved (training line written)</span></div>
    </div>`;
  wireDetail(item);
}

function traceTable(answer) {
  const rows = traceRows(answer);
  if (!rows.length) return `<p class="muted">No steps ran.</p>`;
  const num = (x, d = 2) => (x === null || x === undefined ? "—" : Number(x).toFixed(d));
  return `<table class="trace"><thead><tr><th>step</th><th>label</th><th>probability</th><th>margin</th><th>threshold</th><th>ms</th><th>model</th></tr></thead><tbody>
    ${rows.map((s) => `<tr class="${s.passed === false ? "failed" : ""}">
      <td>${esc(s.task)}</td><td>${s.label === null || s.label === undefined ? '<span class="muted">—</span>' : esc(s.label)}</td>
      <td><div class="bar-cell"><div class="meter"><span style="width:${Math.round(100 * (s.probability ?? 0))}%"></span>
        ${s.threshold ? `<i style="left:${Math.round(100 * s.threshold)}%" title="threshold"></i>` : ""}</div><span class="num">${num(s.probability)}</span></div></td>
      <td class="num">${num(s.margin)}</td><td class="num">${num(s.threshold)}</td><td class="num">${num(s.ms, 1)}</td>
      <td class="hash">${s.model ? esc((s.model.adapter || "").slice(0, 12)) + (s.model.version ? ` · ${esc(s.model.version)}` : "") : ""}</td></tr>`).join("")}
    </tbody></table>`;
}

function routeRow(answer, saved) {
  return `<div class="row"><span class="label">route</span>${state.info.routes.map((r, i) => `
    <button class="choice ${answer.route === r ? "model" : ""} ${saved === r ? "saved" : ""}" data-route="${esc(r)}">
      <kbd>${ROUTE_KEYS[i] || ""}</kbd>${esc(r)} <span class="muted">${esc(ROUTE_WORDS[r] || "")}</span></button>`).join("")}</div>`;
}

function labelRow(task, row, answer, labelled) {
  const predicted = (stepResult(answer, task.name) || {}).predicted_label;
  const keys = LABEL_KEYS[row] || [];
  return `<div class="row"><span class="label" title="${esc(task.name)}">${esc(ROW_NAMES[task.name] || task.name)}</span>${task.labels.map((l, i) => `
    <button class="choice ${predicted === l ? "model" : ""} ${labelled[task.name] === l ? "saved" : ""}" data-task="${esc(task.name)}" data-label="${esc(l)}">
      ${keys[i] ? `<kbd>${keys[i]}</kbd>` : ""}${esc(l)}</button>`).join("")}</div>`;
}

function fileRow(answer, names) {
  if (!fileTask()) return "";
  const found = answer.file_names || [];
  const chips = (names || []).map((n, i) => `<span class="name">${esc(n)}<button data-remove="${i}" title="Remove">×</button></span>`).join("");
  return `<div class="row"><span class="label">file names</span><div class="names">
    ${chips || `<span class="hint">Select a file name in the question with the mouse.</span>`}
    <button class="choice ${names && names.length === 0 ? "saved" : ""}" id="no-files"><kbd>n</kbd>no file names</button>
    ${found.length ? `<span class="hint">the chain found: ${found.map(esc).join(", ")}</span>` : ""}</div></div>`;
}

function kbRow(answer, item) {
  if (!kbTask()) return "";
  const result = stepResult(answer, kbTask()) || {};
  const saved = item.saved_kb_id;
  const candidates = [...(result.candidates || [])];
  if (saved && !candidates.some((c) => c.id === saved)) {  // an entry found by search: keep it in sight
    candidates.unshift({id: saved, question: state.kbSeen[saved] || "", score: null});
  }
  const list = candidates.map((c) => `<li class="${saved === c.id ? "saved" : ""}">
      <button class="choice ${result.kb_id === c.id ? "model" : ""} ${saved === c.id ? "saved" : ""}" data-kb="${esc(c.id)}">pick</button>
      <span class="cq">${esc(c.question)}</span><span class="cid">${esc(c.id)}${c.score === null ? "" : ` · ${Number(c.score).toFixed(2)}`}</span></li>`).join("");
  return `<div class="row"><span class="label">knowledge base</span>
      <button class="choice ${saved === "" ? "saved" : ""}" id="no-entry"><kbd>x</kbd>no entry</button>
      <input class="kb-search" id="kb-search" placeholder="Find another entry…" aria-label="Find a knowledge-base entry">
      ${saved ? `<span class="hint">saved: <code>${esc(saved)}</code></span>` : ""}</div>
    <ul class="candidates" id="candidates">${list || (state.info.knowledge_base ? "" : '<li class="hint">No knowledge base known: start with --kb FILE.</li>')}</ul>`;
}

function savedLine(labelled) {
  const tasks = Object.keys(labelled);
  if (!tasks.length) return `<div class="saved-line none" id="saved-line">Nothing saved for this question yet.</div>`;
  const shown = (value) => { const s = JSON.stringify(value); return s.length > 60 ? `${s.slice(0, 58)}…"` : s; };
  return `<div class="saved-line" id="saved-line" title="${esc(tasks.map((t) => `${t} = ${JSON.stringify(labelled[t])}`).join("\n"))}">✓ Saved: ${
    tasks.map((t) => `${esc(t)} = <b>${esc(shown(labelled[t]))}</b>`).join(" · ")}</div>`;
}

function wireDetail(item) {
  const pane = $("#detail");
  pane.querySelectorAll("[data-route]").forEach((b) => b.onclick = () => correct({route: b.dataset.route}));
  pane.querySelectorAll("[data-task]").forEach((b) => b.onclick = () => correct({labels: {[b.dataset.task]: b.dataset.label}}));
  pane.querySelectorAll("[data-kb]").forEach((b) => b.onclick = () => correct({kb_id: b.dataset.kb}));
  pane.querySelectorAll("[data-remove]").forEach((b) => b.onclick = () => {
    const names = (savedNames(item.labelled || {}) || []).filter((_, i) => i !== Number(b.dataset.remove));
    correct({file_names: names});
  });
  const noFiles = $("#no-files"); if (noFiles) noFiles.onclick = () => correct({file_names: []});
  const noEntry = $("#no-entry"); if (noEntry) noEntry.onclick = () => correct({no_entry: true});
  $("#accept").onclick = accept;
  $("#question").addEventListener("mouseup", takeSelection);
  const search = $("#kb-search");
  if (search) search.addEventListener("input", () => searchKb(search.value));
}

let searchTimer = null;
function searchKb(q) {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const data = await api(`/api/kb?q=${encodeURIComponent(q)}&limit=8`);
    for (const e of data.entries) state.kbSeen[e.id] = e.question;
    const saved = state.current.saved_kb_id;
    $("#candidates").innerHTML = data.entries.map((e) => `<li class="${saved === e.id ? "saved" : ""}">
      <button class="choice ${saved === e.id ? "saved" : ""}" data-kb="${esc(e.id)}">pick</button>
      <span class="cq">${esc(e.question)}</span><span class="cid">${esc(e.id)}</span></li>`).join("");
    document.querySelectorAll("#candidates [data-kb]").forEach((b) => b.onclick = () => correct({kb_id: b.dataset.kb}));
  }, 150);
}

// Where in the question's text a DOM point is (the question holds <mark>s, so count characters, not nodes).
function textOffset(root, node, offset) {
  const range = document.createRange();
  range.selectNodeContents(root);
  range.setEnd(node, offset);
  return range.toString().length;
}

function takeSelection() {
  const root = $("#question");
  const selection = window.getSelection();
  if (!selection || selection.isCollapsed || !selection.rangeCount) return;
  const range = selection.getRangeAt(0);
  if (!root.contains(range.startContainer) || !root.contains(range.endContainer)) return;
  const text = state.current.question;
  let start = textOffset(root, range.startContainer, range.startOffset);
  let end = textOffset(root, range.endContainer, range.endOffset);
  while (start < end && EDGES.includes(text[start])) start++;
  while (end > start && EDGES.includes(text[end - 1])) end--;
  selection.removeAllRanges();
  if (end <= start) return;
  const name = text.slice(start, end);
  const names = (savedNames(state.current.labelled || {}) || []).filter((n) => n !== name);
  names.push(name);
  names.sort((a, b) => text.indexOf(a) - text.indexOf(b));
  correct({file_names: names});
}

function accept() {
  const answer = state.current.answer || {};
  if (!state.info.routes.includes(answer.route)) {
    toast(`The chain stopped as ${answer.route}: choose the right route (1–${state.info.routes.length}).`, "error");
    return;
  }
  const body = {route: answer.route};
  if (answer.route === "task" && fileTask()) body.file_names = answer.file_names || [];
  const qa = kbTask() && stepResult(answer, kbTask());
  if (answer.route === "answer" && qa) {
    if (qa.kb_id) body.kb_id = qa.kb_id; else body.no_entry = true;
  }
  correct(body);
}

async function correct(fields) {
  const item = state.current;
  if (!item) return;
  try {
    const data = await api("/api/corrections", {question: item.question, ...fields});
    item.labelled = data.labelled;
    item.saved_kb_id = data.saved_kb_id;
    renderCounts(data.labels);
    renderDetail();
    renderQueue();
    const words = Object.entries(data.saved).map(([t, s]) => (s === "unchanged" ? `${t} (already)` : t));
    toast(`Saved ✓ ${words.join(", ")}`);
  } catch (error) {
    toast(`Not saved: ${error.message}`, "error");
  }
}

function renderCounts(labels) {
  const entries = Object.entries(labels || {});
  $("#counts").innerHTML = entries.length
    ? entries.map(([t, n]) => `<span class="count">${esc(t)} <b>${n}</b></span>`).join("")
    : `<span class="count">no labels yet</span>`;
}

// ---------------------------------------------------------------- asking
async function ask(event) {
  event.preventDefault();
  const input = $("#ask-input");
  const question = input.value.trim();
  if (!question) return;
  if (!state.info.can_ask) { toast("No model here: start the console with --onnx DIR or --hub DIR to ask.", "error"); return; }
  $("#ask-button").disabled = true;
  try {
    const answer = await api("/api/ask", {question});
    state.index = -1;
    state.current = {asked: true, question: answer.question, answer, labelled: answer.labelled || {},
                     saved_kb_id: answer.saved_kb_id, reasons: [], feedback: []};
    renderQueue();
    renderDetail();
    input.blur();
  } catch (error) {
    toast(error.message, "error");
  } finally {
    $("#ask-button").disabled = false;
  }
}

// ---------------------------------------------------------------- keys
function onKey(event) {
  const target = event.target;
  if (event.key === "Escape") { if (target.blur) target.blur(); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (target.closest && target.closest("input, textarea, select, dialog")) return;
  const key = event.key;
  const item = state.current;
  if (key === "?") { $("#help-dialog").showModal(); }
  else if (key === "/") { $("#ask-input").focus(); }
  else if (key === "j" || key === "ArrowDown") { select(state.index + 1); }
  else if (key === "k" || key === "ArrowUp") { select(state.index - 1); }
  else if (key === "u") { loadQueue(item && item.question); }
  else if (!item) { return; }
  else if (ROUTE_KEYS.includes(key) && state.info.routes[ROUTE_KEYS.indexOf(key)]) { correct({route: state.info.routes[ROUTE_KEYS.indexOf(key)]}); }
  else if (key === "n" && fileTask()) { correct({file_names: []}); }
  else if (key === "x" && kbTask()) { correct({no_entry: true}); }
  else if (key === "y") { accept(); }
  else {
    const tasks = classificationTasks();
    for (let row = 0; row < tasks.length; row++) {
      const at = (LABEL_KEYS[row] || []).indexOf(key);
      if (at >= 0 && tasks[row].labels[at]) { correct({labels: {[tasks[row].name]: tasks[row].labels[at]}}); break; }
    }
    return;
  }
  event.preventDefault();
}

async function start() {
  $("#ask-form").addEventListener("submit", ask);
  $("#refresh").onclick = () => loadQueue(state.current && state.current.question);
  $("#help-button").onclick = () => $("#help-dialog").showModal();
  $("#show-all").onchange = (e) => { state.everything = e.target.checked; loadQueue(state.current && state.current.question); };
  $("#queue-list").addEventListener("click", (e) => { const li = e.target.closest("li[data-index]"); if (li) select(Number(li.dataset.index)); });
  document.addEventListener("keydown", onKey);
  try {
    state.info = await api("/api/info");
    renderCounts(state.info.labels);
    if (!state.info.can_ask) { $("#ask-input").placeholder = "No model loaded (start with --onnx DIR or --hub DIR to ask)"; }
    await loadQueue();
    document.body.dataset.ready = "true";
  } catch (error) {
    toast(error.message, "error");
  }
}

start();
