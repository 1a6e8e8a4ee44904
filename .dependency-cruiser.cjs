/**
 * Import rules, checked by `npm test` (npm run deps). Each says which way knowledge flows:
 * the parts of a node reach each other through hooks, never by importing what composes them;
 * the protocol core and the store know nothing of nodes; the fault checker knows nothing of
 * the library it judges.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'An import cycle means two modules each need the other: cut one way through a hook.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'node-parts-below-worker',
      severity: 'error',
      comment: 'The parts of a node (lib/node) never import the Worker that composes them.',
      from: { path: '^lib/node/' },
      to: { path: '^lib/worker\\.ts$' },
    },
    {
      name: 'protocol-is-pure',
      severity: 'error',
      comment: 'lib/protocol is pure: ids, counters and time in, answers out. It may name store types, nothing more.',
      from: { path: '^lib/protocol/' },
      to: { path: '^lib/', pathNot: ['^lib/protocol/', '^lib/clock\\.ts$', '^lib/store/store\\.ts$'] },
    },
    {
      name: 'store-below-node',
      severity: 'error',
      comment: 'The store speaks DynamoDB for the node and knows nothing of it.',
      from: { path: '^lib/store/' },
      to: { path: ['^lib/node/', '^lib/worker\\.ts$', '^lib/cli/'] },
    },
    {
      name: 'library-stands-alone',
      severity: 'error',
      comment: 'What users install (lib/) never imports tests, benchmarks, tools, the demo stack or the functions (the construct deploys their prebuilt bundles from dist/functions).',
      from: { path: '^lib/' },
      to: { path: ['^test/', '^bench/', '^tools/', '^infra/', '^functions/'] },
    },
    {
      name: 'cdk-is-separate',
      severity: 'error',
      comment:
        'The CDK construct (lib/cdk, the package export "./cdk") is the only part of the library that may use aws-cdk-lib and constructs, ' +
        'which are optional peer dependencies: the library and the CLI must work without them, and nothing outside lib/cdk imports lib/cdk but the demo stack (infra/) and tests.',
      from: { path: '^lib/', pathNot: '^lib/cdk/' },
      to: { path: ['^lib/cdk/', '(^|/)node_modules/(aws-cdk-lib|constructs)/'] },
    },
    {
      name: 'cdk-through-its-entry',
      severity: 'error',
      comment: 'The demo stack uses the construct the way users do, through its entry point (what "keeper/cdk" exports).',
      from: { path: '^infra/' },
      to: { path: '^lib/cdk/', pathNot: '^lib/cdk/index\\.ts$' },
    },
    {
      name: 'checker-is-independent',
      severity: 'error',
      comment: 'The fault checker judges the library from the table and the logs alone, so that a bug in lib/ cannot hide itself.',
      from: { path: ['^test/chaos/(checker|table-history|fault-log)\\.ts$', '^test/chaos/checker/'] },
      to: { path: '^lib/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|cdk\\.out)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
