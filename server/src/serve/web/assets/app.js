// fvfs's web page: a client of the daemon's JSON API (/v1/), like fvfsc.
// No framework and no build step. The DOM is built with el() from text, never from
// HTML strings, so no name in the store can inject markup.
"use strict";

const TOKEN_KEY = "fvfs-token";
const ROLES = ["read", "write", "admin"];
const COLORS = ["#2f6f8f", "#c2571a", "#6a4c93", "#1e7a3c"];
let me = { role: "read", auth: true };
let renders = 0;
let statusTimer = null;

// ---------------------------------------------------------------- small helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

/** A path's URL form: each name percent-encoded, slashes kept. */
function enc(path) {
  return path.split("/").map(encodeURIComponent).join("/");
}

function join(dir, name) {
  return (dir.endsWith("/") ? dir : dir + "/") + name;
}

function parent(path) {
  const i = path.replace(/\/$/, "").lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

function basename(path) {
  return path.replace(/\/$/, "").split("/").pop() || "/";
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + " " + units[i];
}

function when(secs) {
  const d = new Date(secs * 1000);
  const today = new Date();
  return d.toDateString() === today.toDateString()
    ? d.toLocaleTimeString()
    : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function duration(secs) {
  if (secs < 120) return secs + " s";
  if (secs < 7200) return Math.round(secs / 60) + " min";
  if (secs < 172800) return Math.round(secs / 3600) + " h";
  return Math.round(secs / 86400) + " days";
}

function can(role) {
  return ROLES.indexOf(me.role) >= ROLES.indexOf(role);
}

function toast(text, error) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.className = error ? "error" : "";
  t.hidden = false;
  if (error) document.body.dataset.error = text;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, error ? 8000 : 3000);
}

window.addEventListener("error", (e) => {
  document.body.dataset.jsError = String(e.message);
  toast("page error: " + e.message, true);
});
window.addEventListener("unhandledrejection", (e) => {
  const why = e.reason && e.reason.message ? e.reason.message : String(e.reason);
  toast(why, true);
});

// ---------------------------------------------------------------- the API

class Refused extends Error {}

// Calls the route called `name` in the daemon's route table (/ui/routes.js, written by
// the daemon from the table it routes by), with `tail` (a path, a name, a query) after
// its path.
async function api(name, tail, body, type) {
  const route = ROUTES[name];
  const headers = { "X-Fvfs-Client": "web" };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  let payload = body;
  if (body !== undefined && type === undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  } else if (type) {
    headers["Content-Type"] = type;
  }
  const r = await fetch(route.path + tail, { method: route.method, headers, body: payload, cache: "no-store" });
  if (r.status === 401) {
    askToken("The daemon asks for a token.");
    throw new Refused("a token is needed");
  }
  if (!r.ok) {
    let detail = r.status + " " + r.statusText;
    try { detail = (await r.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(detail);
  }
  return r;
}

async function getJson(name, tail = "") {
  return (await api(name, tail)).json();
}

async function commit(message, ops) {
  return (await api("Commit", "", { message, ops })).json();
}

function nowNs() {
  return Date.now() * 1e6;
}

// ---------------------------------------------------------------- dialogs

/** Shows a modal; resolves to the input's value (or true) when confirmed, else null. */
function ask({ title, body, ok = "OK", danger = false, input }) {
  const dialog = document.getElementById("dialog");
  document.getElementById("dialog-title").textContent = title;
  const holder = document.getElementById("dialog-body");
  holder.replaceChildren();
  if (body) holder.append(body instanceof Node ? body : el("p", {}, body));
  let field = null;
  if (input) {
    field = el("input", { type: input.type || "text", value: input.value || "", "aria-label": input.label || title, id: "dialog-input" });
    holder.append(el("label", {}, input.label || "", field));
  }
  const okButton = document.getElementById("dialog-ok");
  okButton.textContent = ok;
  okButton.className = danger ? "primary danger" : "primary";
  return new Promise((resolve) => {
    const done = (value) => {
      okButton.onclick = null;
      document.getElementById("dialog-cancel").onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(value);
    };
    okButton.onclick = () => done(field ? field.value : true);
    document.getElementById("dialog-cancel").onclick = () => done(null);
    dialog.onclose = () => done(null);
    if (field) field.onkeydown = (e) => { if (e.key === "Enter") { e.preventDefault(); okButton.click(); } };
    dialog.showModal();
    (field || okButton).focus();
    if (field) field.select();
  });
}

async function askToken(why) {
  if (document.getElementById("dialog").open) return;
  const token = await ask({
    title: "Token",
    body: el("p", {}, why + " Paste a token from `fvfsd token new NAME --role read|write` on the server. It stays in this browser."),
    ok: "Use this token",
    input: { type: "password", label: "Token" },
  });
  if (token) {
    localStorage.setItem(TOKEN_KEY, token.trim());
    await start();
  }
}

// ---------------------------------------------------------------- routing

/** The view, path and version the address names: #/VIEW/PATH?v=VERSION. */
function route() {
  const raw = location.hash.slice(1) || "/files/";
  const q = raw.indexOf("?");
  const where = q < 0 ? raw : raw.slice(0, q);
  const params = new URLSearchParams(q < 0 ? "" : raw.slice(q + 1));
  const parts = where.split("/");
  const path = "/" + parts.slice(2).map(decodeURIComponent).join("/");
  return { view: parts[1], path, version: params.get("v") || "" };
}

function go(view, path, version) {
  let hash = "#/" + view + (path !== undefined ? enc(path) : "");
  if (version) hash += "?v=" + encodeURIComponent(version);
  if (location.hash === hash) show();
  else location.hash = hash;
}

async function show() {
  clearInterval(statusTimer);
  const r = route();
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.view === r.view || (r.view === "history" && a.dataset.view === "files"));
  }
  const main = document.getElementById("main");
  try {
    const views = { files: viewFiles, history: viewHistory, versions: viewVersions, snapshots: viewSnapshots, status: viewStatus };
    const content = await (views[r.view] || viewFiles)(r);
    main.replaceChildren(content);
  } catch (e) {
    if (!(e instanceof Refused)) main.replaceChildren(el("div", { class: "card bad" }, e.message));
  }
  renders += 1;
  document.body.dataset.view = r.view;
  document.body.dataset.renders = String(renders);
  if (!window.fvfsFirstScreenMs) {
    window.fvfsFirstScreenMs = performance.now();
    document.body.dataset.ready = "1";
  }
}

// ---------------------------------------------------------------- files

/** A small icon of an entry's kind (drawn, so that no emoji font is needed). */
function icon(kind) {
  const shapes = {
    dir: [["path", { d: "M1 4a1 1 0 0 1 1-1h4l1.5 1.5H14a1 1 0 0 1 1 1V13a1 1 0 0 1-1 1H2a1 1 0 0 1-1-1z", fill: "#4a9cc4" }]],
    file: [["path", { d: "M3 1h6l4 4v10H3z", fill: "none", stroke: "#6b7782", "stroke-width": 1.3 }], ["path", { d: "M9 1v4h4", fill: "none", stroke: "#6b7782", "stroke-width": 1.3 }]],
    symlink: [["path", { d: "M3 12c0-4 3-6 7-6V3l4 4.5L10 12V9c-3 0-5 1-7 3z", fill: "#6a4c93" }]],
  };
  const parts = shapes[kind] || [["circle", { cx: 8, cy: 8, r: 4, fill: "#8a5a00" }]];
  return svg("svg", { viewBox: "0 0 16 16", width: 16, height: 16, "aria-hidden": "true" }, ...parts.map(([t, a]) => svg(t, a)));
}

function versionPicker(current, snapshots) {
  const select = el("select", { "aria-label": "Version", id: "version" },
    el("option", { value: "" }, "Live"),
    snapshots.map((s) => el("option", { value: s.name }, `snapshot ${s.name} (${when(s.time)})`)));
  if (current && !snapshots.some((s) => s.name === current)) {
    select.append(el("option", { value: current }, "version " + current));
  }
  select.value = current;
  select.onchange = () => go("files", route().path, select.value);
  return select;
}

function crumbs(path, version, view = "files") {
  const parts = path.split("/").filter(Boolean);
  const out = el("div", { class: "crumbs" }, el("a", { href: "#/" + view + "/" + (version ? "?v=" + encodeURIComponent(version) : "") }, "fvfs"));
  let at = "";
  for (const p of parts) {
    at += "/" + p;
    const target = at;
    out.append(" / ", el("a", { href: "#", onclick: (e) => { e.preventDefault(); go(view, target, version); } }, p));
  }
  return out;
}

async function viewFiles({ path, version }) {
  const q = version ? "?version=" + encodeURIComponent(version) : "";
  const [listing, snapshots] = await Promise.all([getJson("Ls", enc(path) + q), getJson("Snapshots")]);
  const live = !version;
  const entries = listing.entries.slice().sort((a, b) =>
    (a.kind === "dir" ? 0 : 1) - (b.kind === "dir" ? 0 : 1) || a.name.localeCompare(b.name));
  const toolbar = el("div", { class: "toolbar" }, crumbs(path, version), el("span", { class: "grow" }), versionPicker(version, snapshots));
  if (live && can("write")) {
    const picker = el("input", { type: "file", multiple: true, hidden: true, id: "upload" });
    picker.onchange = () => upload(path, picker.files);
    toolbar.append(picker,
      el("button", { type: "button", dataset: { act: "upload" }, onclick: () => picker.click() }, "Upload"),
      el("button", { type: "button", dataset: { act: "mkdir" }, onclick: () => mkdir(path) }, "New folder"));
  }
  toolbar.append(el("button", { type: "button", class: "quiet", dataset: { act: "history" }, onclick: () => go("history", path) }, "History"));
  const out = el("section", {}, toolbar);
  if (!live) {
    out.append(el("div", { class: "banner" },
      `Version ${listing.version}${snapshots.some((s) => s.name === version) ? " (snapshot " + version + ")" : ""}, read-only. `,
      can("write") ? "Restore puts a file or folder back into the live tree as it was here. " : "",
      el("a", { href: "#", onclick: (e) => { e.preventDefault(); go("files", path); } }, "Back to live")));
  }
  if (!entries.length) {
    out.append(el("div", { class: "card empty" }, "This folder is empty."));
    return out;
  }
  const rows = entries.map((e) => {
    const full = join(path, e.name);
    const actions = el("td", { class: "actions" });
    const act = (name, label, fn, cls) => actions.append(el("button", { type: "button", class: cls, dataset: { act: name }, onclick: fn }, label));
    if (e.kind === "file") act("download", "Download", () => download(full, version, e.name));
    act("history", "History", () => go("history", full));
    if (live && can("write")) {
      act("rename", "Rename", () => rename(full));
      act("delete", "Delete", () => remove(full, e.kind === "dir"), "danger");
    } else if (!live && can("write")) {
      act("restore", "Restore", () => restore(full, String(listing.version)));
    }
    const name = e.kind === "dir"
      ? el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); go("files", full, version); } }, e.name)
      : el("span", {}, e.name, e.target ? el("span", { class: "note" }, " → " + e.target) : null);
    return el("tr", { dataset: { name: e.name, kind: e.kind } },
      el("td", {}, el("div", { class: "name" }, el("span", { class: "icon" }, icon(e.kind)), name)),
      el("td", { class: "num" }, e.kind === "dir" ? "" : bytes(e.size)),
      el("td", { class: "num wide" }, when(Math.floor(e.mtime_ns / 1e9))),
      actions);
  });
  out.append(el("table", { id: "listing" },
    el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", { class: "num" }, "Size"), el("th", { class: "num wide" }, "Modified"), el("th", {}))),
    el("tbody", {}, rows)));
  return out;
}

// The browser saves the file as it streams: a link made with the token, good once.
async function download(path, version, name) {
  const q = version ? "?version=" + encodeURIComponent(version) : "";
  const link = await (await api("DownloadLinks", enc(path) + q)).json();
  const a = el("a", { href: link.url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
}

async function upload(dir, files) {
  for (const f of files) {
    toast(`Uploading ${f.name} (${bytes(f.size)})…`);
    const mtime = BigInt(f.lastModified) * 1000000n;
    await api("FilePut", enc(join(dir, f.name)) + "?mtime_ns=" + mtime, f, "application/octet-stream");
  }
  toast(`Uploaded ${files.length} file${files.length === 1 ? "" : "s"}`);
  show();
}

async function mkdir(dir) {
  const name = await ask({ title: "New folder", ok: "Create", input: { label: "Name" } });
  if (!name) return;
  await commit("mkdir " + join(dir, name), [{ op: "mkdir", path: enc(join(dir, name)), mode: 0o755, mtime_ns: nowNs() }]);
  toast("Created " + name);
  show();
}

async function rename(path) {
  const name = await ask({ title: "Rename " + basename(path), ok: "Rename", input: { label: "New name", value: basename(path) } });
  if (!name || name === basename(path)) return;
  const to = join(parent(path), name);
  await commit(`mv ${path} ${to}`, [{ op: "rename", from: enc(path), to: enc(to) }]);
  toast("Renamed to " + name);
  show();
}

async function remove(path, dir) {
  const sure = await ask({
    title: "Delete " + basename(path) + "?",
    body: (dir ? "The folder and everything in it leave the live tree. " : "The file leaves the live tree. ") +
      "Earlier versions and snapshots keep it until garbage collection drops them.",
    ok: "Delete",
    danger: true,
  });
  if (!sure) return;
  await api("FileDelete", enc(path) + (dir ? "?recursive=true" : ""));
  toast("Deleted " + basename(path));
  show();
}

async function restore(path, version) {
  const sure = await ask({
    title: `Restore ${basename(path)} from version ${version}?`,
    body: `${path} in the live tree becomes what it was in version ${version}. What it holds now stays in history.`,
    ok: "Restore",
  });
  if (!sure) return;
  await commit(`restore ${path} from version ${version}`, [{ op: "copy", from: enc(path), to: enc(path), version }]);
  toast(`Restored ${basename(path)} from version ${version}`);
  show();
}

// ---------------------------------------------------------------- one path's history

async function viewHistory({ path }) {
  const changes = await getJson("History", enc(path) + "?limit=500");
  const out = el("section", {},
    el("div", { class: "toolbar" }, el("h1", {}, "History of ", crumbs(path, "", "history"))),
    el("p", { class: "note" }, "The versions in which this changed, newest first."));
  if (!changes.length) {
    out.append(el("div", { class: "card empty" }, "No version changed this path."));
    return out;
  }
  const rows = changes.map((c) => {
    const v = c.version;
    const actions = el("td", { class: "actions" });
    const act = (name, label, fn) => actions.append(el("button", { type: "button", dataset: { act: name }, onclick: fn }, label));
    if (c.change !== "D") {
      if (c.kind === "file") act("download", "Download", () => download(path, String(v.number), basename(path)));
      act("browse", "Browse", () => go("files", c.kind === "dir" ? path : parent(path), String(v.number)));
      if (can("write")) act("restore", "Restore", () => restore(path, String(v.number)));
    }
    return el("tr", { dataset: { version: v.number } },
      el("td", { class: "num" }, v.number),
      el("td", { class: "change-" + c.change }, { A: "added", M: "changed", D: "deleted" }[c.change] || c.change),
      el("td", { class: "num" }, c.change === "D" ? "" : bytes(c.size)),
      el("td", { class: "wide" }, when(v.time)),
      el("td", { class: "wide" }, v.message, v.snapshots.map((s) => el("span", { class: "tag" }, s))),
      actions);
  });
  out.append(el("table", { id: "history" },
    el("thead", {}, el("tr", {}, el("th", { class: "num" }, "Version"), el("th", {}, "Change"), el("th", { class: "num" }, "Size"), el("th", { class: "wide" }, "When"), el("th", { class: "wide" }, "Message"), el("th", {}))),
    el("tbody", {}, rows)));
  return out;
}

// ---------------------------------------------------------------- versions

let versionLimit = 100;

function diffList(changes, limit = 500) {
  const box = el("div", { class: "diff card" });
  if (!changes.length) box.append(el("div", {}, "No difference."));
  for (const c of changes.slice(0, limit)) {
    box.append(el("div", { class: "change-" + c.change }, `${c.change} ${c.path}${c.dir ? "/" : ""}`));
  }
  if (changes.length > limit) box.append(el("div", { class: "note" }, `… and ${changes.length - limit} more`));
  return box;
}

function summary(changes) {
  const n = (k) => changes.filter((c) => c.change === k).length;
  return `${n("A")} added, ${n("M")} changed, ${n("D")} removed`;
}

async function viewVersions() {
  const versions = await getJson("Versions", "?limit=" + versionLimit);
  const head = versions.length ? versions[0].number : 0;
  const a = el("input", { type: "text", value: "HEAD~1", "aria-label": "From version", size: 8, id: "diff-a" });
  const b = el("input", { type: "text", value: "HEAD", "aria-label": "To version", size: 8, id: "diff-b" });
  const result = el("div", { id: "diff" });
  const compare = async (from, to) => {
    const changes = await getJson("Diff", `?a=${encodeURIComponent(from)}&b=${encodeURIComponent(to)}`);
    result.replaceChildren(el("h2", {}, `From ${from} to ${to}: ${summary(changes)}`), diffList(changes));
  };
  const out = el("section", {},
    el("h1", {}, "Versions"),
    el("div", { class: "toolbar" }, "Compare", a, "with", b,
      el("button", { type: "button", dataset: { act: "compare" }, onclick: () => compare(a.value, b.value) }, "Compare")),
    result);
  const rows = versions.map((v) => {
    const actions = el("td", { class: "actions" });
    const act = (name, label, fn, cls) => actions.append(el("button", { type: "button", class: cls, dataset: { act: name }, onclick: fn }, label));
    act("browse", "Browse", () => go("files", "/", String(v.number)));
    if (v.parent !== null) act("changes", "Changes", () => compare(String(v.parent), String(v.number)));
    if (can("write") && v.number !== head) act("rollback", "Roll back", () => rollback(v), "danger");
    return el("tr", { dataset: { version: v.number } },
      el("td", { class: "num" }, v.number),
      el("td", { class: "wide" }, when(v.time)),
      el("td", {}, v.message || v.kind, v.snapshots.map((s) => el("span", { class: "tag" }, s))),
      el("td", { class: "num wide" }, bytes(v.logical_bytes)),
      actions);
  });
  out.append(el("table", { id: "versions" },
    el("thead", {}, el("tr", {}, el("th", { class: "num" }, "#"), el("th", { class: "wide" }, "When"), el("th", {}, "What"), el("th", { class: "num wide" }, "Size"), el("th", {}))),
    el("tbody", {}, rows)));
  if (versions.length === versionLimit) {
    out.append(el("button", { type: "button", class: "more", onclick: () => { versionLimit *= 4; show(); } }, "Older versions"));
  }
  return out;
}

async function rollback(v) {
  const changes = await getJson("Diff", `?a=HEAD&b=${v.number}`);
  const sure = await ask({
    title: `Roll back to version ${v.number}?`,
    body: el("div", {},
      el("p", {}, `The live tree becomes what it was in version ${v.number} (${when(v.time)}): ${summary(changes)}. ` +
        "This is a new version: every version after it stays in history and can be restored."),
      diffList(changes, 200)),
    ok: `Roll back to ${v.number}`,
    danger: true,
  });
  if (!sure) return;
  const now = await (await api("Rollback", "", { to: String(v.number) })).json();
  toast(`Rolled back: version ${now.number} is version ${v.number}'s tree`);
  show();
}

// ---------------------------------------------------------------- snapshots

async function viewSnapshots() {
  const snapshots = await getJson("Snapshots");
  const out = el("section", {}, el("h1", {}, "Snapshots"));
  if (can("write")) {
    const name = el("input", { type: "text", placeholder: "name, e.g. before-cleanup", "aria-label": "Snapshot name", id: "snapshot-name" });
    const take = async () => {
      if (!name.value) return;
      const v = await (await api("SnapshotCreate", "", { name: name.value })).json();
      toast(`Snapshot ${name.value} of version ${v.number}`);
      show();
    };
    name.onkeydown = (e) => { if (e.key === "Enter") take(); };
    out.append(el("div", { class: "toolbar" }, name, el("button", { type: "button", class: "primary", dataset: { act: "snapshot" }, onclick: take }, "Take snapshot")));
  }
  if (!snapshots.length) {
    out.append(el("div", { class: "card empty" }, "No snapshot yet."));
    return out;
  }
  const rows = snapshots.slice().sort((a, b) => b.version - a.version || a.name.localeCompare(b.name)).map((s) => {
    const actions = el("td", { class: "actions" });
    actions.append(el("button", { type: "button", dataset: { act: "browse" }, onclick: () => go("files", "/", s.name) }, "Browse"));
    if (can("admin")) {
      actions.append(el("button", { type: "button", class: "danger", dataset: { act: "delete" }, onclick: () => dropSnapshot(s) }, "Delete"));
    }
    return el("tr", { dataset: { name: s.name } },
      el("td", {}, s.name, s.automatic ? el("span", { class: "tag" }, "automatic") : null),
      el("td", { class: "num" }, s.version),
      el("td", { class: "wide" }, when(s.time)),
      el("td", { class: "num wide" }, bytes(s.logical_bytes)),
      actions);
  });
  out.append(el("table", { id: "snapshots" },
    el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", { class: "num" }, "Version"), el("th", { class: "wide" }, "Taken"), el("th", { class: "num wide" }, "Size"), el("th", {}))),
    el("tbody", {}, rows)));
  return out;
}

async function dropSnapshot(s) {
  const sure = await ask({
    title: `Delete snapshot ${s.name}?`,
    body: `Version ${s.version} stays in history until garbage collection may drop it; the name goes.`,
    ok: "Delete",
    danger: true,
  });
  if (!sure) return;
  await api("SnapshotDelete", "/" + encodeURIComponent(s.name));
  toast("Deleted snapshot " + s.name);
  show();
}

// ---------------------------------------------------------------- status

function stat(label, value) {
  return el("div", { class: "stat" }, el("span", {}, label), el("b", {}, value));
}

function tierCard(t) {
  const card = el("div", { class: "card", dataset: { tier: t.name } },
    el("h2", {}, t.name, " ", el("span", { class: t.available ? "ok" : "bad" }, t.available ? "● available" : "● unavailable")));
  const high = t.high_watermark_bytes;
  if (high) {
    const meter = el("div", { class: "meter", title: "used / high watermark" }, el("span"));
    meter.firstChild.style.width = Math.min(100, (100 * t.bytes) / high).toFixed(1) + "%";
    if (t.low_watermark_bytes) {
      const low = el("i", { title: "low watermark" });
      low.style.left = ((100 * t.low_watermark_bytes) / high).toFixed(1) + "%";
      meter.append(low);
    }
    card.append(meter, stat("watermarks", `${bytes(t.low_watermark_bytes || 0)} – ${bytes(high)}`));
  }
  card.append(stat("stored", bytes(t.bytes)), stat("chunks", t.chunks.toLocaleString()));
  if (t.name !== "local") {
    card.append(stat("waiting to copy", t.queue_depth.toLocaleString() + " chunks"));
    if (t.oldest_age_secs !== null && t.oldest_age_secs !== undefined) card.append(stat("oldest waiting", duration(t.oldest_age_secs)));
  }
  if (t.last_error) card.append(el("p", { class: "bad" }, t.last_error));
  return card;
}

/** Lines of `series` ([{name, points: [[time, value]]}]) over time, as SVG. */
/** A round top for a plot's scale at least `v`, whose half is round too (2, 4, 10, 20...). */
function niceTop(v) {
  if (!(v > 2)) return 2;
  const p = 10 ** Math.floor(Math.log10(v));
  return [2, 4, 10].map((m) => m * p).find((t) => t >= v);
}

function plot(title, series, format) {
  const W = 640, H = 180, L = 64, R = 12, T = 10, B = 22;
  const all = series.flatMap((s) => s.points);
  const box = el("div", { class: "card plot" }, el("h2", {}, title));
  if (!all.length) {
    box.append(el("p", { class: "note" }, "No samples yet: the daemon takes one a minute."));
    return box;
  }
  const t0 = Math.min(...all.map((p) => p[0]));
  const t1 = Math.max(...all.map((p) => p[0]), t0 + 60);
  const top = niceTop(Math.max(...all.map((p) => p[1])));
  const x = (t) => L + ((W - L - R) * (t - t0)) / (t1 - t0);
  const y = (v) => H - B - ((H - T - B) * v) / top;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  for (const frac of [0, 0.5, 1]) {
    chart.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: y(top * frac), y2: y(top * frac) }),
      svg("text", { x: L - 6, y: y(top * frac) + 4, "text-anchor": "end" }, format(top * frac)));
  }
  chart.append(svg("text", { x: L, y: H - 4 }, when(t0)), svg("text", { x: W - R, y: H - 4, "text-anchor": "end" }, when(t1)));
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    chart.append(svg("path", { d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2 }));
    const last = s.points[s.points.length - 1];
    chart.append(svg("circle", { cx: x(last[0]), cy: y(last[1]), r: 3, fill: COLORS[i % COLORS.length] }));
  });
  const legend = el("div", { class: "legend" });
  series.forEach((s, i) => {
    const item = el("span", {}, s.name);
    item.style.setProperty("--c", COLORS[i % COLORS.length]);
    legend.append(item);
  });
  box.append(chart, legend);
  return box;
}

async function viewStatus() {
  const [status, history] = await Promise.all([getJson("Status"), getJson("StatusHistory")]);
  const s = status.store;
  const out = el("section", {}, el("h1", {}, "Status"));
  out.append(el("div", { class: "tiers", id: "tiers" }, status.tiers.map(tierCard)));
  // The samples (one a minute) end with what the status says now.
  const samples = history.samples.concat([{ time: Date.now() / 1000, tiers: status.tiers }]);
  const series = (pick, tiers) => tiers.map((name) => ({
    name,
    points: samples.map((h) => {
      const t = h.tiers.find((x) => x.name === name);
      return t ? [h.time, pick(t)] : null;
    }).filter(Boolean),
  }));
  const names = status.tiers.map((t) => t.name);
  out.append(plot("Usage per tier", series((t) => t.bytes, names), bytes));
  const colder = names.filter((n) => n !== "local");
  if (colder.length) out.append(plot("Replication backlog (chunks waiting)", series((t) => t.queue_depth, colder), (v) => Math.round(v).toLocaleString()));
  const store = el("div", { class: "card" }, el("h2", {}, "Store"),
    stat("versions", s.versions.toLocaleString()),
    stat("snapshots", s.snapshots),
    stat("live files", bytes(s.logical_bytes)),
    stat("all versions, deduplicated", bytes(s.unique_bytes)),
    stat("stored, compressed", bytes(s.stored_bytes)),
    stat("compression", `${s.compression_ratio.toFixed(2)} ×`));
  if (s.head) store.append(stat("latest version", `${s.head.number} (${when(s.head.time)})`));
  const upkeep = el("div", { class: "card", id: "maintenance" }, el("h2", {}, "Maintenance"));
  for (const task of status.maintenance) {
    upkeep.append(stat(task.task + " running", `${task.phase} ${task.done}/${task.total || "?"}`));
  }
  for (const name of ["fsck", "gc"]) {
    const last = status.last_tasks.find((t) => t.task === name);
    upkeep.append(stat("last " + name, last ? `${when(last.finished)}: ${last.summary}` : "never (on this server)"));
    if (last && !last.ok) upkeep.lastChild.classList.add("bad");
  }
  const auto = status.auto_snapshots;
  if (auto) {
    upkeep.append(stat("automatic snapshots", `every ${auto.every}` + (auto.taken ? `, last ${auto.taken}` : "")));
    if (auto.last_error) upkeep.append(el("p", { class: "bad" }, auto.last_error));
  }
  const d = status.daemon;
  const daemon = el("div", { class: "card" }, el("h2", {}, "Daemon"),
    stat("version", d.version), stat("node", d.node_id), stat("listening on", d.listen),
    stat("up for", duration(d.uptime_secs)), stat("tokens", d.auth ? "required" : "not required (loopback only)"));
  out.append(el("div", { class: "tiers" }, store, upkeep, daemon));
  statusTimer = setInterval(() => { if (route().view === "status" && !document.getElementById("dialog").open) show(); }, 10000);
  return out;
}

// ---------------------------------------------------------------- start

async function start() {
  try {
    me = await getJson("Whoami");
  } catch (e) {
    if (e instanceof Refused) return;
    throw e;
  }
  const who = document.getElementById("who");
  who.textContent = me.auth ? me.role : "open";
  who.title = me.auth ? `This page's token has the ${me.role} role` : "No token needed: the daemon listens on loopback only";
  document.body.dataset.role = me.role;
  await show();
}

document.getElementById("who").addEventListener("click", async () => {
  if (localStorage.getItem(TOKEN_KEY)) {
    const forget = await ask({ title: "Token", body: `This page uses a token with the ${me.role} role.`, ok: "Forget it" });
    if (forget) { localStorage.removeItem(TOKEN_KEY); location.reload(); }
  } else {
    askToken("Use a token to act with its role.");
  }
});
window.addEventListener("hashchange", show);
start();
