// The Realtime page. It speaks fal's krea-wan-14b protocol to the studio's own /ws/realtime/
// (docs/realtime.md), logged in by its session cookie: {"status":"ready"}, one msgpack map of
// parameters, JPEG frames as binary messages, status texts (queued, loading, started,
// streaming, completed) and {"error"}. While a stream runs it sends {prompt}, {seed} and
// {action:"reset"}. Frames are decoded into a buffer and drawn on a canvas at the playback
// FPS; the canvas is recorded with MediaRecorder for the WebM download (DL).
import { encode } from "../vendor/msgpack/dist.esm/index.mjs";
import { api, socketUrl } from "./studio.js";

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("rt-config").textContent);
const root = $("rt"), form = $("rt-form"), canvas = $("rt-canvas"), ctx = canvas.getContext("2d");
const bar = {
  state: $("rt-state"), fps: $("rt-fps"), frames: $("rt-frames"), dropped: $("rt-dropped"),
  buffer: $("rt-buffer"), size: $("rt-size"), seed: $("rt-seed"), last: $("rt-last"),
};
const buttons = { start: $("rt-start"), stop: $("rt-stop"), reset: $("rt-reset"), download: $("rt-download"),
                  random: $("rt-random") };
const fields = { prompt: $("rt-prompt"), width: $("rt-width"), height: $("rt-height"), blocks: $("rt-blocks"),
                 steps: $("rt-steps"), seed: $("rt-seed-input"), fps: $("rt-fps-input"),
                 start_frame: $("rt-start-frame"), strength: $("rt-strength") };
const statusLine = $("rt-status"), overlay = $("rt-overlay"), logList = $("rt-log");
const result = $("rt-result"), mp4Link = $("rt-mp4");
const limits = config.limits;
const TIMEOUT_MS = config.frame_timeout_s * 1000;
const PROMPT_DEBOUNCE_MS = 400;
const LOG_LINES = 200;
// States a stream goes through; "live" ones hold an open socket.
const LIVE = new Set(["connecting", "waiting", "queued", "loading", "streaming"]);
// States in which the studio has taken the settings and reads updates.
const UPDATABLE = new Set(["queued", "loading", "streaming"]);

let stream = null;      // the current stream (see startStream)
let recording = null;   // {blob, url, name} of the last finished WebM

// ---------------------------------------------------------------------------- small helpers
function log(text, kind = "") {
  const time = new Date().toLocaleTimeString([], { hour12: false });
  const item = document.createElement("li");
  if (kind) item.className = `rt-${kind}`;
  item.textContent = `${time} ${text}`;
  logList.prepend(item);
  while (logList.children.length > LOG_LINES) logList.lastElementChild.remove();
}

function say(text, kind = "") {
  statusLine.textContent = text;
  statusLine.className = `rt-status${kind ? ` rt-${kind}` : ""}`;
}

function setState(state) {
  root.dataset.state = state;
  bar.state.textContent = state;
  bar.state.className = `rt-s-${state}`;
  const live = LIVE.has(state);
  buttons.start.disabled = live || !selectedBackend();
  buttons.stop.disabled = !live;
  buttons.reset.disabled = state !== "streaming";
  for (const input of form.querySelectorAll("input[name=backend]")) {
    input.disabled = live || !config.backends[input.value].configured;
  }
  for (const name of ["width", "height", "blocks", "steps", "start_frame", "strength"]) {
    if (fields[name]) fields[name].disabled = live;
  }
}

function selectedBackend() {
  const checked = form.querySelector("input[name=backend]:checked");
  return checked && config.backends[checked.value].configured ? checked.value : null;
}

function randomSeed() {
  const { minimum, maximum } = limits.seed;
  const span = maximum - minimum + 1;
  const words = new Uint32Array(1);
  crypto.getRandomValues(words);
  return minimum + (words[0] % span);
}

// ---------------------------------------------------------------------------- the form
function fieldError(name, message) {
  const input = fields[name];
  const box = input.closest(".rt-field");
  let error = box.querySelector(".rt-field-error");
  const ids = (input.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && id !== `rt-${name}-error`);
  if (message) {
    if (!error) {
      error = document.createElement("p");
      error.className = "rt-field-error";
      error.id = `rt-${name}-error`;
      box.append(error);
    }
    error.textContent = message;
    input.setAttribute("aria-invalid", "true");
    ids.push(error.id);
  } else {
    if (error) error.remove();
    input.removeAttribute("aria-invalid");
  }
  input.setAttribute("aria-describedby", ids.join(" "));
  return !message;
}

function labelOf(name) {
  const label = form.querySelector(`label[for="${fields[name].id}"]`);
  return label ? label.textContent.trim() : name;
}

function integerIn(name, label = labelOf(name), { optional = false } = {}) {
  const raw = fields[name].value.trim();
  const { minimum, maximum } = limits[name];
  if (raw === "" && optional) { fieldError(name, ""); return { ok: true, value: null }; }
  const value = Number(raw);
  if (raw === "" || !Number.isInteger(value) || value < minimum || value > maximum) {
    fieldError(name, `${label} must be a whole number from ${minimum} to ${maximum}.`);
    return { ok: false };
  }
  fieldError(name, "");
  return { ok: true, value };
}

// A width or height: the nearest multiple of 8 within the limits (the field shows it).
function sizeIn(name, label = labelOf(name)) {
  const raw = fields[name].value.trim();
  const { minimum, maximum, step } = limits[name];
  const value = Number(raw);
  if (raw === "" || !Number.isFinite(value)) {
    fieldError(name, `${label} must be a number of pixels from ${minimum} to ${maximum}.`);
    return { ok: false };
  }
  const snapped = Math.min(Math.max(Math.round(value / step) * step, minimum), maximum);
  if (snapped !== value) fields[name].value = String(snapped);
  fieldError(name, "");
  return { ok: true, value: snapped };
}

function promptValue() {
  const prompt = fields.prompt.value.trim();
  if (!prompt) { fieldError("prompt", `${labelOf("prompt")} is required.`); return { ok: false }; }
  const max = Number(fields.prompt.getAttribute("maxlength"));
  if (prompt.length > max) { fieldError("prompt", `${labelOf("prompt")} may be at most ${max} characters.`); return { ok: false }; }
  fieldError("prompt", "");
  return { ok: true, value: prompt };
}

async function startFrameJpeg(file) {
  const bitmap = await createImageBitmap(file);
  const scratch = document.createElement("canvas");
  scratch.width = bitmap.width;
  scratch.height = bitmap.height;
  scratch.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  const blob = await new Promise((done) => scratch.toBlob(done, "image/jpeg", 0.92));
  return new Uint8Array(await blob.arrayBuffer());
}

// The first message's parameters, or null (the fields say what is wrong).
async function readParams(backend) {
  const checks = {
    prompt: promptValue(), width: sizeIn("width"), height: sizeIn("height"), blocks: integerIn("blocks"),
    steps: integerIn("steps"), seed: integerIn("seed", undefined, { optional: true }), fps: integerIn("fps"),
  };
  let strength = null;
  const images = config.backends[backend].takes_images && fields.start_frame && fields.start_frame.files.length;
  if (images) {
    const value = Number(fields.strength.value);
    const { minimum, maximum } = limits.strength;
    if (fields.strength.value.trim() === "" || !(value >= minimum && value <= maximum)) {
      fieldError("strength", `${labelOf("strength")} must be a number from ${minimum} to ${maximum}.`);
      checks.strength = { ok: false };
    } else {
      fieldError("strength", "");
      strength = value;
    }
  }
  const bad = Object.entries(checks).find(([, check]) => !check.ok);
  if (bad) {
    fields[bad[0]].focus();
    say("Some settings need fixing: see the marked fields.", "err");
    return null;
  }
  const params = { prompt: checks.prompt.value, width: checks.width.value, height: checks.height.value,
                   num_blocks: checks.blocks.value, num_denoising_steps: checks.steps.value };
  if (checks.seed.value !== null) params.seed = checks.seed.value;
  if (images) {
    try {
      params.start_frame = await startFrameJpeg(fields.start_frame.files[0]);
      params.strength = strength;
    } catch {
      fieldError("start_frame", "That file is not a picture this browser can read.");
      fields.start_frame.focus();
      return null;
    }
  }
  return params;
}

function showBackend() {
  const backend = selectedBackend();
  const images = $("rt-images");
  if (images) images.hidden = !(backend && config.backends[backend].takes_images);
  const multiple = backend ? config.backends[backend].size_multiple : 8;
  $("rt-size-note").textContent = multiple !== 8
    ? `This backend uses multiples of ${multiple}: the status bar shows the size it used.` : "";
}

// ---------------------------------------------------------------------------- playback
// A queue of frames in arrival order; each is decoded (createImageBitmap) as it arrives and
// drawn when its turn comes, one every 1/fps s. A full buffer skips its oldest frame.
class Player {
  constructor() {
    this.queue = [];
    this.timer = null;
    this.shownTimes = [];
    this.onDrawn = () => {};
    this.onIdle = () => {};
  }

  push(blob) {
    const item = { bitmap: null, failed: false };
    item.ready = createImageBitmap(blob).then(
      (bitmap) => { if (item.discarded) bitmap.close(); else item.bitmap = bitmap; },
      () => { item.failed = true; });
    this.queue.push(item);
    let skipped = 0;
    while (this.queue.length > config.buffer_frames) { this.discard(this.queue.shift()); skipped += 1; }
    return skipped;
  }

  discard(item) {
    item.discarded = true;
    if (item.bitmap) item.bitmap.close();
  }

  play(fps) {
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), 1000 / fps);
  }

  tick() {
    while (this.queue.length && this.queue[0].failed) this.queue.shift();
    const head = this.queue[0];
    if (!head) { this.onIdle(); return; }
    if (!head.bitmap) return;  // still decoding: its turn waits
    this.queue.shift();
    ctx.drawImage(head.bitmap, 0, 0, canvas.width, canvas.height);
    head.bitmap.close();
    const now = performance.now();
    this.shownTimes.push(now);
    while (this.shownTimes.length && now - this.shownTimes[0] > 2000) this.shownTimes.shift();
    this.onDrawn();
  }

  get buffered() { return this.queue.length; }

  // Frames drawn per second over the last 2 s (0 once nothing has been drawn for a second).
  get fps() {
    const times = this.shownTimes;
    if (times.length < 2 || performance.now() - times[times.length - 1] > 1000) return 0;
    return ((times.length - 1) * 1000) / (times[times.length - 1] - times[0]);
  }

  clear() {
    for (const item of this.queue) this.discard(item);
    this.queue = [];
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }
}

// ---------------------------------------------------------------------------- recording (DL)
const RECORDER_TYPES = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm"];

class Recorder {
  constructor() {
    this.chunks = [];
    this.recorder = null;
    this.done = null;
  }

  start() {
    if (this.recorder || typeof MediaRecorder === "undefined" || !canvas.captureStream) return false;
    const mimeType = RECORDER_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
    if (!mimeType) return false;
    this.recorder = new MediaRecorder(canvas.captureStream(), { mimeType });
    this.recorder.addEventListener("dataavailable", (event) => { if (event.data.size) this.chunks.push(event.data); });
    this.done = new Promise((resolve) => this.recorder.addEventListener("stop", () => resolve(), { once: true }));
    this.recorder.start(1000);
    return true;
  }

  // The WebM of what was drawn, or null when nothing was recorded.
  async finish() {
    if (!this.recorder) return null;
    if (this.recorder.state !== "inactive") {
      await new Promise((resolve) => setTimeout(resolve, 250));  // the last frame reaches the encoder
      this.recorder.stop();
    }
    await this.done;
    return this.chunks.length ? new Blob(this.chunks, { type: "video/webm" }) : null;
  }
}

// ---------------------------------------------------------------------------- a stream
function resetBar() {
  for (const [name, value] of Object.entries({ fps: "0.0", frames: "0", dropped: "0", size: "-", seed: "-", last: "-" })) {
    bar[name].textContent = value;
  }
  bar.last.className = "";
  bar.buffer.textContent = `0/${config.buffer_frames}`;
  root.dataset.frames = "0";
  delete root.dataset.session;
  result.hidden = true;
}

async function startStream() {
  if (stream && LIVE.has(stream.state)) return;
  const backend = selectedBackend();
  if (!backend) { say("No realtime backend can run on this studio.", "err"); return; }
  const params = await readParams(backend);
  if (!params) return;
  if (stream) abandon(stream);
  if (recording) { URL.revokeObjectURL(recording.url); recording = null; }
  buttons.download.disabled = true;
  resetBar();
  const fps = Number(fields.fps.value);
  const s = {
    backend, params, state: "connecting", frames: 0, skipped: 0, dropped: 0, inFps: 0, sessionId: null,
    startedAt: 0, lastFrameAt: 0, ended: false, closedByUs: false, video: null, promptSent: params.prompt,
    promptTimer: null, player: new Player(), recorder: new Recorder(), finished: false, watchdog: null,
  };
  stream = s;
  s.player.onDrawn = () => {
    if (!s.recorder.recorder && !s.recorder.start() && !s.noRecorder) {
      s.noRecorder = true;
      log("this browser cannot record the canvas (MediaRecorder): DL stays off", "warn");
    }
    overlay.hidden = true;
    updateBar(s);
  };
  s.player.onIdle = () => { if (s.ended) finishPlayback(s); };
  s.player.play(fps);
  const ws = new WebSocket(socketUrl(`${config.socket_path}?backend=${encodeURIComponent(backend)}`));
  s.ws = ws;
  ws.binaryType = "blob";
  enter(s, "connecting");
  say(`Connecting to the ${config.backends[backend].title} backend…`);
  log(`START ${backend} ${params.width}x${params.height}, ${params.num_blocks} blocks, ${params.num_denoising_steps} steps, seed ${params.seed ?? "random"}`);
  ws.addEventListener("message", (message) => onMessage(s, message));
  ws.addEventListener("close", (event) => onClose(s, event));
  s.watchdog = setInterval(() => watch(s), 250);
}

// A stream still playing out its buffer when the next one starts: it stops drawing and
// recording (the canvas is the new stream's now).
function abandon(s) {
  s.player.clear();
  s.player.stop();
  clearInterval(s.watchdog);
  if (!s.finished && s.recorder.recorder && s.recorder.recorder.state !== "inactive") s.recorder.recorder.stop();
  s.finished = true;
}

function enter(s, state) {
  s.state = state;
  if (stream === s) setState(state);
  if (UPDATABLE.has(state)) sendPrompt(s);  // an edit made while the settings were on their way
}

function send(s, message, what) {
  if (!s.ws || s.ws.readyState !== WebSocket.OPEN) return false;
  s.ws.send(encode(message));
  if (what) log(`→ ${what}`, "out");
  return true;
}

function onMessage(s, message) {
  if (typeof message.data !== "string") { onFrame(s, message.data); return; }
  let data;
  try { data = JSON.parse(message.data); } catch { log(`unreadable message: ${message.data.slice(0, 80)}`, "err"); return; }
  if (data.error !== undefined) { onError(s, data); return; }
  switch (data.status) {
    case "ready":
      send(s, s.params);
      enter(s, "waiting");
      say("Sent the settings; waiting for the backend…");
      break;
    case "queued":
      enter(s, "queued");
      say(`Queued: number ${data.position} for the GPU.`);
      log(`queued, position ${data.position}`);
      break;
    case "loading":
      enter(s, "loading");
      say("Loading the model on the GPU worker…");
      log("loading the model");
      break;
    case "started": onStarted(s, data); break;
    case "streaming":
      s.inFps = data.fps || 0;
      s.dropped = data.dropped || 0;
      updateBar(s);
      break;
    case "completed":
      s.dropped = data.dropped ?? s.dropped;
      s.ended = true;
      if (data.video) showVideo(s, data.video);
      say(`Completed: ${data.frames} frames received${data.dropped ? `, ${data.dropped} dropped` : ""}; playing out the buffer.`, "ok");
      log(`completed: ${data.frames} frames, ${data.dropped || 0} dropped, ${data.generated ?? "?"} generated`, "ok");
      enter(s, "completed");
      updateBar(s);
      break;
    default:
      break;  // a status this page does not know: fal clients ignore those too
  }
}

function onStarted(s, data) {
  s.sessionId = data.session_id;
  root.dataset.session = data.session_id;
  s.startedAt = s.lastFrameAt = performance.now();
  if (data.width && data.height && (canvas.width !== data.width || canvas.height !== data.height)) {
    canvas.width = data.width;
    canvas.height = data.height;
  }
  bar.size.textContent = `${data.width}x${data.height}`;
  bar.seed.textContent = String(data.seed);
  if (data.width !== s.params.width || data.height !== s.params.height) {
    log(`the backend uses ${data.width}x${data.height} (asked for ${s.params.width}x${s.params.height})`, "warn");
  }
  enter(s, "streaming");
  say(`Streaming: session ${data.session_id}. Edit the prompt to steer it.`);
  log(`started: session ${data.session_id}, ${data.width}x${data.height}, seed ${data.seed}, ${data.num_blocks} blocks${data.random_weights ? " (random weights: patterns, not video)" : ""}`, "ok");
}

function onFrame(s, data) {
  if (s !== stream || s.closedByUs) return;
  s.frames += 1;
  s.lastFrameAt = performance.now();
  s.skipped += s.player.push(data.type ? data : new Blob([data], { type: "image/jpeg" }));
  root.dataset.frames = String(s.frames);
  bar.frames.textContent = String(s.frames);
}

function onError(s, data) {
  const opened = ["queued", "loading", "streaming"].includes(s.state);
  if (opened && !("session_id" in data)) {  // a refused update: the stream goes on
    log(`refused: ${data.error}`, "err");
    say(`The studio refused that change: ${data.error}`, "err");
    return;
  }
  log(`error: ${data.error}`, "err");
  say(`Error: ${data.error}`, "err");
  if (data.video) showVideo(s, data.video);
  if (!s.sessionId && data.session_id) s.sessionId = data.session_id;
  s.ended = true;
  enter(s, "error");
  if (!("session_id" in data)) {  // refused before it started: the socket would wait for new settings
    s.closedByUs = true;
    s.ws.close(1000);
  }
}

function onClose(s, event) {
  clearInterval(s.watchdog);
  s.ended = true;
  if (LIVE.has(s.state)) {
    const lost = event.code === 1000 ? "The studio closed the stream." : `Connection lost (code ${event.code}).`;
    log(lost, "err");
    say(lost, "err");
    enter(s, "error");
  }
  if (s.sessionId && !s.video) fetchRecording(s);
  if (!s.player.buffered) finishPlayback(s);
}

// Every 250 ms: time since the last frame, and the frame timeout.
function watch(s) {
  updateBar(s);
  if (s.state !== "streaming") return;
  const quiet = performance.now() - s.lastFrameAt;
  if (quiet > TIMEOUT_MS) {
    const text = `TIMEOUT: no frame for ${config.frame_timeout_s} s`;
    bar.last.textContent = text;
    bar.last.className = "rt-err";
    log(`${text}: the page ended the stream`, "err");
    say(`No frame for ${config.frame_timeout_s} s: the stream stalled and was ended.`, "err");
    s.timedOut = true;
    stopStream(s, "timeout");
  }
}

function stopStream(s, state = "stopped") {
  if (!s || !LIVE.has(s.state)) return;
  s.closedByUs = true;
  s.ended = true;
  enter(s, state);
  if (state === "stopped") {
    s.player.clear();  // STOP: nothing more is shown
    say("Stopped. The studio stops the GPU within a block and keeps the recording.");
    log("STOP", "out");
  }
  if (s.ws.readyState <= WebSocket.OPEN) s.ws.close(1000);
}

function updateBar(s) {
  if (s !== stream) return;
  bar.fps.textContent = `${s.player.fps.toFixed(1)}${s.inFps ? ` (in ${Number(s.inFps).toFixed(1)})` : ""}`;
  bar.dropped.textContent = String(s.dropped);
  bar.buffer.textContent = `${s.player.buffered}/${config.buffer_frames}${s.skipped ? ` (${s.skipped} skipped)` : ""}`;
  if (s.timedOut) return;
  if (s.lastFrameAt && s.frames) {
    const quiet = (performance.now() - s.lastFrameAt) / 1000;
    bar.last.textContent = `${quiet.toFixed(1)} s / ${config.frame_timeout_s} s`;
    bar.last.className = quiet > config.frame_timeout_s / 2 && s.state === "streaming" ? "rt-warn" : "";
  } else if (s.state === "streaming") {
    const waited = (performance.now() - s.startedAt) / 1000;
    bar.last.textContent = `none yet (${waited.toFixed(1)} s / ${config.frame_timeout_s} s)`;
  }
}

// The buffer is empty and no more frames come: the recording is complete.
async function finishPlayback(s) {
  if (s.finished) return;
  s.finished = true;
  s.player.stop();
  clearInterval(s.watchdog);
  updateBar(s);
  if (s.state === "completed") enter(s, "ended");
  const blob = await s.recorder.finish();
  if (!blob) return;
  if (recording) URL.revokeObjectURL(recording.url);
  recording = { blob, url: URL.createObjectURL(blob), name: `realtime-${s.sessionId || "stream"}.webm` };
  buttons.download.disabled = false;
  log(`DL ready: ${(blob.size / 1024).toFixed(0)} KiB of WebM`, "ok");
}

function showVideo(s, video) {
  if (!video || !video.url) return;
  s.video = video;
  mp4Link.href = video.url;
  mp4Link.textContent = `MP4 (${video.id.slice(0, 8)})`;
  result.hidden = false;
  log(`recorded on the studio: ${video.url}`, "ok");
}

// After STOP, a timeout or a lost connection the studio still saves the recording: ask for it.
async function fetchRecording(s) {
  const deadline = performance.now() + 60000;
  while (performance.now() < deadline && s === stream) {
    let data = null;
    try {  // api() answers a network failure itself; reading a cut-off body still throws
      const r = await api(`${config.sessions_path}${s.sessionId}/`);
      if (r.ok) data = r.data;
    } catch { /* try again */ }
    if (data && data.video) { showVideo(s, data.video); return; }
    if (data && !["queued", "streaming"].includes(data.status) && data.finished_at &&
        performance.now() > deadline - 50000) {
      log(`the session ended ${data.status} without a recording${data.error_message ? `: ${data.error_message}` : ""}`, "warn");
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

// ---------------------------------------------------------------------------- updates
// Prompt edits go out 400 ms after the last keystroke, once the studio has taken the
// settings (before that, a message would be read as new settings); one still waiting then
// goes out when the stream is queued, loading or started.
function promptEdited() {
  const s = stream;
  if (!s || !LIVE.has(s.state)) return;
  clearTimeout(s.promptTimer);
  s.promptTimer = setTimeout(() => sendPrompt(s), PROMPT_DEBOUNCE_MS);
}

function sendPrompt(s) {
  if (!UPDATABLE.has(s.state)) return;
  const checked = promptValue();
  if (!checked.ok || checked.value === s.promptSent) return;
  if (send(s, { prompt: checked.value }, `prompt: ${checked.value}`)) {
    s.promptSent = checked.value;
    s.promptsSent = (s.promptsSent || 0) + 1;
    root.dataset.promptsSent = String(s.promptsSent);
  }
}

function seedChanged() {
  const s = stream;
  const checked = integerIn("seed", undefined, { optional: true });
  if (!s || s.state !== "streaming" || !checked.ok || checked.value === null) return;
  if (send(s, { seed: checked.value }, `seed: ${checked.value}`)) bar.seed.textContent = String(checked.value);
}

function download() {
  if (!recording) return;
  const link = document.createElement("a");
  link.href = recording.url;
  link.download = recording.name;
  document.body.append(link);
  link.click();
  link.remove();
  log(`DL ${recording.name}`, "out");
}

// ---------------------------------------------------------------------------- wiring
form.addEventListener("submit", (event) => { event.preventDefault(); startStream(); });
form.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); startStream(); }
});
buttons.stop.addEventListener("click", () => stopStream(stream));
buttons.reset.addEventListener("click", () => { if (stream) send(stream, { action: "reset" }, "reset"); });
buttons.download.addEventListener("click", download);
buttons.random.addEventListener("click", () => {
  fields.seed.value = String(randomSeed());
  seedChanged();
});
fields.prompt.addEventListener("input", promptEdited);
fields.seed.addEventListener("change", seedChanged);
fields.fps.addEventListener("change", () => {
  const checked = integerIn("fps");
  if (checked.ok && stream && !stream.finished) stream.player.play(checked.value);
});
for (const name of ["width", "height"]) {
  fields[name].addEventListener("change", () => sizeIn(name));
}
for (const input of form.querySelectorAll("input[name=backend]")) input.addEventListener("change", showBackend);
window.addEventListener("pagehide", () => { if (stream && stream.ws) stream.ws.close(1000); });

ctx.fillStyle = "#000";
ctx.fillRect(0, 0, canvas.width, canvas.height);
showBackend();
setState("idle");
