import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import type { ClockSkew } from './schedule.js';

/**
 * One `keeper worker` OS process. It is spawned as `node <bin/keeper.js> worker ...` with no
 * npm or shell in between, so that the pid the harness signals (SIGKILL, SIGSTOP, SIGTERM)
 * is the worker itself. Its stderr (the JSON log) and stdout go straight to files, never
 * through a pipe the harness has to drain: a worker must not block on a full pipe because
 * the harness was busy, which would be a pause nobody injected.
 */
export interface WorkerSpec {
  instance: string;
  slot: string;
  node: string;
  keeperBin: string;
  table: string;
  endpoint: string;
  periodMs: number;
  staleTicks: number;
  driftBound: number;
  requestTimeoutMs: number;
  clock: ClockSkew;
  auditPath: string;
  stderrPath: string;
  stdoutPath: string;
  /** A process headed for a stubborn-term: every n-th demo task it started returns only this long after its signal on a leave, and it gives up its leave after leaveTimeoutMs. */
  stubborn?: { leaveTimeoutMs: number; stopDelayMs: number; stopDelayEvery: number };
}

export class WorkerProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** Set before the harness sends a signal that ends the process: its exit is expected. */
  endedByHarness = false;
  paused = false;
  joined = false;
  exitInfo: { code: number | null; signal: string | null } | undefined;
  private stderrOffset = 0;

  constructor(readonly spec: WorkerSpec) {
    const args = [
      spec.keeperBin,
      'worker',
      '--table', spec.table,
      '--endpoint', spec.endpoint,
      '--node-id', spec.node,
      '--audit-log', spec.auditPath,
      '--period-ms', String(spec.periodMs),
      '--stale-ticks', String(spec.staleTicks),
      '--drift-bound', String(spec.driftBound),
      '--request-timeout-ms', String(spec.requestTimeoutMs),
      // Rings between the worker processes stay on the loopback interface.
      '--doorbell-host', '127.0.0.1',
    ];
    if (spec.stubborn) {
      args.push('--leave-timeout-ms', String(spec.stubborn.leaveTimeoutMs), '--demo-stop-delay-ms', String(spec.stubborn.stopDelayMs), '--demo-stop-delay-every', String(spec.stubborn.stopDelayEvery));
    }
    if (spec.clock.rate !== 1) args.push('--clock-rate', String(spec.clock.rate));
    if (spec.clock.offsetMs !== 0) args.push('--clock-offset-ms', String(spec.clock.offsetMs));
    const out = openSync(spec.stdoutPath, 'a');
    const err = openSync(spec.stderrPath, 'a');
    const env: NodeJS.ProcessEnv = { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' };
    // Settings come from the flags only; an inherited environment must not change them.
    delete env['KEEPER_PERIOD_MS'];
    delete env['KEEPER_METRICS'];
    delete env['KEEPER_TABLE'];
    // Own process group: a Ctrl-C in the terminal reaches the harness only, which then
    // ends every worker itself (by pid).
    this.child = spawn(process.execPath, args, { stdio: ['ignore', out, err], detached: true, env });
    closeSync(out);
    closeSync(err);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve({ code, signal });
      }),
    );
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  signal(sig: 'SIGKILL' | 'SIGSTOP' | 'SIGCONT' | 'SIGTERM'): boolean {
    if (!this.running) return false;
    if (sig === 'SIGKILL' || sig === 'SIGTERM') this.endedByHarness = true;
    try {
      process.kill(this.pid, sig);
    } catch {
      return false;
    }
    if (sig === 'SIGSTOP') this.paused = true;
    if (sig === 'SIGCONT') this.paused = false;
    return true;
  }

  /** New complete stderr lines since the last call. */
  readNewStderr(): string[] {
    let size: number;
    try {
      size = statSync(this.spec.stderrPath).size;
    } catch {
      return [];
    }
    if (size <= this.stderrOffset) return [];
    const fd = openSync(this.spec.stderrPath, 'r');
    try {
      const buffer = Buffer.alloc(size - this.stderrOffset);
      readSync(fd, buffer, 0, buffer.length, this.stderrOffset);
      const text = buffer.toString('utf8');
      const lastNewline = text.lastIndexOf('\n');
      if (lastNewline < 0) return [];
      this.stderrOffset += Buffer.byteLength(text.slice(0, lastNewline + 1));
      return text.slice(0, lastNewline).split('\n');
    } finally {
      closeSync(fd);
    }
  }

  stderrTail(lines = 20): string {
    try {
      return readFileSync(this.spec.stderrPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}
