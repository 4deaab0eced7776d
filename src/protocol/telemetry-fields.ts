import type { TelemetryExtraValue, TelemetryFieldType } from '../events.js';

/**
 * Extra telemetry fields (config `[[telemetry.fields]]`): CBOR keys a device
 * sends besides the four Pyrinas ones, each mapped to an InfluxDB field name
 * and type. The built-in keys keep their exact meaning (devices in the field
 * cannot change), so an extra field may not reuse their keys or names.
 */
export interface TelemetryFieldSpec {
  /** What the device sends: an integer key (QCBOR field index) or a text key. */
  key: number | string;
  /** The InfluxDB field name (and the name in recent telemetry). */
  name: string;
  type: TelemetryFieldType;
}

/** The Pyrinas telemetry fields by index and name (DESIGN.md section 1). */
export const BUILTIN_TELEMETRY_FIELDS: readonly { index: number; name: string }[] = [
  { index: 0, name: 'version' },
  { index: 1, name: 'rsrp' },
  { index: 2, name: 'rssi_hub' },
  { index: 3, name: 'rssi_client' },
];

/** InfluxDB refuses `time` as a field key; `id` is the device tag, and a field of that name would shadow it in Flux. */
const RESERVED_NAMES = new Set(['time', 'id']);
export const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
export const MAX_TEXT_KEY_LENGTH = 64;

/** Problems with a list of field specs, each naming the entry and its key; empty when it is valid. */
export function telemetryFieldProblems(specs: readonly TelemetryFieldSpec[]): { index: number; problem: string }[] {
  const problems: { index: number; problem: string }[] = [];
  const keys = new Map<number | string, number>();
  const names = new Map<string, number>();
  specs.forEach((spec, index) => {
    const key = typeof spec.key === 'string' ? JSON.stringify(spec.key) : String(spec.key);
    const builtinKey = BUILTIN_TELEMETRY_FIELDS.find((b) => b.index === spec.key || b.name === spec.key);
    if (builtinKey) problems.push({ index, problem: `key ${key} is the built-in Pyrinas field ${builtinKey.name}; choose another key` });
    const sameKey = keys.get(spec.key);
    if (sameKey !== undefined) problems.push({ index, problem: `key ${key} is already mapped by telemetry.fields[${sameKey}]` });
    else keys.set(spec.key, index);
    if (!FIELD_NAME.test(spec.name)) problems.push({ index, problem: `key ${key}: name ${JSON.stringify(spec.name)} must be 1..64 of A-Z a-z 0-9 _, not starting with a digit` });
    else if (RESERVED_NAMES.has(spec.name)) problems.push({ index, problem: `key ${key}: name "${spec.name}" is reserved in InfluxDB points (${[...RESERVED_NAMES].join(', ')})` });
    else if (BUILTIN_TELEMETRY_FIELDS.some((b) => b.name === spec.name)) problems.push({ index, problem: `key ${key}: name "${spec.name}" is the built-in Pyrinas field of that name` });
    const sameName = names.get(spec.name);
    if (sameName !== undefined) problems.push({ index, problem: `key ${key}: name "${spec.name}" is already used by telemetry.fields[${sameName}]` });
    else names.set(spec.name, index);
  });
  return problems;
}

/** A configured field whose value had the wrong type: left out of the point, reported with the value. */
export interface RefusedTelemetryField {
  key: number | string;
  name: string;
  type: TelemetryFieldType;
  /** The value as the device sent it, shown short (describeValue). */
  value: string;
}

/** The configured extra fields, looked up by CBOR key while decoding. */
export class TelemetryFields {
  static readonly none = new TelemetryFields([]);
  private readonly byKey: ReadonlyMap<unknown, TelemetryFieldSpec>;

  constructor(readonly specs: readonly TelemetryFieldSpec[]) {
    this.byKey = new Map(specs.map((spec) => [spec.key, spec]));
  }

  get(key: unknown): TelemetryFieldSpec | undefined {
    return this.byKey.get(key);
  }
}

/** The value in the configured type, or undefined when it does not fit (an integer fits a float field). */
export function typedValue(spec: TelemetryFieldSpec, raw: unknown): TelemetryExtraValue | undefined {
  const value = typeof raw === 'bigint' && raw >= BigInt(Number.MIN_SAFE_INTEGER) && raw <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(raw) : raw;
  switch (spec.type) {
    case 'int':
      return typeof value === 'number' && Number.isSafeInteger(value) ? { type: 'int', value } : undefined;
    case 'float':
      return typeof value === 'number' && Number.isFinite(value) ? { type: 'float', value } : undefined;
    case 'bool':
      return typeof value === 'boolean' ? { type: 'bool', value } : undefined;
    case 'string':
      return typeof value === 'string' && value.length <= MAX_STRING_FIELD_LENGTH ? { type: 'string', value } : undefined;
  }
}

/** Longest text an extra string field may carry: like the version, a device must not decide a point's size. */
export const MAX_STRING_FIELD_LENGTH = 256;

/** A device's value for logs and errors: numbers and booleans as they are, text quoted and cut short, else its CBOR type. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return value.length > 40 ? `text ${JSON.stringify(value.slice(0, 40))}… (${value.length} characters)` : `text ${JSON.stringify(value)}`;
  if (value instanceof Map) return 'a map';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return `a byte string (${value.length} bytes)`;
  return typeof value;
}
