import { Duplex } from 'node:stream';

/**
 * Two connected in-memory duplex streams: what one writes the other reads,
 * and ending or destroying one ends the other, as a closed socket would.
 * (Node 22 has stream.duplexPair; Nucleon supports Node 20.)
 */
export function duplexPair(): [Duplex, Duplex] {
  const ends: { left?: Duplex; right?: Duplex } = {};
  const side = (peer: () => Duplex | undefined) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        peer()?.push(chunk);
        callback();
      },
      final(callback) {
        peer()?.push(null);
        callback();
      },
      destroy(error, callback) {
        const other = peer();
        if (other && !other.destroyed) other.destroy();
        callback(error);
      },
    });
  const left = side(() => ends.right);
  const right = side(() => ends.left);
  ends.left = left;
  ends.right = right;
  return [left, right];
}
