// The Realtime page's settings form (static/studio/realtime.js): each value read and checked
// against the limits the page was rendered with; a bad one is named under its field
// (aria-invalid, aria-describedby) before anything is sent; settings the socket refuses are
// named the same way, in the form's words (refusal).

// The socket's parameters (Krea's names) -> the form's fields, so a refused one is named in the
// page's words under its field; strength and start_frame depend on the mode (fieldOf).
const WIRE_FIELDS = { prompt: "prompt", width: "width", height: "height", num_blocks: "blocks",
                      num_denoising_steps: "steps", seed: "seed", webcam_fps: "input_fps" };

export class SettingsForm {
  constructor(form, fields, limits) {
    this.form = form;
    this.fields = fields;  // name -> input element
    this.limits = limits;  // name -> {minimum, maximum, default, step}
  }

  // Shows (or clears, for "") the error under a field; true when there is none.
  error(name, message) {
    const input = this.fields[name];
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

  // A field's limits as the page was rendered with them, else its input's own min and max.
  limitsOf(name) {
    const input = this.fields[name];
    return this.limits[name] || { minimum: Number(input.min), maximum: Number(input.max) };
  }

  label(name) {
    const label = this.form.querySelector(`label[for="${this.fields[name].id}"]`);
    return label ? label.textContent.trim() : name;
  }

  // {ok, value}: a whole number within the field's limits (null when optional and empty).
  integer(name, { optional = false } = {}) {
    const raw = this.fields[name].value.trim();
    const { minimum, maximum } = this.limitsOf(name);
    if (raw === "" && optional) { this.error(name, ""); return { ok: true, value: null }; }
    const value = Number(raw);
    if (raw === "" || !Number.isInteger(value) || value < minimum || value > maximum) {
      this.error(name, `${this.label(name)} must be a whole number from ${minimum} to ${maximum}.`);
      return { ok: false };
    }
    this.error(name, "");
    return { ok: true, value };
  }

  // {ok, value}: a number within the field's limits.
  number(name) {
    const { minimum, maximum } = this.limitsOf(name);
    const raw = this.fields[name].value.trim();
    const value = Number(raw);
    if (raw === "" || !(value >= minimum && value <= maximum)) {
      this.error(name, `${this.label(name)} must be a number from ${minimum} to ${maximum}.`);
      return { ok: false };
    }
    this.error(name, "");
    return { ok: true, value };
  }

  // A width or height: the nearest multiple of the input's step (the chosen backend's
  // multiple) within the limits; the field shows it.
  size(name) {
    const input = this.fields[name];
    const raw = input.value.trim();
    const { minimum, maximum } = this.limits[name];
    const step = Number(input.step) || this.limits[name].step;
    const value = Number(raw);
    if (raw === "" || !Number.isFinite(value)) {
      this.error(name, `${this.label(name)} must be a number of pixels from ${minimum} to ${maximum}.`);
      return { ok: false };
    }
    const snapped = Math.min(Math.max(Math.round(value / step) * step, minimum), maximum);
    if (snapped !== value) input.value = String(snapped);
    this.error(name, "");
    return { ok: true, value: snapped };
  }

  // The field a parameter of the socket belongs to (`pictures`: canvas or webcam mode, whose
  // strength is the input strength and whose start frame is the drawing or the camera), or null.
  fieldOf(name, pictures) {
    if (name === "strength") return pictures ? "input_strength" : "strength";
    if (name === "start_frame") return pictures ? null : "start_frame";
    return WIRE_FIELDS[name] || null;
  }

  // A refusal from the socket in the page's words, {text, entries: [{field, wire, text}]}: Krea's
  // list ({"error": [{loc, msg}], "message"}) entry by entry, each named by its field's label
  // ("num_denoising_steps must be ..." -> "Inference steps must be ..."), or the text of
  // {"error": "..."} (a refusal not about a field, the end of a stream).
  refusal(data, pictures) {
    if (!Array.isArray(data.error)) {
      return { text: typeof data.error === "string" ? data.error : JSON.stringify(data.error), entries: [] };
    }
    const entries = data.error.filter((entry) => entry && typeof entry.msg === "string").map((entry) => {
      const wire = Array.isArray(entry.loc) && entry.loc.length ? String(entry.loc[0]) : "";
      const field = this.fieldOf(wire, pictures);
      const label = field && this.fields[field] ? this.label(field) : "";
      const text = !label ? entry.msg : entry.msg.startsWith(`${wire} `) ? `${label}${entry.msg.slice(wire.length)}`
        : `${label}: ${entry.msg}`;
      return { field, wire, text };
    });
    const text = entries.length ? entries.map((entry) => entry.text).join("; ") : (data.message || "refused");
    return { text, entries };
  }

  prompt() {
    const input = this.fields.prompt;
    const prompt = input.value.trim();
    if (!prompt) { this.error("prompt", `${this.label("prompt")} is required.`); return { ok: false }; }
    const max = Number(input.getAttribute("maxlength"));
    if (prompt.length > max) {
      this.error("prompt", `${this.label("prompt")} may be at most ${max} characters.`);
      return { ok: false };
    }
    this.error("prompt", "");
    return { ok: true, value: prompt };
  }
}
