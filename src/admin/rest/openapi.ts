import { z } from 'zod';
import { COMMANDS } from '../commands.js';
import { argsInQuery, API_PREFIX, pathParams, REST_ROUTES, type RestRoute } from './routes.js';
import { imageUploadArgs } from './upload-args.js';

type JsonSchema = Record<string, unknown> & { properties?: Record<string, unknown>; required?: string[] };

/** The arguments a route validates: the command's own schema, or for a streamed image the query of the upload. */
export function argsSchemaOf(route: RestRoute): z.ZodType {
  return route.body === 'stream' ? imageUploadArgs : COMMANDS[route.command].args;
}

/** The JSON Schema of what a client sends (zod's input side: defaults are optional, transforms not applied). */
export function jsonSchemaOf(schema: z.ZodType): JsonSchema {
  // Uint8Array (CBOR bytes over the WebSocket) has no JSON Schema; JSON clients send base64 text, which the other branch describes.
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  delete json.$schema;
  return json;
}

const ERROR_RESPONSES: Record<string, string> = {
  '400': 'an argument is missing, unknown or malformed (`INVALID_ARGUMENT`, the message names it), or the body is not JSON (`BAD_MESSAGE`)',
  '401': 'no API key (`UNAUTHENTICATED`) or a wrong one (`UNAUTHORIZED`)',
  '404': 'no such device, image, link, campaign (`NOT_FOUND`)',
  '409': 'the command conflicts with the current state (`CONFLICT`, `VERSION_DOWNGRADE`, `CAMPAIGN_*`)',
  '411': 'a streamed image without Content-Length (`INVALID_ARGUMENT`)',
  '413': 'the body is over its limit (`TOO_LARGE`)',
  '415': 'the body is not of the media type the route takes (`BAD_MESSAGE`)',
  '429': 'a wrong key after too many failed logins (`RATE_LIMITED`, with Retry-After), or too many uploads at once (`TOO_MANY_PENDING`)',
  '500': 'a bug (`INTERNAL`, `STORAGE_FAILED`); details only in the server log',
  '503': 'no runner handles the request, the broker is overloaded, or the server is stopping (`UNAVAILABLE`, `OVERLOADED`)',
  '504': 'the runner that owns the answer did not answer within `admin.request_timeout_ms` (`TIMEOUT`)',
};

/** Which errors a route can answer with, beyond 400, 401, 429, 500 and 503 that any can. */
function errorStatuses(route: RestRoute): string[] {
  const statuses = ['400', '401', '429', '500', '503'];
  if (pathParams(route.path).length > 0 || route.command.startsWith('campaigns.') || route.command === 'ota.unlink') statuses.push('404');
  const asksAnotherRunner = /^(images|ota|campaigns|groups|app)\./.test(route.command);
  if (asksAnotherRunner) statuses.push('409', '504');
  if (route.method === 'POST' || route.method === 'PUT') statuses.push('413', '415');
  if (route.body === 'stream') statuses.push('411');
  return statuses.sort();
}

function operationId(route: RestRoute): string {
  const words = route.path
    .split('/')
    .filter((part) => part !== '')
    .map((part) => part.replace(/[{}]/g, ''))
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1));
  return `${route.method.toLowerCase()}${words.join('')}`;
}

function operation(route: RestRoute): Record<string, unknown> {
  const command = COMMANDS[route.command];
  const schema = jsonSchemaOf(argsSchemaOf(route));
  const inPath = pathParams(route.path);
  const properties = schema.properties ?? {};
  const required = new Set(schema.required ?? []);
  const parameters: Record<string, unknown>[] = inPath.map((name) => ({ name, in: 'path', required: true, schema: properties[name] ?? { type: 'string' } }));
  const op: Record<string, unknown> = {
    operationId: operationId(route),
    summary: command.summary,
    description: `Runs the admin command \`${route.command}\` (README "Admin protocol").`,
    'x-nucleon-command': route.command,
    parameters,
  };
  const rest = Object.keys(properties).filter((name) => !inPath.includes(name));
  if (argsInQuery(route)) {
    for (const name of rest) parameters.push({ name, in: 'query', required: required.has(name), schema: properties[name] });
  }
  if (route.body === 'stream') {
    op.requestBody = {
      required: true,
      description: 'the image bytes, streamed to disk as they arrive; Content-Length is required (at most `admin.max_upload_bytes`)',
      content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } },
    };
  } else if (!argsInQuery(route)) {
    const body: JsonSchema = { ...schema, properties: Object.fromEntries(rest.map((name) => [name, properties[name]])) };
    if (schema.properties === undefined) delete body.properties;
    const bodyRequired = rest.filter((name) => required.has(name));
    if (schema.required !== undefined) body.required = bodyRequired;
    op.requestBody = {
      required: bodyRequired.length > 0 || schema.properties === undefined,
      content: { 'application/json': { schema: body } },
    };
  }
  const responses: Record<string, unknown> = {
    [String(route.status ?? 200)]: { description: `the result of \`${route.command}\``, content: { 'application/json': { schema: {} } } },
  };
  for (const status of errorStatuses(route)) responses[status] = { $ref: `#/components/responses/E${status}` };
  op.responses = responses;
  return op;
}

/** The OpenAPI 3.1 document of the REST API, built from the route table and the commands' zod schemas. */
export function openApiDocument(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of REST_ROUTES) {
    const item = (paths[`${API_PREFIX}${route.path}`] ??= {});
    item[route.method.toLowerCase()] = operation(route);
  }
  paths[`${API_PREFIX}/openapi.json`] = {
    get: {
      operationId: 'getOpenapiJson',
      summary: 'this document (needs no key: it is the same for every Nucleon of this version)',
      security: [],
      responses: { '200': { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object' } } } } },
    },
  };
  const errorSchema = {
    type: 'object',
    required: ['error'],
    additionalProperties: false,
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message'],
        additionalProperties: false,
        properties: {
          code: { type: 'string', description: 'a stable code from README "Errors", or an application runner\'s own code passed through' },
          message: { type: 'string', description: 'what went wrong, naming the argument' },
        },
      },
    },
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'Nucleon admin REST API',
      version,
      description:
        'The admin commands over HTTP (README "REST API"). Live streams (events.subscribe) stay on the admin WebSocket at /ws. Every route but this document needs `Authorization: Bearer <admin API key>`.',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'the admin API key (admin.api_key, NUCLEON_ADMIN_API_KEY, or <store.path>/admin-api-key)' } },
      schemas: { Error: errorSchema },
      responses: Object.fromEntries(
        Object.entries(ERROR_RESPONSES).map(([status, description]) => [`E${status}`, { description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } }]),
      ),
    },
  };
}
