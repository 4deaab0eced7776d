import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { issuerOf, readCrls } from '../certs/index.js';
import { NucleonError } from '../errors.js';
import type { Logger } from '../logger.js';
import { normalizeSerial, type Presented } from './revocation.js';

/** Several writes of one save come as several events; one reload after they settle. */
const SETTLE_MS = 50;

/**
 * `certs/crl.pem` (README "Revocation"): CRLs of CAs in the trust bundle,
 * ours or foreign, loaded at start and again whenever the file changes. The
 * folder is watched, not the file, so a file written by rename (as every
 * careful tool does) is seen too. A CRL that does not parse or verify fails
 * the start; later it is logged and the previous lists stay.
 */
export class CrlFile {
  /** Serial → the issuer names of the CRLs listing it. */
  private revoked = new Map<string, string[]>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private loading: Promise<void> = Promise.resolve();

  constructor(
    private readonly file: string,
    private readonly trustPath: string,
    private readonly logger: Logger,
    /** The lists changed: sessions are checked again. */
    private readonly changed: () => void,
  ) {}

  async start(): Promise<void> {
    try {
      await this.load();
    } catch (error) {
      throw new NucleonError('CRL_INVALID', `${this.file}: ${(error as Error).message}`, { cause: error });
    }
    const name = path.basename(this.file);
    this.watcher = watch(path.dirname(this.file), (_event, filename) => {
      if (filename === null || filename === name) this.schedule();
    });
    this.watcher.on('error', (error) => this.logger.error({ err: error, file: this.file }, 'watching the CRL file failed; restart to pick up changes'));
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    this.watcher = undefined;
    clearTimeout(this.timer);
    await this.loading;
  }

  /** The issuer of a CRL that lists this certificate, or undefined. */
  refusal(presented: Presented): string | undefined {
    if (presented.serial === undefined || presented.raw === undefined || this.revoked.size === 0) return undefined;
    const issuers = this.revoked.get(normalizeSerial(presented.serial));
    if (!issuers) return undefined;
    // Serials are unique per CA only: the certificate's issuer must be the CRL's.
    const issuer = issuerOf(presented.raw);
    return issuers.includes(issuer) ? issuer : undefined;
  }

  get size(): number {
    return this.revoked.size;
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.loading = this.loading.then(() => this.reload());
    }, SETTLE_MS);
  }

  private async reload(): Promise<void> {
    if (!this.watcher) return;
    try {
      await this.load();
    } catch (error) {
      this.logger.error({ err: error, file: this.file }, 'the CRL file did not load; the previous lists stay');
      return;
    }
    this.changed();
  }

  private async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      if (this.revoked.size > 0) this.logger.info({ file: this.file }, 'CRL file removed');
      this.revoked = new Map();
      return;
    }
    const lists = await readCrls(text, await readFile(this.trustPath, 'utf8'));
    const revoked = new Map<string, string[]>();
    for (const list of lists) {
      for (const serial of list.serials) {
        const key = normalizeSerial(serial);
        revoked.set(key, [...(revoked.get(key) ?? []), list.issuer]);
      }
    }
    this.revoked = revoked;
    this.logger.info({ file: this.file, crls: lists.length, serials: revoked.size }, 'CRL file loaded');
  }
}
