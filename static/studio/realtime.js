// The Realtime page. It speaks fal's krea-wan-14b protocol to the studio's own /ws/realtime/
// (docs/realtime.md), logged in by its session cookie: {"status":"ready"}, one msgpack map of
// parameters, JPEG frames as binary messages, status texts (queued, loading, started,
// streaming, completed) and errors: Krea's list {"error": [{type, loc, msg, input}], "message"}
// for refused fields, {"error": "<text>"} for other refusals and the end. While a stream runs it
// sends {prompt}, {seed}, {action:"reset"} and, in canvas and webcam modes (webcam_mode: true in
// the settings, with webcam_fps), the pictures as {image, strength, timestamp} (the first one as
// the settings' start_frame). Frames are decoded into a buffer and drawn on a canvas at the
// playback FPS; the canvas is recorded for the WebM download (DL).
import { encode } from "../vendor/msgpack/dist.esm/index.mjs";
import { api, socketUrl } from "./studio.js";
import { DrawingPad, InputFeed, jpegOf, Webcam } from "./realtime-input.js";
import { Player, Recorder } from "./realtime-player.js";
import { SettingsForm } from "./realtime-form.js";

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("rt-config").textContent);
const root = $("rt"), formElement = $("rt-form"), canvas = $("rt-canvas");
const bar = {
  state: $("rt-state"), fps: $("rt-fps"), frames: $("rt-frames"), dropped: $("rt-dropped"),
  buffer: $("rt-buffer"), size: $("rt-size"), seed: $("rt-seed"), sent: $("rt-sent"), last: $("rt-last"),
};
const buttons = { start: $("rt-start"), stop: $("rt-stop"), reset: $("rt-reset"), download: $("rt-download"),
                  random: $("rt-random") };
const fields = { prompt: $("rt-prompt"), width: $("rt-width"), height: $("rt-height"), blocks: $("rt-blocks"),
                 steps: $("rt-steps"), seed: $("rt-seed-input"), fps: $("rt-fps-input"),
                 start_frame: $("rt-start-frame"), strength: $("rt-strength"),
                 input_fps: $("rt-input-fps"), input_strength: $("rt-input-strength") };
const form = new SettingsForm(formElement, fields, config.limits);
const statusLine = $("rt-status"), overlay = $("rt-overlay"), logList = $("rt-log");
const result = $("rt-result"), mp4Link = $("rt-mp4"), demo = $("rt-demo");
const pad = new DrawingPad($("rt-pad"), { colour: $("rt-brush-colour"), size: $("rt-brush-size") });
const webcam = new Webcam($("rt-webcam"));
const TIMEOUT_MS = config.frame_timeout_s * 1000;
const PROMPT_DEBOUNCE_MS = 400;
const LOG_LINES = 200;
const SEND_BUFFER_LIMIT = 2 * 1024 * 1024;  // unsent bytes past which a picture waits its next turn
// States a stream goes through; "live" ones hold an open socket.
const LIVE = new Set(["connecting", "waiting", "queued", "loading", "streaming"]);
// States in which the studio has taken the settings and reads updates.
const UPDATABLE = new Set(["queued", "loading", "streaming"]);
const PICTURE_MODES = new Set(["canvas", "webcam"]);

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
  for (const input of formElement.querySelectorAll("input[name=backend]")) {
    input.disabled = live || !config.backends[input.value].configured;
  }
  for (const input of formElement.querySelectorAll("input[name=mode]")) input.disabled = live;
  for (const name of ["width", "height", "blocks", "steps", "start_frame", "strength"]) {
    if (fields[name]) fields[name].disabled = live;
  }
}

function selectedBackend() {
  const checked = formElement.querySelector("input[name=backend]:checked");
  return checked && config.backends[checked.value].configured ? checked.value : null;
}

function currentMode() {
  return formElement.querySelector("input[name=mode]:checked").value;
}

function randomSeed() {
  const { minimum, maximum } = config.limits.seed;
  const span = maximum - minimum + 1;
  const words = new Uint32Array(1);
  crypto.getRandomValues(words);
  return minimum + (words[0] % span);
}

// ---------------------------------------------------------------------------- the form
async function fileJpeg(file) {
  const bitmap = await createImageBitmap(file);
  try {
    return await jpegOf(bitmap, bitmap.width, bitmap.height, 0.92);
  } finally {
    bitmap.close();
  }
}

// The size the pictures are sent at: the form's, snapped (the backend may round it further).
function pictureSize() {
  const width = form.size("width"), height = form.size("height");
  return width.ok && height.ok ? { width: width.value, height: height.value } : null;
}

// One picture of the current input (drawing or camera) as JPEG bytes at the stream's size.
async function capturePicture(mode, size) {
  if (mode === "webcam") {
    if (!webcam.ready) throw new Error(webcam.error || "the camera is not ready yet");
    return jpegOf(webcam.video, size.width, size.height);
  }
  return jpegOf(pad.canvas, size.width, size.height);
}

// The first message's parameters, or null (the fields or the status line say what is wrong).
async function readParams(backend, mode) {
  const checks = {
    prompt: form.prompt(), width: form.size("width"), height: form.size("height"), blocks: form.integer("blocks"),
    steps: form.integer("steps"), seed: form.integer("seed", { optional: true }), fps: form.integer("fps"),
  };
  const startFile = mode === "text" && config.backends[backend].takes_images && fields.start_frame
    && fields.start_frame.files.length;
  if (startFile) checks.strength = form.number("strength");
  if (PICTURE_MODES.has(mode)) {
    checks.input_fps = form.integer("input_fps");
    checks.input_strength = form.number("input_strength");
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
  if (startFile) {
    try {
      params.start_frame = await fileJpeg(fields.start_frame.files[0]);
      params.strength = checks.strength.value;
    } catch {
      form.error("start_frame", "That file is not a picture this browser can read.");
      fields.start_frame.focus();
      return null;
    }
  }
  if (PICTURE_MODES.has(mode)) {
    try {
      params.start_frame = await capturePicture(mode, params);
    } catch (error) {
      say(`No first picture from the ${mode === "webcam" ? "camera" : "drawing"}: ${error.message}.`, "err");
      return null;
    }
    params.strength = checks.input_strength.value;
    params.webcam_mode = true;  // Krea's video in: the socket takes image messages only then
    params.webcam_fps = checks.input_fps.value;
  }
  return params;
}

function showBackend() {
  const backend = selectedBackend();
  const mode = currentMode();
  const takesImages = Boolean(backend && config.backends[backend].takes_images);
  const images = $("rt-images");
  if (images) images.hidden = !(mode === "text" && takesImages);
  const multiple = backend ? config.backends[backend].size_multiple : config.limits.width.step;
  for (const name of ["width", "height"]) {  // sizes snap to what the backend takes
    fields[name].step = String(multiple);
    if (backend && !LIVE.has(root.dataset.state)) form.size(name);
  }
  $("rt-size-note").textContent = backend ? `${config.backends[backend].title} takes multiples of ${multiple}.` : "";
  const note = $("rt-input-note");
  note.hidden = !backend || takesImages || !PICTURE_MODES.has(mode);
  note.textContent = note.hidden ? "" : `${config.backends[backend].title} takes no pictures: `
    + "START sends them and shows the studio's answer. Text mode works on it.";
}

// ---------------------------------------------------------------------------- modes
async function showMode() {
  const mode = currentMode();
  root.dataset.mode = mode;
  for (const panel of document.querySelectorAll(".rt-mode-panel")) panel.hidden = panel.dataset.mode !== mode;
  $("rt-input").hidden = !PICTURE_MODES.has(mode);
  showBackend();
  const size = pictureSize() || { width: canvas.width, height: canvas.height };
  fitInputs(size);
  if (mode !== "webcam") {
    webcam.stop();
    $("rt-webcam-overlay").hidden = false;
    return;
  }
  const status = $("rt-webcam-status");
  status.textContent = "Asking the browser for the camera…";
  const problem = await webcam.start(size.width, size.height);
  if (currentMode() !== "webcam") { webcam.stop(); return; }  // left the mode while the browser asked
  $("rt-webcam-overlay").hidden = !problem;
  status.textContent = problem ? `No camera: ${problem}.`
    : `Camera on (${webcam.video.videoWidth}x${webcam.video.videoHeight}); each picture is cropped to the stream's size.`;
  status.className = problem ? "rt-help rt-err" : "rt-help";
  root.dataset.camera = problem ? "off" : "on";
  if (problem) log(`webcam: ${problem}`, "err");
}

// The drawing pad and the camera box take the stream's shape.
function fitInputs(size) {
  pad.resize(size.width, size.height);
  for (const box of document.querySelectorAll(".rt-input-box")) box.style.aspectRatio = `${size.width} / ${size.height}`;
}

// ---------------------------------------------------------------------------- a stream
function resetBar() {
  for (const [name, value] of Object.entries({ fps: "0.0", frames: "0", dropped: "0", size: "-", seed: "-",
                                                sent: "-", last: "-" })) {
    bar[name].textContent = value;
  }
  bar.last.className = "";
  bar.buffer.textContent = `0/${config.buffer_frames}`;
  root.dataset.frames = "0";
  root.dataset.picturesSent = "0";
  delete root.dataset.session;
  result.hidden = true;
  demo.hidden = true;
}

async function startStream() {
  if (stream && LIVE.has(stream.state)) return;
  const backend = selectedBackend();
  if (!backend) { say("No realtime backend can run on this studio.", "err"); return; }
  const mode = currentMode();
  const params = await readParams(backend, mode);
  if (!params) return;
  if (stream) abandon(stream);
  if (recording) { URL.revokeObjectURL(recording.url); recording = null; }
  buttons.download.disabled = true;
  resetBar();
  const s = {
    backend, mode, params, state: "connecting", frames: 0, skipped: 0, dropped: 0, inFps: 0, sessionId: null,
    startedAt: 0, lastFrameAt: 0, ended: false, closedByUs: false, video: null, promptSent: params.prompt,
    promptTimer: null, player: new Player(canvas, config.buffer_frames), recorder: new Recorder(canvas),
    finished: false, watchdog: null, feed: null,
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
  s.player.play(Number(fields.fps.value));
  const ws = new WebSocket(socketUrl(`${config.socket_path}?backend=${encodeURIComponent(backend)}`));
  s.ws = ws;
  ws.binaryType = "blob";
  enter(s, "connecting");
  say(`Connecting to the ${config.backends[backend].title} backend…`);
  const input = params.start_frame ? `, start frame ${(params.start_frame.length / 1024).toFixed(0)} KiB` : "";
  log(`START ${backend} ${mode} ${params.width}x${params.height}, ${params.num_blocks} blocks, `
      + `${params.num_denoising_steps} steps, seed ${params.seed ?? "random"}${input}`);
  ws.addEventListener("message", (message) => onMessage(s, message));
  ws.addEventListener("close", (event) => onClose(s, event));
  s.watchdog = setInterval(() => watch(s), 250);
}

// A stream still playing out its buffer when the next one starts: it stops drawing and
// recording (the canvas is the new stream's now).
function abandon(s) {
  s.player.clear();
  s.player.stop();
  stopFeed(s);
  clearInterval(s.watchdog);
  if (!s.finished) s.recorder.cancel();
  s.finished = true;
}

function enter(s, state) {
  s.state = state;
  if (stream === s) setState(state);
  if (UPDATABLE.has(state)) sendPrompt(s);  // an edit made while the settings were on their way
  if (!LIVE.has(state)) stopFeed(s);
}

function send(s, message, what) {
  if (!s.ws || s.ws.readyState !== WebSocket.OPEN) return false;
  s.ws.send(encode(message));
  if (what) log(`→ ${what}`, "out");
  return true;
}

// Canvas and webcam modes: pictures at the input FPS while frames flow.
function startFeed(s) {
  if (!PICTURE_MODES.has(s.mode) || s.feed) return;
  const size = { width: s.params.width, height: s.params.height };
  s.feed = new InputFeed(
    () => capturePicture(s.mode, size),
    (image) => send(s, { image, strength: Number(fields.input_strength.value), timestamp: Date.now() }),
    () => !s.ws || s.ws.bufferedAmount > SEND_BUFFER_LIMIT);
  s.feed.onSent = (count) => {
    root.dataset.picturesSent = String(count);
    bar.sent.textContent = `${count} @ ${fields.input_fps.value} fps`;
  };
  s.feed.start(Number(fields.input_fps.value));
  bar.sent.textContent = `0 @ ${fields.input_fps.value} fps`;
  log(`sending the ${s.mode === "webcam" ? "camera" : "drawing"} at ${fields.input_fps.value} fps`, "out");
}

function stopFeed(s) {
  if (!s.feed || !s.feed.running) return;
  s.feed.stop();
  log(`input stopped: ${s.feed.sent} pictures sent${s.feed.skipped ? `, ${s.feed.skipped} ticks skipped` : ""}`);
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
      say(`${data.message ? `${data.message}. ` : "Completed: "}${data.frames} frames received`
          + `${data.dropped ? `, ${data.dropped} dropped` : ""}; playing out the buffer.`, "ok");
      log(`completed: ${data.frames} frames, ${data.dropped || 0} dropped, ${data.generated ?? "?"} generated`
          + `${data.end_reason ? ` (ended: ${data.end_reason})` : ""}`, "ok");
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
  if (data.random_weights) {  // the tiny CPU demo: say so where the frames are, not only in the log
    demo.textContent = "Demo: a tiny model with random weights (no GPU or no weights here) makes these frames:"
      + " patterns, not video. Install weights (manage.py download_models) and run a GPU worker for real video.";
    demo.hidden = false;
  }
  enter(s, "streaming");
  say(`Streaming: session ${data.session_id}. Edit the prompt to steer it.`);
  const videoIn = [data.start_frame && "a start frame", data.webcam_mode && "pictures (webcam mode)"].filter(Boolean);
  log(`started: session ${data.session_id}, ${data.width}x${data.height}, seed ${data.seed}, ${data.num_blocks} blocks`
      + `${videoIn.length ? `, from ${videoIn.join(" and ")}` : ""}`
      + `${data.random_weights ? " (random weights: patterns, not video)" : ""}`, "ok");
  if (Array.isArray(data.ignored) && data.ignored.length) {  // Krea's parameters this backend does not follow
    log(`${config.backends[s.backend].title} ignores: ${data.ignored.join(", ")}`, "warn");
  }
  startFeed(s);
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
  const opened = UPDATABLE.has(s.state);
  const { text, entries } = form.refusal(data, PICTURE_MODES.has(s.mode));
  if (opened && !("session_id" in data)) {  // a refused update: the stream goes on
    log(`refused: ${text}`, "err");
    const pictures = entries.some((entry) => entry.wire === "image") || (!entries.length && /\bimage/i.test(text));
    if (s.feed && s.feed.running && pictures) {
      stopFeed(s);  // one answer is enough: the next pictures would be refused the same way
      say(`The studio refused the pictures: ${text}. The stream goes on from the prompt alone.`, "err");
      return;
    }
    say(`The studio refused that change: ${text}`, "err");
    return;
  }
  const reason = data.end_reason ? ` (ended: ${data.end_reason})` : "";
  log(`error: ${text}${reason}`, "err");
  let first = null;
  for (const entry of entries) {  // refused settings: each under its field, as the page's own checks do
    if (entry.field && fields[entry.field]) {
      form.error(entry.field, entry.text);
      first = first || fields[entry.field];
    }
  }
  say(entries.length ? `The studio refused the settings: ${text}` : `Error: ${text}`, "err");
  if (data.video) showVideo(s, data.video);
  if (!s.sessionId && data.session_id) s.sessionId = data.session_id;
  s.ended = true;
  enter(s, "error");
  if (!("session_id" in data)) {  // refused before it started: the socket would wait for new settings
    s.closedByUs = true;
    s.ws.close(1000);
  }
  if (first) first.focus();
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
  stopFeed(s);
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
  const checked = form.prompt();
  if (!checked.ok || checked.value === s.promptSent) return;
  if (send(s, { prompt: checked.value }, `prompt: ${checked.value}`)) {
    s.promptSent = checked.value;
    s.promptsSent = (s.promptsSent || 0) + 1;
    root.dataset.promptsSent = String(s.promptsSent);
  }
}

function seedChanged() {
  const s = stream;
  const checked = form.integer("seed", { optional: true });
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

// A slider's value, shown beside its label.
function showValue(input) {
  const output = formElement.querySelector(`output[for="${input.id}"]`);
  if (output) output.textContent = input.value;
}

// ---------------------------------------------------------------------------- wiring
formElement.addEventListener("submit", (event) => { event.preventDefault(); startStream(); });
// Anywhere on the page: Ctrl+Enter (Cmd+Enter) starts, Esc stops.
window.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    if (!buttons.start.disabled) startStream();
  } else if (event.key === "Escape" && stream && LIVE.has(stream.state)) {
    event.preventDefault();
    stopStream(stream);
  }
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
fields.fps.addEventListener("input", () => {
  showValue(fields.fps);
  const checked = form.integer("fps");
  if (checked.ok && stream && !stream.finished) stream.player.play(checked.value);
});
fields.input_fps.addEventListener("input", () => {
  showValue(fields.input_fps);
  const s = stream;
  if (s && s.feed && s.feed.running) {
    s.feed.start(Number(fields.input_fps.value));
    bar.sent.textContent = `${s.feed.sent} @ ${fields.input_fps.value} fps`;
  }
});
for (const input of [fields.blocks, fields.input_strength]) input.addEventListener("input", () => showValue(input));
for (const name of ["width", "height"]) {
  fields[name].addEventListener("change", () => {
    form.size(name);
    const size = pictureSize();
    if (size) fitInputs(size);
  });
}
for (const input of formElement.querySelectorAll("input[name=backend]")) input.addEventListener("change", showBackend);
for (const input of formElement.querySelectorAll("input[name=mode]")) input.addEventListener("change", showMode);
$("rt-pad-clear").addEventListener("click", () => { pad.clear(); log("drawing cleared"); });
$("rt-pad-image").addEventListener("click", () => $("rt-pad-file").click());
$("rt-pad-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  try {
    await pad.place(file);
    log(`picture on the drawing: ${file.name}`);
  } catch {
    say(`${file.name} is not a picture this browser can read.`, "err");
  }
  event.target.value = "";
});
window.addEventListener("pagehide", () => {
  if (stream && stream.ws) stream.ws.close(1000);
  webcam.stop();
});

const context = canvas.getContext("2d");
context.fillStyle = "#000";
context.fillRect(0, 0, canvas.width, canvas.height);
showMode();
setState("idle");
