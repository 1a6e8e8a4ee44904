import type { TimelineModel } from './check-result.js';
import type { FaultSpan, RunModel } from './run-model.js';
import { ms } from './time-axis.js';

/**
 * The picture's model (timeline-svg.ts draws it): per worker slot the tasks at work per
 * bucket and the processes that held the slot, every fault, and the marks the rules leave
 * (declarations of death, takeovers).
 */
export function buildTimeline(model: RunModel, marks: { declarations: TimelineModel['declarations']; takeovers: TimelineModel['takeovers'] }): TimelineModel {
  const { lanes, bucketNs } = model.audit;
  const laneModel = [...lanes.keys()]
    .sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)))
    .map((slot) => ({
      slot,
      running: [...lanes.get(slot)!],
      instances: [...model.instances.values()]
        .filter((i) => i.slot === slot)
        .map((i) => ({ name: i.name, node: i.node, fromMs: ms(i.spawn), toMs: ms(i.end ?? model.endNs), clock: i.rate !== 1 || i.offsetMs !== 0 ? `x${Number(i.rate.toFixed(2))}${i.offsetMs >= 0 ? '+' : ''}${(i.offsetMs / 3_600_000).toFixed(1)}h` : '' })),
    }));
  return { endMs: ms(model.endNs), bucketMs: ms(bucketNs), lanes: laneModel, faults: model.faultSpans.map(faultMark), declarations: marks.declarations, takeovers: marks.takeovers };
}

function faultMark(f: FaultSpan): TimelineModel['faults'][number] {
  switch (f.kind) {
    case 'clock':
      return { kind: 'clock', slot: f.slot, fromMs: ms(f.at), label: `${f.instance} clock x${f.rate}, ${(f.offsetMs / 3_600_000).toFixed(1)} h` };
    case 'kill':
    case 'term':
      return { kind: f.kind, slot: f.slot, fromMs: ms(f.at), label: `${f.kind === 'kill' ? 'SIGKILL' : 'SIGTERM'} ${f.instance}` };
    case 'pause':
      return { kind: 'pause', slot: f.slot, fromMs: ms(f.from), toMs: ms(f.to), label: `SIGSTOP ${f.instance}` };
    case 'stall':
      return { kind: 'stall', slot: f.slot, fromMs: ms(f.from), toMs: ms(f.to), label: `stall ${f.instance}` };
    case 'partition':
      return { kind: 'partition', slot: f.slot, fromMs: ms(f.from), toMs: ms(f.to), label: `partition ${f.instance}` };
    case 'net':
      return { kind: 'net', slot: f.slot, fromMs: ms(f.from), toMs: ms(f.to), label: `network errors ${f.instance}` };
    case 'outage':
      return { kind: 'outage', fromMs: ms(f.from), toMs: ms(f.to), label: 'store outage' };
  }
}
