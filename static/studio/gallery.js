// The Gallery page: cancel, retry and delete through the jobs API, and live status from
// /ws/events/ (a card whose job changes state is re-rendered by the server: /gallery/items/<id>/).
import { api, EventStream, FINISHED, localizeTimes, queueText } from "./studio.js";

const list = document.getElementById("gallery");
const announce = document.getElementById("gallery-status");
const STATUS_TEXT = Object.fromEntries(JSON.parse(document.getElementById("status-texts").textContent));

const card = (id) => document.getElementById(`item-${id}`);
const say = (text) => { announce.textContent = text; };

async function fetchCard(id) {
  const response = await fetch(`/gallery/items/${id}/`, { credentials: "same-origin" });
  if (!response.ok) return null;
  const template = document.createElement("template");
  template.innerHTML = (await response.text()).trim();
  return template.content.firstElementChild;
}

async function refresh(id) {
  const old = card(id);
  const fresh = await fetchCard(id);
  if (!old) return;
  if (!fresh) { old.remove(); return; }
  const focused = old.contains(document.activeElement) ? document.activeElement.dataset.action : null;
  old.replaceWith(fresh);
  localizeTimes(fresh);
  if (focused) (fresh.querySelector(`[data-action="${focused}"]`) || fresh.querySelector("a, button")).focus();
}

async function prepend(id) {
  if (card(id) || !list) return;
  const fresh = await fetchCard(id);
  if (!fresh || card(id)) return;
  list.prepend(fresh);
  localizeTimes(fresh);
  const empty = document.getElementById("empty");
  if (empty) empty.remove();
}

function removeCard(item) {
  const next = item.nextElementSibling || item.previousElementSibling;
  item.remove();
  if (next) (next.querySelector("button, a") || next).focus();
}

// A card shows its thumbnail; its play button swaps in the video (no video element per card
// until one is wanted). Without scripts the button is a link to the file.
function play(link) {
  const player = link.closest(".player");
  const video = document.createElement("video");
  video.controls = true;
  video.autoplay = true;
  video.playsInline = true;
  video.src = player.dataset.src;
  const thumbnail = player.querySelector("img");
  if (thumbnail) video.poster = thumbnail.src;
  video.setAttribute("aria-label", link.getAttribute("aria-label").replace(/^Play: /, ""));
  player.replaceChildren(video);
  video.focus();
}

if (list) list.addEventListener("click", async (event) => {
  const link = event.target.closest("a.play");
  if (link) { event.preventDefault(); play(link); return; }
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const item = button.closest(".item");
  const id = item.dataset.item;
  const title = item.querySelector(".prompt").textContent.trim();
  const action = button.dataset.action;
  if (action === "delete" && !window.confirm(`Delete “${title}” and its files? This cannot be undone.`)) return;
  button.disabled = true;
  let r;
  if (action === "cancel") r = await api(`/api/jobs/${id}/cancel`, { method: "POST" });
  else if (action === "retry") r = await api(`/api/jobs/${id}/retry`, { method: "POST" });
  else r = await api(item.dataset.deleteUrl, { method: "DELETE" });
  button.disabled = false;
  if (!r.ok) { say(`Could not ${action} “${title}”: ${r.data.error}`); return; }
  if (action === "cancel") { say(`Cancelled “${title}”.`); await refresh(id); }
  else if (action === "retry") { say(`Started “${title}” again as a new job.`); await prepend(r.data.id); }
  else { say(`Deleted “${title}”.`); removeCard(item); }
});

function updateLive(event) {
  const item = card(event.job);
  if (!item) return;
  const status = item.querySelector('[data-role="status"]');
  if (status && STATUS_TEXT[event.status]) status.textContent = STATUS_TEXT[event.status];
  item.dataset.status = event.status;
  const progress = item.querySelector('[data-role="progress"]');
  if (progress && event.progress > 0) progress.value = event.progress;
  const live = item.querySelector('[data-role="live"]');
  if (live) live.textContent = queueText(event.queue_position);
}

new EventStream((event) => {
  if (event.type === "job.deleted" || event.type === "video.deleted") {
    const item = card(event.job || event.video);
    if (item) item.remove();
    return;
  }
  if (event.type !== "job.status" && event.type !== "job.progress") return;
  const item = card(event.job);
  if (!item) {
    // A job started elsewhere (another tab, the API): shown when the page lists everything.
    if (event.type === "job.status" && list && !list.dataset.filtered) prepend(event.job);
    return;
  }
  if (FINISHED.has(event.status)) { if (item.dataset.status !== event.status) refresh(event.job); }
  else updateLive(event);
}, {
  // After a reconnect, cards of jobs that were running may have finished meanwhile.
  onOpen: () => {
    for (const item of document.querySelectorAll('.item[data-type="job"]')) {
      if (!FINISHED.has(item.dataset.status)) refresh(item.dataset.item);
    }
  },
});

localizeTimes();
