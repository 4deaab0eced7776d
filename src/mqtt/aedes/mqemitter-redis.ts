import type { EventEmitter } from 'node:events';
import { DependencyMismatchError } from '../../errors.js';
import { installedVersion } from './versions.js';

/**
 * mqemitter-redis re-emits its Redis connections' errors on a private
 * `state` emitter and throws them when nothing listens there; Nucleon's
 * RedisHealth reports those connections already, so cluster mode needs a
 * listener on `state`. Checked when the emitter is created, before any
 * listener opens.
 */
export function redisEmitterState(mq: unknown): EventEmitter {
  const state = (mq as { state?: unknown }).state;
  if (typeof state !== 'object' || state === null || typeof (state as EventEmitter).on !== 'function') {
    throw new DependencyMismatchError('mqemitter-redis', installedVersion('mqemitter-redis'), 'the emitter has no `state` EventEmitter for its Redis errors');
  }
  return state as EventEmitter;
}
