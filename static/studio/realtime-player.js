// The Realtime page's playback (static/studio/realtime.js): frames decoded into a buffer and
// drawn on the output canvas at the playback FPS, and the canvas recorded as WebM for DL.

// A queue of frames in arrival order; each is decoded (createImageBitmap) as it arrives and
// drawn when its turn comes, one every 1/fps s. A full buffer skips its oldest frame.
export class Player {
  constructor(canvas, capacity) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.capacity = capacity;
    this.queue = [];
    this.timer = null;
    this.shownTimes = [];
    this.onDrawn = () => {};
    this.onIdle = () => {};
  }

  // Queue one JPEG; returns how many old frames were skipped to make room.
  push(blob) {
    const item = { bitmap: null, failed: false };
    item.ready = createImageBitmap(blob).then(
      (bitmap) => { if (item.discarded) bitmap.close(); else item.bitmap = bitmap; },
      () => { item.failed = true; });
    this.queue.push(item);
    let skipped = 0;
    while (this.queue.length > this.capacity) { this.discard(this.queue.shift()); skipped += 1; }
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
    this.ctx.drawImage(head.bitmap, 0, 0, this.canvas.width, this.canvas.height);
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

const RECORDER_TYPES = ["video/webm;codecs=vp9", "video/webm;codecs=vp8", "video/webm"];

// What was drawn on a canvas, as WebM (MediaRecorder on canvas.captureStream()).
export class Recorder {
  constructor(canvas) {
    this.canvas = canvas;
    this.chunks = [];
    this.recorder = null;
    this.done = null;
  }

  // Starts once; false when this browser cannot record a canvas.
  start() {
    if (this.recorder || typeof MediaRecorder === "undefined" || !this.canvas.captureStream) return false;
    const mimeType = RECORDER_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
    if (!mimeType) return false;
    this.recorder = new MediaRecorder(this.canvas.captureStream(), { mimeType });
    this.recorder.addEventListener("dataavailable", (event) => { if (event.data.size) this.chunks.push(event.data); });
    this.done = new Promise((resolve) => this.recorder.addEventListener("stop", () => resolve(), { once: true }));
    this.recorder.start(1000);
    return true;
  }

  cancel() {
    if (this.recorder && this.recorder.state !== "inactive") this.recorder.stop();
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
