// What every page of the studio shares: the REST calls (session + CSRF), the live event
// socket (/ws/events/) with reconnects, relative times, small DOM helpers.

export function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// A job in one of these states changes no more.
export const FINISHED = new Set(["completed", "failed", "cancelled"]);

// A WebSocket URL for one of the studio's socket paths (wss on an https page).
export function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${path}`;
}

// fetch() for the studio's API: JSON or FormData in, {ok, status, data, headers} out.
// A network failure resolves with status 0 and an error message instead of throwing.
export async function api(path, { method = "GET", body, json } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, body, headers, credentials: "same-origin" });
  } catch (err) {
    return { ok: false, status: 0, data: { error: "The studio cannot be reached: check your connection." }, headers: new Headers() };
  }
  let data = null;
  if (response.status !== 204) {
    const text = await response.text();
    try { data = text ? JSON.parse(text) : null; } catch { data = { error: text.slice(0, 300) || `HTTP ${response.status}` }; }
  }
  if (!response.ok && (!data || typeof data !== "object")) data = { error: `HTTP ${response.status}` };
  if (!response.ok && !data.error) data.error = data.detail || `HTTP ${response.status}`;
  return { ok: response.ok, status: response.status, data, headers: response.headers };
}

// The user's live events. Reconnects with backoff; onOpen runs after every (re)connect so a
// page can catch up on what it missed while disconnected.
export class EventStream {
  constructor(onEvent, { onOpen = () => {}, onState = () => {} } = {}) {
    this.onEvent = onEvent;
    this.onOpen = onOpen;
    this.onState = onState;
    this.delay = 1000;
    this.closed = false;
    this.connect();
  }

  connect() {
    const ws = new WebSocket(socketUrl("/ws/events/"));
    this.ws = ws;
    ws.addEventListener("open", () => { this.delay = 1000; this.onState("open"); this.onOpen(); });
    ws.addEventListener("message", (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      this.onEvent(event);
    });
    ws.addEventListener("close", () => {
      this.onState("closed");
      if (this.closed) return;
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 15000);
    });
  }

  close() { this.closed = true; if (this.ws) this.ws.close(); }
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto", style: "short" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function timeAgo(date, now = Date.now()) {
  const seconds = (date.getTime() - now) / 1000;
  const abs = Math.abs(seconds);
  if (abs < 45) return "just now";
  if (abs < 3600) return relative.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return relative.format(Math.round(seconds / 3600), "hour");
  if (abs < 7 * 86400) return relative.format(Math.round(seconds / 86400), "day");
  return absolute.format(date);
}

// <time datetime=... data-relative> elements: "3 min. ago" in the browser's language, the
// exact local date and time on hover; refreshed every 30 s.
export function localizeTimes(root = document) {
  const update = () => {
    for (const el of root.querySelectorAll("time[data-relative]")) {
      const date = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(date.getTime())) continue;
      el.textContent = timeAgo(date);
      el.title = absolute.format(date);
    }
  };
  update();
  return setInterval(update, 30000);
}

export function formatElapsed(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  const m = Math.floor(seconds / 60), s = seconds % 60;
  return m ? `${m}:${String(s).padStart(2, "0")}` : `${s} s`;
}

// el("p", {class: "hint", id: "x"}, "text", child, ...)
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// "$0.80": an amount in USD as the pages show it.
export function money(value) {
  return `$${Number(value).toFixed(2)}`;
}

// What a job costs, in words that never pass an estimate off as a charge: a finished video
// says what was charged, a job on its way what it should cost, and a failed or cancelled job
// that the studio recorded no charge (with what a retry should cost).
export function costText(job) {
  const known = (value) => value !== null && value !== undefined;
  const estimate = known(job.estimated_cost) ? Number(job.estimated_cost) : null;
  if (job.status === "completed") {
    if (known(job.actual_cost)) return Number(job.actual_cost) ? `${money(job.actual_cost)} charged` : "no charge";
    return estimate ? `est. ${money(estimate)}` : "";
  }
  if (estimate === null) return "";
  if (!FINISHED.has(job.status)) return estimate ? `est. ${money(estimate)}` : "no charge";
  return estimate ? `no charge recorded (a retry: est. ${money(estimate)})` : "";
}

// Where a submitted job waits at its provider: "next in line", "3 jobs ahead of it".
export function queueText(position) {
  if (position === null || position === undefined) return "";
  if (position === 0) return "next in line at the provider";
  return `${position} ${position === 1 ? "job" : "jobs"} ahead of it at the provider`;
}
