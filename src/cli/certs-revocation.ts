import type { Config } from '../config/index.js';
import { hasCode } from '../errors.js';
import { normalizeSerial, REVOCATIONS_PREFIX, revocationKey, type Revocation } from '../revocation/index.js';
import { withAdmin, type AdminConnectionValues } from './admin-client.js';
import { openStore } from './devices.js';

/**
 * The revocation list as `nucleon certs` needs it: read for a CRL, one entry
 * added by a rotation. With the server stopped the embedded store is opened
 * here; while a server holds it (or in cluster mode) the admin endpoint is
 * asked, so the server's memory and sessions follow at once.
 */
export async function onRevocations<T>(config: Readonly<Config>, values: AdminConnectionValues, local: (store: Awaited<ReturnType<typeof openStore>>) => Promise<T>, viaAdmin: () => Promise<T>): Promise<T> {
  let store: Awaited<ReturnType<typeof openStore>>;
  try {
    store = await openStore(config);
  } catch (error) {
    if (config.admin.enabled && (hasCode(error, 'STORE_LOCKED') || hasCode(error, 'STORE_SHARED'))) return viaAdmin();
    throw error;
  }
  try {
    return await local(store);
  } finally {
    await store.close();
  }
}

export function listRevocations(config: Readonly<Config>, values: AdminConnectionValues): Promise<Revocation[]> {
  return onRevocations(
    config,
    values,
    async (store) => {
      const list: Revocation[] = [];
      for await (const [, entry] of store.entries<Revocation>(REVOCATIONS_PREFIX)) list.push(entry);
      return list;
    },
    async () => (await withAdmin(values, (client) => client.request<{ revocations: Revocation[] }>('devices.revocations', {}))).revocations,
  );
}

export function revokeSerial(config: Readonly<Config>, values: AdminConnectionValues, request: { serial: string; uid: string; reason: string; effectiveAt: number }): Promise<Revocation> {
  return onRevocations(
    config,
    values,
    async (store) => {
      const entry: Revocation = { uid: request.uid, serial: normalizeSerial(request.serial), reason: request.reason, at: Date.now(), by: 'cli', effectiveAt: request.effectiveAt };
      await store.put(revocationKey({ serial: entry.serial ?? '' }), entry);
      return entry;
    },
    async () => (await withAdmin(values, (client) => client.request<{ revocation: Revocation }>('certs.revoke', request))).revocation,
  );
}
