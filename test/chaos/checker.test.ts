import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkRun } from './checker.js';

/**
 * The checker against hand-made runs: every rule must fire on the violation it is about,
 * and stay quiet on a clean run. No DynamoDB, no processes; the files are what a run leaves.
 */
const s = 1e9; // ns per second
const base = 10_000 * s; // mono_ns of "ready"
const wallBase = 1_800_000_000_000; // wall_ms of "ready"

interface Ev {
  event: 'start' | 'work' | 'stop' | 'effect';
  task: string;
  token: number;
  at: number; // seconds after ready
}

class Fixture {
  readonly dir = mkdtempSync(join(tmpdir(), 'keeper-checker-'));
  private readonly faults: string[] = [];
  private readonly audits = new Map<string, { node: string; lines: string[] }>();
  private readonly stderr = new Map<string, string[]>();
  tasks: Array<Record<string, unknown>> = [];
  nodes: Array<Record<string, unknown>> = [];

  constructor(readonly taskIds: string[]) {
    mkdirSync(join(this.dir, 'logs'));
    this.fault(-10, {
      type: 'run', seed: 1, workers: 2, tasks: taskIds.length, seconds: 20, faultsPerKind: 1, table: 't',
      settings: { periodMs: 500, staleTicks: 6, driftBound: 1.5, requestTimeoutMs: 250, handlerStopMs: 50, fenceMs: 976.4 },
      boundMs: 7000, earliestDeclarationMs: 5000 / 3, workIntervalMs: 100,
    });
    this.fault(-10, { type: 'tasks', ids: taskIds });
  }

  fault(at: number, record: Record<string, unknown>): this {
    this.faults.push(JSON.stringify({ ...record, mono_ns: String(base + Math.round(at * s)), wall_ms: wallBase + Math.round(at * 1000) }));
    return this;
  }

  worker(instance: string, node = instance, clockRate = 1): this {
    this.fault(-5, { type: 'spawn', instance, slot: instance.split('.')[0], node, pid: 1, clockRate, clockOffsetMs: 0, audit: `logs/${instance}.audit.jsonl`, stderr: `logs/${instance}.stderr.log`, reason: 'initial' });
    this.fault(-4, { type: 'joined', instance, node });
    this.audits.set(instance, { node, lines: [] });
    this.stderr.set(instance, []);
    return this;
  }

  audit(instance: string, ...events: Ev[]): this {
    const a = this.audits.get(instance)!;
    for (const e of events) a.lines.push(JSON.stringify({ event: e.event, task: e.task, node: a.node, token: e.token, mono_ns: String(base + Math.round(e.at * s)) }));
    return this;
  }

  /** A run of `task`: start at `from`, work every 100 ms up to `to`, optionally a stop line. */
  run(instance: string, task: string, token: number, from: number, to: number, stop?: number): this {
    const events: Ev[] = [{ event: 'start', task, token, at: from }];
    for (let t = from; t <= to + 1e-9; t += 0.1) events.push({ event: 'work', task, token, at: t });
    if (stop !== undefined) events.push({ event: 'stop', task, token, at: stop });
    return this.audit(instance, ...events);
  }

  /** Finite tasks created at `at` (the harness's `finite-tasks` record). */
  finite(at: number, ...ids: string[]): this {
    return this.fault(at, { type: 'finite-tasks', ids });
  }

  /** A finite run: start at `from`, work up to `effectAt` (exclusive), then its effect and stop line; no effect if `effectAt` is undefined (it was cut off at `to`). */
  job(instance: string, task: string, token: number, from: number, effectAt: number | undefined, to = effectAt ?? from): this {
    const events: Ev[] = [{ event: 'start', task, token, at: from }];
    for (let t = from; t < (effectAt ?? to + 0.05) - 1e-9; t += 0.1) events.push({ event: 'work', task, token, at: t });
    if (effectAt !== undefined) events.push({ event: 'effect', task, token, at: effectAt }, { event: 'stop', task, token, at: effectAt });
    return this.audit(instance, ...events);
  }

  done(task: string, owner: string, token: number): this {
    this.tasks.push({ pk: `task#${task}`, sk: 'task', id: task, type: 'demo-job', owner, token, state: 'done' });
    return this;
  }

  log(instance: string, at: number, msg: string, fields: Record<string, unknown> = {}): this {
    this.stderr.get(instance)!.push(JSON.stringify({ time: new Date(wallBase + at * 1000).toISOString(), level: 'info', msg, ...fields }));
    return this;
  }

  owner(task: string, owner: string, token: number, inc = 1): this {
    this.tasks.push({ pk: `task#${task}`, sk: 'task', id: task, type: 'demo', owner, ownerInc: inc, token, state: 'ready' });
    return this;
  }

  node(id: string, state = 'alive', inc = 1): this {
    this.nodes.push({ pk: `node#${id}`, sk: 'node', id, state, inc });
    return this;
  }

  write(): string {
    this.fault(0, { type: 'ready' });
    this.fault(20, { type: 'end' });
    this.fault(20.2, { type: 'snapshot', windowMs: 2000 });
    const sorted = [...this.faults].sort((a, b) => Number(BigInt(JSON.parse(a).mono_ns) - BigInt(JSON.parse(b).mono_ns)));
    writeFileSync(join(this.dir, 'faults.jsonl'), `${sorted.join('\n')}\n`);
    for (const [instance, a] of this.audits) writeFileSync(join(this.dir, 'logs', `${instance}.audit.jsonl`), `${a.lines.map((l) => JSON.parse(l) as { mono_ns: string }).sort((x, y) => Number(BigInt(x.mono_ns) - BigInt(y.mono_ns))).map((l) => JSON.stringify(l)).join('\n')}\n`);
    for (const [instance, lines] of this.stderr) writeFileSync(join(this.dir, 'logs', `${instance}.stderr.log`), lines.length ? `${lines.join('\n')}\n` : '');
    writeFileSync(join(this.dir, 'table.json'), JSON.stringify({ tasks: this.tasks, nodes: this.nodes, other: 0 }));
    return this.dir;
  }
}

/** Two workers, two tasks, each running on its own worker from start to finish. */
function clean(): Fixture {
  return new Fixture(['a', 'b'])
    .worker('w1.1')
    .worker('w2.1')
    .run('w1.1', 'a', 1, -1, 22.5)
    .run('w2.1', 'b', 1, -1, 22.5)
    .owner('a', 'w1.1', 1)
    .owner('b', 'w2.1', 1)
    .node('w1.1')
    .node('w2.1');
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
async function check(f: Fixture) {
  const dir = f.write();
  dirs.push(dir);
  return checkRun(dir);
}
const count = (r: Awaited<ReturnType<typeof checkRun>>) => Object.fromEntries(Object.entries(r.violations).map(([k, v]) => [k, v.length]));

describe('chaos checker', () => {
  it('finds nothing wrong with a clean run', async () => {
    const r = await check(clean());
    expect(r.violations).toEqual({ overlaps: [], workAfterStop: [], tokenRegressions: [], slowTakeovers: [], lostTasks: [], endState: [], falseTakeovers: [], unexpectedExits: [], atMostOnce: [] });
    expect(r.ok).toBe(true);
  });

  it('an owner paused past its lease while another takes over is no overlap; a second owner working meanwhile is', async () => {
    // w1.1 is frozen at 5 s (no stop line, as after SIGSTOP), w2.1 takes a over at 9 s with token 2.
    const zombie = new Fixture(['a']).worker('w1.1').worker('w2.1').run('w1.1', 'a', 1, -1, 4.95).run('w2.1', 'a', 2, 9, 22.5).owner('a', 'w2.1', 2).node('w1.1', 'dead').node('w2.1');
    zombie.fault(5, { type: 'pause', fault: 1, instance: 'w1.1', node: 'w1.1' }).fault(15, { type: 'resume', fault: 1, instance: 'w1.1', node: 'w1.1' });
    expect(count(await check(zombie))).toMatchObject({ overlaps: 0, tokenRegressions: 0, falseTakeovers: 0 });

    // The same, but w1.1 wakes up and does one more unit of work at 15 s with its old token.
    const late = new Fixture(['a']).worker('w1.1').worker('w2.1').run('w1.1', 'a', 1, -1, 4.95).run('w2.1', 'a', 2, 9, 22.5).owner('a', 'w2.1', 2).node('w1.1').node('w2.1');
    late.audit('w1.1', { event: 'work', task: 'a', token: 1, at: 15 });
    const r = await check(late);
    expect(count(r)).toMatchObject({ overlaps: 1, tokenRegressions: 1 });
    expect(r.violations.overlaps[0]!.text).toMatch(/^a: w1.1 .* and w2.1 .* both worked/);
  });

  it('0 ns tolerance: work at exactly the start of another run overlaps', async () => {
    const f = new Fixture(['a']).worker('w1.1').worker('w2.1').run('w1.1', 'a', 1, -1, 5, 5.05).run('w2.1', 'a', 2, 5, 22.5).owner('a', 'w2.1', 2).node('w1.1').node('w2.1');
    expect(count(await check(f))).toMatchObject({ overlaps: 1 });
  });

  it('work after the run\'s own stop line', async () => {
    const f = clean().audit('w1.1', { event: 'stop', task: 'a', token: 1, at: 22.55 }, { event: 'work', task: 'a', token: 1, at: 22.6 });
    expect(count(await check(f))).toMatchObject({ workAfterStop: 1 });
  });

  it('a task without work for longer than the bound while a worker was live is lost; the same gap inside a store outage is not', async () => {
    const gap = new Fixture(['a']).worker('w1.1').run('w1.1', 'a', 1, -1, 5, 5.01).run('w1.1', 'a', 1, 13, 22.5).owner('a', 'w1.1', 1).node('w1.1');
    const r = await check(gap);
    expect(count(r)).toMatchObject({ lostTasks: 1 });
    expect(r.violations.lostTasks[0]!.text).toMatch(/no work from 5.000 s to 13.000 s/);

    // Nor while every worker had fenced itself (a brown-out), even when they fenced one by one.
    const brownOut = new Fixture(['a']).worker('w1.1').worker('w2.1').run('w1.1', 'a', 1, -1, 5, 5.01).run('w1.1', 'a', 1, 13, 22.5).owner('a', 'w1.1', 1).node('w1.1').node('w2.1');
    brownOut.log('w1.1', 5, 'lease expired; stopping all tasks until a heartbeat succeeds').log('w2.1', 5.5, 'lease expired; stopping all tasks until a heartbeat succeeds');
    brownOut.log('w2.1', 12.5, 'lease renewed; resuming tasks').log('w1.1', 12.9, 'lease renewed; resuming tasks');
    const b = await check(brownOut);
    expect(count(b)).toMatchObject({ lostTasks: 0 });
    expect(b.brownOutMs).toBeCloseTo(7000, 0);

    // Nor while the store answered the harness's own reads slower than d.
    const slow = new Fixture(['a']).worker('w1.1').run('w1.1', 'a', 1, -1, 5, 5.01).run('w1.1', 'a', 1, 13, 22.5).owner('a', 'w1.1', 1).node('w1.1');
    slow.fault(12, { type: 'store-slow', from_ns: String(base + 6 * s), to_ns: String(base + 12 * s) });
    const sl = await check(slow);
    expect(count(sl)).toMatchObject({ lostTasks: 0 });
    expect(sl.store.slowMs).toBeCloseTo(6000, 0);

    const outage = new Fixture(['a']).worker('w1.1').run('w1.1', 'a', 1, -1, 5, 5.01).run('w1.1', 'a', 1, 13, 22.5).owner('a', 'w1.1', 1).node('w1.1');
    outage.fault(5, { type: 'outage-start', fault: 1 }).fault(11, { type: 'outage-end', fault: 1 });
    expect(count(await check(outage))).toMatchObject({ lostTasks: 0 });
  });

  it('takeovers are timed from the fault and held to the bound', async () => {
    const f = new Fixture(['a']).worker('w1.1').worker('w2.1').run('w1.1', 'a', 1, -1, 4.95).run('w2.1', 'a', 2, 13, 22.5).owner('a', 'w2.1', 2).node('w2.1');
    f.fault(5, { type: 'kill', fault: 1, instance: 'w1.1', node: 'w1.1' }).fault(5.01, { type: 'exit', instance: 'w1.1', node: 'w1.1', code: null, signal: 'SIGKILL', expected: true });
    const r = await check(f);
    expect(r.takeover.count).toBe(1);
    expect(r.takeover.maxMs).toBeCloseTo(8000, 0);
    expect(count(r)).toMatchObject({ slowTakeovers: 1 });
  });

  it('a task the victim resumed itself after a partition healed, then handed on, is no takeover', async () => {
    const handedOn = (resumes: boolean) => {
      const f = new Fixture(['a']).worker('w1.1').worker('w2.1').run('w1.1', 'a', 1, -1, 5.5, 5.6);
      if (resumes) f.run('w1.1', 'a', 1, 7.5, 14.9, 15);
      f.run('w2.1', 'a', 2, 15.01, 22.5).owner('a', 'w2.1', 2).node('w1.1').node('w2.1');
      return f.fault(5, { type: 'partition', fault: 1, instance: 'w1.1', node: 'w1.1' }).fault(7, { type: 'heal', fault: 1, instance: 'w1.1', node: 'w1.1' });
    };
    const kept = await check(handedOn(true));
    expect(kept.takeover.count).toBe(0);
    expect(kept.takeover.resumedInPlace).toBe(1);
    expect(count(kept)).toMatchObject({ slowTakeovers: 0 });
    // Not resumed: the same start 10 s after the partition is a takeover, and a slow one.
    const taken = await check(handedOn(false));
    expect(taken.takeover.count).toBe(1);
    expect(count(taken)).toMatchObject({ slowTakeovers: 1 });
  });

  it('a declaration of death needs a fault of the node\'s own; a store outage is not one', async () => {
    const unjustified = clean().log('w2.1', 8, 'declared peer dead', { node: 'w2.1', peer: 'w1.1', staleness: 6, counter: 10 });
    expect(count(await check(unjustified))).toMatchObject({ falseTakeovers: 1 });

    const afterOutage = clean().log('w2.1', 8, 'declared peer dead', { node: 'w2.1', peer: 'w1.1', staleness: 12, counter: 10 });
    afterOutage.fault(1, { type: 'outage-start', fault: 1 }).fault(7, { type: 'outage-end', fault: 1 });
    expect(count(await check(afterOutage))).toMatchObject({ falseTakeovers: 1 });

    const partitioned = clean().log('w2.1', 8, 'declared peer dead', { node: 'w2.1', peer: 'w1.1', staleness: 6, counter: 10 });
    partitioned.fault(5, { type: 'partition', fault: 1, instance: 'w1.1', node: 'w1.1' }).fault(9, { type: 'heal', fault: 1, instance: 'w1.1', node: 'w1.1' });
    expect(count(await check(partitioned))).toMatchObject({ falseTakeovers: 0 });

    // The node said itself that it could not renew its lease (a brown-out): counted apart.
    const brownOut = clean().log('w1.1', 6, 'lease expired; stopping all tasks until a heartbeat succeeds', { node: 'w1.1' }).log('w2.1', 8, 'declared peer dead', { node: 'w2.1', peer: 'w1.1', staleness: 6, counter: 10 });
    const b = await check(brownOut);
    expect(count(b)).toMatchObject({ falseTakeovers: 0 });
    expect(b.counts.declaredWhileFenced).toBe(1);
    // ... but not when a store outage had just ended: then the outage made it fence.
    const outageFence = clean().log('w1.1', 6, 'lease expired; stopping all tasks until a heartbeat succeeds', { node: 'w1.1' }).log('w2.1', 8, 'declared peer dead', { node: 'w2.1', peer: 'w1.1', staleness: 6, counter: 10 });
    outageFence.fault(1, { type: 'outage-start', fault: 1 }).fault(7, { type: 'outage-end', fault: 1 });
    expect(count(await check(outageFence))).toMatchObject({ falseTakeovers: 1 });

    // Seen only in the victim's log (the declarer's reply was lost).
    const zombieLine = clean().log('w1.1', 8, 'this incarnation was declared dead; stopping every task and rejoining', { node: 'w1.1', declaredBy: 'w2.1' });
    expect(count(await check(zombieLine))).toMatchObject({ falseTakeovers: 1 });

    // A stall (a short SIGSTOP, a blocked event loop) is no reason, not even through the
    // fence it caused; without a declaration it is no violation at all.
    const stall = (run: ReturnType<typeof clean>) => run.fault(5, { type: 'stall', fault: 1, instance: 'w1.1', node: 'w1.1' }).fault(5.5, { type: 'unstall', fault: 1, instance: 'w1.1', node: 'w1.1' });
    const stalled = stall(clean().log('w1.1', 6, 'lease expired; stopping all tasks until a heartbeat succeeds', { node: 'w1.1' }).log('w2.1', 8, 'declared peer dead', { node: 'w2.1', peer: 'w1.1', staleness: 6, counter: 10 }));
    const s = await check(stalled);
    expect(count(s)).toMatchObject({ falseTakeovers: 1 });
    expect(s.violations.falseTakeovers[0]!.text).toMatch(/w1\.1 stalled from .* for 500 ms, which must not get it declared/);
    expect(count(await check(stall(clean())))).toMatchObject({ falseTakeovers: 0, overlaps: 0, lostTasks: 0 });

    const deadInTable = clean();
    deadInTable.nodes[0]!['state'] = 'dead';
    expect(count(await check(deadInTable))).toMatchObject({ falseTakeovers: 1 });
  });

  it('the final table must hold every task created, once, ready, owned by a live node that runs it', async () => {
    const vanished = clean();
    vanished.tasks.pop();
    vanished.tasks.push({ pk: 'task#c', sk: 'task', id: 'c', type: 'demo', owner: 'w1.1', ownerInc: 1, token: 1, state: 'ready' });
    const r = await check(vanished);
    expect(r.violations.endState.map((v) => v.rule).sort()).toEqual(['unexpected task', 'vanished task']);

    const wrongOwner = clean();
    wrongOwner.tasks[0]!['owner'] = 'w2.1';
    wrongOwner.tasks[0]!['token'] = 1;
    expect((await check(wrongOwner)).violations.endState.map((v) => v.rule)).toEqual(['owner not running it']);

    const behind = clean();
    behind.tasks[0]!['token'] = 0;
    expect(count(await check(behind))).toMatchObject({ tokenRegressions: 1 });
  });

  it('a worker that exits by itself is a violation with its stderr tail', async () => {
    const f = clean().fault(10, { type: 'exit', instance: 'w2.1', node: 'w2.1', code: 1, signal: null, expected: false, stderrTail: 'keeper: boom' });
    const r = await check(f);
    expect(r.violations.unexpectedExits).toHaveLength(1);
    expect(r.violations.unexpectedExits[0]!.text).toMatch(/keeper: boom/);
  });

  describe('finite tasks: a side effect at most once', () => {
    it('one effect, done in the table: no violation of any rule, though the task ended long before the run did', async () => {
      const f = clean().finite(1, 'j').job('w1.1', 'j', 1, 2, 4).done('j', 'w1.1', 1);
      const r = await check(f);
      expect(count(r)).toEqual({ overlaps: 0, workAfterStop: 0, tokenRegressions: 0, slowTakeovers: 0, lostTasks: 0, endState: 0, falseTakeovers: 0, unexpectedExits: 0, atMostOnce: 0 });
      expect(r.finite).toEqual({ tasks: 1, effects: 1, repeated: 0 });
    });

    it('a second effect without a fault of the node that did the first is a violation', async () => {
      // w1.1 does the effect at 4 s; w2.1 does it again at 9 s under a newer token, and w1.1 had no fault.
      const f = clean().finite(1, 'j').job('w1.1', 'j', 1, 2, 4).job('w2.1', 'j', 2, 6, 9).done('j', 'w2.1', 2);
      const r = await check(f);
      expect(count(r)).toMatchObject({ atMostOnce: 1, overlaps: 0 });
      expect(r.violations.atMostOnce[0]!.text).toMatch(/^j \(finite\): side effect on w1\.1 at 4\.000 s \(token 1\), again on w2\.1 at 9\.000 s \(token 2\), with no fault of w1\.1 in between/);
      expect(r.finite).toEqual({ tasks: 1, effects: 2, repeated: 1 });
      // A stall of w1.1, or a fault of w2.1, excuses nothing.
      const stalled = clean().finite(1, 'j').job('w1.1', 'j', 1, 2, 4).job('w2.1', 'j', 2, 6, 9).done('j', 'w2.1', 2);
      stalled.fault(5, { type: 'stall', fault: 1, instance: 'w1.1', node: 'w1.1' }).fault(5.5, { type: 'unstall', fault: 1, instance: 'w1.1', node: 'w1.1' });
      stalled.fault(5, { type: 'partition', fault: 2, instance: 'w2.1', node: 'w2.1' }).fault(5.5, { type: 'heal', fault: 2, instance: 'w2.1', node: 'w2.1' });
      expect(count(await check(stalled))).toMatchObject({ atMostOnce: 1 });
    });

    it('a repeat after the first node was killed, paused, partitioned or lost its lease before recording the outcome is excused', async () => {
      const repeatAfter = (fault: (f: Fixture) => Fixture) => fault(clean().finite(1, 'j').job('w1.1', 'j', 1, 2, 4).job('w2.1', 'j', 2, 6, 9).done('j', 'w2.1', 2));
      const killed = repeatAfter((f) => f.fault(4.01, { type: 'kill', fault: 1, instance: 'w1.1', node: 'w1.1' }).fault(4.02, { type: 'exit', instance: 'w1.1', node: 'w1.1', code: null, signal: 'SIGKILL', expected: true }));
      const paused = repeatAfter((f) => f.fault(4.01, { type: 'pause', fault: 1, instance: 'w1.1', node: 'w1.1' }).fault(12, { type: 'resume', fault: 1, instance: 'w1.1', node: 'w1.1' }));
      const partitioned = repeatAfter((f) => f.fault(4.01, { type: 'partition', fault: 1, instance: 'w1.1', node: 'w1.1' }).fault(12, { type: 'heal', fault: 1, instance: 'w1.1', node: 'w1.1' }));
      const fenced = repeatAfter((f) => f.log('w1.1', 4.5, 'lease expired; stopping all tasks until a heartbeat succeeds').log('w1.1', 10, 'lease renewed; resuming tasks'));
      for (const f of [killed, paused, partitioned, fenced]) {
        const r = await check(f);
        expect(r.violations.atMostOnce).toEqual([]);
        expect(r.finite.repeated).toBe(1);
      }
      // A fault that ended before the first effect excuses nothing.
      const before = repeatAfter((f) => f.fault(1, { type: 'partition', fault: 1, instance: 'w1.1', node: 'w1.1' }).fault(1.5, { type: 'heal', fault: 1, instance: 'w1.1', node: 'w1.1' }));
      expect(count(await check(before))).toMatchObject({ atMostOnce: 1 });
    });

    it('a finite task not done in the final table is a violation', async () => {
      // Cut off at 5 s with no effect, and left 'ready' in the table.
      const f = clean().finite(3, 'j').job('w1.1', 'j', 1, 3, undefined, 5);
      f.tasks.push({ pk: 'task#j', sk: 'task', id: 'j', type: 'demo-job', owner: 'w1.1', ownerInc: 1, token: 1, state: 'ready' });
      const r = await check(f);
      expect(count(r)).toMatchObject({ atMostOnce: 1, endState: 0, lostTasks: 0 });
      expect(r.violations.atMostOnce[0]!.text).toMatch(/^j \(finite, created at 3\.000 s\): 0 side effects, and it is 'ready' at the end, not 'done'/);
    });
  });

  describe('stubborn-term: a leave with handlers that ignore their signal', () => {
    // w1.1 gets SIGTERM at 5 s, hands b over at once, keeps a (its handler ignores the signal)
    // until its leave ends at 7 s, exits, and w2.1 takes a over at 13.5 s: 8.5 s after the
    // SIGTERM (more than the 7 s bound) but 6.5 s after the leave ended.
    const stubborn = (stuckLine: boolean) => {
      const f = new Fixture(['a', 'b']).worker('w1.1').worker('w2.1').run('w1.1', 'a', 1, -1, 4.95).run('w1.1', 'b', 1, -1, 4.95, 5.01);
      f.run('w2.1', 'b', 2, 5.3, 22.5).run('w2.1', 'a', 2, 13.5, 22.5).owner('a', 'w2.1', 2).owner('b', 'w2.1', 2).node('w2.1');
      f.fault(5, { type: 'term', fault: 1, instance: 'w1.1', node: 'w1.1', stubborn: true }).fault(7.2, { type: 'exit', instance: 'w1.1', node: 'w1.1', code: 0, signal: null, expected: true });
      if (stuckLine) f.log('w1.1', 7, 'left with tasks whose handlers ignore their signal; peers take them over once the lease has run out', { node: 'w1.1', tasks: ['a'] });
      return f;
    };

    it('the stuck task is timed from the end of the leave, the others as a handover', async () => {
      const r = await check(stubborn(true));
      expect(r.faults['stubborn-term']).toBe(1);
      expect(r.faults['term']).toBe(0);
      expect(r.handover.count).toBe(1);
      expect(r.handover.maxMs).toBeCloseTo(300, 0);
      expect(r.takeover.count).toBe(1);
      expect(r.takeover.maxMs).toBeCloseTo(6500, 0);
      expect(r.takeover.byKind['stubborn-term']!.count).toBe(1);
      expect(count(r)).toMatchObject({ slowTakeovers: 0, lostTasks: 0, falseTakeovers: 0, unexpectedExits: 0 });
    });

    it('a stuck task taken over later than the bound after the leave ended is slow; without the leave\'s line nothing counts as stuck', async () => {
      const r = await check(stubborn(false));
      expect(r.takeover.count).toBe(0); // no stuck task named: both count as handed over
      expect(r.handover.count).toBe(2);
      // Taken at 15.5 s: 8.5 s after the leave ended at 7 s, more than the 7 s bound.
      const f = new Fixture(['a']).worker('w1.1').worker('w2.1').run('w1.1', 'a', 1, -1, 4.95).run('w2.1', 'a', 2, 15.5, 22.5).owner('a', 'w2.1', 2).node('w2.1');
      f.fault(5, { type: 'term', fault: 1, instance: 'w1.1', node: 'w1.1', stubborn: true }).fault(7.2, { type: 'exit', instance: 'w1.1', node: 'w1.1', code: 0, signal: null, expected: true });
      f.log('w1.1', 7, 'left with tasks whose handlers ignore their signal; peers take them over once the lease has run out', { node: 'w1.1', tasks: ['a'] });
      expect(count(await check(f))).toMatchObject({ slowTakeovers: 1 });
    });
  });
});
