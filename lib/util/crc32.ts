/**
 * CRC-32 (IEEE 802.3, the checksum ZIP uses), slicing-by-8.
 *
 * @module
 */
const U32 = 0xffffffff;

let crcTables: Uint32Array[] | undefined;

/** Eight 256-entry tables for slicing-by-8 (table k: the CRC of a byte followed by k zeros). */
function tables(): Uint32Array[] {
  if (crcTables) return crcTables;
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[0][n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) t[k][n] = (t[k - 1][n] >>> 8) ^ t[0][t[k - 1][n] & 0xff];
  }
  return (crcTables = t);
}

/**
 * CRC-32 (IEEE, as ZIP uses) of `bytes`, continuing from `crc` when given (so it can run over
 * a stream chunk by chunk). Slicing-by-8: about 1 GB/s.
 */
export function crc32(bytes: Uint8Array, crc = 0): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = tables();
  let c = (crc ^ U32) >>> 0, i = 0;
  const n8 = bytes.length - 8;
  for (; i <= n8; i += 8) {
    const a = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    c = t7[a & 0xff] ^ t6[(a >>> 8) & 0xff] ^ t5[(a >>> 16) & 0xff] ^ t4[a >>> 24] ^
      t3[bytes[i + 4]] ^ t2[bytes[i + 5]] ^ t1[bytes[i + 6]] ^ t0[bytes[i + 7]];
  }
  for (; i < bytes.length; i++) c = t0[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ U32) >>> 0;
}
