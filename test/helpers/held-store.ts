// A slow or stuck disk on demand: the embedded LevelStore with its writes
// held until the test lets them go, and failing when told to.
import { LevelStore, type KvOperation } from '../../src/store/index.js';

export class HeldStore extends LevelStore {
  /** While true, every selected write waits for `release()` or `releaseOne()`. */
  holding = false;
  /** Selected writes fail with this once they may go on. */
  failWith: Error | undefined;
  /** Selected writes so far. */
  puts = 0;
  batches = 0;
  private readonly held: (() => void)[] = [];

  /** `selects`: which writes (by the keys they write) are counted, held and failed; all of them without it. */
  constructor(
    location: string,
    private readonly selects: (keys: readonly string[]) => boolean = () => true,
  ) {
    super(location);
  }

  /** Selected writes waiting now. */
  get waiting(): number {
    return this.held.length;
  }

  override async put(key: string, value: unknown): Promise<void> {
    if (this.selects([key])) {
      this.puts++;
      await this.gate();
    }
    await super.put(key, value);
  }

  override async batch(operations: KvOperation[]): Promise<void> {
    if (this.selects(operations.map((operation) => operation.key))) {
      this.batches++;
      await this.gate();
    }
    await super.batch(operations);
  }

  /** Lets every waiting write go on, and holds no more. */
  release(): void {
    this.holding = false;
    for (const resume of this.held.splice(0)) resume();
  }

  /** Lets the oldest waiting write go on; later ones are still held. */
  releaseOne(): void {
    this.held.shift()?.();
  }

  private async gate(): Promise<void> {
    if (this.holding) await new Promise<void>((resume) => this.held.push(resume));
    if (this.failWith) throw this.failWith;
  }
}
