import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `npm run package-check`: packs the package as `npm publish` would, then lints the tarball
 * with publint (strict: warnings fail) and arethetypeswrong (ESM only: the node10 and
 * require() resolutions do not apply to an ESM-only package). Packs once, with
 * --ignore-scripts, from the dist/ that `npm run build` made: `prepare` would rebuild it for
 * each tool.
 */
const root = fileURLToPath(new URL('..', import.meta.url));
if (!existsSync(join(root, 'dist', 'index.js'))) {
  process.stderr.write('package-check: dist/ is missing; run `npm run build` first\n');
  process.exit(2);
}
const dir = mkdtempSync(join(tmpdir(), 'keeper-pack-'));
const bin = (name: string) => join(root, 'node_modules', '.bin', name);
const run = (command: string, args: string[]) => {
  const out = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  return { ok: out.status === 0, stdout: out.stdout };
};
try {
  const packed = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir]);
  if (!packed.ok) process.exit(1);
  const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; entryCount: number; size: number; unpackedSize: number }>;
  const tarball = join(dir, info!.filename);
  process.stdout.write(`${info!.filename}: ${info!.entryCount} files, ${(info!.size / 1024).toFixed(0)} KiB packed, ${(info!.unpackedSize / 1024).toFixed(0)} KiB unpacked\n`);
  for (const [tool, args] of [
    ['publint', ['run', tarball, '--strict']],
    ['attw', [tarball, '--profile', 'esm-only']],
  ] as const) {
    const out = spawnSync(bin(tool), [...args], { cwd: root, stdio: 'inherit' });
    if (out.status !== 0) process.exit(out.status ?? 1);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
