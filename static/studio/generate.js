// The Video Generation page: the form is built from the catalog's description of the chosen
// model (only the inputs it accepts, with their labels, units and help); the job is started
// with POST /api/jobs/ and followed over /ws/events/ until its video plays here. Under them,
// your recent generations (generate-history.js).
import { History } from "./generate-history.js";
import { api, costText, el, EventStream, FINISHED, formatElapsed, queueText } from "./studio.js";

const page = JSON.parse(document.getElementById("page-data").textContent);
const models = new Map(page.models.map((m) => [m.id, m]));
const $ = (id) => document.getElementById(id);
const form = $("generate-form"), select = $("model"), inputsBox = $("inputs"), info = $("model-info");
const estimateEl = $("estimate"), submit = $("submit"), formError = $("form-error");
const ui = {
  idle: $("idle"), job: $("job"), steps: $("steps"), status: $("status"), progress: $("progress"),
  progressRow: $("progress-row"), timing: $("timing"), log: $("log"), error: $("job-error"), video: $("result"),
  download: $("download"), cancel: $("cancel"), retry: $("retry"), gallery: $("open-gallery"), meta: $("job-meta"),
};
const STORAGE_KEY = "studio.generate.job";
const STEPS = ["pending", "submitted", "running", "completed"];
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp"];
// Inputs given as a file: an image (or its URL), or a video to restyle.
const isFile = (d) => d.type === "image" || d.type === "video";
const FILE_WORDS = { image: "a PNG, JPEG or WebP image", video: "an MP4, MOV or WebM video" };

let current = null;        // the job followed (as GET /api/jobs/<id>/ answers it)
let lastSequence = -1;
let ticker = null, pollTimer = null, socketOpen = false;
const previews = new Map(); // input name -> object URL shown in its preview

const model = () => models.get(select.value);
const inputOf = (name) => model().inputs.find((d) => d.name === name);
const fieldOf = (name) => inputsBox.querySelector(`.field[data-name="${CSS.escape(name)}"]`);
const number = (n) => (Number.isInteger(n) ? String(n) : String(Number(n.toFixed(4))));

// --- the form ---------------------------------------------------------------------------

function helpText(d) {
  const parts = d.required ? ["Required.", d.help] : [d.help];
  const numeric = d.type === "int" || d.type === "float";
  const range = numeric && d.minimum !== undefined && d.maximum !== undefined
    ? `${number(d.minimum)}–${number(d.maximum)}${d.unit ? ` ${d.unit}` : ""}${d.step ? `, in steps of ${d.step}` : ""}` : "";
  const fallback = d.default !== undefined && (numeric || d.type === "size") ? `default ${d.default}` : "";
  if (range || fallback) parts.push(`(${[range, fallback].filter(Boolean).join("; ")})`);
  return parts.join(" ");
}

function field(d) {
  const id = `in-${d.name}`;
  const wrap = el("div", { class: `field field-${d.type}`, "data-name": d.name });
  let control;
  if (d.type === "bool") {
    control = el("input", { type: "checkbox", id, name: d.name });
    control.checked = d.default === true;
    wrap.append(el("label", { class: "check", for: id }, control, ` ${d.label}`));
  } else {
    wrap.append(el("label", { for: id }, d.label));
    if (d.type === "text") {
      control = el("textarea", { id, name: d.name, rows: d.name === "prompt" ? 4 : 2, maxlength: 4000, required: d.required,
                                 placeholder: d.name === "prompt" ? "A paper boat drifting down a rainy street at dusk, close-up, soft light" : null });
    } else if (isFile(d)) {
      control = el("input", { type: "file", id, name: d.name, accept: (d.accept || IMAGE_TYPES).join(","), required: d.required });
    } else if (d.type === "choice") {
      control = el("select", { id, name: d.name });
      if (d.default === undefined) control.append(new Option(d.required ? "Choose…" : "The model's default", ""));
      d.choices.forEach((choice, i) => control.append(new Option(d.choice_labels[i], choice, false, choice === d.default)));
    } else if (d.type === "int" || d.type === "float") {
      control = el("input", { type: "number", id, name: d.name, min: d.minimum, max: d.maximum,
                              step: d.step || (d.type === "int" ? 1 : "any"), inputmode: d.type === "int" ? "numeric" : "decimal",
                              placeholder: d.name === "seed" && d.default === undefined ? "random" : d.default });
    } else {
      control = el("input", { type: "text", id, name: d.name, placeholder: d.default });
    }
    const suffix = d.unit && d.type !== "choice";  // choices carry the unit in their own labels
    wrap.append(suffix ? el("div", { class: "with-unit" }, control, el("span", { class: "unit", "aria-hidden": "true" }, d.unit)) : control);
  }
  control.setAttribute("aria-describedby", `${id}-help ${id}-error`);
  wrap.append(el("p", { class: "help", id: `${id}-help` }, helpText(d)));
  if (isFile(d)) {
    const img = d.type === "video"
      ? el("video", { muted: true, loop: true, controls: true, playsinline: true, "aria-label": `Preview of the ${d.label.toLowerCase()}` })
      : el("img", { alt: `Preview of the ${d.label.toLowerCase()}` });
    const remove = el("button", { type: "button", class: "link" }, "Remove");
    const figure = el("figure", { class: "preview", hidden: true }, img, el("figcaption", {}, el("span"), " ", remove));
    remove.addEventListener("click", () => { control.value = ""; delete wrap.dataset.url; showPreview(d.name); control.focus(); });
    control.addEventListener("change", () => showPreview(d.name));
    wrap.append(figure);
  }
  wrap.append(el("p", { class: "field-error", id: `${id}-error`, hidden: true }));
  return wrap;
}

function showPreview(name) {
  const wrap = fieldOf(name);
  const input = wrap.querySelector("input[type=file]");
  const figure = wrap.querySelector("figure.preview");
  const caption = figure.querySelector("figcaption span");
  const d = inputOf(name), media = figure.querySelector("img, video");
  if (previews.has(name)) { URL.revokeObjectURL(previews.get(name)); previews.delete(name); }
  const file = input.files[0];
  setFieldError(name, "");
  if (file) {
    if (file.type && !(d.accept || IMAGE_TYPES).includes(file.type)) setFieldError(name, `${d.label} must be ${FILE_WORDS[d.type]}; ${file.name} is not.`);
    const url = URL.createObjectURL(file);
    previews.set(name, url);
    media.src = url;
    caption.textContent = `${file.name} · ${Math.max(1, Math.round(file.size / 1024))} KB`;
    figure.hidden = false;
  } else if (wrap.dataset.url) {
    media.src = wrap.dataset.url;
    caption.textContent = `The earlier job's ${d.type} (${wrap.dataset.url}); choose a file to replace it.`;
    figure.hidden = false;
  } else {
    figure.hidden = true;
    media.removeAttribute("src");
  }
  refreshEstimate();
}

function renderModel(carry = {}) {
  const m = model();
  for (const url of previews.values()) URL.revokeObjectURL(url);
  previews.clear();
  info.replaceChildren(
    el("p", { class: "tags" }, el("span", { class: "tag" }, m.backend_title), " ", el("span", { class: "tag" }, m.kind_title)),
    m.description ? el("p", { class: "hint" }, m.description) : "",
    m.typical_wait ? el("p", { class: "hint" }, `Expected wait: ${m.typical_wait}.`) : "",
    m.configured && m.demo ? el("p", { class: "warn demo-note" }, m.demo) : "",
    m.configured ? "" : el("p", { class: "warn", role: "alert" }, `This model is not configured on this studio: ${m.missing}.`),
  );
  const main = m.inputs.filter((d) => d.name === "prompt" || isFile(d));
  const rest = m.inputs.filter((d) => !main.includes(d));
  inputsBox.replaceChildren(...main.map(field));
  if (rest.length) {
    inputsBox.append(el("fieldset", { class: "settings" }, el("legend", {}, "Settings"), ...rest.map(field)));
  }
  for (const [name, value] of Object.entries(carry)) applyValue(name, value);
  submit.disabled = !m.configured;
  submit.title = m.configured ? "" : "This model is not configured on this studio";
  refreshEstimate();
}

// What the form holds now, to carry into another model's form.
function snapshot() {
  const values = {};
  for (const d of model().inputs) {
    const control = form.elements[d.name];
    if (!control) continue;
    if (isFile(d)) {
      if (control.files.length) values[d.name] = { files: control.files };
      else if (fieldOf(d.name).dataset.url) values[d.name] = { url: fieldOf(d.name).dataset.url };
    } else if (d.type === "bool") values[d.name] = control.checked;
    else if (control.value !== "") values[d.name] = control.value;
  }
  return values;
}

function applyValue(name, value) {
  const d = inputOf(name), control = form.elements[name];
  if (!d || !control) return;
  if (isFile(d)) {
    if (value.files) control.files = value.files;
    else if (value.url) fieldOf(name).dataset.url = value.url;
    showPreview(name);
  } else if (d.type === "bool") {
    control.checked = value === true || value === "true";
  } else if (d.type === "choice") {
    if (d.choices.map(String).includes(String(value))) control.value = String(value);
  } else {
    control.value = String(value);
  }
}

// A job's settings (the gallery's "reuse settings"): uploads are fetched back into the file input.
async function applyPrefill(values) {
  for (const [name, value] of Object.entries(values)) {
    const d = inputOf(name);
    if (!d) continue;
    if (isFile(d) && value.src) {
      const r = await fetch(value.src, { credentials: "same-origin" });
      if (!r.ok) { setFieldError(name, `The earlier job's ${d.type} could not be loaded: choose it again.`); continue; }
      const transfer = new DataTransfer();
      transfer.items.add(new File([await r.blob()], value.file_name, { type: value.content_type }));
      applyValue(name, { files: transfer.files });
    } else {
      applyValue(name, value);
    }
  }
  refreshEstimate();
}

function collect({ forEstimate = false } = {}) {
  const entries = [];
  for (const d of model().inputs) {
    const control = form.elements[d.name];
    if (!control) continue;
    if (isFile(d)) {
      if (forEstimate) continue;
      if (control.files[0]) entries.push([d.name, control.files[0]]);
      else if (fieldOf(d.name).dataset.url) entries.push([d.name, fieldOf(d.name).dataset.url]);
    } else if (d.type === "text") {
      if (!forEstimate && control.value.trim()) entries.push([d.name, control.value.trim()]);
    } else if (d.type === "bool") {
      entries.push([d.name, control.checked ? "true" : "false"]);
    } else if (control.value.trim() !== "") {
      entries.push([d.name, control.value.trim()]);
    }
  }
  return entries;
}

function setFieldError(name, message) {
  const wrap = fieldOf(name);
  if (!wrap) return false;
  const box = wrap.querySelector(".field-error");
  const control = form.elements[name];
  box.textContent = message;
  box.hidden = !message;
  wrap.classList.toggle("invalid", Boolean(message));
  if (control) control.toggleAttribute("aria-invalid", Boolean(message));
  return true;
}

// {"duration": "must be one of 4s, 6s, 8s; got '30s'"} -> "Duration must be one of ..." under the field.
function showFieldErrors(fields, { focus = false } = {}) {
  const elsewhere = [];
  let first = null;
  for (const [name, message] of Object.entries(fields)) {
    const d = inputOf(name);
    const text = `${d ? d.label : name} ${message}`;
    if (setFieldError(name, text.endsWith(".") ? text : `${text}.`)) first = first || form.elements[name];
    else elsewhere.push(text);
  }
  if (focus && first) first.focus();
  return elsewhere;
}

function clearFieldErrors({ keep = [] } = {}) {
  for (const wrap of inputsBox.querySelectorAll(".field.invalid")) {
    if (!keep.includes(wrap.dataset.name)) setFieldError(wrap.dataset.name, "");
  }
}

let estimateRun = 0, estimateTimer = null;
function refreshEstimate() {
  clearTimeout(estimateTimer);
  estimateTimer = setTimeout(estimate, 200);
}

async function estimate() {
  const run = ++estimateRun;
  const m = model();
  const r = await api(`/api/models/${m.id}/estimate?${new URLSearchParams(collect({ forEstimate: true }))}`);
  if (run !== estimateRun || m !== model()) return;
  const textual = m.inputs.filter((d) => d.type === "text" || isFile(d)).map((d) => d.name);
  if (r.ok) {
    clearFieldErrors({ keep: textual });
    estimateEl.className = "estimate";
    estimateEl.replaceChildren(r.data.estimated_cost === null
      ? "No published price for this model."
      : el("span", {}, "Estimated cost: ", el("strong", {}, `$${r.data.estimated_cost}`), el("span", { class: "hint" }, ` · ${r.data.basis}`)));
  } else if (r.status === 400 && r.data.fields) {
    clearFieldErrors({ keep: textual });
    showFieldErrors(r.data.fields);
    estimateEl.className = "estimate warn";
    estimateEl.textContent = "Check the highlighted settings: no estimate until they are valid.";
  } else {
    estimateEl.className = "estimate warn";
    estimateEl.textContent = r.data.error;
  }
}

inputsBox.addEventListener("input", (event) => {
  const wrap = event.target.closest(".field");
  if (wrap && wrap.classList.contains("invalid") && event.target.type !== "file") setFieldError(wrap.dataset.name, "");
  if (event.target.tagName !== "TEXTAREA") refreshEstimate();
});
inputsBox.addEventListener("change", (event) => { if (event.target.type !== "file") refreshEstimate(); });
select.addEventListener("change", () => { const carry = snapshot(); renderModel(carry); });

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  formError.hidden = true;
  const m = model();
  if (!m.configured) return;
  clearFieldErrors({ keep: [...inputsBox.querySelectorAll(".field-image.invalid")].map((w) => w.dataset.name) });
  const given = new Set(collect().map(([name]) => name));
  const missing = m.inputs.filter((d) => d.required && !given.has(d.name));
  if (missing.length) {
    showFieldErrors(Object.fromEntries(missing.map((d) => [d.name, "is required"])), { focus: true });
    return;
  }
  if (inputsBox.querySelector(".field-image.invalid")) { inputsBox.querySelector(".field-image.invalid input").focus(); return; }
  const data = new FormData();
  data.set("model", m.id);
  for (const [name, value] of collect()) data.append(name, value);
  submit.disabled = true;
  submit.textContent = "Starting…";
  const r = await api("/api/jobs/", { method: "POST", body: data });
  submit.disabled = !model().configured;
  submit.textContent = "Generate";
  if (r.ok) {
    recentJobs.put(r.data);
    follow(r.data);
    return;
  }
  let message = r.data.error;
  if (r.status === 400 && r.data.fields) {
    const elsewhere = showFieldErrors(r.data.fields, { focus: true });
    message = elsewhere.length ? elsewhere.join(" ") : "Check the highlighted fields.";
  } else if (r.status === 429 && r.headers.get("Retry-After")) {
    message = `${r.data.error} (try again in ${r.headers.get("Retry-After")} s)`;
  }
  formError.textContent = message;
  formError.hidden = false;
});

// --- the job ----------------------------------------------------------------------------

// The newest event of each job, kept a little while: one that arrives before the POST's
// answer names its job must not be lost.
const recent = new Map();

function follow(job) {
  current = job;
  lastSequence = job.status_sequence;
  const early = recent.get(job.id);
  if (early && early.sequence > job.status_sequence) reload();
  localStorage.setItem(STORAGE_KEY, job.id);
  const url = new URL(location.href);
  url.searchParams.delete("from");
  url.searchParams.set("job", job.id);
  history.replaceState(null, "", url);
  renderJob();
}

function forget(note) {
  current = null;
  localStorage.removeItem(STORAGE_KEY);
  const url = new URL(location.href);
  url.searchParams.delete("job");
  history.replaceState(null, "", url);
  clearInterval(ticker);
  ui.job.hidden = true;
  ui.idle.hidden = false;
  if (note) ui.idle.replaceChildren(el("p", { class: "status" }, note));
}

function statusText(job, m) {
  const backend = m ? m.backend_title : "the provider";
  const queue = queueText(job.queue_position);
  switch (job.status) {
    case "pending": return "Queued in the studio: sending it to the provider.";
    case "submitted": return `Sent to ${backend}, waiting for it to start${queue ? ` (${queue})` : ""}.`;
    case "running": return "Generating the video.";
    case "completed": return "Done: the video is in your gallery.";
    case "cancelled": return "Cancelled.";
    case "failed": return (page.errors[job.error_type] || { headline: "The job failed" }).headline + ".";
    default: return job.status;
  }
}

function renderJob() {
  const job = current;
  const m = models.get(job.model_id);
  const done = FINISHED.has(job.status);
  ui.idle.hidden = true;
  ui.job.hidden = false;
  ui.job.dataset.status = job.status;
  const reached = STEPS.indexOf(job.status === "completed" ? "completed" : job.status);
  ui.steps.classList.toggle("stopped", job.status === "failed" || job.status === "cancelled");
  STEPS.forEach((step, i) => {
    const li = ui.steps.querySelector(`[data-step="${step}"]`);
    li.classList.toggle("done", reached >= 0 && i < reached || job.status === "completed");
    li.classList.toggle("current", i === reached && !done);
    if (i === reached && !done) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
  });
  const text = statusText(job, m);
  if (ui.status.textContent !== text) ui.status.textContent = text;
  ui.status.className = `status ${job.status === "failed" ? "error" : job.status === "completed" ? "ok" : ""}`;
  ui.progressRow.hidden = done;
  if (job.progress > 0 && !done) ui.progress.value = job.progress; else ui.progress.removeAttribute("value");
  const logs = job.logs_tail || [];
  ui.log.textContent = !done && logs.length ? logs[logs.length - 1] : "";
  renderError(job, m);
  if (job.status === "completed" && job.video) {
    const src = `/api/jobs/${job.id}/video`;
    if (ui.video.getAttribute("src") !== src) ui.video.src = src;
    ui.video.hidden = false;
    ui.download.href = `${src}?download=1`;
    ui.download.textContent = `Download ${job.video.name}`;
    ui.download.hidden = false;
  } else {
    if (ui.video.getAttribute("src")) { ui.video.pause(); ui.video.removeAttribute("src"); ui.video.load(); }
    ui.video.hidden = true;
    ui.download.hidden = true;
  }
  ui.gallery.hidden = !done;
  ui.cancel.hidden = done;
  ui.retry.hidden = job.status !== "failed" && job.status !== "cancelled";
  const took = job.status === "completed" && job.finished_at
    ? `took ${formatElapsed((Date.parse(job.finished_at) - Date.parse(job.created_at)) / 1000)}` : "";
  ui.meta.textContent = [m ? m.title : job.model_id, job.input && job.input.prompt ? `“${job.input.prompt}”` : "",
                         costText(job), took, `job ${job.id.slice(0, 8)}`].filter(Boolean).join(" · ");
  clearInterval(ticker);
  updateTiming();
  if (!done) ticker = setInterval(updateTiming, 1000);
  schedulePoll();
}

function updateTiming() {
  const job = current;
  if (!job) return;
  const m = models.get(job.model_id);
  const started = Date.parse(job.created_at);
  if (FINISHED.has(job.status)) { ui.timing.textContent = ""; return; }
  const wait = m && m.typical_wait ? ` · ${m.typical_wait}` : "";
  ui.timing.textContent = `${formatElapsed((Date.now() - started) / 1000)} so far${wait}`;
}

function renderError(job, m) {
  if (job.status !== "failed") { ui.error.hidden = true; ui.error.replaceChildren(); return; }
  const known = page.errors[job.error_type] || { headline: "The job failed", advice: "Try again." };
  const items = (job.error_details || []).filter((d) => d && d.message).map((detail) => {
    const d = m && m.inputs.find((i) => i.field === detail.field || i.name === detail.field || i.field.split(",").includes(detail.field));
    if (d && select.value === job.model_id) setFieldError(d.name, `${d.label}: ${detail.message}`);
    return el("li", {}, el("strong", {}, d ? d.label : detail.field || "Input"), `: ${detail.message}`);
  });
  ui.error.replaceChildren(
    el("p", {}, el("strong", {}, known.headline)),
    job.error_message ? el("p", { class: "provider-message" }, job.error_message) : "",
    items.length ? el("ul", {}, ...items) : "",
    el("p", { class: "hint" }, known.advice),
  );
  ui.error.hidden = false;
}

async function reload() {
  if (!current) return;
  const id = current.id;
  const r = await api(`/api/jobs/${id}/`);
  if (!current || current.id !== id) return;
  if (r.ok) {
    if (r.data.status_sequence >= lastSequence) { current = r.data; lastSequence = r.data.status_sequence; }
    renderJob();
  } else if (r.status === 404) {
    forget("That job no longer exists (it was deleted).");
  }
}

// Without the socket (a proxy that drops it, a restart) the job is polled every few seconds;
// with it, now and then all the same, in case an event went missing.
function schedulePoll() {
  clearTimeout(pollTimer);
  if (current && !FINISHED.has(current.status)) pollTimer = setTimeout(reload, socketOpen ? 20000 : 3000);
}

ui.cancel.addEventListener("click", async () => {
  if (!current) return;
  ui.cancel.disabled = true;
  const r = await api(`/api/jobs/${current.id}/cancel`, { method: "POST" });
  ui.cancel.disabled = false;
  if (r.ok) { current = r.data; lastSequence = r.data.status_sequence; renderJob(); }
  else { ui.status.textContent = r.data.error; }
});

// A failed or cancelled job, tried again: a new job with the same input, followed here.
ui.retry.addEventListener("click", async () => {
  if (!current) return;
  ui.retry.disabled = true;
  const r = await api(`/api/jobs/${current.id}/retry`, { method: "POST" });
  ui.retry.disabled = false;
  if (r.ok) { recentJobs.put(r.data); follow(r.data); }
  else { ui.status.textContent = `Could not retry: ${r.data.error}`; }
});

const recentJobs = new History($("history"), {
  models, statuses: page.statuses, errors: page.errors, limit: page.history_limit, empty: $("history-empty"),
  announce: $("history-status"),
  onShow: (job) => { follow(job); reload(); $("stage").scrollIntoView({ behavior: "smooth", block: "nearest" }); },
  onRetried: (job) => follow(job),
  onDeleted: (id) => { if (current && current.id === id) forget("That job was deleted."); },
});

new EventStream((event) => {
  recentJobs.onEvent(event);
  if (event.job && typeof event.sequence === "number") {
    recent.set(event.job, event);
    if (recent.size > 50) recent.delete(recent.keys().next().value);
  }
  if (!current || event.job !== current.id) return;
  if (event.type === "job.deleted") { forget("That job was deleted."); return; }
  if (event.type !== "job.status" && event.type !== "job.progress") return;
  if (typeof event.sequence === "number" && event.sequence < lastSequence) return;  // an older state
  lastSequence = event.sequence;
  Object.assign(current, { status: event.status, progress: event.progress, queue_position: event.queue_position,
                           error_type: event.error_type || "", error_message: event.error || "" });
  renderJob();
  reload();  // the video, the error's details, the log lines
}, {
  onOpen: () => { if (current && !FINISHED.has(current.status)) reload(); },
  onState: (state) => { socketOpen = state === "open"; schedulePoll(); },
});

// --- start ------------------------------------------------------------------------------

recentJobs.load();
renderModel();
if (page.prefill) applyPrefill(page.prefill.values);
const params = new URLSearchParams(location.search);
const restore = params.get("job") || (!page.prefill && localStorage.getItem(STORAGE_KEY));
if (restore) {
  api(`/api/jobs/${encodeURIComponent(restore)}/`).then((r) => {
    if (current) return;  // a job started meanwhile is the one to follow
    if (r.ok) follow(r.data);
    else if (r.status === 404) forget(params.get("job") ? "That job does not exist, or is not yours." : null);
  });
}
