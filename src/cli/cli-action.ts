import type { CommandName } from '../admin/commands.js';

/**
 * What one CLI action does: the admin command it runs (the REST API offers
 * each of them too: test/unit/cli-api-coverage), or `local` for work on this
 * machine only (running the server, writing certificate files).
 */
export type CliAction = CommandName | 'local';
