import type { ChildProcess } from 'node:child_process';

/**
 * Every process the bench starts besides DynamoDB Local (worker processes for the memory
 * scenario), so that they are killed on success, failure and Ctrl-C alike.
 */
const spawned = new Set<ChildProcess>();

export function track(child: ChildProcess): ChildProcess {
  spawned.add(child);
  child.once('exit', () => spawned.delete(child));
  return child;
}

export function spawnedPids(): Set<number> {
  return new Set([...spawned].map((c) => c.pid).filter((p): p is number => p !== undefined));
}

export function killSpawned(): void {
  for (const child of spawned) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

process.once('exit', killSpawned);
