import type { CommandName } from '../commands.js';

export type RestMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/**
 * One REST route and the admin command it runs. The command's own zod schema
 * validates the arguments and describes them in the OpenAPI document.
 * Arguments come from the path parameters (named as the argument: `{uid}` is
 * `uid`), and for GET and DELETE from the query string, for POST and PUT from
 * the JSON body. A `stream` route takes the image bytes as the body and its
 * other arguments from the query string (see api.ts).
 */
export interface RestRoute {
  method: RestMethod;
  /** Below /api/v1, OpenAPI style: `/devices/{uid}`. */
  path: string;
  command: CommandName;
  /** The status of a success; 200 unless given. */
  status?: 200 | 201;
  body?: 'stream';
}

const route = (method: RestMethod, path: string, command: CommandName, extra: Pick<RestRoute, 'status' | 'body'> = {}): RestRoute => ({ method, path, command, ...extra });

export const API_PREFIX = '/api/v1';

/** Every REST route. A new admin command gets its route here, in one line (the OpenAPI document follows). */
export const REST_ROUTES: readonly RestRoute[] = [
  route('GET', '/ping', 'ping'),

  route('GET', '/devices', 'devices.list'),
  route('POST', '/devices', 'devices.add', { status: 201 }),
  route('GET', '/devices/search', 'devices.search'),
  route('GET', '/devices/{uid}', 'devices.get'),
  route('GET', '/devices/{uid}/detail', 'devices.detail'),
  route('DELETE', '/devices/{uid}', 'devices.remove'),
  route('PUT', '/devices/{uid}/password', 'devices.add'),
  route('GET', '/revocations', 'devices.revocations'),
  route('POST', '/devices/{uid}/revoke', 'devices.revoke'),
  route('POST', '/devices/{uid}/unrevoke', 'devices.unrevoke'),
  route('POST', '/devices/{uid}/kick', 'devices.kick'),
  route('POST', '/certificates/revoke', 'certs.revoke'),

  route('GET', '/images', 'images.list'),
  route('PUT', '/images/{id}', 'images.add', { body: 'stream' }),
  route('DELETE', '/images/{id}', 'images.remove'),

  route('GET', '/groups', 'groups.list'),
  route('PUT', '/links', 'ota.link'),
  route('DELETE', '/links', 'ota.unlink'),

  route('GET', '/service-accounts', 'service-accounts.list'),
  route('POST', '/service-accounts', 'service-accounts.add', { status: 201 }),
  route('DELETE', '/service-accounts/{name}', 'service-accounts.remove'),

  route('GET', '/acl/rules', 'acl.rules.list'),
  route('PUT', '/acl/rules', 'acl.rules.set'),

  route('GET', '/ingest', 'ingest.status'),
  route('GET', '/health', 'health.get'),

  route('GET', '/campaigns', 'campaigns.list'),
  route('POST', '/campaigns', 'campaigns.create', { status: 201 }),
  route('GET', '/campaigns/{id}', 'campaigns.show'),
  route('POST', '/campaigns/{id}/pause', 'campaigns.pause'),
  route('POST', '/campaigns/{id}/resume', 'campaigns.resume'),
  route('POST', '/campaigns/{id}/abort', 'campaigns.abort'),
  route('POST', '/campaigns/{id}/promote', 'campaigns.promote'),

  route('POST', '/app/requests', 'app.request'),

  route('GET', '/audit', 'audit.list'),
];

/** Admin commands without a REST route, and why; every other command must have one (test/unit/cli-api-coverage). */
export const WEBSOCKET_ONLY: Partial<Record<CommandName, string>> = {
  'events.subscribe': 'a live stream: it needs a connection that stays open (the dashboard and `nucleon` use /ws)',
  'events.unsubscribe': 'ends the live stream of events.subscribe',
  'uploads.begin': 'chunked uploads exist because a WebSocket frame is bounded; REST streams the whole image as the body of PUT /images/{id}',
  'uploads.chunk': 'see uploads.begin',
  'uploads.abort': 'see uploads.begin',
};

/** The path parameter names of a route: `/campaigns/{id}/pause` has `id`. */
export function pathParams(path: string): string[] {
  return [...path.matchAll(/\{([A-Za-z0-9_]+)\}/g)].map((match) => match[1] as string);
}

/** The route as fastify writes it: `/api/v1/devices/:uid`. */
export function fastifyPath(path: string): string {
  return `${API_PREFIX}${path.replace(/\{([A-Za-z0-9_]+)\}/g, ':$1')}`;
}

/** Whether the non-path arguments come from the query string (GET, DELETE, streamed bodies) or the JSON body. */
export function argsInQuery(route: RestRoute): boolean {
  return route.method === 'GET' || route.method === 'DELETE' || route.body === 'stream';
}
