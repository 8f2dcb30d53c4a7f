/**
 * A TCP proxy a test controls, to make a network fault happen at a chosen
 * moment on one connection: stop forwarding (both ways, sockets left
 * open, as a NAT or firewall that dropped a connection: nobody is told),
 * or hold back the server's answers until the test lets them go (a
 * stalled network). Connections are told apart by what their client sent
 * (ioredis names its connections: `CLIENT SETNAME mpts-subscriber-…`).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

/** One client connection through the proxy. */
export interface ProxiedConnection {
  /** Everything its client sent so far (latin1), forwarded or not. */
  readonly sent: string;
  /** Stops forwarding both ways, sockets left open (a silent drop). */
  drop(): void;
  /** Forwards the answers held back (see `TcpProxy.onSent`) and goes on forwarding. */
  release(): void;
  /** Closes the client's socket: the client sees its connection drop (and reconnects). */
  cut(): void;
}

/** What happens to a connection when its client sends what a trigger waits for. */
export type Fault = 'hold answers' | 'drop answers';

interface Trigger {
  readonly pattern: RegExp;
  readonly fault: Fault;
  readonly fire: (conn: ProxiedConnection) => void;
}

class Connection implements ProxiedConnection {
  sent = '';
  dropped = false;
  answersDropped = false;
  held: Buffer[] | null = null;
  constructor(
    readonly client: Socket,
    readonly server: Socket,
  ) {}

  drop(): void {
    this.dropped = true;
  }

  cut(): void {
    this.client.destroy();
  }

  release(): void {
    const held = this.held;
    this.held = null;
    for (const chunk of held ?? []) this.client.write(chunk);
  }
}

export class TcpProxy {
  readonly #server: Server;
  readonly #connections: Connection[] = [];
  #triggers: Trigger[] = [];

  private constructor(server: Server) {
    this.#server = server;
  }

  /** A proxy on a free loopback port to `port` on 127.0.0.1. */
  static async start(port: number): Promise<TcpProxy> {
    const server = createServer();
    const proxy = new TcpProxy(server);
    server.on('connection', (client) => proxy.#accept(client, connect(port, '127.0.0.1')));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  /** The connections so far whose client sent something matching `pattern`. */
  connections(pattern: RegExp): ProxiedConnection[] {
    return this.#connections.filter((c) => pattern.test(c.sent));
  }

  /**
   * Once a client sends a chunk matching `pattern` (that chunk still goes
   * through), its connection gets `fault` from then on; resolves with it.
   */
  onSent(pattern: RegExp, fault: Fault): Promise<ProxiedConnection> {
    return new Promise((fire) => this.#triggers.push({ pattern, fault, fire }));
  }

  #accept(client: Socket, server: Socket): void {
    const conn = new Connection(client, server);
    this.#connections.push(conn);
    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      conn.sent += text;
      if (conn.dropped) return;
      server.write(chunk);
      const trigger = this.#triggers.find((t) => t.pattern.test(text));
      if (trigger) {
        this.#triggers = this.#triggers.filter((t) => t !== trigger);
        if (trigger.fault === 'hold answers') conn.held = [];
        else conn.answersDropped = true;
        trigger.fire(conn);
      }
    });
    server.on('data', (chunk: Buffer) => {
      if (conn.dropped || conn.answersDropped) return;
      if (conn.held) conn.held.push(chunk);
      else client.write(chunk);
    });
    const end = () => {
      client.destroy();
      server.destroy();
    };
    for (const socket of [client, server]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  }

  /** Ends every connection and stops listening. */
  async close(): Promise<void> {
    for (const c of this.#connections) {
      c.client.destroy();
      c.server.destroy();
    }
    await new Promise((resolve) => this.#server.close(resolve));
  }
}
