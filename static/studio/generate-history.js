// The Video Generation page's history: your recent jobs under the form, newest first, each with
// its prompt, model, status (live from /ws/events/), video, cost, and retry / reuse / delete.
// Everything goes through the jobs API (GET /api/jobs/?limit=, POST /api/jobs/<id>/retry,
// DELETE /api/jobs/<id>/); the gallery keeps the rest.
import { api, costText, el, FINISHED, localizeTimes, queueText, timeAgo } from "./studio.js";

// The play button swaps the thumbnail for the video, playing (without scripts it is a link to the file).
function play(link) {
  const player = link.closest(".player");
  const video = el("video", { controls: true, autoplay: true, playsinline: true, src: player.dataset.src,
                              "aria-label": link.getAttribute("aria-label").replace(/^Play: /, "") });
  const thumbnail = player.querySelector("img");
  if (thumbnail) video.poster = thumbnail.src;
  player.replaceChildren(video);
  video.focus();
}

export class History {
  // list: the <ol>; models: id -> the catalog's description (this page's models); statuses:
  // status -> its words; errors: error_type -> {headline}; limit: how many to keep listed.
  // onShow(job) shows a job in the Result panel, onRetried(job) follows a retry there,
  // onDeleted(id) lets go of a deleted job.
  constructor(list, { models, statuses, errors, limit, empty, announce, onShow, onRetried, onDeleted }) {
    Object.assign(this, { list, models, statuses, errors, limit, empty, announce, onShow, onRetried, onDeleted });
    this.jobs = new Map();  // id -> the job as the API answered it, updated by events
    list.addEventListener("click", (event) => this.clicked(event));
    localizeTimes(list);
  }

  async load() {
    const r = await api(`/api/jobs/?limit=${this.limit}`);
    if (!r.ok) { this.say(`Your recent generations could not be loaded: ${r.data.error}`); return; }
    for (const job of r.data.results.slice().reverse()) this.put(job);
    this.showEmpty();
  }

  // Add a job or replace its entry (newer states only), keeping the list newest first.
  put(job) {
    const known = this.jobs.get(job.id);
    if (known && known.status_sequence > job.status_sequence) return;
    this.jobs.set(job.id, job);
    const item = this.render(job);
    const old = this.item(job.id);
    if (old) {
      const focused = old.contains(document.activeElement) ? document.activeElement.dataset.action : null;
      old.replaceWith(item);
      if (focused) (item.querySelector(`[data-action="${focused}"]`) || item.querySelector("button, a")).focus();
    } else {
      const created = Date.parse(job.created_at);
      const later = [...this.list.children].find((li) => Date.parse(this.jobs.get(li.dataset.job).created_at) < created);
      this.list.insertBefore(item, later || null);
      while (this.list.children.length > this.limit) this.drop(this.list.lastElementChild.dataset.job);
    }
    this.showEmpty();
  }

  item(id) { return document.getElementById(`history-${id}`); }

  drop(id) {
    const item = this.item(id);
    if (item) item.remove();
    this.jobs.delete(id);
    this.showEmpty();
  }

  showEmpty() { this.empty.hidden = this.list.children.length > 0; }

  say(text) { this.announce.textContent = text; }

  render(job) {
    const m = this.models.get(job.model_id);
    const titleId = `history-title-${job.id}`;
    const prompt = job.input && typeof job.input.prompt === "string" ? job.input.prompt : "";
    // Its thumbnail until it is played (as in the gallery): no video element per entry until one is wanted.
    const src = `/api/jobs/${job.id}/video`;
    const media = job.status === "completed" && job.video
      ? el("div", { class: "player", "data-src": src },
           job.video.thumbnail ? el("img", { src: job.video.thumbnail, alt: "", loading: "lazy", width: 320, height: 180 }) : null,
           el("a", { class: "play", href: src, "aria-label": `Play: ${prompt ? prompt.slice(0, 80) : "the video"}` },
              el("span", { "aria-hidden": "true" }, "▶")))
      : el("div", { class: `placeholder status-${job.status}`, "aria-hidden": "true" }, el("span", {}, this.statuses[job.status] || job.status));
    const meta = el("p", { class: "meta" },
      el("span", { class: `badge status-${job.status}`, "data-role": "status" }, this.statuses[job.status] || job.status), " ",
      m ? m.title : job.model_id, " · ",
      el("time", { datetime: job.created_at, "data-relative": true }, timeAgo(new Date(job.created_at))));
    const cost = costText(job);
    if (cost) meta.append(" · ", el("span", { "data-role": "cost" }, cost));
    const body = el("div", { class: "body" },
      el("h3", { class: "prompt", id: titleId, title: prompt.length > 140 ? prompt : null },
         prompt ? (prompt.length > 140 ? `${prompt.slice(0, 139)}…` : prompt) : "(no prompt)"),
      meta);
    if (!FINISHED.has(job.status)) {
      const progress = el("progress", { max: 1, "data-role": "progress", "aria-labelledby": titleId });
      if (job.progress > 0) progress.value = job.progress;
      body.append(el("div", { class: "live" }, progress, el("span", { class: "hint", "data-role": "live" }, queueText(job.queue_position))));
    }
    if (job.status === "failed") {
      const headline = (this.errors[job.error_type] || { headline: "The job failed" }).headline;
      const message = job.error_message ? `: ${job.error_message.length > 200 ? `${job.error_message.slice(0, 199)}…` : job.error_message}` : ".";
      body.append(el("p", { class: "error", "data-role": "error" }, `${headline}${message}`));
    }
    const described = { "aria-describedby": titleId };
    const actions = el("div", { class: "actions" },
      el("button", { type: "button", class: "small secondary", "data-action": "show", ...described }, "Show"));
    if (job.status === "failed" || job.status === "cancelled") {
      actions.append(el("button", { type: "button", class: "small", "data-action": "retry", ...described }, "Retry"));
    }
    if (m) actions.append(el("a", { class: "button small secondary", href: `${location.pathname}?from=${job.id}`, "data-action": "reuse", ...described }, "Reuse settings"));
    actions.append(el("button", { type: "button", class: "small danger", "data-action": "delete", ...described }, "Delete"));
    body.append(actions);
    return el("li", { class: "history-item", id: `history-${job.id}`, "data-job": job.id, "data-status": job.status },
              el("div", { class: "media" }, media), body);
  }

  async clicked(event) {
    const link = event.target.closest("a.play");
    if (link) { event.preventDefault(); play(link); return; }
    const button = event.target.closest("[data-action]");
    if (!button || button.dataset.action === "reuse") return;  // reuse is a plain link
    const id = button.closest(".history-item").dataset.job;
    const job = this.jobs.get(id);
    const title = job.input && job.input.prompt ? `“${job.input.prompt.slice(0, 80)}”` : "this job";
    if (button.dataset.action === "show") { this.onShow(job); return; }
    if (button.dataset.action === "delete" && !window.confirm(`Delete ${title} and its video? This cannot be undone.`)) return;
    button.disabled = true;
    if (button.dataset.action === "retry") {
      const r = await api(`/api/jobs/${id}/retry`, { method: "POST" });
      button.disabled = false;
      if (!r.ok) { this.say(`Could not retry ${title}: ${r.data.error}`); return; }
      this.put(r.data);
      this.say(`Started ${title} again as a new job.`);
      this.onRetried(r.data);
    } else {
      const r = await api(`/api/jobs/${id}/`, { method: "DELETE" });
      button.disabled = false;
      if (!r.ok && r.status !== 404) { this.say(`Could not delete ${title}: ${r.data.error}`); return; }
      const next = this.item(id) && (this.item(id).nextElementSibling || this.item(id).previousElementSibling);
      this.drop(id);
      if (next) next.querySelector("button").focus();
      this.say(`Deleted ${title}.`);
      this.onDeleted(id);
    }
  }

  // One event of /ws/events/: live status and progress here, the finished job fetched again
  // (its video, cost and error), a job started elsewhere (another tab, the API) added.
  async onEvent(event) {
    if (event.type === "job.deleted") { this.drop(event.job); return; }
    if (event.type !== "job.status" && event.type !== "job.progress") return;
    const job = this.jobs.get(event.job);
    if (!job) {
      if (event.type === "job.status" && this.models.has(event.model)) await this.refresh(event.job);
      return;
    }
    if (typeof event.sequence === "number" && event.sequence < job.status_sequence) return;
    if (FINISHED.has(event.status)) { await this.refresh(event.job); return; }
    Object.assign(job, { status: event.status, progress: event.progress, queue_position: event.queue_position,
                         status_sequence: event.sequence ?? job.status_sequence });
    const item = this.item(job.id);
    if (item.dataset.status !== job.status) { this.put({ ...job }); return; }
    const progress = item.querySelector('[data-role="progress"]');
    if (progress && job.progress > 0) progress.value = job.progress;
    const live = item.querySelector('[data-role="live"]');
    if (live) live.textContent = queueText(job.queue_position);
  }

  async refresh(id) {
    const r = await api(`/api/jobs/${id}/`);
    if (r.ok) this.put(r.data);
    else if (r.status === 404) this.drop(id);
  }
}
