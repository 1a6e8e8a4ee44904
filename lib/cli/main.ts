import { main } from './program.js';

// Commands that keep running (worker, local-db, local-cluster) return only when they are done.
process.exitCode = await main(process.argv);
