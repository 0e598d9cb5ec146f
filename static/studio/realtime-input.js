// The Realtime page's picture input (static/studio/realtime.js), as the seed app has it: in
// canvas mode a drawing pad, in webcam mode the camera. Its first picture is the stream's
// start_frame; while the stream runs, pictures go out as {image, strength, timestamp} at the
// input FPS (docs/realtime.md).

// One JPEG of `source` (a canvas or a playing <video>) at width x height, centre-cropped to
// fill it, as bytes.
export async function jpegOf(source, width, height, quality = 0.85) {
  const sourceWidth = source.videoWidth || source.width;
  const sourceHeight = source.videoHeight || source.height;
  if (!sourceWidth || !sourceHeight) throw new Error("the picture has no size yet");
  const scratch = document.createElement("canvas");
  scratch.width = width;
  scratch.height = height;
  const scale = Math.max(width / sourceWidth, height / sourceHeight);
  const cropWidth = width / scale, cropHeight = height / scale;
  scratch.getContext("2d").drawImage(source, (sourceWidth - cropWidth) / 2, (sourceHeight - cropHeight) / 2,
                                     cropWidth, cropHeight, 0, 0, width, height);
  const blob = await new Promise((done) => scratch.toBlob(done, "image/jpeg", quality));
  if (!blob) throw new Error("this browser could not encode the picture");
  return new Uint8Array(await blob.arrayBuffer());
}

// A canvas to draw on with a pointer (mouse, pen, finger), or to put a picture on.
export class DrawingPad {
  constructor(canvas, { colour, size }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.colour = colour;  // inputs read at each stroke
    this.size = size;
    this.last = null;
    this.strokes = 0;
    this.clear();
    canvas.addEventListener("pointerdown", (event) => this.down(event));
    canvas.addEventListener("pointermove", (event) => this.move(event));
    for (const type of ["pointerup", "pointercancel", "pointerleave"]) {
      canvas.addEventListener(type, () => { this.last = null; });
    }
  }

  clear() {
    this.ctx.fillStyle = "#000";
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  // A new size keeps the drawing, scaled to it.
  resize(width, height) {
    if (this.canvas.width === width && this.canvas.height === height) return;
    const copy = document.createElement("canvas");
    copy.width = this.canvas.width;
    copy.height = this.canvas.height;
    copy.getContext("2d").drawImage(this.canvas, 0, 0);
    this.canvas.width = width;
    this.canvas.height = height;
    this.clear();
    this.ctx.drawImage(copy, 0, 0, width, height);
  }

  // A picture file over the whole pad, centre-cropped to fill it.
  async place(file) {
    const bitmap = await createImageBitmap(file);
    const { width, height } = this.canvas;
    const scale = Math.max(width / bitmap.width, height / bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    this.ctx.drawImage(bitmap, (width - w) / 2, (height - h) / 2, w, h);
    bitmap.close();
  }

  point(event) {
    const box = this.canvas.getBoundingClientRect();
    return { x: ((event.clientX - box.left) / box.width) * this.canvas.width,
             y: ((event.clientY - box.top) / box.height) * this.canvas.height };
  }

  down(event) {
    if (event.button !== 0) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this.last = this.point(event);
    this.strokes += 1;
    this.line(this.last, this.last);
  }

  move(event) {
    if (!this.last) return;
    const next = this.point(event);
    this.line(this.last, next);
    this.last = next;
  }

  line(from, to) {
    const ctx = this.ctx;
    ctx.strokeStyle = this.colour.value;
    ctx.lineWidth = Number(this.size.value) * (this.canvas.width / 832);  // the same look at any size
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x + 0.01, to.y);
    ctx.stroke();
  }
}

// The camera in a <video>, asked for once per visit to webcam mode.
export class Webcam {
  constructor(video) {
    this.video = video;
    this.stream = null;
    this.error = "";
  }

  get ready() {
    return Boolean(this.stream && this.video.readyState >= 2 && this.video.videoWidth);
  }

  // Starts the camera (near width x height); resolves to "" or what went wrong, in words.
  async start(width, height) {
    if (this.stream) return "";
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.error = "this browser gives pages no camera (it needs https or localhost)";
      return this.error;
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: width }, height: { ideal: height } }, audio: false });
    } catch (error) {
      this.error = error.name === "NotAllowedError" ? "the browser was not allowed to use the camera"
        : error.name === "NotFoundError" ? "no camera was found" : `the camera failed (${error.name || error})`;
      return this.error;
    }
    this.error = "";
    this.video.srcObject = this.stream;
    await this.video.play().catch(() => {});
    if (!this.video.videoWidth) {
      await new Promise((done) => {
        this.video.addEventListener("loadeddata", done, { once: true });
        setTimeout(done, 3000);
      });
    }
    return "";
  }

  stop() {
    if (!this.stream) return;
    for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    this.video.srcObject = null;
  }
}

// Pictures to the stream at the input FPS: `capture()` makes one (JPEG bytes), `send(bytes)`
// sends it and says whether it went. A picture still being made, or a socket whose send
// buffer is full, skips the tick rather than queueing stale pictures.
export class InputFeed {
  constructor(capture, send, busy) {
    this.capture = capture;
    this.send = send;
    this.busy = busy;  // () => true while the socket has too much unsent
    this.timer = null;
    this.working = false;
    this.sent = 0;
    this.skipped = 0;
    this.onSent = () => {};
  }

  get running() { return this.timer !== null; }

  start(fps) {
    clearInterval(this.timer);
    this.timer = setInterval(() => this.tick(), 1000 / fps);
  }

  async tick() {
    if (this.working || this.busy()) { this.skipped += 1; return; }
    this.working = true;
    try {
      const bytes = await this.capture();
      if (this.running && this.send(bytes)) {
        this.sent += 1;
        this.onSent(this.sent);
      }
    } catch {
      this.skipped += 1;  // a camera frame not ready yet: the next tick tries again
    } finally {
      this.working = false;
    }
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }
}
