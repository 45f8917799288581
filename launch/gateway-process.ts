import { freePort } from './ports.js';
import { ManagedProcess } from './managed-process.js';

export type GatewayProcessOptions = {
  natsUrl: string;
  /** Shared by every gateway of a test, so tokens minted in the test (or by another gateway) are valid. Absent: the gateway's secret file. */
  secret?: string;
  port?: number;
  /** Default 127.0.0.1 (tests only touch loopback). */
  host?: string;
  /** Extra flags, e.g. ['--user-commands-per-sec', '5']. */
  args?: string[];
  env?: Record<string, string>;
};

/** A real gateway process (`dist/gateway/main.js`), by default on a free port of 127.0.0.1. */
export class GatewayProcess extends ManagedProcess {
  private constructor(
    private readonly options: GatewayProcessOptions,
    readonly port: number,
  ) {
    super('gateway', '"msg":"gateway ready"');
  }

  static async start(options: GatewayProcessOptions): Promise<GatewayProcess> {
    const gateway = new GatewayProcess(options, options.port ?? (await freePort()));
    await gateway.launch();
    return gateway;
  }

  get url(): string {
    return `http://${this.options.host ?? '127.0.0.1'}:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://${this.options.host ?? '127.0.0.1'}:${this.port}/v1/ws`;
  }

  protected command() {
    const script = new URL('../gateway/main.js', import.meta.url).pathname;
    return {
      file: process.execPath,
      args: [
        script,
        '--nats',
        this.options.natsUrl,
        '--host',
        this.options.host ?? '127.0.0.1',
        '--port',
        String(this.port),
        ...(this.options.args ?? []),
      ],
    };
  }

  protected override environment(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      ...(this.options.secret ? { GATEWAY_SECRET: this.options.secret } : {}),
      ...(this.options.env ?? {}),
    };
  }

  async close(): Promise<void> {
    await this.terminate();
  }
}
