import { formatAbsolute, formatRelative } from '../time.js';
import { useNow } from './now.js';

/** A time as the console shows every time: relative, updating, the absolute time in the operator's zone on hover. */
export function Time({ at, fallback = '–' }: { at: number | string | undefined; fallback?: string }) {
  const now = useNow();
  const ms = typeof at === 'string' ? Date.parse(at) : at;
  if (ms === undefined || !Number.isFinite(ms) || ms <= 0) return <span class="muted">{fallback}</span>;
  return (
    <time dateTime={new Date(ms).toISOString()} title={formatAbsolute(ms)}>
      {formatRelative(ms, now)}
    </time>
  );
}
