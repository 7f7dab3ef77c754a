// What both pages share: the API call, status lines, and the piano roll (every note of a song from
// /api/.../roll on a canvas, bars as lines).
"use strict";

const $ = (id) => document.getElementById(id);

async function api(path, options) {
  const response = await fetch(path, options);
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  // every error is {"error": message, "code": code} (docs/server.md)
  if (!response.ok) {
    const err = new Error(body?.error ?? `${response.status} ${response.statusText}`);
    err.code = body?.code;
    err.body = body;
    throw err;
  }
  return body;
}

function say(id, text, isError = false) {
  $(id).textContent = text;
  $(id).classList.toggle("error", isError);
}


const ROLE_COLORS = { bass: "#1f77b4", drums: "#7f7f7f", guitar: "#2ca02c", piano: "#9467bd",
  strings: "#8c564b", lead: "#ff7f0e", other: "#bcbd22" };

// x of a time in seconds on a canvas drawing ``roll``
function rollX(canvas, roll, t) {
  return (t / Math.max(roll.seconds, 0.001)) * canvas.width;
}

// ``highlight``: roles drawn in red, the rest faded; ``selected``: [first, last] bar (0-based) shaded
function drawRoll(canvas, roll, highlight = new Set(), selected = null) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const pitched = roll.notes.filter((n) => !roll.tracks[n.track].is_drum);
  const lo = Math.min(...pitched.map((n) => n.pitch), 36) - 1;
  const hi = Math.max(...pitched.map((n) => n.pitch), 84) + 1;
  const drumRows = 12;
  const rows = hi - lo + drumRows;
  const x = (t) => rollX(canvas, roll, t);
  const h = canvas.height / rows;
  if (selected) {
    const ends = [...roll.bar_times, roll.seconds];
    ctx.fillStyle = "#fff3c4";
    ctx.fillRect(x(ends[selected[0]]), 0, x(ends[selected[1] + 1]) - x(ends[selected[0]]), canvas.height);
  }
  ctx.strokeStyle = "#e4e4e4";
  for (const t of roll.bar_times) { ctx.beginPath(); ctx.moveTo(x(t), 0); ctx.lineTo(x(t), canvas.height); ctx.stroke(); }
  let drawn = 0;
  for (const n of roll.notes) {
    const track = roll.tracks[n.track];
    const y = track.is_drum ? canvas.height - ((n.pitch % drumRows) + 1) * h : (hi - n.pitch) * h;
    ctx.fillStyle = highlight.has(track.role) ? "#d62728" : (ROLE_COLORS[track.role] ?? "#999");
    ctx.globalAlpha = highlight.size && !highlight.has(track.role) ? 0.35 : 0.9;
    ctx.fillRect(x(n.start), y, Math.max(x(n.end) - x(n.start), 1.5), Math.max(h, 1.5));
    drawn += 1;
  }
  ctx.globalAlpha = 1;
  canvas.dataset.notes = String(drawn);
}

