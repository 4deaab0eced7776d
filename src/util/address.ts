import { isIPv4, isIPv6 } from 'node:net';

/**
 * The unit per-address limits count: an IPv4 address as it is (carrier NAT
 * already puts many devices behind one), an IPv6 address by its /64 (one
 * host usually holds a whole /64 and can pick any address in it).
 * IPv4-mapped IPv6 (`::ffff:10.0.0.1`, what a dual-stack listener reports) is IPv4.
 */
export function addressBlock(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  if (isIPv4(address)) return address;
  if (!isIPv6(address)) return address;
  return `${expandIPv6(address).slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address, without a zone. */
function expandIPv6(address: string): string[] {
  const bare = address.split('%')[0] ?? address;
  const [head = '', tail] = bare.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  // An embedded IPv4 tail (::1.2.3.4) is two groups; only the first four groups matter here.
  const missing = Math.max(0, 8 - left.length - right.length);
  return [...left, ...Array<string>(tail === undefined ? 0 : missing).fill('0'), ...right].map((group) => (/^[0-9a-f]{1,4}$/i.test(group) ? Number.parseInt(group, 16).toString(16) : group));
}

/**
 * Places held per address block, at most `limit` each: connections open on a
 * listener, password checks in flight. An entry lives only while its block
 * holds a place, so the map is bounded by what is held (sockets, checks),
 * which other limits bound.
 */
export class SlotsPerAddress {
  private readonly held = new Map<string, number>();

  constructor(private readonly limit: number) {}

  /** Takes a place for `block`; false (nothing taken) when it already holds `limit`. */
  tryTake(block: string): boolean {
    const now = this.held.get(block) ?? 0;
    if (now >= this.limit) return false;
    this.held.set(block, now + 1);
    return true;
  }

  release(block: string): void {
    const now = this.held.get(block) ?? 0;
    if (now <= 1) this.held.delete(block);
    else this.held.set(block, now - 1);
  }
}
