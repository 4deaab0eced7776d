// What a heap holds more of in one V8 heap snapshot than in another, summed
// by constructor (self sizes): the per-connection breakdown of
// scripts/heap-per-connection.ts --snapshots. Standalone:
//   node --import tsx scripts/heap-snapshot-diff.ts before.heapsnapshot after.heapsnapshot [connections] [rows]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

export interface Group {
  key: string;
  count: number;
  bytes: number;
}

/** Self size and count per `type:name` (strings and code by type alone: their names are their contents). */
export function groupsOf(file: string): Map<string, Group> {
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = parsed.snapshot.meta.node_fields;
  const types = parsed.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const groups = new Map<string, Group>();
  const { nodes, strings } = parsed;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt] ?? 0] ?? '?';
    const byTypeOnly = type === 'string' || type === 'concatenated string' || type === 'sliced string' || type === 'code' || type === 'number';
    const name = byTypeOnly ? '' : (strings[nodes[i + nameAt] ?? 0] ?? '?').slice(0, 70);
    const key = byTypeOnly ? `(${type})` : `${type}:${name}`;
    const group = groups.get(key) ?? { key, count: 0, bytes: 0 };
    group.count++;
    group.bytes += nodes[i + sizeAt] ?? 0;
    groups.set(key, group);
  }
  return groups;
}

/** The groups that grew (or shrank), largest change first. */
export function diffGroups(before: Map<string, Group>, after: Map<string, Group>): Group[] {
  const keys = new Set([...before.keys(), ...after.keys()]);
  const changes: Group[] = [];
  for (const key of keys) {
    const a = before.get(key) ?? { key, count: 0, bytes: 0 };
    const b = after.get(key) ?? { key, count: 0, bytes: 0 };
    if (a.bytes !== b.bytes || a.count !== b.count) changes.push({ key, count: b.count - a.count, bytes: b.bytes - a.bytes });
  }
  return changes.sort((x, y) => Math.abs(y.bytes) - Math.abs(x.bytes));
}

/** A table of the `rows` largest changes, per connection when `connections` is given. */
export function formatDiff(changes: Group[], connections: number, rows = 40): string {
  const total = changes.reduce((sum, change) => sum + change.bytes, 0);
  const lines = [`self size added per connection, by constructor (${connections} connections; total ${(total / connections).toFixed(0)} B per connection):`];
  lines.push(`${'B/conn'.padStart(8)} ${'objs/conn'.padStart(9)}  type:constructor`);
  for (const change of changes.slice(0, rows)) {
    lines.push(`${(change.bytes / connections).toFixed(1).padStart(8)} ${(change.count / connections).toFixed(2).padStart(9)}  ${change.key}`);
  }
  const rest = changes.slice(rows).reduce((sum, change) => sum + change.bytes, 0);
  if (changes.length > rows) lines.push(`${(rest / connections).toFixed(1).padStart(8)} ${''.padStart(9)}  (${changes.length - rows} more groups)`);
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [before, after, connections = '1', rows = '40'] = process.argv.slice(2);
  if (!before || !after) throw new Error('usage: heap-snapshot-diff.ts before.heapsnapshot after.heapsnapshot [connections] [rows]');
  process.stdout.write(`${formatDiff(diffGroups(groupsOf(before), groupsOf(after)), Number(connections), Number(rows))}\n`);
}
