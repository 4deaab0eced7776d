// Builds the operator console (web/) into dist/console/: one JavaScript
// bundle, one stylesheet and index.html, everything the admin listener serves
// (src/admin/http-routes.ts). Preact and uPlot are bundled in; nothing is
// fetched at run time. `npm run build` runs this after tsc.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CONSOLE_OUT_DIR = path.join(root, 'dist', 'console');

export interface BundleFile {
  name: string;
  bytes: number;
  gzipBytes: number;
}

/** Bundles web/src/main.tsx (and the CSS it imports) and copies web/index.html; each file is written whole (temp file, then rename). */
export async function buildConsole(outDir: string = CONSOLE_OUT_DIR): Promise<BundleFile[]> {
  const result = await build({
    entryPoints: { app: path.join(root, 'web', 'src', 'main.tsx') },
    bundle: true,
    format: 'esm',
    target: ['es2022', 'chrome110', 'firefox110', 'safari16'],
    minify: true,
    legalComments: 'none',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    tsconfig: path.join(root, 'web', 'tsconfig.json'),
    outdir: outDir,
    write: false,
    logLevel: 'warning',
  });
  await mkdir(outDir, { recursive: true });
  const files: BundleFile[] = [];
  for (const output of result.outputFiles) {
    await writeWhole(output.path, output.contents);
    files.push(sizes(path.basename(output.path), output.contents));
  }
  const html = await readFile(path.join(root, 'web', 'index.html'));
  await writeWhole(path.join(outDir, 'index.html'), html);
  files.push(sizes('index.html', html));
  return files;
}

async function writeWhole(file: string, contents: Uint8Array): Promise<void> {
  // A test or a running server may read the folder while it is rebuilt: never a half-written file.
  const temp = `${file}.${process.pid}.${createHash('sha1').update(contents).digest('hex').slice(0, 8)}.tmp`;
  await writeFile(temp, contents);
  await rename(temp, file);
}

function sizes(name: string, contents: Uint8Array): BundleFile {
  return { name, bytes: contents.byteLength, gzipBytes: gzipSync(contents, { level: 9 }).byteLength };
}

export function describeBundle(files: readonly BundleFile[]): string {
  const total = files.reduce((sum, file) => ({ bytes: sum.bytes + file.bytes, gzip: sum.gzip + file.gzipBytes }), { bytes: 0, gzip: 0 });
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  return [...files.map((file) => `  ${file.name.padEnd(12)} ${kib(file.bytes).padStart(10)} raw ${kib(file.gzipBytes).padStart(10)} gzip`), `  ${'total'.padEnd(12)} ${kib(total.bytes).padStart(10)} raw ${kib(total.gzip).padStart(10)} gzip`].join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = await buildConsole();
  console.log(`console bundle in ${path.relative(root, CONSOLE_OUT_DIR)}/:\n${describeBundle(files)}`);
}
