import type { ChildProcess } from 'node:child_process';

/**
 * A server binary the bench starts beside the brokers (victoria-metrics,
 * redis-server): its output tail for errors, whether it runs, and a bounded
 * stop (SIGTERM, then SIGKILL after 10 s).
 */
export class ServerProcess {
  protected tail = '';
  private readonly exited: Promise<void>;

  protected constructor(
    private readonly label: string,
    private readonly child: ChildProcess,
  ) {
    const keep = (chunk: Buffer) => (this.tail = (this.tail + chunk.toString()).slice(-4096));
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.label} has no pid`);
    return this.child.pid;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<void> {
    if (!this.alive) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}
