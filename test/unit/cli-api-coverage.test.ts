// Everything the CLI does through the admin endpoint, the REST API does too:
// the CLI's own command table (src/cli/commands.ts, which src/cli.ts
// dispatches with) names the admin command of every action, and the REST
// route table (src/admin/rest/routes.ts) must have a route for each.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMANDS, type CommandName } from '../../src/admin/commands.js';
import { openApiDocument } from '../../src/admin/rest/openapi.js';
import { API_PREFIX, REST_ROUTES, WEBSOCKET_ONLY } from '../../src/admin/rest/routes.js';
import { CLI_COMMANDS } from '../../src/cli/commands.js';

/**
 * CLI actions that have, on purpose, no API equivalent. Adding one here is a
 * decision a reviewer sees, with its reason.
 */
const LOCAL_ONLY: Record<string, string> = {
  'nucleon serve': 'it is the server: the API is what it serves',
  'nucleon certs init': 'writes the CA and server key files on the machine that runs the server; the CA key is never sent anywhere',
  'nucleon certs device': 'signs with the CA key on this machine and writes the device key files locally (with --rotate, the old certificate is revoked through certs.revoke, which has a route)',
  'nucleon certs crl': 'signs the CRL with the CA key on this machine; the list it signs is devices.revocations, which has a route',
};

const routed = new Set<CommandName>(REST_ROUTES.map((route) => route.command));

function cliActions(): { name: string; action: string }[] {
  return Object.entries(CLI_COMMANDS).flatMap(([command, { actions }]) =>
    Object.entries(actions).map(([action, runs]) => ({ name: action === '' ? `nucleon ${command}` : `nucleon ${command} ${action}`, action: runs })),
  );
}

test('every CLI action that talks to the server has a REST route for its admin command', () => {
  const missing = cliActions()
    .filter(({ action }) => action !== 'local' && !routed.has(action as CommandName))
    .map(({ name, action }) => `${name} (${action})`);
  assert.deepEqual(missing, [], 'CLI actions whose admin command has no route in src/admin/rest/routes.ts');
});

test('the CLI actions without an API equivalent are exactly the reasoned local-only list', () => {
  const local = cliActions()
    .filter(({ action }) => action === 'local')
    .map(({ name }) => name)
    .sort();
  assert.deepEqual(local, Object.keys(LOCAL_ONLY).sort(), 'a local-only CLI action needs its reason in LOCAL_ONLY (or an admin command and a route)');
  // The table is read from the CLI itself: these are real actions, not a list kept by hand.
  assert.ok(cliActions().length >= 18, `${cliActions().length} CLI actions`);
});

test('every admin command has a REST route, or is WebSocket-only with a reason', () => {
  const neither = (Object.keys(COMMANDS) as CommandName[]).filter((name) => !routed.has(name) && WEBSOCKET_ONLY[name] === undefined);
  assert.deepEqual(neither, [], 'admin commands with no REST route and no WEBSOCKET_ONLY reason');
  const both = (Object.keys(WEBSOCKET_ONLY) as CommandName[]).filter((name) => routed.has(name));
  assert.deepEqual(both, [], 'commands listed WebSocket-only that have a route');
});

test('the route table has no duplicate method and path, and the OpenAPI document has every route', () => {
  const keys = REST_ROUTES.map((route) => `${route.method} ${route.path}`);
  assert.deepEqual(
    keys.filter((key, i) => keys.indexOf(key) !== i),
    [],
  );
  const doc = openApiDocument('0.0.0') as { paths: Record<string, Record<string, { 'x-nucleon-command'?: string }>> };
  for (const route of REST_ROUTES) {
    const operation = doc.paths[`${API_PREFIX}${route.path}`]?.[route.method.toLowerCase()];
    assert.equal(operation?.['x-nucleon-command'], route.command, `${route.method} ${route.path} in the OpenAPI document`);
  }
});
