// Commands that keep running (worker, local-db, local-cluster) return only when they are done.
// `keeper health` loads only what it needs: an orchestrator runs it every few seconds.
process.exitCode = process.argv[2] === 'health' ? await (await import('./health-command.js')).healthMain(process.argv) : await (await import('./program.js')).main(process.argv);
