/**
 * A campaign's schedule window (README "Campaigns"): new devices are notified
 * only inside it; devices already notified go on, and health checks, gates
 * and the abort rule hold at any time. Times of day are UTC, as the fleet
 * spans time zones and the server's own zone says nothing about the devices'.
 */
export interface Schedule {
  /** ISO 8601 instant: nobody is notified before it. */
  notBefore?: string | undefined;
  /** ISO 8601 instant: nobody new is notified from then on. */
  notAfter?: string | undefined;
  /** Every day between `from` and `to` (UTC, "HH:MM"); `to` before `from` runs over midnight. */
  daily?: { from: string; to: string } | undefined;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** Minutes after midnight of an "HH:MM" that the spec has validated. */
export function minuteOfDay(hhmm: string): number {
  const [hours, minutes] = hhmm.split(':').map(Number);
  return (hours ?? 0) * 60 + (minutes ?? 0);
}

/** Whether new devices may be notified at `now`. */
export function insideSchedule(schedule: Schedule | undefined, now: number): boolean {
  if (!schedule) return true;
  if (schedule.notBefore !== undefined && now < Date.parse(schedule.notBefore)) return false;
  if (schedule.notAfter !== undefined && now >= Date.parse(schedule.notAfter)) return false;
  const daily = schedule.daily;
  if (!daily) return true;
  const minute = Math.floor((((now % DAY_MS) + DAY_MS) % DAY_MS) / 60_000);
  const from = minuteOfDay(daily.from);
  const to = minuteOfDay(daily.to);
  return from <= to ? minute >= from && minute < to : minute >= from || minute < to;
}
