// The one decoder for lmscope's binary envelope {data, dtype, shape[, scale]}.
// Jupyter hands `data` over as a DataView, Colab and static pages as an ArrayBuffer or a
// Uint8Array: all three are read honouring byteOffset/byteLength, and copied so that typed
// arrays are always aligned.

/** @typedef {{data: DataView|ArrayBuffer|Uint8Array, dtype: string, shape: number[], scale?: number}} Envelope */

const TYPED = {
  uint8: Uint8Array,
  int8: Int8Array,
  uint16: Uint16Array,
  int16: Int16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
};

/**
 * Copy the envelope's bytes into a fresh, aligned ArrayBuffer.
 * @param {DataView|ArrayBuffer|Uint8Array} data
 * @returns {ArrayBuffer}
 */
export function bytesOf(data) {
  if (data instanceof ArrayBuffer) return data.slice(0);
  if (ArrayBuffer.isView(data)) {
    return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  }
  throw new TypeError("wire: data must be a DataView, ArrayBuffer or typed array");
}

/**
 * IEEE half-precision bits to a float (for browsers without Float16Array).
 * @param {number} h
 */
export function halfToFloat(h) {
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  let value;
  if (exponent === 0) value = mantissa * 2 ** -24;
  else if (exponent === 31) value = mantissa ? Number.NaN : Number.POSITIVE_INFINITY;
  else value = (1 + mantissa / 1024) * 2 ** (exponent - 15);
  return h & 0x8000 ? -value : value;
}

/**
 * float16 bytes as a Float32Array.
 * @param {ArrayBuffer} buffer
 * @param {boolean} [native] use Float16Array when the browser has it
 */
export function decodeHalf(buffer, native = typeof globalThis.Float16Array === "function") {
  if (native) return Float32Array.from(new globalThis.Float16Array(buffer));
  const bits = new Uint16Array(buffer);
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = halfToFloat(bits[i]);
  return out;
}

/**
 * Decode an envelope into `{values, shape}`. float16 becomes Float32Array; a uint8 envelope
 * with a `scale` (probabilities) stays uint8 and keeps its scale for the caller.
 * @param {Envelope|null|undefined} env
 * @returns {{values: ArrayLike<number>, shape: number[], scale: number}|null}
 */
export function decodeArray(env) {
  if (!env || env.data == null) return null;
  const buffer = bytesOf(env.data);
  let values;
  if (env.dtype === "float16") values = decodeHalf(buffer);
  else if (TYPED[env.dtype]) values = new TYPED[env.dtype](buffer);
  else throw new TypeError(`wire: unsupported dtype ${env.dtype}`);
  const expected = (env.shape || [values.length]).reduce((a, b) => a * b, 1);
  if (expected !== values.length) {
    throw new RangeError(`wire: ${values.length} values for shape [${env.shape}]`);
  }
  return { values, shape: env.shape || [values.length], scale: env.scale ?? 1 };
}

/**
 * Just the values (the common case).
 * @param {Envelope|null|undefined} env
 */
export function decode(env) {
  const result = decodeArray(env);
  return result ? result.values : null;
}

/**
 * Row `i` of a 2-D decoded array, without copying.
 * @param {{values: any, shape: number[]}} arr
 * @param {number} i
 */
export function row(arr, i) {
  const width = arr.shape[1];
  return arr.values.subarray(i * width, (i + 1) * width);
}
