// Just enough of the Weir wire format (protocol.md §Framing, §HELLO, §PUBLISH, §SUBSCRIBE,
// §ACK) for the browser tests: encoders, and a decoder of whole frames. Plain JS that runs in
// Node and, as source text, in the page.

export function frame(op, body) {
  const out = new Uint8Array(6 + body.length);
  new DataView(out.buffer).setUint32(0, 2 + body.length);
  out[4] = 0x01;
  out[5] = op;
  out.set(body, 6);
  return out;
}

const str8 = (text) => {
  const bytes = new TextEncoder().encode(text);
  return [bytes.length, ...bytes];
};

const u64 = (n) => {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return [...out];
};

export const hello = (name) => frame(0x01, Uint8Array.from([0, 0, 0, 0, 0, ...str8(name)]));
export const subscribeAll = (queue) => frame(0x03, Uint8Array.from([0x01, ...str8(queue), 0]));
export const publish = (seq, queue, event, payload) =>
  frame(0x02, Uint8Array.from([...u64(seq), 0, ...str8(queue), ...str8(event),
    ...new TextEncoder().encode(payload)]));
export const ack = (upTo) => frame(0x05, Uint8Array.from([...u64(upTo), 0, 0]));

/** Splits whole frames off the front of `buffer`: [{op, body}], rest. */
export function decodeFrames(buffer) {
  const frames = [];
  let at = 0;
  while (buffer.length - at >= 4) {
    const length = new DataView(buffer.buffer, buffer.byteOffset + at).getUint32(0);
    if (buffer.length - at < 4 + length) break;
    frames.push({ op: buffer[at + 5], body: buffer.subarray(at + 6, at + 4 + length) });
    at += 4 + length;
  }
  return [frames, buffer.subarray(at)];
}
