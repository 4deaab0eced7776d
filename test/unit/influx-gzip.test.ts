import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GZIP_FROM_BYTES, gzipFromBytes, onThisHost } from '../../src/influx/http-sink.js';

test('onThisHost: localhost, 127.0.0.0/8, ::1 and IPv4-mapped 127.x, as URL writes them; nothing else', () => {
  const hostOf = (url: string) => new URL(url).hostname;
  for (const url of ['http://localhost:8086', 'http://LOCALHOST:8086', 'http://influx.localhost', 'http://127.0.0.1:8428', 'http://127.8.9.10', 'http://[::1]:8086', 'http://[0:0:0:0:0:0:0:1]', 'http://[::ffff:127.0.0.1]:8086']) {
    assert.equal(onThisHost(hostOf(url)), true, url);
  }
  for (const url of ['http://influx.example.com:8086', 'https://10.0.0.5', 'http://128.0.0.1', 'http://[::2]', 'http://[::ffff:10.0.0.1]', 'http://localhost.example.com', 'http://1.127.0.0']) {
    assert.equal(onThisHost(hostOf(url)), false, url);
  }
});

test('gzipFromBytes: "auto" skips gzip for a server on this host and keeps it for others; "always" and "never" override', () => {
  assert.equal(gzipFromBytes('http://127.0.0.1:8428'), Number.POSITIVE_INFINITY);
  assert.equal(gzipFromBytes('http://127.0.0.1:8428', 'auto'), Number.POSITIVE_INFINITY);
  assert.equal(gzipFromBytes('http://influx.example.com:8086', 'auto'), GZIP_FROM_BYTES);
  assert.equal(gzipFromBytes('http://127.0.0.1:8428', 'always'), GZIP_FROM_BYTES);
  assert.equal(gzipFromBytes('https://influx.example.com', 'never'), Number.POSITIVE_INFINITY);
});
