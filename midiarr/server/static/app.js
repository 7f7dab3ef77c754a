// midiarr web page: upload a song, draw it, ask the server for a part, play and download the result.
"use strict";

const state = { song: null, job: null, timer: null, audios: {} };

function showSong(info, roll) {
  state.song = info;
  $("song-section").hidden = false;
  $("job-section").hidden = false;
  $("result-section").hidden = true;
  $("song-title").textContent = info.filename;
  $("song-facts").textContent = `${info.bars} bars, ${info.seconds.toFixed(1)} s, ${info.tempo} bpm, ${info.time_signature}`;
  const body = $("tracks").querySelector("tbody");
  body.innerHTML = "";
  for (const t of info.tracks) {
    const row = body.insertRow();
    for (const value of [t.index, t.name, t.role, t.notes]) row.insertCell().textContent = value;
  }
  drawRoll($("roll"), roll);
  const present = new Set(info.tracks.map((t) => t.role));
  const missing = ["bass", "drums", "guitar", "piano", "strings"].find((s) => !present.has(s)) ?? "bass";
  for (const box of $("stems").querySelectorAll("input")) box.checked = box.value === missing;
}

async function upload(file) {
  say("upload-status", `uploading ${file.name}…`);
  const form = new FormData();
  form.append("file", file);
  try {
    const info = await api("/api/songs", { method: "POST", body: form });
    const roll = await api(`/api/songs/${info.id}/roll`);
    showSong(info, roll);
    say("upload-status", `${file.name}: ${info.tracks.length} tracks`);
  } catch (err) {
    say("upload-status", err.message, true);
  }
}

async function submit(event, replace = false) {
  event?.preventDefault();
  if (!state.song) return;
  $("existing").hidden = true;
  const stems = [...$("stems").querySelectorAll("input:checked")].map((b) => b.value);
  if (!stems.length) { say("job-status", "pick at least one stem", true); return; }
  const request = {
    action: "insert", song_id: state.song.id, stems, engine: $("engine").value,
    instruction: $("instruction").value || null, active: $("active").value || null,
    seed: Number($("seed").value || 0), replace,
  };
  try {
    const job = await api("/api/jobs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request) });
    state.job = job.id;
    $("go").disabled = true;
    $("cancel").hidden = false;
    $("progress").hidden = false;
    poll();
  } catch (err) {
    if (err.code === "existing_part") {
      // insert only adds: the song already plays this stem, so ask before replacing the user's own part
      const named = err.body.tracks.map((t) => `track ${t.index} "${t.name}" (${t.role})`).join(", ");
      say("existing-question", `The song already has its own part: ${named}. Replace it with the new one?`);
      $("existing").hidden = false;
      say("job-status", "");
    } else {
      say("job-status", err.message, true);
    }
  }
}

async function poll() {
  clearTimeout(state.timer);
  try {
    const job = await api(`/api/jobs/${state.job}`);
    $("progress").value = job.progress;
    say("job-status", `${job.state}: ${job.message}`, job.state === "failed");
    if (job.state === "queued" || job.state === "running") { state.timer = setTimeout(poll, 400); return; }
    $("go").disabled = false;
    $("cancel").hidden = true;
    if (job.state === "done") await showResult(job);
  } catch (err) {
    say("job-status", err.message, true);
    $("go").disabled = false;
  }
}

async function cancel() {
  if (state.job) await api(`/api/jobs/${state.job}`, { method: "DELETE" }).catch(() => {});
  poll();
}

async function showResult(job) {
  $("result-section").hidden = false;
  const roll = await api(`/api/jobs/${job.id}/roll`);
  drawRoll($("result-roll"), roll, new Set(job.stems));
  // the score as notation, engraved on the server (verovio SVG), the new part in red
  const pages = job.files.filter((f) => /^score-\d+\.svg$/.test(f));
  $("score").innerHTML = pages.map((f) => `<img class="score-page" src="/api/jobs/${job.id}/files/${f}" alt="${f}">`).join("");
  $("score").dataset.pages = pages.length;
  stopAll();
  state.audios = {};
  const mixer = $("mixer");
  mixer.innerHTML = "";
  for (const name of job.files.filter((f) => f.startsWith("audio/") && !f.endsWith("/mix.wav"))) {
    const stem = name.slice(6, -4);
    const audio = new Audio(`/api/jobs/${job.id}/files/${name}`);
    audio.preload = "auto";
    audio.dataset.stem = stem;
    state.audios[stem] = audio;
    const strip = document.createElement("span");
    strip.className = "strip" + (job.stems.includes(stem) ? " new" : "");
    strip.innerHTML = `<b>${stem}</b> <label><input type="checkbox" class="mute" data-stem="${stem}"> mute</label> ` +
      `<label><input type="checkbox" class="solo" data-stem="${stem}"> solo</label>`;
    mixer.appendChild(strip);
  }
  mixer.querySelectorAll("input").forEach((box) => box.addEventListener("change", applyMix));
  const links = job.files.map((f) => `<a href="/api/jobs/${job.id}/files/${f}" download>${f}</a>`);
  $("downloads").innerHTML = "Download: " + links.join(" · ");
}

function applyMix() {
  const solos = [...document.querySelectorAll(".solo:checked")].map((b) => b.dataset.stem);
  for (const [stem, audio] of Object.entries(state.audios)) {
    const muted = document.querySelector(`.mute[data-stem="${stem}"]`).checked;
    audio.muted = muted || (solos.length > 0 && !solos.includes(stem));
  }
}

function stopAll() {
  for (const audio of Object.values(state.audios)) { audio.pause(); audio.currentTime = 0; }
}

function playAll() {
  stopAll();
  applyMix();
  for (const audio of Object.values(state.audios)) audio.play().catch(() => {});
}

async function init() {
  const health = await api("/api/health");
  for (const name of health.engines) $("engine").add(new Option(name, name, false, name === "rules"));
  for (const stem of health.stems) {
    const label = document.createElement("label");
    label.innerHTML = `<input type="checkbox" value="${stem}"> ${stem}`;
    $("stems").appendChild(label);
  }
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]); });
  $("file").addEventListener("change", () => { if ($("file").files[0]) upload($("file").files[0]); });
  $("job-form").addEventListener("submit", (e) => submit(e));
  $("replace-go").addEventListener("click", () => submit(null, true));
  $("replace-no").addEventListener("click", () => { $("existing").hidden = true; });
  $("cancel").addEventListener("click", cancel);
  $("play").addEventListener("click", playAll);
  $("stop").addEventListener("click", stopAll);
  document.body.dataset.ready = "1";
}

init();
