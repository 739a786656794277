// vidclip's web page: search box (text or image), result grid, player with the moment marked,
// "more like this", filters from the store's columns.  The URL holds the query, so a result page
// can be shared and the browser's back/forward buttons work.  No build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { hits: [], current: null, image: null, columns: [] };
const OPTION_IDS = ["level", "per_video", "k", "rerank"];

function fmt(t) {
  if (t === null || t === undefined || !isFinite(t)) return "";
  const m = Math.floor(t / 60), s = t - 60 * m;
  return `${m}:${s.toFixed(1).padStart(4, "0")}`;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error("the server cannot be reached: is `vidclip serve` still running?");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

// -- query <-> URL ----------------------------------------------------------------------------------
function readForm() {
  const params = new URLSearchParams();
  const q = $("q").value.trim();
  if (q) params.set("q", q);
  for (const id of OPTION_IDS) {
    const el = $(id);
    if (el.value && el.value !== el.defaultValue && !(el.tagName === "SELECT" && el.selectedIndex === 0)) params.set(id, el.value);
  }
  if ($("hybrid").checked) params.set("hybrid", "true");
  const where = readFilters();
  if (Object.keys(where).length) params.set("where", JSON.stringify(where));
  return params;
}

function writeForm(params) {
  $("q").value = params.get("q") || "";
  for (const id of OPTION_IDS) {
    const el = $(id);
    el.value = params.get(id) || (el.tagName === "SELECT" ? el.options[0].value : el.defaultValue);
  }
  $("hybrid").checked = params.get("hybrid") === "true";
  let where = {};
  try { where = JSON.parse(params.get("where") || "{}"); } catch (e) { where = {}; }
  writeFilters(where);
}

// -- filters from the store's own columns ----------------------------------------------------------
function buildFilters(columns) {
  state.columns = columns;
  const box = $("filters");
  box.replaceChildren();
  for (const c of columns) {
    const label = document.createElement("label");
    label.append(c.name);
    if (c.kind === "choice" && c.values.length > 1) {
      const sel = document.createElement("select");
      sel.dataset.column = c.name;
      sel.append(new Option("any", ""));
      for (const v of c.values) sel.append(new Option(v, v));
      label.append(sel);
    } else if (c.kind === "number" && c.min !== null && c.max !== null && c.min !== c.max) {
      for (const [bound, op] of [["min", ">="], ["max", "<="]]) {
        const input = document.createElement("input");
        input.type = "number";
        input.step = "any";
        input.placeholder = `${bound} ${Math.round(c[bound] * 100) / 100}`;
        input.dataset.column = c.name;
        input.dataset.op = op;
        label.append(input);
      }
    } else if (c.kind === "text") {
      const input = document.createElement("input");
      input.className = "filter-text";
      input.placeholder = "contains";
      input.dataset.column = c.name;
      input.dataset.op = "contains";
      label.append(input);
    } else {
      continue;
    }
    box.append(label);
  }
}

function readFilters() {
  const where = {};
  for (const el of $("filters").querySelectorAll("[data-column]")) {
    const value = el.value.trim();
    if (!value) continue;
    const column = el.dataset.column;
    if (el.tagName === "SELECT") where[column] = value;
    else if (el.dataset.op === "contains") where[column] = ["contains", value];
    else (where[column] = where[column] || []).push([el.dataset.op, Number(value)]);
  }
  return where;
}

function writeFilters(where) {
  for (const el of $("filters").querySelectorAll("[data-column]")) {
    const spec = where[el.dataset.column];
    el.value = "";
    if (spec === undefined) continue;
    if (el.tagName === "SELECT") el.value = String(spec);
    else if (el.dataset.op === "contains" && Array.isArray(spec)) el.value = spec[1];
    else if (Array.isArray(spec)) for (const [op, v] of spec) if (op === el.dataset.op) el.value = v;
  }
  if (Object.keys(where).length) $("filters-box").open = true;
}

// -- searching ------------------------------------------------------------------------------------
async function run(params, push) {
  if (push) history.pushState(null, "", params.toString() ? `/?${params}` : "/");
  showError("");
  const hasQuery = params.has("q") || params.has("like") || params.has("video");
  if (!hasQuery && !state.image) {
    render([], null);
    return;
  }
  $("summary").textContent = "Searching…";
  try {
    let answer;
    if (state.image) {
      const form = new FormData();
      form.append("image", state.image);
      for (const [key, value] of params) if (key !== "hybrid") form.append(key, value);
      answer = await api("/api/search/image", { method: "POST", body: form });
    } else {
      answer = await api(`/api/search?${params}`);
    }
    render(answer.hits, answer.took_ms, params);
  } catch (err) {
    render([], null);
    showError(err.message);
  }
}

function describe(params) {
  if (state.image) return `the image ${state.image.name}` + (params.get("q") ? ` and "${params.get("q")}"` : "");
  if (params.has("like")) return params.has("clip") ? "moments like the chosen one" : "videos like the chosen one";
  return `"${params.get("q") || ""}"`;
}

function render(hits, took, params) {
  state.hits = hits;
  const list = $("results");
  list.replaceChildren();
  const searched = took !== null;
  $("empty").hidden = searched;
  $("summary").textContent = !searched ? "" : hits.length
    ? `${hits.length} result${hits.length > 1 ? "s" : ""} for ${describe(params)} in ${took} ms`
    : `No results for ${describe(params)}. Try other words, or loosen the filters.`;
  hits.forEach((hit, i) => list.append(card(hit, i)));
}

function card(hit, i) {
  const li = document.createElement("li");
  li.className = "card";
  li.tabIndex = 0;
  li.dataset.index = i;
  li.setAttribute("aria-label", `${i + 1}. ${hit.title || hit.name}, ${fmt(hit.start_s)} to ${fmt(hit.end_s)}`);
  const thumb = document.createElement("div");
  thumb.className = "thumb";
  const img = document.createElement("img");
  img.loading = "lazy";
  img.alt = `${hit.name} at ${fmt(hit.best_t ?? hit.start_s)}`;
  img.src = hit.thumbnail;
  img.addEventListener("error", () => {
    const note = document.createElement("div");
    note.className = "noimg";
    note.textContent = "no thumbnail: the file is gone or changed since it was ingested";
    img.replaceWith(note);
  });
  const rank = document.createElement("span");
  rank.className = "rank";
  rank.textContent = `#${i + 1}`;
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = `${fmt(hit.start_s)}–${fmt(hit.end_s)}`;
  thumb.append(img, rank, when);
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = hit.title || hit.name;
  name.title = hit.name;
  const sub = document.createElement("span");
  sub.className = "sub";
  const clip = hit.clip_id === null ? "whole video" : `clip ${fmt(hit.clip_start_s)}–${fmt(hit.clip_end_s)}`;
  const score = document.createElement("span");
  score.textContent = `score ${hit.score.toFixed(3)}`;
  const span = document.createElement("span");
  span.textContent = clip;
  sub.append(span, score);
  const like = document.createElement("button");
  like.type = "button";
  like.className = "like";
  like.textContent = "More like this";
  like.addEventListener("click", (e) => { e.stopPropagation(); moreLike(hit); });
  meta.append(name, sub, like);
  li.append(thumb, meta);
  li.addEventListener("click", () => play(hit));
  li.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); play(hit); }
    else if (e.key === "m") { e.preventDefault(); moreLike(hit); }
  });
  return li;
}

function moreLike(hit) {
  clearImage();
  const params = new URLSearchParams();
  params.set("like", hit.video_id);
  if (hit.clip_id !== null) params.set("clip", hit.clip_id);
  for (const id of OPTION_IDS) if ($(id).value && $(id).value !== $(id).defaultValue && $(id).selectedIndex !== 0) params.set(id, $(id).value);
  const where = readFilters();
  if (Object.keys(where).length) params.set("where", JSON.stringify(where));
  $("q").value = "";
  closePlayer();
  run(params, true);
}

// -- the player -----------------------------------------------------------------------------------
function play(hit) {
  state.current = hit;
  const video = $("player");
  $("player-title").textContent = hit.title || hit.name;
  $("player-times").textContent = `moment ${fmt(hit.start_s)}–${fmt(hit.end_s)}` +
    (hit.clip_id === null ? "" : ` · clip ${fmt(hit.clip_start_s)}–${fmt(hit.clip_end_s)}`);
  const start = () => {
    video.currentTime = hit.start_s;
    drawTimeline();
    video.play().catch(() => {});  // autoplay may be refused; the player is at the moment either way
  };
  if (video.dataset.src === hit.video && video.readyState >= 1) start();
  else {
    video.dataset.src = hit.video;
    video.addEventListener("loadedmetadata", start, { once: true });
    video.src = hit.video;
  }
  const box = $("player-box");
  if (!box.open) box.showModal();
}

function closePlayer() {
  const box = $("player-box");
  $("player").pause();
  if (box.open) box.close();
}

function drawTimeline() {
  const hit = state.current, video = $("player");
  if (!hit) return;
  const duration = isFinite(video.duration) && video.duration > 0 ? video.duration : (hit.duration_s || hit.end_s || 1);
  const place = (el, a, b) => {
    el.style.left = `${100 * Math.max(0, a) / duration}%`;
    el.style.width = `${Math.max(0.5, 100 * (b - a) / duration)}%`;
  };
  place($("tl-clip"), hit.clip_start_s ?? 0, hit.clip_end_s ?? duration);
  place($("tl-moment"), hit.start_s, hit.end_s);
  $("tl-head").style.left = `${100 * video.currentTime / duration}%`;
}

// -- keyboard ---------------------------------------------------------------------------------------
function moveFocus(key) {
  const cards = [...document.querySelectorAll(".card")];
  if (!cards.length) return;
  const at = cards.indexOf(document.activeElement);
  if (at < 0) { cards[0].focus(); return; }
  const top = cards[0].offsetTop;
  const perRow = Math.max(1, cards.filter((c) => c.offsetTop === top).length);
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: perRow, ArrowUp: -perRow }[key];
  const next = Math.min(cards.length - 1, Math.max(0, at + step));
  cards[next].focus();
  cards[next].scrollIntoView({ block: "nearest" });
}

document.addEventListener("keydown", (e) => {
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (e.key === "/" && !typing) { e.preventDefault(); $("q").focus(); $("q").select(); }
  else if (["ArrowRight", "ArrowLeft", "ArrowDown", "ArrowUp"].includes(e.key) && !typing && !$("player-box").open) {
    e.preventDefault();
    moveFocus(e.key);
  } else if (e.key === "m" && !typing && $("player-box").open && state.current) moreLike(state.current);
});

// -- image queries ----------------------------------------------------------------------------------
function setImage(file) {
  if (!file || !file.type.startsWith("image/")) { showError("drop an image file (JPEG, PNG, WebP)"); return; }
  state.image = file;
  $("query-thumb").src = URL.createObjectURL(file);
  $("query-image-name").textContent = file.name;
  $("query-image").hidden = false;
  run(readForm(), true);
}

function clearImage() {
  state.image = null;
  $("image").value = "";
  $("query-image").hidden = true;
}

// -- wiring -----------------------------------------------------------------------------------------
window.addEventListener("DOMContentLoaded", async () => {
  $("search").addEventListener("submit", (e) => { e.preventDefault(); run(readForm(), true); });
  $("image").addEventListener("change", () => setImage($("image").files[0]));
  $("clear-image").addEventListener("click", () => { clearImage(); run(readForm(), true); });
  $("close-player").addEventListener("click", closePlayer);
  $("player-box").addEventListener("close", () => $("player").pause());
  $("more-like").addEventListener("click", () => state.current && moreLike(state.current));
  $("player").addEventListener("timeupdate", drawTimeline);
  $("player").addEventListener("loadedmetadata", drawTimeline);
  $("timeline").addEventListener("click", (e) => {
    const video = $("player"), box = e.currentTarget.getBoundingClientRect();
    if (isFinite(video.duration)) video.currentTime = video.duration * (e.clientX - box.left) / box.width;
  });
  for (const kind of ["dragenter", "dragover"]) document.addEventListener(kind, (e) => { e.preventDefault(); document.body.classList.add("dropping"); });
  for (const kind of ["dragleave", "drop"]) document.addEventListener(kind, () => document.body.classList.remove("dropping"));
  document.addEventListener("drop", (e) => { e.preventDefault(); if (e.dataTransfer.files.length) setImage(e.dataTransfer.files[0]); });
  window.addEventListener("popstate", () => { clearImage(); writeForm(new URLSearchParams(location.search)); run(new URLSearchParams(location.search), false); });

  const params = new URLSearchParams(location.search);
  params.delete("token");  // kept as a cookie by the server: never left in the address bar
  history.replaceState(null, "", params.toString() ? `/?${params}` : "/");
  writeForm(params);
  run(params, false);  // the URL's query, at once; filters are filled in when the columns arrive
  if (!params.has("q")) $("q").focus();
  try {
    const [status, columns] = await Promise.all([api("/api/status"), api("/api/columns")]);
    $("library").textContent = `${status.videos.ok} videos, ${status.clips} clips · ${status.model.name || "model"}` +
      (status.videos.failed ? ` · ${status.videos.failed} failed to ingest` : "");
    buildFilters(columns.columns);
    let where = {};
    try { where = JSON.parse(new URLSearchParams(location.search).get("where") || "{}"); } catch (e) { where = {}; }
    writeFilters(where);
  } catch (err) {
    showError(err.message);
  }
});
