/**
 * The parts of HTTP range requests (RFC 9110 section 14) an OTA download
 * needs: one byte range, `If-Range` by strong ETag or date.
 */
export type RangeDecision =
  /** Serve the whole image with 200. */
  | { kind: 'full' }
  /** Serve `[start, end)` with 206. */
  | { kind: 'partial'; start: number; end: number }
  /** 416 with `Content-Range: bytes *\/size`. */
  | { kind: 'unsatisfiable' };

const FULL: RangeDecision = { kind: 'full' };

/**
 * Decides what to serve for a `Range` header. Following RFC 9110 14.2, a header
 * we cannot use (another unit, bad syntax) is ignored and the whole image
 * served; so are several ranges at once (devices ask for one; a multipart
 * answer would buy them nothing). A syntactically valid range that starts at
 * or beyond the end is unsatisfiable.
 */
export function decideRange(header: string | undefined, size: number): RangeDecision {
  if (header === undefined) return FULL;
  const match = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (!match) return FULL;
  const specs = (match[1] ?? '').split(',').map((spec) => spec.trim());
  if (specs.length !== 1) return FULL;
  const spec = /^(\d*)-(\d*)$/.exec(specs[0] ?? '');
  if (!spec) return FULL;
  const [, first = '', last = ''] = spec;
  if (first === '' && last === '') return FULL;
  if (first === '') {
    // A suffix: the last N bytes.
    const length = toInt(last);
    if (length === undefined) return FULL;
    if (length === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'partial', start: Math.max(0, size - length), end: size };
  }
  const start = toInt(first);
  if (start === undefined) return FULL;
  if (last === '') return start < size ? { kind: 'partial', start, end: size } : { kind: 'unsatisfiable' };
  const lastByte = toInt(last);
  if (lastByte === undefined || lastByte < start) return FULL;
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'partial', start, end: Math.min(lastByte + 1, size) };
}

/**
 * `If-Range`: the range applies only if the validator still matches; a weak
 * ETag never matches (RFC 9110 13.1.5), a date must equal Last-Modified.
 */
export function ifRangeMatches(header: string | undefined, etag: string, lastModified: string): boolean {
  if (header === undefined) return true;
  const value = header.trim();
  if (value.startsWith('"')) return value === etag;
  if (value.startsWith('W/')) return false;
  const date = Date.parse(value);
  return !Number.isNaN(date) && date === Date.parse(lastModified);
}

/** `If-None-Match`: `*` or any listed tag equal to ours (weak comparison, RFC 9110 13.1.2). */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((tag) => {
    const value = tag.trim();
    return value === '*' || value.replace(/^W\//, '') === etag;
  });
}

function toInt(digits: string): number | undefined {
  const value = Number(digits);
  return Number.isSafeInteger(value) ? value : undefined;
}
