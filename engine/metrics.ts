import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ROLES } from '../shard/roles.js';
import { type RoleTransition } from '../protocol/cluster.js';
import type { LoadObserver } from '../shard/ports.js';

/**
 * The engine's Prometheus metrics: every role transition of every shard copy
 * it runs (by edge) and the role each copy has now; per shard, how long
 * requests queued before their batch and how many commands were shed
 * (`overloaded`) instead of queueing (issue 17, admission control). Served on
 * http://127.0.0.1:<--metrics-port>/metrics when the flag is given.
 */
export class EngineMetrics {
  readonly registry = new Registry();
  private readonly transitions = new Counter({
    name: 'engine_role_transitions_total',
    help: 'Role transitions of the shard copies in this process, by edge',
    labelNames: ['shard', 'from', 'to'] as const,
    registers: [this.registry],
  });
  private readonly roles = new Gauge({
    name: 'engine_shard_role',
    help: '1 for the role each shard copy in this process has now, 0 for the others',
    labelNames: ['shard', 'role'] as const,
    registers: [this.registry],
  });

  private readonly queueSeconds = new Histogram({
    name: 'engine_queue_seconds',
    help: 'Time a command request waited in its shard queue before the batch that decided it',
    labelNames: ['shard'] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  });
  private readonly shed = new Counter({
    name: 'engine_commands_shed_total',
    help: 'Commands answered overloaded (never decided) because the shard queue was full or too old',
    labelNames: ['shard'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'engine_' });
  }

  observe(transition: RoleTransition): void {
    const shard = String(transition.shard);
    this.transitions.inc({ shard, from: transition.from, to: transition.to });
    for (const role of ROLES) this.roles.set({ shard, role }, role === transition.to ? 1 : 0);
  }

  /** Where shard `shard`'s pipeline reports its load. */
  loadOf(shard: number): LoadObserver {
    const labels = { shard: String(shard) };
    const queue = this.queueSeconds.labels(labels);
    const shed = this.shed.labels(labels);
    return {
      queued: (ms) => queue.observe(ms / 1_000),
      shed: (commands) => shed.inc(commands),
    };
  }

  /** Serves GET /metrics on 127.0.0.1:`port` (an exporter, not an API: anything else is 404). */
  async serve(port: number): Promise<Server> {
    const server = createServer((request, response) => {
      if (request.method !== 'GET' || request.url !== '/metrics') {
        response.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        () => response.writeHead(500).end(),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return server;
  }
}
