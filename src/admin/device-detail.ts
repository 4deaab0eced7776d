import type { Revocation } from '../revocation/index.js';
import type { CertificateIdentity, DeviceHistory, FirmwareEntry, SessionEntry } from './device-history.js';
import type { DeviceSummary } from './device-search.js';
import type { DeviceRecord, OtaStatus } from './fleet.js';
import type { DeviceTelemetry } from './device-telemetry.js';

/** devices.detail's answer (docs/console-contract.md). */
export interface DeviceDetail {
  device: DeviceSummary;
  identity: {
    authMethod?: string;
    certificate?: CertificateIdentity;
    revoked: null | { reason?: string; at: number; by?: string };
    hasPassword: boolean;
  };
  sessions: Omit<SessionEntry, 'clientId'>[];
  firmware: FirmwareEntry[];
  ota: { state: OtaStatus; imageId?: string; version?: string; bytesServed: number; totalBytes?: number; percent?: number };
  telemetry: DeviceTelemetry;
  messages: Array<{ at: number; target: string; size: number; payload?: string; payloadTruncated?: boolean }>;
}

export interface DetailSources {
  history: DeviceHistory;
  /** Read before (it may come from InfluxDB): see readDeviceTelemetry. */
  telemetry: DeviceTelemetry;
  imageSize: (id: string) => number | undefined;
}

/** Puts the device page together from the fleet record and the admin's own history of the device. */
export function deviceDetail(
  device: DeviceSummary,
  facts: { revocation: Revocation | undefined; hasPassword: boolean; payloads: boolean; now: number },
  sources: DetailSources,
): DeviceDetail {
  const history = sources.history.read(device.uid);
  const sessions = history.sessions.map(({ clientId: _clientId, ...session }) => session);
  if (sessions.length === 0) {
    // No history here (a restart, another instance): the fleet record still has the last session.
    const last = lastSessionOf(device);
    if (last) sessions.push(last);
  }
  const firmware = history.firmware.length > 0 || device.firmwareVersion === undefined ? history.firmware : [{ version: device.firmwareVersion, at: device.telemetryAt ?? device.lastSeen, source: 'telemetry' as const }];
  const revocation = facts.revocation;
  return {
    device,
    identity: {
      ...(device.authMethod !== undefined ? { authMethod: device.authMethod } : {}),
      ...(history.certificate ? { certificate: history.certificate } : {}),
      revoked: revocation ? { reason: revocation.reason, at: revocation.at, by: revocation.by } : null,
      hasPassword: facts.hasPassword,
    },
    sessions,
    firmware,
    ota: otaProgress(device, sources.imageSize),
    telemetry: sources.telemetry,
    messages: history.messages.map((message) => ({
      at: message.at,
      target: message.target,
      size: message.size,
      ...(facts.payloads ? { payload: message.payload, ...(message.payloadTruncated ? { payloadTruncated: true } : {}) } : {}),
    })),
  };
}

function lastSessionOf(device: DeviceRecord): Omit<SessionEntry, 'clientId'> | undefined {
  if (device.connectedAt === undefined && device.disconnectedAt === undefined) return undefined;
  const open = device.online || device.disconnectedAt === undefined || (device.connectedAt !== undefined && device.connectedAt > device.disconnectedAt);
  return {
    ...(device.connectedAt !== undefined ? { connectedAt: device.connectedAt } : {}),
    ...(!open && device.disconnectedAt !== undefined ? { disconnectedAt: device.disconnectedAt } : {}),
    ...(!open && device.disconnectReason !== undefined ? { reason: device.disconnectReason } : {}),
    ...(device.remoteAddress !== undefined ? { remoteAddress: device.remoteAddress } : {}),
    ...(device.authMethod !== undefined ? { authMethod: device.authMethod } : {}),
    ...(device.instance !== undefined ? { instance: device.instance } : {}),
  };
}

/**
 * Bytes served of the assigned image, as the OTA runner last reported them
 * (DeviceFirmwareUpdated: saved at every 10 % of the image, at the end, and
 * with any other change of the device), and that as a share of the image.
 */
export function otaProgress(device: DeviceRecord, imageSize: (id: string) => number | undefined): DeviceDetail['ota'] {
  const state = device.ota;
  const imageId = state?.assignedImageId ?? state?.doneImageId;
  const result: DeviceDetail['ota'] = { state: device.otaStatus, bytesServed: 0 };
  if (imageId === undefined) return result;
  result.imageId = imageId;
  // An image id is its version (major.minor.patch-commit-hash).
  result.version = imageId;
  const ofThisImage = state?.downloadImageId === undefined || state.downloadImageId === imageId;
  result.bytesServed = ofThisImage ? (state?.bytesServed ?? 0) : 0;
  const total = imageSize(imageId);
  if (total !== undefined) {
    result.totalBytes = total;
    result.percent = device.otaStatus === 'updated' ? 100 : total > 0 ? Math.min(100, Math.round((result.bytesServed * 1000) / total) / 10) : 0;
  }
  return result;
}
