// midiarr workspace: projects from a song or chords; add parts as takes, hear and keep one, redo bars, undo.
// The server keeps everything (/api/projects, docs/server.md); the page only shows a project and asks for work.
"use strict";

// [control, value, label]: each pair of buttons sets one control, as the instruction words would
const PRESETS = [["density", "sparse", "sparse"], ["density", "busy", "busy"], ["dynamics", "soft", "soft"],
  ["dynamics", "loud", "driving"], ["rhythm", "straight", "straight"], ["rhythm", "syncopated", "syncopated"]];
const state = { project: null, roll: null, defaults: {}, selected: null, drag: null, timer: null, audio: null,
  shown: 0 };

const post = (path, body) => api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body ?? {}),
});


// ------------------------------------------------------------ projects
async function listProjects() {
  const list = $("projects");
  list.innerHTML = "";
  for (const p of await api("/api/projects")) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "project";
    button.dataset.id = p.id;
    button.textContent = `${p.name} (${p.versions} version${p.versions === 1 ? "" : "s"})`;
    button.addEventListener("click", () => openProject(p.id));
    item.appendChild(button);
    list.appendChild(item);
  }
}

async function openFile(file) {
  say("start-status", `opening ${file.name}…`);
  const form = new FormData();
  form.append("file", file);
  try {
    const project = await api("/api/projects", { method: "POST", body: form });
    say("start-status", "");
    await show(project);
  } catch (err) {
    say("start-status", err.message, true);
  }
}

async function startFromChords(event) {
  event.preventDefault();
  const stems = [...$("chords-stems").querySelectorAll("input:checked")].map((b) => b.value);
  const request = {
    chords: $("chords").value, repeat: Number($("chords-repeat").value || 1),
    tempo: Number($("chords-tempo").value || 100), meter: $("chords-meter").value || "4/4", stems,
    takes: Number($("chords-takes").value || 2),
  };
  try {
    say("start-status", "writing a band…");
    await show(await post("/api/projects/from-chords", request));
    say("start-status", "");
  } catch (err) {
    say("start-status", err.message, true);
  }
}

async function openProject(id) {
  try {
    await show(await api(`/api/projects/${id}`));
  } catch (err) {
    say("start-status", err.message, true);
    history.replaceState(null, "", "#");
  }
}

// ------------------------------------------------------------ showing a project
async function show(project) {
  // answers can arrive out of order (a poll and a click): only the latest call draws, after its roll is in
  const call = ++state.shown;
  const song = project.current;
  let roll = state.roll;
  if (song && (roll?.version !== song.version || roll?.project !== project.id)) {
    roll = { ...(await api(`/api/projects/${project.id}/roll`)), version: song.version, project: project.id };
    if (call !== state.shown) return;
    state.selected = null;
  }
  state.roll = song ? roll : null;
  state.project = project;
  history.replaceState(null, "", `#project=${project.id}`);
  $("project-section").hidden = false;
  $("project-name").textContent = project.name;
  const body = $("tracks").querySelector("tbody");
  body.innerHTML = "";
  if (song) {
    $("song-facts").textContent =
      `${song.bars} bars, ${song.seconds.toFixed(1)} s, ${song.tempo} bpm, ${song.time_signature}`;
    for (const t of song.tracks) {
      const row = body.insertRow();
      for (const value of [t.index, t.name, t.role, t.notes]) row.insertCell().textContent = value;
    }
    drawSong();
    $("download-mid").href = `/api/projects/${project.id}/song.mid`;
    $("download-xml").href = `/api/projects/${project.id}/song.musicxml`;
  } else {
    $("song-facts").textContent = "No song yet: keep one of the takes below.";
    $("roll").getContext("2d").clearRect(0, 0, $("roll").width, $("roll").height);
    $("roll").dataset.notes = "0";
  }
  for (const id of ["add", "redo", "undo", "play-song"]) $(id).disabled = !song || Boolean(project.job);
  $("undo").disabled ||= project.history.length < 2;
  showTakes(project);
  const historyList = $("history");
  historyList.innerHTML = "";
  for (const v of [...project.history].reverse()) {
    const item = document.createElement("li");
    item.textContent = v.description;
    historyList.appendChild(item);
  }
  historyList.dataset.versions = String(project.history.length);
  showJob(project);
}

function drawSong() {
  if (!state.roll) return;
  const stem = $("stem").value;
  drawRoll($("roll"), state.roll, state.selected ? new Set([stem]) : new Set(), state.selected);
  $("roll").dataset.selected = state.selected ? `${state.selected[0] + 1}-${state.selected[1] + 1}` : "";
}

function showTakes(project) {
  const body = $("takes-list").querySelector("tbody");
  body.innerHTML = "";
  const number = (v) => (v === null || v === undefined ? "—" : Number(v).toFixed(2));
  for (const take of project.takes) {
    const row = body.insertRow();
    row.className = "take" + (take.id === project.kept_take ? " kept" : "");
    row.dataset.id = String(take.id);
    row.dataset.number = String(take.number);
    for (const value of [take.number, take.description, take.scores.notes, number(take.scores.harmonic_fit),
      number(take.scores.onset_sync)]) row.insertCell().textContent = value;
    const cell = row.insertCell();
    const play = document.createElement("button");
    play.type = "button";
    play.className = "play";
    play.textContent = "Play";
    play.addEventListener("click", () => playUrl(`/api/projects/${project.id}/takes/${take.id}/audio`, play));
    const keep = document.createElement("button");
    keep.type = "button";
    keep.className = "keep";
    keep.textContent = take.id === project.kept_take ? "Kept" : "Keep";
    keep.disabled = Boolean(project.job);
    keep.addEventListener("click", () => keepTake(take.id));
    cell.append(play, " ", keep);
  }
}

function showJob(project) {
  const job = project.job;
  $("cancel").hidden = !job;
  $("progress").hidden = !job;
  clearTimeout(state.timer);
  if (job) {
    $("progress").value = job.progress;
    say("job-status", `${job.state}: ${job.message}`);
    state.timer = setTimeout(refresh, 400);
  } else if (project.last_job) {
    const last = project.last_job;
    const what = last.state === "done" ? `done: ${project.takes.length} takes to hear; keep one` : last.message;
    say("job-status", `${last.state}: ${what}`, last.state !== "done");
  } else {
    say("job-status", "");
  }
}

async function refresh() {
  if (!state.project) return;
  try {
    await show(await api(`/api/projects/${state.project.id}`));
  } catch (err) {
    say("job-status", err.message, true);
  }
}

// ------------------------------------------------------------ work
function presets() {
  const chosen = {};
  for (const b of document.querySelectorAll(".preset[aria-pressed=true]")) chosen[b.dataset.control] = b.dataset.value;
  return chosen;
}

function togglePreset(button) {
  const on = button.getAttribute("aria-pressed") !== "true";
  for (const b of document.querySelectorAll(`.preset[data-control=${button.dataset.control}]`)) {
    b.setAttribute("aria-pressed", "false");
  }
  button.setAttribute("aria-pressed", on ? "true" : "false");
}

async function work(action, replace = false) {
  $("existing").hidden = true;
  const request = {
    action, stems: [$("stem").value], engine: $("engine").value, instruction: $("instruction").value || null,
    presets: presets(), takes: Number($("takes").value || 3), seed: Number($("seed").value || 0), replace,
  };
  if (action === "infill") {
    request.bars = $("bars").value;
    if (!request.bars) { say("job-status", "select bars on the piano roll (drag across them) first", true); return; }
  }
  try {
    await show(await post(`/api/projects/${state.project.id}/jobs`, request));
  } catch (err) {
    if (err.code === "existing_part") {
      // adding a stem the song plays already: ask before its part is replaced
      const named = err.body.tracks.map((t) => `track ${t.index} "${t.name}"`).join(", ");
      say("existing-question", `The song already has its own ${request.stems[0]}: ${named}. Replace it?`);
      $("existing").hidden = false;
      say("job-status", "");
    } else {
      say("job-status", err.message, true);
    }
  }
}

async function keepTake(id) {
  try {
    await show(await post(`/api/projects/${state.project.id}/takes/${id}/keep`));
  } catch (err) {
    say("job-status", err.message, true);
  }
}

async function undo() {
  try {
    await show(await post(`/api/projects/${state.project.id}/undo`));
  } catch (err) {
    say("job-status", err.message, true);
  }
}

async function cancel() {
  await api(`/api/projects/${state.project.id}/job`, { method: "DELETE" }).catch(() => {});
  refresh();
}

// ------------------------------------------------------------ listening
function stop() {
  if (state.audio) { state.audio.pause(); state.audio = null; }
}

function playUrl(url, button) {
  stop();
  state.audio = new Audio(url);
  state.audio.dataset.url = url;
  if (button) button.dataset.playing = "1";
  state.audio.play().catch((err) => say("job-status", `cannot play: ${err.message}`, true));
}

// ------------------------------------------------------------ selecting bars on the roll
function barAt(event) {
  const canvas = $("roll");
  const rect = canvas.getBoundingClientRect();
  const t = ((event.clientX - rect.left) / rect.width) * state.roll.seconds;
  let bar = 0;
  state.roll.bar_times.forEach((start, k) => { if (t >= start) bar = k; });
  return bar;
}

function selectBars(first, last) {
  state.selected = [Math.min(first, last), Math.max(first, last)];
  $("bars").value = `${state.selected[0] + 1}-${state.selected[1] + 1}`;
  drawSong();
}

function wireRoll() {
  const canvas = $("roll");
  canvas.addEventListener("mousedown", (e) => {
    if (!state.roll) return;
    state.drag = barAt(e);
    selectBars(state.drag, state.drag);
  });
  canvas.addEventListener("mousemove", (e) => { if (state.drag !== null) selectBars(state.drag, barAt(e)); });
  window.addEventListener("mouseup", () => { state.drag = null; });
}

// ------------------------------------------------------------ start
async function init() {
  const health = await api("/api/health");
  state.defaults = health.default_engines;
  for (const name of health.engines) $("engine").add(new Option(name, name));
  for (const stem of health.stems) {
    $("stem").add(new Option(stem, stem));
    const label = document.createElement("label");
    const on = ["piano", "bass", "drums"].includes(stem) ? " checked" : "";
    label.innerHTML = `<input type="checkbox" value="${stem}"${on}> ${stem}`;
    $("chords-stems").appendChild(label);
  }
  // each stem starts on its best engine (the one insert uses by default), not the simplest
  const pickEngine = () => { $("engine").value = state.defaults[$("stem").value] ?? "rules"; drawSong(); };
  $("stem").addEventListener("change", pickEngine);
  pickEngine();
  for (const [control, value, label] of PRESETS) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "preset";
    b.dataset.control = control;
    b.dataset.value = value;
    b.setAttribute("aria-pressed", "false");
    b.textContent = label;
    b.title = `${control}: ${value}`;
    b.addEventListener("click", () => togglePreset(b));
    $("presets").appendChild(b);
  }
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) openFile(e.dataTransfer.files[0]);
  });
  $("open-file").addEventListener("change", () => { if ($("open-file").files[0]) openFile($("open-file").files[0]); });
  $("chords-form").addEventListener("submit", startFromChords);
  $("work-form").addEventListener("submit", (e) => { e.preventDefault(); work("insert"); });
  $("redo").addEventListener("click", () => work("infill"));
  $("undo").addEventListener("click", undo);
  $("cancel").addEventListener("click", cancel);
  $("replace-go").addEventListener("click", () => work("insert", true));
  $("replace-no").addEventListener("click", () => { $("existing").hidden = true; });
  $("play-song").addEventListener("click", () => playUrl(`/api/projects/${state.project.id}/audio`));
  $("stop").addEventListener("click", stop);
  $("bars").addEventListener("change", () => {
    const m = /^(\d+)(?:-(\d+))?$/.exec($("bars").value.trim());
    if (m && state.roll) selectBars(Number(m[1]) - 1, Number(m[2] ?? m[1]) - 1);
  });
  wireRoll();
  await listProjects();
  const wanted = /project=([0-9a-f]+)/.exec(location.hash);
  if (wanted) await openProject(wanted[1]);
  document.body.dataset.ready = "1";
}

init();
