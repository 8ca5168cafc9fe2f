/**
 * Two test "hosts": network namespaces joined by a veth pair, optionally capped with tc (tbf),
 * so transfer tests send bytes over a real link. Needs root and iproute2; `netnsAvailable()`
 * says whether this machine can. Every name and address is private to the test.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface Link {
  /** Namespace names: the sender side and the receiver side. */
  a: string;
  b: string;
  addressA: string;
  addressB: string;
  /** `ip netns exec NS` prefix for a command. */
  inNs(ns: string, command: string[]): string[];
  /** Takes both ends of the veth down: the link dies, nothing gets a reset. */
  cut(): void;
  destroy(): void;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

let available: boolean | undefined;

export function netnsAvailable(): boolean {
  if (available !== undefined) return available;
  const probe = `ms-probe-${randomBytes(3).toString('hex')}`;
  try {
    if (process.getuid?.() !== 0) return (available = false);
    ip(['netns', 'add', probe]);
    ip(['netns', 'del', probe]);
    execFileSync('tc', ['-V'], { stdio: 'ignore' });
    available = true;
  } catch {
    available = false;
  }
  return available;
}

/** Creates the namespaces and the link; `rateMbit` caps both directions. */
export function createLink(options: { rateMbit?: number } = {}): Link {
  const id = randomBytes(3).toString('hex');
  const a = `ms-a-${id}`;
  const b = `ms-b-${id}`;
  const octet = 1 + (parseInt(id, 16) % 250);
  const addressA = `10.213.${octet}.1`;
  const addressB = `10.213.${octet}.2`;
  const destroy = (): void => {
    for (const ns of [a, b]) {
      try {
        ip(['netns', 'del', ns]);
      } catch {}
    }
  };
  try {
    ip(['netns', 'add', a]);
    ip(['netns', 'add', b]);
    ip(['link', 'add', `va-${id}`, 'netns', a, 'type', 'veth', 'peer', 'name', `vb-${id}`, 'netns', b]);
    for (const [ns, dev, address] of [
      [a, `va-${id}`, addressA],
      [b, `vb-${id}`, addressB],
    ] as const) {
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      ip(['-n', ns, 'addr', 'add', `${address}/24`, 'dev', dev]);
      ip(['-n', ns, 'link', 'set', dev, 'up']);
      if (options.rateMbit !== undefined) {
        // tbf, not netem: netem is a module many kernels (this CI's included) do not ship.
        const tbf = ['tbf', 'rate', `${options.rateMbit}mbit`, 'burst', '1mb', 'latency', '100ms'];
        execFileSync('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', dev, 'root', ...tbf], { stdio: ['ignore', 'ignore', 'pipe'] });
      }
    }
  } catch (error) {
    destroy();
    throw error;
  }
  const cut = (): void => {
    ip(['-n', a, 'link', 'set', `va-${id}`, 'down']);
    ip(['-n', b, 'link', 'set', `vb-${id}`, 'down']);
  };
  return { a, b, addressA, addressB, inNs: (ns, command) => ['ip', 'netns', 'exec', ns, ...command], cut, destroy };
}
