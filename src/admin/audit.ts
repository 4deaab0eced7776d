import type { Logger } from '../logger.js';

/** How a command reached the server: the admin WebSocket (`cli` when the nucleon CLI says so), a REST route. */
export type AuditVia = 'ws' | 'cli' | 'rest';

/**
 * One admin action as the audit log has it (README "Audit log"). `target`
 * names what was changed (a uid, an image id, a campaign id); never a
 * password, a key or payload bytes.
 */
export interface AuditEntry {
  /** Counts up from 1 per instance, so a reader can tell entries it has seen. */
  seq: number;
  at: string;
  actor: string;
  via: AuditVia;
  command: string;
  target?: string;
  /** `ok`, or the error code the caller got. */
  result: string;
}

export type AuditRecord = Omit<AuditEntry, 'seq' | 'at'>;

/**
 * The last `size` admin actions of this instance, oldest first, in a fixed
 * ring: a burst of commands overwrites the oldest instead of growing memory.
 * Every action is also one INFO line in the log, which keeps them all.
 */
export class AuditRing {
  private readonly entries: (AuditEntry | undefined)[];
  private next = 0;
  private seq = 0;

  constructor(
    readonly size: number,
    private readonly now: () => number = Date.now,
  ) {
    this.entries = new Array<AuditEntry | undefined>(size);
  }

  add(record: AuditRecord): AuditEntry {
    const entry: AuditEntry = { seq: ++this.seq, at: new Date(this.now()).toISOString(), ...record };
    if (this.size === 0) return entry;
    this.entries[this.next] = entry;
    this.next = (this.next + 1) % this.size;
    return entry;
  }

  /** The newest `limit` entries (all kept when not given), oldest first. */
  list(limit = this.size): AuditEntry[] {
    const kept: AuditEntry[] = [];
    for (let i = 0; i < this.size; i++) {
      const entry = this.entries[(this.next + i) % this.size];
      if (entry) kept.push(entry);
    }
    return limit >= kept.length ? kept : kept.slice(kept.length - limit);
  }
}

/** Writes each admin action to the log at INFO with `audit: true` and keeps it in the ring. */
export class AuditLog {
  constructor(
    private readonly ring: AuditRing,
    private readonly logger: Logger,
  ) {}

  record(record: AuditRecord): void {
    const entry = this.ring.add(record);
    this.logger.info({ audit: true, actor: entry.actor, via: entry.via, command: entry.command, ...(entry.target !== undefined ? { target: entry.target } : {}), result: entry.result }, 'admin action');
  }

  list(limit?: number): AuditEntry[] {
    return this.ring.list(limit);
  }
}
