import type { Redis } from 'ioredis';
import { connectIfIdle } from '../redis-connections.js';
import type { CommandAnswer, ObservationRelay, ObservedEvent } from '../campaigns/driving.js';
import { isObserved } from '../campaigns/driving.js';
import { CampaignError, toErrorInfo } from '../campaigns/errors.js';
import type { CampaignCommandRequest } from '../events.js';
import type { Logger } from '../logger.js';
import { shouldLog } from '../util/log-sampling.js';
import { PendingAnswers } from '../util/pending-answers.js';

/** How long a forwarded campaign command waits for the driver's answer. */
const FORWARDED_COMMAND_TIMEOUT_MS = 15_000;

interface ForwardedCommand {
  id: string;
  replyTo: string;
  request: CampaignCommandRequest;
}

/**
 * Device events of non-driving instances to the driving one, over a Redis
 * pub/sub channel (`<namespace>campaigns:observations`), as JSON.
 *
 * Pub/sub delivers at most once and only to a listener connected now, which
 * is what the campaigns runner already accepts on a single instance: it takes
 * device events live (`durable: false`), and devices repeat their state (the
 * version in every telemetry message, a new connection after each reboot).
 * An event published while no instance drives (a takeover in progress) is
 * lost the same way; README "Campaigns" says what that can cost.
 *
 * Campaign commands sent to a non-driving instance go to the driver the same
 * way (`…:commands`, which only the driver listens to), and its answer comes
 * back on the asking instance's own channel (`…:answers:<instance id>`).
 */
export class RedisObservationRelay implements ObservationRelay {
  private deliver: ((event: ObservedEvent) => void) | undefined;
  private run: ((request: CampaignCommandRequest) => Promise<CommandAnswer>) | undefined;
  private changed: (() => void) | undefined;
  private failures = 0;
  private readonly changes: string;
  private readonly commands: string;
  private readonly answers: string;
  private readonly waiting: PendingAnswers;

  constructor(
    private readonly pub: Redis,
    private readonly sub: Redis,
    private readonly channel: string,
    instanceId: string,
    private readonly logger: Logger,
    private readonly release: () => Promise<void> = async () => undefined,
    commandTimeoutMs = FORWARDED_COMMAND_TIMEOUT_MS,
  ) {
    this.changes = `${channel}:changes`;
    this.commands = `${channel}:commands`;
    this.answers = `${channel}:answers:${instanceId}`;
    this.waiting = new PendingAnswers(commandTimeoutMs, 'campaigns-forwarded', (what, ms) => new CampaignError('UNAVAILABLE', `${what}: the driving instance did not answer within ${ms} ms; the command may or may not have been carried out (campaigns.show tells)`));
    sub.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.received(message);
      else if (channel === this.changes) this.changed?.();
      else if (channel === this.commands) this.command(message);
      else if (channel === this.answers) this.answered(message);
    });
  }

  async open(): Promise<void> {
    await connectIfIdle(this.pub);
    await connectIfIdle(this.sub);
    await this.sub.subscribe(this.changes, this.answers);
  }

  async listen(deliver: (event: ObservedEvent) => void, run: (request: CampaignCommandRequest) => Promise<CommandAnswer>): Promise<void> {
    this.deliver = deliver;
    this.run = run;
    await this.sub.subscribe(this.channel, this.commands);
  }

  async unlisten(): Promise<void> {
    this.deliver = undefined;
    this.run = undefined;
    if (this.sub.status === 'ready') await this.sub.unsubscribe(this.channel, this.commands);
  }

  async ask(request: CampaignCommandRequest): Promise<CommandAnswer> {
    const { correlationId, answer } = this.waiting.create('relay', `campaigns.${request.command}`);
    const message: ForwardedCommand = { id: correlationId, replyTo: this.answers, request };
    let receivers: number;
    try {
      receivers = await this.pub.publish(this.commands, JSON.stringify(message));
    } catch (error) {
      this.waiting.fail(correlationId, new CampaignError('UNAVAILABLE', `campaigns.${request.command}: could not reach the driving instance through Redis`, { cause: error }));
      return answer as Promise<CommandAnswer>;
    }
    // Nobody subscribed: no instance drives right now (a takeover is under way). Nothing was sent, so nothing was done.
    if (receivers === 0) this.waiting.fail(correlationId, new CampaignError('UNAVAILABLE', `campaigns.${request.command}: no instance drives the campaigns right now (a takeover is under way); try again`));
    return answer as Promise<CommandAnswer>;
  }

  forward(event: ObservedEvent): void {
    // The ingest log position means nothing on another instance.
    const { log: _log, ...rest } = event as ObservedEvent & { log?: unknown };
    this.pub.publish(this.channel, JSON.stringify(rest)).then(
      () => undefined,
      (error: unknown) => this.failed(error),
    );
  }

  announceChange(): void {
    this.pub.publish(this.changes, '1').then(
      () => undefined,
      (error: unknown) => this.failed(error),
    );
  }

  onChange(listener: () => void): void {
    this.changed = listener;
  }

  async close(): Promise<void> {
    this.deliver = undefined;
    this.run = undefined;
    this.waiting.failAll((what) => new CampaignError('UNAVAILABLE', `${what}: this instance is stopping`));
    await this.release();
  }

  /** Driver: runs a command another instance forwarded and sends the answer back. */
  private command(message: string): void {
    const run = this.run;
    let forwarded: ForwardedCommand;
    try {
      forwarded = JSON.parse(message) as ForwardedCommand;
    } catch (error) {
      this.logger.warn({ err: error }, 'dropped a forwarded campaign command that is not JSON');
      return;
    }
    if (!run || typeof forwarded.replyTo !== 'string' || !forwarded.replyTo.startsWith(`${this.channel}:answers:`)) return;
    run(forwarded.request)
      .catch((error: unknown): CommandAnswer => ({ error: toErrorInfo(error) }))
      .then((answer) => this.pub.publish(forwarded.replyTo, JSON.stringify({ id: forwarded.id, ...answer })))
      .catch((error: unknown) => this.logger.warn({ err: error, command: forwarded.request?.command }, 'could not send the answer to a forwarded campaign command'));
  }

  /** Follower: the driver's answer to a command this instance forwarded. */
  private answered(message: string): void {
    let answer: { id?: unknown } & CommandAnswer;
    try {
      answer = JSON.parse(message) as { id?: unknown } & CommandAnswer;
    } catch (error) {
      this.logger.warn({ err: error }, 'dropped a campaign command answer that is not JSON');
      return;
    }
    if (typeof answer.id !== 'string') return;
    const { id, ...rest } = answer;
    // A late answer (the asker timed out) is dropped by PendingAnswers.
    this.waiting.settle(id, rest);
  }

  private received(message: string): void {
    let event: unknown;
    try {
      event = JSON.parse(message);
    } catch (error) {
      this.logger.warn({ err: error }, 'dropped a campaign observation that is not JSON');
      return;
    }
    if (typeof event !== 'object' || event === null || !isObserved(event as { type: string })) {
      this.logger.warn({ message: message.slice(0, 200) }, 'dropped a campaign observation of an unknown type');
      return;
    }
    this.deliver?.(event as ObservedEvent);
  }

  private failed(error: unknown): void {
    // Logged once per 100 so a Redis outage does not flood the log; the device repeats itself.
    this.failures++;
    if (shouldLog(this.failures, 100)) this.logger.warn({ err: error, failures: this.failures }, 'could not forward a device event to the driving instance');
  }
}
