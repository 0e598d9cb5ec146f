// A small msgpack encoder for the realtime protocol's parameter maps:
// maps, strings, integers, floats, booleans, null and bytes (Uint8Array).
export function encode(value) {
  const out = [];
  const text = new TextEncoder();
  const u8 = (n) => out.push(n & 0xff);
  const u16 = (n) => { u8(n >> 8); u8(n); };
  const u32 = (n) => { u8(n >>> 24); u8(n >>> 16); u8(n >>> 8); u8(n); };
  const bytes = (b) => { for (const x of b) out.push(x); };
  function write(v) {
    if (v === null || v === undefined) return u8(0xc0);
    if (v === true) return u8(0xc3);
    if (v === false) return u8(0xc2);
    if (typeof v === "number") {
      if (Number.isInteger(v) && v >= 0) {
        if (v < 0x80) return u8(v);
        if (v < 0x100) { u8(0xcc); return u8(v); }
        if (v < 0x10000) { u8(0xcd); return u16(v); }
        if (v < 0x100000000) { u8(0xce); return u32(v); }
      } else if (Number.isInteger(v) && v >= -32) {
        return u8(0xe0 | (v + 32));
      } else if (Number.isInteger(v) && v >= -0x80000000) {
        u8(0xd2); return u32(v >>> 0);
      }
      const view = new DataView(new ArrayBuffer(8)); view.setFloat64(0, v);
      u8(0xcb); return bytes(new Uint8Array(view.buffer));
    }
    if (typeof v === "string") {
      const b = text.encode(v);
      if (b.length < 32) u8(0xa0 | b.length);
      else if (b.length < 0x100) { u8(0xd9); u8(b.length); }
      else if (b.length < 0x10000) { u8(0xda); u16(b.length); }
      else { u8(0xdb); u32(b.length); }
      return bytes(b);
    }
    if (v instanceof Uint8Array) {
      if (v.length < 0x100) { u8(0xc4); u8(v.length); }
      else if (v.length < 0x10000) { u8(0xc5); u16(v.length); }
      else { u8(0xc6); u32(v.length); }
      return bytes(v);
    }
    if (typeof v === "object") {
      const entries = Object.entries(v).filter(([, x]) => x !== undefined);
      if (entries.length < 16) u8(0x80 | entries.length); else { u8(0xde); u16(entries.length); }
      for (const [k, x] of entries) { write(k); write(x); }
      return;
    }
    throw new TypeError(`cannot msgpack ${typeof v}`);
  }
  write(value);
  return new Uint8Array(out);
}
