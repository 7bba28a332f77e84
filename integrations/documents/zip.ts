/**
 * Reading a zip's central directory without inflating anything: entry names (to recognise DOCX)
 * and declared sizes (to refuse zip bombs before a parser inflates them). Declared sizes can lie;
 * the extraction thread's heap cap is the backstop for those.
 */

export interface ZipEntry {
  name: string;
  compressedSize: number;
  uncompressedSize: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const CENTRAL_SIGNATURE = 0x02014b50;

export function zipEntries(bytes: Uint8Array): ZipEntry[] | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // The end-of-central-directory record is in the last 22 + 65535 (comment) bytes.
  const stop = Math.max(0, bytes.length - 22 - 0xffff);
  let eocd = -1;
  for (let i = bytes.length - 22; i >= stop; i--) {
    if (view.getUint32(i, true) === EOCD_SIGNATURE) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) return undefined;
  const count = view.getUint16(eocd + 10, true);
  let offset = view.getUint32(eocd + 16, true);
  const entries: ZipEntry[] = [];
  const decoder = new TextDecoder();
  for (let n = 0; n < count; n++) {
    if (offset + 46 > bytes.length || view.getUint32(offset, true) !== CENTRAL_SIGNATURE) return undefined;
    const compressedSize = view.getUint32(offset + 20, true);
    const uncompressedSize = view.getUint32(offset + 24, true);
    const nameLength = view.getUint16(offset + 28, true);
    const extraLength = view.getUint16(offset + 30, true);
    const commentLength = view.getUint16(offset + 32, true);
    entries.push({ name: decoder.decode(bytes.subarray(offset + 46, offset + 46 + nameLength)), compressedSize, uncompressedSize });
    offset += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

export function zipEntryNames(bytes: Uint8Array): string[] | undefined {
  return zipEntries(bytes)?.map((e) => e.name);
}

export interface ZipLimits {
  /** Total declared uncompressed size. */
  maxUncompressedBytes: number;
  /** Uncompressed / compressed, over the whole archive. */
  maxRatio: number;
  maxEntries: number;
}

/** Why this zip must not be inflated, or undefined when its declared sizes are within limits. */
export function zipBombReason(bytes: Uint8Array, limits: ZipLimits): string | undefined {
  const entries = zipEntries(bytes);
  if (!entries) return 'the archive is corrupt (no readable central directory)';
  if (entries.length > limits.maxEntries) return `the archive has ${entries.length} entries (at most ${limits.maxEntries})`;
  let compressed = 0;
  let uncompressed = 0;
  for (const e of entries) {
    // 0xffffffff marks ZIP64 sizes, which a DOCX never needs.
    if (e.uncompressedSize === 0xffffffff || e.compressedSize === 0xffffffff) return 'the archive uses ZIP64 sizes';
    compressed += e.compressedSize;
    uncompressed += e.uncompressedSize;
  }
  if (uncompressed > limits.maxUncompressedBytes) return `the archive expands to ${uncompressed} bytes (at most ${limits.maxUncompressedBytes})`;
  if (compressed > 0 && uncompressed / compressed > limits.maxRatio) return `the archive expands ${Math.round(uncompressed / compressed)}-fold (a zip bomb?)`;
  return undefined;
}
