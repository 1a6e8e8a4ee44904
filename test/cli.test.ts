import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { waitFor } from './support/cluster.js';
import { freshTable, type TestTable } from './support/dynamo.js';

/** The `keeper` command as a user runs it: a real process, its exit code and its output. */
const bin = join(import.meta.dirname, '..', 'bin', 'keeper.js');

function keeper(args: string[], env: Record<string, string> = {}) {
  const out = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    env: { ...process.env, AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint'), ...env },
    timeout: 30_000,
  });
  return { code: out.status, stdout: out.stdout, stderr: out.stderr };
}

let t: TestTable;
beforeAll(async () => {
  t = await freshTable('cli');
});
afterAll(async () => {
  await t.drop();
});

describe('keeper CLI: bad use exits 2 with one readable line', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['unknown flag', ['worker', '--table', 'x-table', '--bogus'], /unknown option '--bogus'/],
    ['period <= 0', ['worker', '--table', 'x-table', '--period-ms', '0'], /periodMs must be > 0/],
    ['period not a number', ['worker', '--table', 'x-table', '--period-ms', 'soon'], /--period-ms must be a number/],
    ['thresholds that break self-fencing', ['worker', '--table', 'x-table', '--stale-ticks', '2'], /staleTicks 2 is too small/],
    ['a fence window past the safety bound', ['worker', '--table', 'x-table', '--fence-ms', '5000'], /fenceMs \(5000\) is unsafe/],
    ['malformed --payload', ['task', 'add', 'a', '--table', 'x-table', '--payload', '{nope'], /--payload is not valid JSON/],
    ['missing --table', ['status'], /missing --table/],
    ['invalid endpoint', ['status', '--table', 'x-table', '--endpoint', 'not a url'], /invalid endpoint/],
    ['unknown takeover mode', ['worker', '--table', 'x-table', '--takeover', 'random'], /Allowed choices are balanced, detector/],
    ['task id too long', ['task', 'add', 'x'.repeat(300), '--table', 'x-table'], /id must be at most 256 characters/],
    ['doorbell port out of range', ['worker', '--table', 'x-table', '--doorbell-port', '70000'], /doorbellPort must be 0 \(any free port\) to 65535/],
    ['a negative start rate', ['worker', '--table', 'x-table', '--max-starts-per-second', '-1'], /maxStartsPerSecond must be >= 0 \(0: no limit\)/],
    ['a start rate that is not a number', ['worker', '--table', 'x-table', '--max-starts-per-second', 'fast'], /--max-starts-per-second must be a number/],
    ['a priority that is not whole', ['task', 'add', 'a', '--table', 'x-table', '--priority', '1.5'], /priority must be a whole number from -1000000 to 1000000, got "1.5"/],
    ['a priority that is not a number', ['task', 'add', 'a', '--table', 'x-table', '--priority', 'high'], /priority must be a whole number from -1000000 to 1000000, got "high"/],
    ['a priority out of range', ['task', 'add', 'a', '--table', 'x-table', '--priority', '2000000'], /priority must be a whole number from -1000000 to 1000000, got "2000000"/],
    ['a label that is not key=value', ['worker', '--table', 'x-table', '--label', 'zone'], /^keeper: --label: "zone" is not key=value \(such as zone=eu-west-1a\)\n$/],
    ['a label with a bad value', ['worker', '--table', 'x-table', '--label', 'zone=a b'], /^keeper: --label: "zone=a b": a label value is 1-128 letters/],
    ['a required label that is not key=value', ['task', 'add', 'a', '--table', 'x-table', '--require', 'zone'], /^keeper: --require: "zone" is not key=value/],
    ['a preferred label with a bad key', ['task', 'add', 'a', '--table', 'x-table', '--prefer', '-x=1'], /^keeper: --prefer: "-x=1": a label key is/],
  ];
  it.each(cases)('%s', (_name, args, message) => {
    const { code, stderr } = keeper(args, { KEEPER_TABLE: '' });
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
    expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('a start rate in the environment that is not a number, or negative', () => {
    const word = keeper(['worker', '--table', 'x-table'], { KEEPER_MAX_STARTS_PER_SECOND: 'lots' });
    expect({ code: word.code, stderr: word.stderr.trim() }).toEqual({ code: 2, stderr: 'keeper: KEEPER_MAX_STARTS_PER_SECOND must be a number, got "lots"' });
    const negative = keeper(['worker', '--table', 'x-table'], { KEEPER_MAX_STARTS_PER_SECOND: '-3' });
    expect({ code: negative.code, stderr: negative.stderr.trim() }).toEqual({ code: 2, stderr: 'keeper: maxStartsPerSecond must be >= 0 (0: no limit)' });
  });

  it('labels in the environment that are not key=value', () => {
    const { code, stderr } = keeper(['worker', '--table', 'x-table'], { KEEPER_LABELS: 'zone=a,ssd' });
    expect({ code, stderr: stderr.trim() }).toEqual({ code: 2, stderr: 'keeper: KEEPER_LABELS: "ssd" is not key=value (such as zone=eu-west-1a)' });
  });

  it('a doorbell switch in the environment that is neither on nor off', () => {
    const { code, stderr } = keeper(['worker', '--table', 'x-table'], { KEEPER_DOORBELL: 'maybe' });
    expect(code).toBe(2);
    expect(stderr.trim()).toMatch(/^.*KEEPER_DOORBELL must be on or off, got "maybe"$/);
  });

  it('a missing table is a one-line runtime error, not a stack trace', () => {
    const { code, stderr } = keeper(['status', '--table', 'no-such-table']);
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(/does not exist; create it with `keeper init/);
  });
});

describe('keeper health: exit codes', () => {
  it('bad use exits 2 with one line: no port anywhere, a port that is not one, an extra argument', () => {
    const cases: Array<[string[], Record<string, string>, RegExp]> = [
      [['health'], { KEEPER_HEALTH_PORT: '' }, /^keeper: no health port: give --port, or set KEEPER_HEALTH_PORT as for the worker$/],
      [['health', '--port', 'abc'], {}, /^error: option '--port <n>' argument 'abc' is invalid\. --port must be a port number from 1 to 65535$/],
      [['health'], { KEEPER_HEALTH_PORT: '70000' }, /^keeper: KEEPER_HEALTH_PORT must be a port number from 1 to 65535$/],
      [['health', 'now', '--port', '7071'], {}, /^error: too many arguments for 'health'/],
      [['health', '--port', '7071', '--timeout-ms', '0'], {}, /--timeout-ms must be a whole number >= 1$/],
    ];
    for (const [args, env, message] of cases) {
      const { code, stdout, stderr } = keeper(args, env);
      expect({ args, code, stdout, lines: stderr.trim().split('\n').length }).toEqual({ args, code: 2, stdout: '', lines: 1 });
      expect(stderr.trim()).toMatch(message);
    }
  });

  it('no worker on the port is unhealthy: exit 1, one line on stdout', () => {
    const { code, stdout, stderr } = keeper(['health', '--port', '1']);
    expect({ code, stderr }).toEqual({ code: 1, stderr: '' });
    expect(stdout).toBe('unhealthy: no worker answers on 127.0.0.1:1: nothing listens there (the worker has not started, or has exited)\n');
  });

  it('a worker refuses a health port that is not one, before it joins', () => {
    const { code, stderr } = keeper(['worker', '--table', 'x-table'], { KEEPER_HEALTH_PORT: '99999' });
    expect(code).toBe(2);
    expect(stderr.trim()).toBe('keeper: KEEPER_HEALTH_PORT must be a port number from 0 (any free port) to 65535, got "99999"');
  });
});

describe('keeper --version', () => {
  it("prints the package's version and exits 0", () => {
    const { version } = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) expect(keeper([flag])).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: '' });
  });
});

describe('keeper CLI against DynamoDB Local', () => {
  it('init is idempotent', () => {
    const table = `${t.table}-init`;
    expect(keeper(['init', '--table', table])).toMatchObject({ code: 0, stdout: `created table ${table}\n` });
    expect(keeper(['init', '--table', table])).toMatchObject({ code: 0, stdout: `table ${table} already exists and matches the schema\n` });
  });

  it('adds, lists and removes tasks, and shows status as JSON', () => {
    expect(keeper(['task', 'add', 'mail-1', '--table', t.table, '--payload', '{"box":"ops"}'])).toMatchObject({ code: 0, stdout: 'added task mail-1 (demo)\n' });
    expect(keeper(['task', 'add', 'mail-1', '--table', t.table, '--payload', '{"box":"ops"}'])).toMatchObject({ code: 0, stdout: 'task mail-1 already exists\n' });
    const conflict = keeper(['task', 'add', 'mail-1', '--table', t.table, '--payload', '{"box":"dev"}']);
    expect(conflict.code).toBe(2);
    expect(conflict.stderr).toMatch(/already exists with a different type or payload/);
    const listed = keeper(['task', 'ls', '--table', t.table]);
    expect(listed.stdout).toMatch(/mail-1\s+demo\s+0\s+-\s+0\s+ready/);
    const status = JSON.parse(keeper(['status', '--table', t.table, '--json']).stdout) as { tasks: Array<{ id: string; payload: unknown }> };
    expect(status.tasks.find((x) => x.id === 'mail-1')?.payload).toEqual({ box: 'ops' });
    expect(keeper(['task', 'rm', 'mail-1', '--table', t.table])).toMatchObject({ code: 0, stdout: 'removed task mail-1\n' });
    const missing = keeper(['task', 'rm', 'mail-1', '--table', t.table]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/task "mail-1" does not exist/);
  });

  it('adds a task with a priority, which task show, task ls and status show; a bad one exits 2 with nothing written', () => {
    expect(keeper(['task', 'add', 'urgent-1', '--table', t.table, '--priority', '7'])).toMatchObject({ code: 0, stdout: 'added task urgent-1 (demo, priority 7)\n' });
    expect(JSON.parse(keeper(['task', 'show', 'urgent-1', '--table', t.table]).stdout)).toMatchObject({ id: 'urgent-1', priority: 7 });
    expect(keeper(['task', 'ls', '--table', t.table]).stdout).toMatch(/urgent-1\s+demo\s+7\s+-\s+0\s+ready/);
    const status = JSON.parse(keeper(['status', '--table', t.table, '--json']).stdout) as { tasks: Array<{ id: string; priority: number }> };
    expect(status.tasks.find((x) => x.id === 'urgent-1')?.priority).toBe(7);
    // Added again with another priority: a conflict, and the stored one stands.
    const again = keeper(['task', 'add', 'urgent-1', '--table', t.table, '--priority', '3']);
    expect({ code: again.code, stderr: again.stderr.trim() }).toEqual({ code: 2, stderr: 'keeper: task "urgent-1" already exists with priority 7; a task\'s priority is set when it is added' });
    // Without one: priority 0, shown as such.
    keeper(['task', 'add', 'plain-1', '--table', t.table]);
    expect(JSON.parse(keeper(['task', 'show', 'plain-1', '--table', t.table]).stdout)).toMatchObject({ id: 'plain-1', priority: 0 });
    for (const bad of ['-0.5', '1e3', '', '99999999']) {
      const out = keeper(['task', 'add', 'bad-1', '--table', t.table, '--priority', bad]);
      expect({ bad, code: out.code, message: /priority must be a whole number from -1000000 to 1000000/.test(out.stderr) }).toEqual({ bad, code: 2, message: true });
    }
    expect(keeper(['task', 'show', 'bad-1', '--table', t.table]).code).toBe(2); // never written
  });

  it('adds a task with a weight, which task show, task ls and status show with the nodes\' capacity; one heavier than every live node is listed as unplaceable; a bad weight exits 2 with nothing written', async () => {
    // A table of its own, with one live node of capacity 4 (its item written by hand).
    const own = await freshTable('cli-weight');
    const store = own.store();
    await store.joinNode({ id: 'small', inc: 1, counter: 0, state: 'alive', inbox: 0, neighbours: 0, taskCount: 0, capacity: 4, types: ['demo'], watch: {}, joinedAt: 'j' }, undefined);
    expect(keeper(['task', 'add', 'heavy-1', '--table', own.table, '--weight', '5'])).toMatchObject({ code: 0, stdout: 'added task heavy-1 (demo, weight 5)\n' });
    expect(keeper(['task', 'add', 'light-1', '--table', own.table, '--weight', '3'])).toMatchObject({ code: 0, stdout: 'added task light-1 (demo, weight 3)\n' });
    expect(JSON.parse(keeper(['task', 'show', 'heavy-1', '--table', own.table]).stdout)).toMatchObject({ id: 'heavy-1', weight: 5 });
    expect(keeper(['task', 'ls', '--table', own.table]).stdout).toMatch(/heavy-1\s+demo\s+0\s+5\s+-\s+0\s+ready/);
    const shown = keeper(['status', '--table', own.table]).stdout;
    expect(shown).toMatch(/small\s+1\s+0\s+alive\s+0\s+0\/4\s+-\n/);
    expect(shown).toMatch(/UNPLACEABLE \(1\)[^\n]*\nID\s+WHY\nheavy-1\s+weight 5 exceeds every node's capacity\n/);
    expect(JSON.parse(keeper(['status', '--table', own.table, '--json']).stdout).unplaceable).toEqual([{ id: 'heavy-1', reason: "weight 5 exceeds every node's capacity" }]);
    const again = keeper(['task', 'add', 'heavy-1', '--table', own.table, '--weight', '2']);
    expect({ code: again.code, stderr: again.stderr.trim() }).toEqual({ code: 2, stderr: 'keeper: task "heavy-1" already exists with weight 5; a task\'s weight is set when it is added' });
    for (const bad of ['0', '-1', '1.5', 'two', '', '1000001']) {
      const out = keeper(['task', 'add', 'bad-w', '--table', own.table, '--weight', bad]);
      // One line that says what is wrong (commander adds its usage hint below it, as for every bad option).
      expect({ bad, code: out.code, message: /^error: .*--weight: weight must be a whole number from 1 to 1000000, got/.test(out.stderr.split('\n')[0]!) }).toEqual({ bad, code: 2, message: true });
    }
    expect(keeper(['task', 'show', 'bad-w', '--table', own.table]).code).toBe(2); // never written
    await own.drop();
  });

  it('adds a task that requires and prefers labels, which task show and status show with the nodes\' labels; one no live node may run is listed as unplaceable with the label it needs; nothing is written for a bad selector', async () => {
    const own = await freshTable('cli-labels');
    const store = own.store();
    await store.joinNode({ id: 'in-b', inc: 1, counter: 0, state: 'alive', inbox: 0, neighbours: 0, taskCount: 0, capacity: 4, types: ['demo'], watch: {}, joinedAt: 'j', labels: { zone: 'b', disk: 'ssd' } }, undefined);
    expect(keeper(['task', 'add', 'zoned', '--table', own.table, '--require', 'zone=a', '--prefer', 'disk=ssd'])).toMatchObject({ code: 0, stdout: 'added task zoned (demo, requires zone=a, prefers disk=ssd)\n' });
    expect(JSON.parse(keeper(['task', 'show', 'zoned', '--table', own.table]).stdout)).toMatchObject({ id: 'zoned', require: { zone: 'a' }, prefer: { disk: 'ssd' } });
    const shown = keeper(['status', '--table', own.table]).stdout;
    expect(shown).toMatch(/in-b\s+1\s+0\s+alive\s+0\s+-\s+disk=ssd,zone=b\n/);
    expect(shown).toMatch(/zoned\s+demo\s+0\s+zone=a\s+disk=ssd\s+-\s+0\s+ready/);
    expect(shown).toMatch(/UNPLACEABLE \(1\)[^\n]*\nID\s+WHY\nzoned\s+needs zone=a: no live node has it\n/);
    const bad = keeper(['task', 'add', 'bad-sel', '--table', own.table, '--require', 'zone=a', '--require', 'zone=b']);
    expect({ code: bad.code, stderr: bad.stderr.trim() }).toEqual({ code: 2, stderr: 'keeper: --require: zone is given twice (a and b)' });
    expect(keeper(['task', 'show', 'bad-sel', '--table', own.table]).code).toBe(2); // never written
    await own.drop();
  });

  it('shows a task with its checkpoint (task show, and its start in task ls)', async () => {
    const store = t.store();
    await store.createTask({ id: 'poll-1', type: 'poll', payload: { feed: 'x' } }, 'now');
    await store.moveTask('poll-1', { owner: null, ownerInc: 0, token: 0 }, { owner: 'n1', ownerInc: 1 });
    await store.updateTask('poll-1', { owner: 'n1', ownerInc: 1, token: 1 }, { checkpoint: JSON.stringify({ cursor: 'c'.repeat(60) }) });
    const shown = keeper(['task', 'show', 'poll-1', '--table', t.table]);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ id: 'poll-1', owner: 'n1', token: 1, payload: { feed: 'x' }, checkpoint: { cursor: 'c'.repeat(60) } });
    expect(keeper(['task', 'ls', '--table', t.table]).stdout).toMatch(/poll-1\s+poll\s+0\s+n1\s+1\s+ready\s+\{"feed":"x"\}\s+\{"cursor":"c+…\n/);
    const missing = keeper(['task', 'show', 'no-such-task', '--table', t.table]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/task "no-such-task" does not exist/);
  });

  it('updates a payload: the new token and who restarts it, compare-and-set with --if-token, the same payload again a no-op; status and task show describe it', async () => {
    const store = t.store();
    const run = (...args: string[]) => keeper(['task', ...args, '--table', t.table]);
    expect(run('add', 'upd-1', '--payload', '{"box":"old"}').code).toBe(0);
    expect(run('update', 'upd-1', '--payload', '{"box":"new"}')).toMatchObject({ code: 0, stdout: 'updated task upd-1: token 1; it waits in the pool with the new payload\n', stderr: '' });
    expect(JSON.parse(run('show', 'upd-1').stdout)).toMatchObject({ id: 'upd-1', token: 1, payload: { box: 'new' }, owner: null });
    expect(run('ls').stdout).toMatch(/upd-1\s+demo\s+0\s+-\s+1\s+ready\s+\{"box":"new"\}\s+-\n/);
    expect(run('update', 'upd-1', '--payload', '{"box":"newer"}', '--if-token', '1')).toMatchObject({ code: 0, stdout: 'updated task upd-1: token 2; it waits in the pool with the new payload\n' });
    expect(run('update', 'upd-1', '--payload', '{"box":"newer"}')).toMatchObject({ code: 0, stdout: 'task upd-1 already has that payload; nothing changed\n' });
    // Owned: the owner is told (its inbox), and restarts it.
    await store.createTask({ id: 'upd-2', type: 'demo', payload: 1 }, 'now');
    await store.moveTask('upd-2', { owner: null, ownerInc: 0, token: 0 }, { owner: 'cli-owner', ownerInc: 1 });
    await store.joinNode({ id: 'cli-owner', inc: 1, counter: 0, state: 'alive', inbox: 0, neighbours: 0, taskCount: 1, capacity: 10, types: [], watch: {}, joinedAt: 'j' }, undefined);
    expect(run('update', 'upd-2', '--payload', '2')).toMatchObject({ code: 0, stdout: 'updated task upd-2: token 2; its owner cli-owner restarts it with the new payload\n' });
    expect((await store.getNode('cli-owner'))?.inbox).toBe(1);
    expect(JSON.parse(keeper(['status', '--table', t.table, '--json']).stdout).tasks).toContainEqual(expect.objectContaining({ id: 'upd-2', owner: 'cli-owner', token: 2, payload: 2 }));
    await store.markLeft('cli-owner', 1);
  });

  it('refuses a bad payload update with exit 2 and one line, writing nothing', async () => {
    const store = t.store();
    expect(keeper(['task', 'add', 'upd-bad', '--payload', '{"v":1}', '--table', t.table]).code).toBe(0);
    await store.createTask({ id: 'upd-done', type: 'demo', payload: 1 }, 'now');
    await store.moveTask('upd-done', { owner: null, ownerInc: 0, token: 0 }, { owner: 'gone', ownerInc: 1 });
    await store.updateTask('upd-done', { owner: 'gone', ownerInc: 1, token: 1 }, { state: 'done', result: 'r' });
    const before = await store.getTasks(['upd-bad', 'upd-done']);
    const refusals: Array<[string[], string]> = [
      [['upd-bad', '--payload', '{nope'], 'keeper: --payload is not valid JSON: {nope'],
      [['upd-bad'], "error: required option '--payload <json>' not specified"],
      [['upd-bad', '--payload', '2', '--if-token', '-1'], "error: option '--if-token <n>' argument '-1' is invalid. --if-token must be a whole number >= 0"],
      [['upd-bad', '--payload', '2', '--if-token', 'soon'], "error: option '--if-token <n>' argument 'soon' is invalid. --if-token must be a whole number >= 0"],
      [['upd-bad', '--payload', '2', '--if-token', '7'], 'keeper: task "upd-bad" has token 0, not 7: it changed since you read it; read it again and retry'],
      [['no-such-task', '--payload', '2'], 'keeper: task "no-such-task" does not exist'],
      [['upd-done', '--payload', '2'], 'keeper: task "upd-done" is done; only ready tasks can be updated (its result stands: add a new task to run it with this payload)'],
      [['x'.repeat(300), '--payload', '2'], 'keeper: id must be at most 256 characters'],
    ];
    for (const [args, message] of refusals) {
      const out = keeper(['task', 'update', ...args, '--table', t.table]);
      expect({ args: args.join(' ').slice(0, 40), code: out.code, stdout: out.stdout, stderr: out.stderr.trim().split('\n')[0], lines: out.stderr.trim().split('\n').length }).toEqual({
        args: args.join(' ').slice(0, 40),
        code: 2,
        stdout: '',
        stderr: message,
        lines: message.startsWith('error:') ? 2 : 1, // commander adds its "(run with --help for usage)"
      });
    }
    expect(await store.getTasks(['upd-bad', 'upd-done', 'no-such-task'])).toEqual(before);
  });

  it('drains and undrains a live node, which status shows; refuses an unknown, dead or departed node with exit 2, writing nothing', async () => {
    // A table of its own: the nodes made here look alive, and a worker would hand them tasks.
    const own = await freshTable('cli-drain');
    const store = own.store();
    const join = (id: string) => store.joinNode({ id, inc: 1, counter: 0, state: 'alive', inbox: 0, neighbours: 0, taskCount: 3, capacity: 10, types: ['demo'], watch: {}, joinedAt: 'j' }, undefined);
    await join('drain-me');
    expect(keeper(['drain', 'drain-me', '--table', own.table])).toMatchObject({
      code: 0,
      stdout: 'node drain-me is draining: it takes no new tasks and hands its 3 tasks to other nodes (`keeper status` shows them go; `keeper undrain drain-me` ends it)\n',
    });
    expect((await store.getNode('drain-me'))?.draining).toBe(true);
    expect(keeper(['status', '--table', own.table]).stdout).toMatch(/drain-me\s+1\s+0\s+alive \(draining\)\s+0/);
    expect(JSON.parse(keeper(['status', '--table', own.table, '--json']).stdout).nodes).toContainEqual(expect.objectContaining({ id: 'drain-me', draining: true }));
    expect(keeper(['undrain', 'drain-me', '--table', own.table])).toMatchObject({ code: 0, stdout: 'node drain-me takes tasks again\n' });
    expect((await store.getNode('drain-me'))?.draining).toBeUndefined();
    expect(keeper(['status', '--table', own.table]).stdout).toMatch(/drain-me\s+1\s+0\s+alive\s+0/);

    // A node of a deploy: its version, and the leave it announced on SIGTERM.
    await store.joinNode({ id: 'deploy-old', inc: 1, counter: 0, state: 'alive', inbox: 0, neighbours: 0, taskCount: 0, capacity: 10, types: ['demo'], watch: {}, joinedAt: 'j', version: '1.4.2' }, undefined);
    await store.markLeaving('deploy-old', 1);
    expect(keeper(['status', '--table', own.table]).stdout).toMatch(/deploy-old\s+1\s+0\s+alive \(leaving\)\s+0\s+1\.4\.2\n/);
    expect(keeper(['status', '--table', own.table]).stdout).toMatch(/drain-me\s+1\s+0\s+alive\s+0\s+-\n/);
    expect(JSON.parse(keeper(['status', '--table', own.table, '--json']).stdout).nodes).toContainEqual(expect.objectContaining({ id: 'deploy-old', leaving: true, version: '1.4.2' }));

    await join('drain-dead');
    await store.declareDead('drain-dead', { inc: 1, counter: 0 }, 'observer');
    await join('drain-left');
    await store.markLeft('drain-left', 1);
    const refusals: Array<[string[], string]> = [
      [['drain', 'nobody'], 'keeper: node "nobody" does not exist'],
      [['drain', 'drain-dead'], 'keeper: node "drain-dead" is dead; only a live node can be drained'],
      [['drain', 'drain-left'], 'keeper: node "drain-left" has left; only a live node can be drained'],
      [['undrain', 'nobody'], 'keeper: node "nobody" does not exist'],
      [['drain', 'no such node'], 'keeper: node id must be 1-100 characters of letters, digits, ".", "_", ":" or "-", starting with a letter or digit'],
      [['drain'], "error: missing required argument 'node'"],
    ];
    for (const [args, message] of refusals) {
      const out = keeper([...args, '--table', own.table]);
      expect({ args, code: out.code, stderr: out.stderr.trim().split('\n')[0] }).toEqual({ args, code: 2, stderr: message });
      expect(out.stdout).toBe('');
    }
    expect(await store.getNode('nobody')).toBeUndefined();
    for (const id of ['drain-dead', 'drain-left']) expect((await store.getNode(id))?.draining).toBeUndefined();
    await own.drop();
  });

  it('runs a worker as one OS process that leaves gracefully on SIGTERM and writes the audit log', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keeper-cli-'));
    const audit = join(dir, 'audit.jsonl');
    const store = t.store();
    for (const id of ['w-1', 'w-2']) await store.createTask({ id, type: 'demo', payload: null }, 'now');
    await store.bumpCluster('tasks');
    const child = spawn(process.execPath, [bin, 'worker', '--table', t.table, '--node-id', 'solo', '--period-ms', '250', '--audit-log', audit], {
      env: { ...process.env, AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint') },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor('both tasks worked on', () => {
      try {
        const lines = readFileSync(audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; task: string });
        return ['w-1', 'w-2'].every((task) => lines.some((l) => l.event === 'work' && l.task === task));
      } catch {
        return false;
      }
    });
    // The pid we spawned is the worker itself: no wrapper process between.
    const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
    expect(cmdline).toContain('worker');
    expect((await store.getNode('solo'))?.state).toBe('alive');
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect((await store.getNode('solo'))?.state).toBe('left');
    expect((await store.getTask('w-1'))?.owner).toBeNull();
    const lines = readFileSync(audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, string | number>);
    for (const line of lines) {
      expect(Object.keys(line).sort()).toEqual(['event', 'mono_ns', 'node', 'task', 'token']);
      expect(line['node']).toBe('solo');
      expect(String(line['mono_ns'])).toMatch(/^\d+$/);
    }
    for (const task of ['w-1', 'w-2']) {
      const events = lines.filter((l) => l['task'] === task).map((l) => l['event']);
      expect(events[0]).toBe('start');
      expect(events.at(-1)).toBe('stop');
      expect(events.filter((e) => e === 'work').length).toBeGreaterThan(0);
    }
    expect(stderr).toMatch(/"msg":"left the cluster"/);
  });

  /** A `keeper worker` with the demo handlers and an audit log; `lines()` reads the log so far. */
  const demoWorker = (node: string, extra: string[] = [], table = t.table) => {
    const dir = mkdtempSync(join(tmpdir(), 'keeper-cli-'));
    const audit = join(dir, 'audit.jsonl');
    const child = spawn(process.execPath, [bin, 'worker', '--table', table, '--node-id', node, '--period-ms', '250', '--audit-log', audit, ...extra], {
      env: { ...process.env, AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint') },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const lines = () => {
      try {
        return readFileSync(audit, 'utf8').trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { event: string; task: string; token: number; mono_ns: string });
      } catch {
        return [];
      }
    };
    return { child, exited, lines, stderr: () => stderr };
  };

  it('runs the built-in finite demo-job: it works, does its one side effect (an effect line), and the task is done with its result', async () => {
    const store = t.store();
    await store.createTask({ id: 'job-1', type: 'demo-job', payload: { workMs: 300 } }, 'now');
    await store.bumpCluster('tasks');
    const w = demoWorker('jobber');
    await waitFor('job-1 done', async () => (await store.getTask('job-1'))?.state === 'done');
    const done = await store.getTask('job-1');
    const events = w.lines().filter((l) => l.task === 'job-1');
    expect(events.map((l) => l.event).filter((e) => e !== 'work')).toEqual(['start', 'effect', 'stop']);
    expect(events.filter((l) => l.event === 'work').length).toBeGreaterThanOrEqual(2);
    expect(events.find((l) => l.event === 'effect')!.token).toBe(done!.token);
    expect(done!.result).toEqual({ token: done!.token });
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    await store.deleteTask('job-1');
  });

  it('a slow demo handler on a leave (--demo-stop-delay-ms): the other task is handed over at once, the slow one stays, and the worker exits after --leave-timeout-ms without marking itself left', async () => {
    // A table of its own: exactly these two tasks, whatever the other tests left behind.
    const own = await freshTable('cli-stubborn');
    const store = own.store();
    for (const id of ['s-1', 's-2']) await store.createTask({ id, type: 'demo', payload: null }, 'now');
    await store.bumpCluster('tasks');
    // Every second task it starts is slow: one of the two. The delay is far longer than the test.
    const w = demoWorker('stubborn', ['--leave-timeout-ms', '1500', '--demo-stop-delay-ms', '600000', '--demo-stop-delay-every', '2'], own.table);
    await waitFor('both tasks worked on', () => ['s-1', 's-2'].every((task) => w.lines().some((l) => l.event === 'work' && l.task === task)));
    const termAt = process.hrtime.bigint();
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    const tookMs = Number(process.hrtime.bigint() - termAt) / 1e6;
    expect(tookMs).toBeGreaterThanOrEqual(1400);
    expect(tookMs).toBeLessThan(15_000);
    const stuckLine = w.stderr().split('\n').find((l) => l.includes('left with tasks whose handlers ignore their signal'));
    expect(stuckLine).toBeDefined();
    const stuck = (JSON.parse(stuckLine!) as { tasks: string[] }).tasks;
    expect(stuck).toHaveLength(1);
    const prompt = ['s-1', 's-2'].find((id) => id !== stuck[0])!;
    // Not marked gone: failover takes the stuck task once the lease has run out.
    expect((await store.getNode('stubborn'))?.state).toBe('alive');
    expect((await store.getTask(stuck[0]!))?.owner).toBe('stubborn');
    expect((await store.getTask(prompt))?.owner).toBeNull();
    const lines = w.lines();
    // The prompt one stopped; the slow one never got to its stop line, and neither worked after the signal.
    expect(lines.filter((l) => l.task === prompt).at(-1)!.event).toBe('stop');
    expect(lines.some((l) => l.task === stuck[0] && l.event === 'stop')).toBe(false);
    expect(lines.filter((l) => l.event === 'work' && BigInt(l.mono_ns) > termAt)).toEqual([]);
    await own.drop();
  });
});

describe('keeper worker --handlers <module>', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keeper-handlers-'));
  const modules: Record<string, string> = {
    'good.mjs': `export default {
      echo: { handler: (ctx) => ({ echoed: ctx.task.payload }), mode: 'finite' },
      spin: (ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)),
    };`,
    'named.mjs': `export const handlers = { echo: { handler: () => 'named', mode: 'finite' } };\nexport const other = { echo: { handler: () => 'other', mode: 'finite' } };`,
    'no-export.mjs': 'export const nothingUseful = 1;',
    'not-a-function.mjs': "export default { echo: 'run it' };",
    'empty.mjs': 'export default {};',
    'throws.mjs': "throw new Error('cannot reach the mailbox server');",
    'syntax.mjs': 'export default {',
  };
  for (const [name, text] of Object.entries(modules)) writeFileSync(join(dir, name), text);

  const bad: Array<[string, string, RegExp]> = [
    ['a missing module', './nope.mjs', /^keeper: handler module \.\/nope\.mjs not found \(looked for .*nope\.mjs\)$/],
    ['no default or handlers export', './no-export.mjs', /^keeper: handler module \.\/no-export\.mjs has neither a default export nor an export "handlers"; it exports "nothingUseful"\. Export the map/],
    ['an unknown export name', './named.mjs#missing', /^keeper: handler module \.\/named\.mjs has no export "missing"; it exports "handlers", "other"$/],
    ['an export name that is not one', './named.mjs#no-such thing', /is not an export name; write <module>#<export>/],
    ['a handler that is not a function', './not-a-function.mjs', /^keeper: handler module \.\/not-a-function\.mjs \(export "default"\): "echo" must be a function or \{ handler, mode, maxAttempts \}, got a string$/],
    ['an empty map', './empty.mjs', /has no handlers: map at least one task type to a function$/],
    ['a module that throws when loaded', './throws.mjs', /^keeper: handler module \.\/throws\.mjs failed to load: Error: cannot reach the mailbox server$/],
    ['a module with a syntax error', './syntax.mjs', /^keeper: handler module \.\/syntax\.mjs failed to load: SyntaxError: /],
  ];
  it.each(bad)('refuses %s: exit 2, one line, nothing written', async (_name, spec, message) => {
    const out = spawnSync(process.execPath, [bin, 'worker', '--table', t.table, '--node-id', 'bad-module', '--handlers', spec], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint') },
      timeout: 30_000,
    });
    expect(out.status).toBe(2);
    expect(out.stderr.trim().split('\n')).toHaveLength(1);
    expect(out.stderr.trim()).toMatch(message);
    expect(out.stdout).toBe('');
    expect(await t.store().getNode('bad-module')).toBeUndefined();
  });

  it('refuses --audit-log with --handlers: the audit log records the demo handler only', () => {
    const { code, stderr } = keeper(['worker', '--table', t.table, '--handlers', join(dir, 'good.mjs'), '--audit-log', join(dir, 'audit.jsonl')]);
    expect(code).toBe(2);
    expect(stderr.trim()).toBe('keeper: --audit-log records the demo handler only; drop it, or drop --handlers');
    expect(existsSync(join(dir, 'audit.jsonl'))).toBe(false);
  });

  it('refuses --demo-stop-delay-ms with --handlers: it shapes the demo handler only', () => {
    const { code, stderr } = keeper(['worker', '--table', t.table, '--handlers', join(dir, 'good.mjs'), '--demo-stop-delay-ms', '100']);
    expect(code).toBe(2);
    expect(stderr.trim()).toBe('keeper: --demo-stop-delay-ms and --demo-stop-delay-every shape the demo handler only; drop them, or drop --handlers');
  });

  it('takes the module from KEEPER_HANDLERS too, and refuses it the same way', () => {
    const { code, stderr } = keeper(['worker', '--table', t.table], { KEEPER_HANDLERS: join(dir, 'no-export.mjs') });
    expect(code).toBe(2);
    expect(stderr).toMatch(/has neither a default export nor an export "handlers"/);
  });

  async function runWith(spec: string, nodeId: string, tasks: Array<{ id: string; type: string; payload?: unknown }>, env: Record<string, string> = {}) {
    const store = t.store();
    for (const task of tasks) await store.createTask({ payload: null, ...task }, 'now');
    await store.bumpCluster('tasks');
    const child = spawn(process.execPath, [bin, 'worker', '--table', t.table, '--node-id', nodeId, '--period-ms', '250', ...(spec ? ['--handlers', spec] : [])], {
      cwd: dir,
      env: { ...process.env, AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint'), ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    return { store, child, exited, stderr: () => stderr };
  }

  it("runs a user's handlers, finite and long-running, and leaves on SIGTERM", async () => {
    const run = await runWith('./good.mjs', 'user-node', [
      { id: 'echo-1', type: 'echo', payload: { a: 1 } },
      { id: 'spin-1', type: 'spin' },
    ]);
    await waitFor('echo-1 done', async () => (await run.store.getTask('echo-1'))?.state === 'done');
    expect((await run.store.getTask('echo-1'))?.result).toEqual({ echoed: { a: 1 } });
    await waitFor('spin-1 running on user-node', async () => (await run.store.getTask('spin-1'))?.owner === 'user-node');
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    expect((await run.store.getNode('user-node'))?.state).toBe('left');
    expect((await run.store.getTask('spin-1'))?.owner).toBeNull();
    expect(run.stderr()).toMatch(/"msg":"left the cluster"/);
  });

  it('finds the export "handlers", or the one named after #', async () => {
    for (const [spec, node, expected] of [
      ['./named.mjs', 'named-node', 'named'],
      ['./named.mjs#other', 'other-node', 'other'],
    ] as const) {
      const run = await runWith(spec, node, [{ id: `echo-${node}`, type: 'echo' }]);
      await waitFor(`echo-${node} done`, async () => (await run.store.getTask(`echo-${node}`))?.state === 'done');
      expect((await run.store.getTask(`echo-${node}`))?.result).toBe(expected);
      run.child.kill('SIGTERM');
      expect(await run.exited).toBe(0);
    }
  });
});
