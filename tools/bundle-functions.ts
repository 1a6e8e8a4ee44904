import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/**
 * Bundles the deployment's Lambda functions (functions/) into dist/functions/<name>/index.mjs,
 * which the package ships and KeeperCluster deploys as they are (lib/cdk/lambda.ts says why
 * they are built here and not at synth). Run by `npm run build`.
 */
const root = fileURLToPath(new URL('..', import.meta.url));
const functions = { 'task-api': 'functions/task-api.ts', health: 'functions/health.ts' } as const;

for (const [name, entry] of Object.entries(functions)) {
  const outdir = `${root}dist/functions/${name}`;
  rmSync(outdir, { recursive: true, force: true });
  await build({
    entryPoints: [`${root}${entry}`],
    outfile: `${outdir}/index.mjs`,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    mainFields: ['module', 'main'],
    minify: true,
    // Readable stack traces in Lambda (NODE_OPTIONS=--enable-source-maps) without shipping the sources.
    sourcemap: true,
    sourcesContent: false,
    // The AWS SDK is bundled too: the store relies on its exact version (request timeouts that
    // throw), not on whichever one the runtime happens to ship.
    external: [],
    // A few CommonJS dependencies call require(); an ES module has none of its own.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    logLevel: 'warning',
  });
}
