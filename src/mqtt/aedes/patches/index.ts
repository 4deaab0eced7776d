/*
 * Runtime patches to aedes' MQTT codec dependencies, each measured in the
 * bench and each guarded: when the dependency no longer looks like the
 * version a patch was written for, the patch does nothing and its state says
 * why (logged at start-up by the MQTT runner). They change cost, never
 * behaviour; the tests in test/quiet-debug, parser-input and mqtt-parser
 * check both the effect and the equivalence.
 *
 * Order matters: quiet-debug must run before mqtt-packet is first loaded, and
 * lean-parser loads it.
 */
import { quietDebugState } from './quiet-debug.js';
import { idlePacketState, leanConnectState, leanParserState } from './lean-parser.js';

export interface DependencyPatchStates {
  /** mqtt-packet's disabled `debug` loggers are no-ops. */
  quietDebug: string;
  /** aedes' parsers buffer in a ParserInput rather than a bl stream. */
  leanParser: string;
  /** aedes' parsers keep shared settings rather than their CONNECT packet. */
  leanConnect: string;
  /** aedes' idle parsers share one empty Packet rather than each holding its own. */
  idlePacket: string;
}

export const dependencyPatches: DependencyPatchStates = {
  quietDebug: quietDebugState,
  leanParser: leanParserState,
  leanConnect: leanConnectState,
  idlePacket: idlePacketState,
};

/** The patches that did not install (their reason), for a start-up warning. */
export function inactivePatches(): Partial<DependencyPatchStates> {
  return Object.fromEntries(Object.entries(dependencyPatches).filter(([, state]) => state !== 'installed'));
}
