// The error banner's model: one entry per failed action ("devices.search",
// "live stream", "kick 352656…"), replaced when the same action fails again and
// cleared when it next succeeds, when the operator dismisses it, or when the
// condition is gone (the connection is back). Bounded: the oldest entries go.

const MAX_ENTRIES = 5;

export interface ErrorEntry {
  action: string;
  message: string;
  at: number;
}

export class ErrorStore {
  private entries: ErrorEntry[] = [];
  private readonly listeners = new Set<(entries: readonly ErrorEntry[]) => void>();

  constructor(private readonly now: () => number = () => Date.now()) {}

  get list(): readonly ErrorEntry[] {
    return this.entries;
  }

  subscribe(listener: (entries: readonly ErrorEntry[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  fail(action: string, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.entries = [...this.entries.filter((entry) => entry.action !== action), { action, message, at: this.now() }].slice(-MAX_ENTRIES);
    this.emit();
  }

  clear(action: string): void {
    if (!this.entries.some((entry) => entry.action === action)) return;
    this.entries = this.entries.filter((entry) => entry.action !== action);
    this.emit();
  }

  /** Runs `work`; its failure is shown under `action` (and answered as undefined), its success clears that entry. */
  async track<T>(action: string, work: () => Promise<T>): Promise<T | undefined> {
    try {
      const result = await work();
      this.clear(action);
      return result;
    } catch (error) {
      this.fail(action, error);
      return undefined;
    }
  }

  private emit(): void {
    for (const listener of this.listeners) listener(this.entries);
  }
}
