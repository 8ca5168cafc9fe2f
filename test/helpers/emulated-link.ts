/**
 * An impaired link between two network namespaces: the fault matrix's stand-in for `tc netem`,
 * which this project's kernels (the CI's included: CONFIG_NET_SCH_NETEM unset, "Specified
 * qdisc kind is unknown") do not have.
 *
 * Each namespace gets a TUN device held by a `socat` process (started in the root namespace,
 * the device then moved into its namespace: the descriptor keeps working); socat turns every IP
 * packet the kernel routes into its device into one UDP datagram to 127.0.0.1, and every
 * datagram back into a packet. Between the two sockets this process forwards the datagrams,
 * one by one, the way netem would: dropped at random (`loss`), held back (`delayMs`), some held
 * back longer so later ones overtake them (`reorder`), or not at all once the link is down. The
 * kernels' TCP stacks see real loss, latency and reordering; the endpoints are the namespaces'
 * own addresses. The randomness is seeded, so a failing run can be replayed.
 *
 * The MTU is 16000: a quarter of the datagrams a 1500-byte MTU would need (the forwarding runs
 * in JS), and still many packets per migstream frame, so 1 % loss hits most frames.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { mulberry32 } from './faults.js';

/**
 * What happens to packets from a to b (the sender's data), as `tc qdisc add dev A root netem …`
 * on a's interface would do it; b to a (ACKs, credits) is forwarded untouched.
 */
export interface Impairment {
  /** Probability that a packet is dropped. */
  loss?: number;
  /** Delay added to every packet, in ms (the RTT grows by as much). */
  delayMs?: number;
  /** Probability that a packet is held back `holdMs` longer than the others, so later ones pass it. */
  reorder?: { probability: number; holdMs: number };
  seed: number;
}

export interface EmulatedLinkStats {
  /** Datagrams forwarded, dropped, and delivered after a later one (overtaken). */
  forwarded: number;
  dropped: number;
  overtaken: number;
  /** IP bytes that went from a to b (the sender's data direction). */
  bytesAtoB: number;
}

export interface EmulatedLink {
  a: string;
  b: string;
  addressA: string;
  addressB: string;
  inNs(ns: string, command: string[]): string[];
  stats: EmulatedLinkStats;
  /** Resolves once `bytes` IP bytes went from a to b. */
  whenBytes(bytes: number): Promise<void>;
  /** `ip link set … down` on both ends, and nothing forwarded any more. */
  down(): void;
  destroy(): Promise<void>;
}

const MTU = 16000;

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function bind(socket: Socket): Promise<number> {
  return new Promise((resolve) => socket.bind(0, '127.0.0.1', () => resolve(socket.address().port)));
}

async function deviceExists(name: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      ip(['link', 'show', name]);
      return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`socat did not create TUN device ${name}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** One direction of the link: datagrams in arrival order, each with the time it is due. */
class Lane {
  private queue: { due: number; order: number; data: Buffer }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private arrivals = 0;
  private lastDelivered = -1;

  constructor(
    private readonly out: Socket,
    private readonly port: () => number,
    private readonly impairment: Impairment,
    private readonly random: () => number,
    private readonly stats: EmulatedLinkStats,
    private readonly isDown: () => boolean,
  ) {}

  push(data: Buffer): void {
    if (this.isDown()) return;
    const order = this.arrivals++;
    if (this.random() < (this.impairment.loss ?? 0)) {
      this.stats.dropped++;
      return;
    }
    let due = Date.now() + (this.impairment.delayMs ?? 0);
    const reorder = this.impairment.reorder;
    if (reorder !== undefined && this.random() < reorder.probability) due += reorder.holdMs;
    if (due <= Date.now() && this.queue.length === 0) return this.deliver({ order, data });
    this.queue.push({ due, order, data });
    if (reorder !== undefined) this.queue.sort((x, y) => x.due - y.due);
    this.arm();
  }

  private deliver(packet: { order: number; data: Buffer }): void {
    if (this.isDown()) return;
    if (packet.order < this.lastDelivered) this.stats.overtaken++;
    this.lastDelivered = Math.max(this.lastDelivered, packet.order);
    this.stats.forwarded++;
    this.out.send(packet.data, this.port(), '127.0.0.1');
  }

  private arm(): void {
    if (this.timer !== undefined || this.queue.length === 0) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        const now = Date.now();
        while (this.queue.length > 0 && this.queue[0]!.due <= now) this.deliver(this.queue.shift()!);
        this.arm();
      },
      Math.max(0, this.queue[0]!.due - Date.now()),
    );
  }

  stop(): void {
    clearTimeout(this.timer);
    this.queue = [];
  }
}

export async function createEmulatedLink(impairment: Impairment): Promise<EmulatedLink> {
  const id = randomBytes(3).toString('hex');
  const a = `ms-ea-${id}`;
  const b = `ms-eb-${id}`;
  const octet = 1 + (parseInt(id, 16) % 250);
  const addressA = `10.214.${octet}.1`;
  const addressB = `10.214.${octet}.2`;
  const stats: EmulatedLinkStats = { forwarded: 0, dropped: 0, overtaken: 0, bytesAtoB: 0 };
  const random = mulberry32(impairment.seed);
  let isDown = false;
  const waiters: { bytes: number; resolve: () => void }[] = [];

  // The relay's socket facing each socat, and the port each socat sends from.
  const sockA = createSocket('udp4');
  const sockB = createSocket('udp4');
  const socats: ChildProcess[] = [];
  const lanes: Lane[] = [];
  const destroy = async (): Promise<void> => {
    for (const lane of lanes) lane.stop();
    for (const child of socats) child.kill('SIGKILL');
    sockA.close();
    sockB.close();
    for (const ns of [a, b]) {
      try {
        ip(['netns', 'del', ns]);
      } catch {}
    }
  };
  try {
    const relayA = await bind(sockA);
    const relayB = await bind(sockB);
    let portA = 0;
    let portB = 0;
    const toA = new Lane(
      sockA,
      () => portA,
      { seed: impairment.seed },
      mulberry32(impairment.seed + 1),
      { forwarded: 0, dropped: 0, overtaken: 0, bytesAtoB: 0 },
      () => isDown,
    );
    const toB = new Lane(
      sockB,
      () => portB,
      impairment,
      random,
      stats,
      () => isDown,
    );
    lanes.push(toA, toB);
    sockA.on('message', (data) => {
      if (isDown) return;
      stats.bytesAtoB += data.length;
      for (const w of waiters.filter((w) => stats.bytesAtoB >= w.bytes)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
      toB.push(data);
    });
    sockB.on('message', (data) => {
      toA.push(data);
    });
    ip(['netns', 'add', a]);
    ip(['netns', 'add', b]);
    for (const [ns, dev, address, relay] of [
      [a, `ta-${id}`, addressA, relayA],
      [b, `tb-${id}`, addressB, relayB],
    ] as const) {
      // socat sends from a port picked here, so the relay can send to a side that has not spoken.
      const port = await freeUdpPort();
      if (ns === a) portA = port;
      else portB = port;
      const child = spawn('socat', ['-b', String(MTU + 64), `TUN,tun-name=${dev},tun-type=tun,iff-no-pi`, `UDP-DATAGRAM:127.0.0.1:${relay},bind=127.0.0.1:${port}`], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      socats.push(child);
      await deviceExists(dev, 5_000);
      ip(['link', 'set', dev, 'netns', ns]);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      ip(['-n', ns, 'addr', 'add', `${address}/24`, 'dev', dev]);
      ip(['-n', ns, 'link', 'set', dev, 'mtu', String(MTU), 'up']);
    }
  } catch (error) {
    await destroy();
    throw error;
  }
  return {
    a,
    b,
    addressA,
    addressB,
    inNs: (ns, command) => ['ip', 'netns', 'exec', ns, ...command],
    stats,
    whenBytes: (bytes) => new Promise((resolve) => (stats.bytesAtoB >= bytes ? resolve() : waiters.push({ bytes, resolve }))),
    down: () => {
      isDown = true;
      for (const lane of lanes) lane.stop();
      ip(['-n', a, 'link', 'set', `ta-${id}`, 'down']);
      ip(['-n', b, 'link', 'set', `tb-${id}`, 'down']);
    },
    destroy,
  };
}

/** A free loopback UDP port (released again: a race a test can live with). */
async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  const port = await bind(socket);
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}
