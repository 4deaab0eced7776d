// Prints where a V8 .cpuprofile (from `npm run bench -- --profile`) spent its
// busy time, by stage of the broker's path and by function (self time):
//   node --import tsx bench/profile-top.ts <file> [count]
import path from 'node:path';
import { busyUs, largest, readProfile, summariseProfile } from './lib/profile-summary.js';

const [file, countText = '25'] = process.argv.slice(2);
if (!file) throw new Error('usage: profile-top.ts <file.cpuprofile> [count]');
const summary = summariseProfile(readProfile(file));
const s = (us: number) => `${(us / 1e6).toFixed(2)} s`;
process.stdout.write(`${path.basename(file)}: ${s(summary.sampledUs)} sampled, ${s(summary.idleUs)} idle, ${s(summary.startupUs)} loading modules, ${s(busyUs(summary))} busy\n`);
const print = (title: string, rows: [string, number][]) => {
  process.stdout.write(`${title} (share of busy time)\n`);
  for (const [name, share] of rows) process.stdout.write(`${(share * 100).toFixed(1).padStart(6)}%  ${name}\n`);
};
print('by stage', largest(summary, summary.stages, 20));
print('by function', largest(summary, summary.functions, Number(countText)));
