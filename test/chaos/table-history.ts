import { appendFileSync } from 'node:fs';
import { scanTable } from './checker.js';

/**
 * Who owned what, when: the harness scans the table every second or two (directly, not
 * through a proxy) and appends every change of a task's owner, incarnation, token or state
 * and of a node's state or incarnation to table-history.jsonl. Moves are not logged by the
 * workers, so this is what tells, after the fact, which node a token went to. Diagnostics
 * only: the checker does not read it, and a scan that fails (during an outage) is skipped.
 */
export class TableHistory {
  private readonly last = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** The most recent complete scan. */
  latest: Awaited<ReturnType<typeof scanTable>> | undefined;

  constructor(
    private readonly endpoint: string,
    private readonly table: string,
    private readonly path: string,
  ) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => {
      if (!this.running) this.running = this.poll().finally(() => (this.running = undefined));
    }, intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  async poll(): Promise<void> {
    let snapshot;
    try {
      snapshot = await scanTable(this.endpoint, this.table);
    } catch {
      return;
    }
    this.latest = snapshot;
    const mono = process.hrtime.bigint().toString();
    const lines: string[] = [];
    const note = (key: string, record: Record<string, unknown>) => {
      const text = JSON.stringify(record);
      if (this.last.get(key) === text) return;
      this.last.set(key, text);
      lines.push(JSON.stringify({ mono_ns: mono, ...record }));
    };
    for (const t of snapshot.tasks) note(`task ${String(t['id'])}`, { task: t['id'], owner: t['owner'] ?? null, ownerInc: t['ownerInc'], token: t['token'], state: t['state'] });
    for (const n of snapshot.nodes) note(`node ${String(n['id'])}`, { node: n['id'], state: n['state'], inc: n['inc'], deadBy: n['deadBy'] ?? null });
    if (lines.length > 0) appendFileSync(this.path, `${lines.join('\n')}\n`);
  }
}
