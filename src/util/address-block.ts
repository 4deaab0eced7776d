import { isIPv4, isIPv6 } from 'node:net';

/** Every loopback address (127.0.0.0/8, ::1): one machine, so one block. */
export const LOOPBACK_BLOCK = 'loopback';

/**
 * The block of addresses one client can be assumed to control, as a key for
 * counting failed logins: IPv4 /24, IPv6 /64, and all of loopback as one.
 * Counting per address would let one host change its source address per guess
 * (any of 16 million in 127/8, and an IPv6 host is routinely given a whole /64).
 * IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack listener
 * reports) count as the IPv4 address. Anything that is not an IP address is
 * its own block.
 */
export function addressBlock(address: string): string {
  const plain = address.replace(/%.*$/, '');
  if (isIPv4(plain)) return ipv4Block(plain);
  if (!isIPv6(plain)) return address;
  const groups = ipv6Groups(plain);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const high = groups[6] ?? 0;
    const low = groups[7] ?? 0;
    return ipv4Block(`${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`);
  }
  if (groups.slice(0, 7).every((g) => g === 0) && groups[7] === 1) return LOOPBACK_BLOCK;
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`;
}

function ipv4Block(address: string): string {
  const [a, b, c] = address.split('.');
  return a === '127' ? LOOPBACK_BLOCK : `${a}.${b}.${c}.0/24`;
}

/** The eight 16-bit groups of a valid IPv6 address (`::` expanded, a dotted IPv4 tail as two groups). */
function ipv6Groups(address: string): number[] {
  const toGroups = (part: string): number[] => {
    if (part === '') return [];
    return part.split(':').flatMap((piece) => {
      if (!piece.includes('.')) return [parseInt(piece, 16)];
      const [a = 0, b = 0, c = 0, d = 0] = piece.split('.').map(Number);
      return [(a << 8) | b, (c << 8) | d];
    });
  };
  const [head = '', tail] = address.split('::');
  const first = toGroups(head);
  if (tail === undefined) return first;
  const last = toGroups(tail);
  return [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last];
}
