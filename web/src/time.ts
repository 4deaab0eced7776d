// One way to show a time everywhere in the console: relative ("2 min ago"),
// with the absolute time in the operator's time zone on hover, always in the
// same format ("2026-12-01 19:40:05 UTC+1"). Pure functions (no DOM), so
// test/unit/console-time.test.ts checks them in Node.

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** "just now", "42 s ago", "2 min ago", "3 h ago", "5 d ago"; "in 2 min" for a time ahead. */
export function formatRelative(at: number, now: number): string {
  const delta = now - at;
  const ahead = delta < 0;
  const ms = Math.abs(delta);
  // A few seconds either way is "now": the server's clock and the browser's are rarely in step to the second.
  if (ms < 5 * SECOND) return 'just now';
  let amount: string;
  if (ms < MINUTE) amount = `${Math.floor(ms / SECOND)} s`;
  else if (ms < HOUR) amount = `${Math.floor(ms / MINUTE)} min`;
  else if (ms < 2 * DAY) amount = `${Math.floor(ms / HOUR)} h`;
  else amount = `${Math.floor(ms / DAY)} d`;
  return ahead ? `in ${amount}` : `${amount} ago`;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string | undefined): Intl.DateTimeFormat {
  const key = timeZone ?? '';
  let found = formatters.get(key);
  if (!found) {
    found = new Intl.DateTimeFormat('en-GB', {
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      hourCycle: 'h23',
      timeZoneName: 'shortOffset',
      ...(timeZone !== undefined ? { timeZone } : {}),
    });
    formatters.set(key, found);
  }
  return found;
}

/** "2026-12-01 19:40:05 UTC+1" in `timeZone` (the browser's own when undefined). */
export function formatAbsolute(at: number, timeZone?: string): string {
  const parts: Partial<Record<Intl.DateTimeFormatPartTypes, string>> = {};
  for (const part of formatter(timeZone).formatToParts(new Date(at))) parts[part.type] = part.value;
  // Intl says "GMT+1" (or "GMT" alone); operators read UTC offsets.
  // ICU writes UTC itself as "GMT" or "GMT+0", depending on its version.
  const zone = (parts.timeZoneName ?? 'GMT').replace(/^GMT/, 'UTC').replace(/^UTC[+-]0$/, 'UTC');
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second} ${zone}`;
}

const clocks = new Map<string, Intl.DateTimeFormat>();

/** "19:40" or "19:40:05" in the browser's zone: the ticks of chart time axes, in the same 24-hour form as formatAbsolute. */
export function formatClock(at: number, withSeconds: boolean, timeZone?: string): string {
  const key = `${withSeconds ? 's' : 'm'}${timeZone ?? ''}`;
  let found = clocks.get(key);
  if (!found) {
    found = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', ...(withSeconds ? { second: '2-digit' } : {}), hourCycle: 'h23', ...(timeZone !== undefined ? { timeZone } : {}) });
    clocks.set(key, found);
  }
  return found.format(new Date(at));
}

/** A duration for people: "450 ms", "12 s", "3 min", "2.5 h". */
export function formatDuration(ms: number): string {
  if (ms < SECOND) return `${Math.round(ms)} ms`;
  if (ms < MINUTE) return `${Math.round(ms / SECOND)} s`;
  if (ms < 2 * HOUR) return `${Math.round(ms / MINUTE)} min`;
  return `${(ms / HOUR).toFixed(1)} h`;
}

/** Sizes in binary units, as the rest of Nucleon writes them. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
}
