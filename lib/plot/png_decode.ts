/**
 * A small PNG reader (8-bit greyscale/RGB/RGBA, non-interlaced, as browsers' screenshots and
 * our own encoder write) and image statistics, so tests can check that a screenshot is not
 * blank. Inflation uses the platform's `DecompressionStream("deflate")` (zlib).
 *
 * @module
 */

/** A decoded image: RGBA bytes, row-major. */
export interface RgbaImage {
  width: number;
  height: number;
  rgba: Uint8Array;
}

async function inflate(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as BlobPart]).stream().pipeThrough(
    new DecompressionStream("deflate"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Undo the per-row filters in place; `bpp` bytes per pixel. */
function unfilter(raw: Uint8Array, width: number, height: number, bpp: number): Uint8Array {
  const stride = width * bpp, out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], src = y * (stride + 1) + 1, dst = y * stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? out[dst + x - bpp] : 0, b = y ? out[dst - stride + x] : 0;
      const c = x >= bpp && y ? out[dst - stride + x - bpp] : 0;
      const pred = f === 0
        ? 0
        : f === 1
        ? a
        : f === 2
        ? b
        : f === 3
        ? (a + b) >> 1
        : f === 4
        ? paeth(a, b, c)
        : NaN;
      if (Number.isNaN(pred)) throw new RangeError(`PNG: bad filter type ${f} in row ${y}`);
      out[dst + x] = (raw[src + x] + pred) & 255;
    }
  }
  return out;
}

/**
 * Decode PNG bytes.
 *
 * @throws RangeError naming what is unsupported (bit depth, colour type, interlace)
 */
export async function decodePng(png: Uint8Array): Promise<RgbaImage> {
  const sig = [137, 80, 78, 71, 13, 10, 26, 10];
  if (png.length < 8 || sig.some((b, i) => png[i] !== b)) {
    throw new RangeError("not a PNG: the 8-byte signature is missing");
  }
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  let width = 0, height = 0, depth = 0, color = 0, interlace = 0;
  const idat: Uint8Array[] = [];
  for (let at = 8; at + 8 <= png.length;) {
    const len = dv.getUint32(at), type = String.fromCharCode(...png.subarray(at + 4, at + 8));
    const body = png.subarray(at + 8, at + 8 + len);
    if (type === "IHDR") {
      width = dv.getUint32(at + 8);
      height = dv.getUint32(at + 12);
      [depth, color, , , interlace] = body.subarray(8, 13);
    } else if (type === "IDAT") idat.push(body);
    else if (type === "IEND") break;
    at += 12 + len;
  }
  const channels = ({ 0: 1, 2: 3, 6: 4 } as Record<number, number>)[color];
  if (depth !== 8 || !channels || interlace) {
    throw new RangeError(
      `PNG: only 8-bit grey/RGB/RGBA non-interlaced images are read (bit depth ${depth}, ` +
        `colour type ${color}, interlace ${interlace})`,
    );
  }
  const joined = new Uint8Array(idat.reduce((n, c) => n + c.length, 0));
  idat.reduce((o, c) => (joined.set(c, o), o + c.length), 0);
  const px = unfilter(await inflate(joined), width, height, channels);
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    for (let k = 0; k < 3; k++) rgba[4 * i + k] = px[i * channels + (channels === 1 ? 0 : k)];
    rgba[4 * i + 3] = channels === 4 ? px[i * channels + 3] : 255;
  }
  return { width, height, rgba };
}

/** Luminance statistics: mean and variance over pixels (0–255), and the non-white share. */
export function imageStats(img: RgbaImage): { mean: number; variance: number; inked: number } {
  const n = img.width * img.height;
  let s = 0, s2 = 0, inked = 0;
  for (let i = 0; i < n; i++) {
    const y = 0.299 * img.rgba[4 * i] + 0.587 * img.rgba[4 * i + 1] + 0.114 * img.rgba[4 * i + 2];
    s += y;
    s2 += y * y;
    if (y < 240) inked++;
  }
  const mean = s / n;
  return { mean, variance: s2 / n - mean * mean, inked: inked / n };
}
