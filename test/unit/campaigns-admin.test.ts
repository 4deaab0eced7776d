// The admin side of campaigns without sockets: `campaigns.*` commands go
// through runCommand and the real EventBroker to a stand-in campaigns runner,
// and the shared PendingAnswers (admin and campaigns runners both wait for
// answers by correlation id with it).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { runCommand, type CommandServices } from '../../src/admin/commands.js';
import { PendingRequests } from '../../src/admin/pending.js';
import { EventBroker } from '../../src/broker/index.js';
import { hasCode, NucleonError } from '../../src/errors.js';
import type { CampaignCommandRequest } from '../../src/events.js';
import { silentLogger } from '../../src/logger.js';
import { PendingAnswers } from '../../src/util/pending-answers.js';

function setUp(timeoutMs = 5000) {
  const broker = new EventBroker({ inboxSize: 64, maxWaiters: 64, logger: silentLogger(), metrics: new Registry() });
  broker.start();
  const pending = new PendingRequests(timeoutMs);
  // Only what the campaigns.* commands use; the rest of the services is never touched by them.
  const services = { broker, pending } as unknown as CommandServices;
  const call = (cmd: string, args: Record<string, unknown>) => runCommand(cmd, args, { id: 'client-1' }, services, 'json');
  return { broker, pending, call };
}

/** A stand-in campaigns runner that records each request and answers as `answer` says. */
async function fakeCampaigns(broker: EventBroker, answer: (request: CampaignCommandRequest) => { result?: unknown; error?: { code: string; message: string } }) {
  const requests: CampaignCommandRequest[] = [];
  await broker.publish({
    type: 'NewRunner',
    name: 'campaigns',
    accepts: ['CampaignCommand'],
    inbox: {
      handle: async (event) => {
        if (event.type !== 'CampaignCommand') return;
        requests.push(event.request);
        await broker.publish({ type: 'CampaignCommandResult', correlationId: event.correlationId, ...answer(event.request) });
      },
    },
  });
  return requests;
}

/** The admin runner's part: answers by correlation id settle the pending requests. */
async function adminAnswers(broker: EventBroker, pending: PendingRequests) {
  await broker.publish({
    type: 'NewRunner',
    name: 'admin',
    accepts: ['CampaignCommandResult'],
    inbox: { handle: (event) => void (event.type === 'CampaignCommandResult' && pending.settle(event.correlationId, event)) },
  });
}

test('campaigns.* commands reach the campaigns runner as CampaignCommand requests, and its answers come back', async () => {
  const { broker, pending, call } = setUp();
  await adminAnswers(broker, pending);
  const requests = await fakeCampaigns(broker, (request) => (request.command === 'promote' ? { error: { code: 'CAMPAIGN_STATE', message: 'campaign c1 is at its last stage' } } : { result: { echo: request.command } }));

  const spec = { id: 'c1', imageId: '1.1.0-0-gbbbbbbb', target: { fleet: true }, stages: [{ percent: 100 }] };
  assert.deepEqual(await call('campaigns.create', spec), { echo: 'create' });
  assert.deepEqual(await call('campaigns.list', {}), { echo: 'list' });
  assert.deepEqual(await call('campaigns.show', { id: 'c1', devices: true }), { echo: 'show' });
  assert.deepEqual(await call('campaigns.pause', { id: 'c1' }), { echo: 'pause' });
  assert.deepEqual(await call('campaigns.resume', { id: 'c1' }), { echo: 'resume' });
  assert.deepEqual(await call('campaigns.abort', { id: 'c1', rollback: false }), { echo: 'abort' });
  await assert.rejects(call('campaigns.promote', { id: 'c1' }), (error) => error instanceof NucleonError && error.code === 'CAMPAIGN_STATE' && error.message === 'campaign c1 is at its last stage');
  assert.deepEqual(requests, [
    { command: 'create', spec },
    { command: 'list' },
    { command: 'show', id: 'c1', devices: true },
    { command: 'pause', id: 'c1' },
    { command: 'resume', id: 'c1' },
    { command: 'abort', id: 'c1', rollback: false },
    { command: 'promote', id: 'c1' },
  ]);
  await assert.rejects(call('campaigns.pause', { id: 'c1', extra: 1 }), (error) => hasCode(error, 'INVALID_ARGUMENT') && error.message === 'unknown argument extra');
  await broker.stop(1000);
});

test('without a campaigns runner, campaigns.* answers UNAVAILABLE at once', async () => {
  const { broker, call } = setUp();
  await assert.rejects(call('campaigns.list', {}), (error) => hasCode(error, 'UNAVAILABLE') && error.message === 'no runner handles CampaignCommand (is the campaigns runner running?)');
  await broker.stop(1000);
});

test('PendingAnswers: settle delivers once, a timeout and an owner leaving fail with the errors the asker makes', async () => {
  const answers = new PendingAnswers(50, 'test', (what, ms) => new Error(`${what} timed out after ${ms} ms`));
  const first = answers.create('a', 'first');
  assert.match(first.correlationId, /^test-[0-9a-f-]{36}$/);
  assert.equal(answers.settle(first.correlationId, 'yes'), true);
  assert.equal(answers.settle(first.correlationId, 'again'), false);
  assert.equal(await first.answer, 'yes');

  const late = answers.create('a', 'late');
  // The request's own timer is unref'd (it must not keep a process alive): hold the loop open while it runs.
  const keepAlive = setInterval(() => undefined, 1000);
  try {
    await assert.rejects(late.answer, { message: 'late timed out after 50 ms' });
  } finally {
    clearInterval(keepAlive);
  }
  assert.equal(answers.settle(late.correlationId, 'too late'), false);

  const mine = answers.create('a', 'mine');
  const theirs = answers.create('b', 'theirs');
  answers.failOwner('a', (what) => new Error(`${what}: gone`));
  await assert.rejects(mine.answer, { message: 'mine: gone' });
  assert.equal(answers.size, 1);
  answers.failAll((what) => new Error(`${what}: stopped`));
  await assert.rejects(theirs.answer, { message: 'theirs: stopped' });
  assert.equal(answers.size, 0);
});
