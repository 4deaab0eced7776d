import type { CampaignDeviceStatus, CampaignFailReason } from '../events.js';
import type { HealthSettings } from './spec.js';

/**
 * One device's way through a campaign, as pure functions of what was seen
 * and the time (README "Campaigns" has the diagram):
 *
 *   pending → notified → downloading → downloaded → rebooting → confirmed → healthy
 *                                   ↘ failed(reason) from any state before healthy
 *
 * and rebooting → downloaded when more of the image is asked for: the
 * "reboot" was a reconnect after the last chunk was lost.
 *
 * Times are ms since the epoch, passed in: no clock and no timer here, so the
 * tests drive it with a fake clock.
 */

/** What the campaigns runner saw of a device. */
export type Observation =
  | { kind: 'connected'; at: number }
  | { kind: 'disconnected'; at: number }
  /** Telemetry; `version` absent when the message carried none (it still shows the device alive). */
  | { kind: 'telemetry'; version?: string; at: number }
  /** OTA `Done`: the device says it booted the image it was given. */
  | { kind: 'done'; at: number }
  /** Bytes of the campaign image served to it so far (MQTT chunks and HTTP ranges together). */
  | { kind: 'progress'; bytes: number; at: number }
  /** The OTA runner refused the link that should have told the device. */
  | { kind: 'link_refused'; detail: string; at: number };

export interface DeviceRules {
  imageId: string;
  imageSize: number;
  health: HealthSettings;
}

/**
 * What an observation did to the record: `event` (a visible change: saved and
 * announced), `save` (bookkeeping such as the last telemetry time: saved only),
 * `none`.
 */
export type Change = 'event' | 'save' | 'none';

/** The states in which a device is still watched. */
export function isOpen(device: CampaignDeviceStatus): boolean {
  return device.state !== 'pending' && device.state !== 'healthy' && device.state !== 'failed';
}

export function observeDevice(device: CampaignDeviceStatus, seen: Observation, rules: DeviceRules): Change {
  if (!isOpen(device)) return 'none';
  switch (seen.kind) {
    case 'progress':
      return onProgress(device, seen.bytes, seen.at, rules);
    case 'done':
      if (device.state === 'notified' || device.state === 'downloading') return fail(device, 'device_rejected', seen.at, 'sent Done before it had downloaded the image');
      if (device.state === 'downloaded' || device.state === 'rebooting') return confirm(device, seen.at);
      return 'none';
    case 'telemetry':
      return onTelemetry(device, seen.version, seen.at, rules);
    case 'connected':
      return onConnected(device, seen.at, rules);
    case 'disconnected':
      if (device.state !== 'downloaded') return 'none';
      device.state = 'rebooting';
      device.rebootAt = seen.at;
      return 'event';
    case 'link_refused':
      return fail(device, 'link_refused', seen.at, seen.detail);
  }
}

/** Time-outs and the health window; called on every tick for open devices. */
export function checkDeadlines(device: CampaignDeviceStatus, now: number, rules: DeviceRules): Change {
  const { health } = rules;
  switch (device.state) {
    case 'notified':
    case 'downloading':
      if (now - (device.notifiedAt ?? now) >= health.downloadTimeoutMs) return fail(device, 'download_timeout', now, `not downloaded within ${health.downloadTimeoutMs} ms`);
      return 'none';
    case 'downloaded':
    case 'rebooting':
      if (device.revertSeen && now - device.revertSeen.at >= health.revertGraceMs) return fail(device, 'version_reverted', now, `came back reporting ${device.revertSeen.version}`);
      if (now - (device.downloadedAt ?? now) >= health.reconnectTimeoutMs) return fail(device, 'no_reconnect', now, `did not come back with the new version within ${health.reconnectTimeoutMs} ms`);
      return 'none';
    case 'confirmed': {
      const confirmedAt = device.confirmedAt ?? now;
      const heardAt = Math.max(confirmedAt, device.lastTelemetryAt ?? confirmedAt);
      if (now - heardAt >= health.telemetrySilentMs) return fail(device, 'telemetry_silent', now, `no telemetry for ${health.telemetrySilentMs} ms`);
      if (now - confirmedAt >= health.windowMs) {
        device.state = 'healthy';
        device.settledAt = now;
        delete device.recentConnects;
        return 'event';
      }
      return 'none';
    }
    default:
      return 'none';
  }
}

function onProgress(device: CampaignDeviceStatus, bytes: number, at: number, rules: DeviceRules): Change {
  if (device.state === 'downloaded' || device.state === 'rebooting') return onMoreBytes(device, bytes, at, rules);
  if (device.state !== 'notified' && device.state !== 'downloading') return 'none';
  const percent = Math.min(100, Math.floor((bytes * 100) / Math.max(1, rules.imageSize)));
  if (device.state === 'downloading' && device.bytes === bytes) return 'none';
  device.bytes = bytes;
  device.percent = percent;
  if (bytes >= rules.imageSize) {
    device.state = 'downloaded';
    device.downloadedAt = at;
  } else {
    device.state = 'downloading';
  }
  return 'event';
}

function onTelemetry(device: CampaignDeviceStatus, version: string | undefined, at: number, rules: DeviceRules): Change {
  if (version === rules.imageId && device.state !== 'confirmed') return confirm(device, at);
  if (version !== undefined && version !== rules.imageId && (device.state === 'rebooting' || device.state === 'confirmed')) {
    // Before the reboot the device still runs the old image; after it, the old version means MCUboot reverted.
    // Telemetry goes through the ingest log and connections do not, so a report sent just before the
    // reboot can arrive after it: one stamped before the reboot (or the confirmation) is stale.
    if (at <= Math.max(device.rebootAt ?? 0, device.confirmedAt ?? 0)) return 'none';
    if (device.state === 'confirmed') return fail(device, 'version_reverted', at, `came back reporting ${version}`);
    // A reconnect is not always a reboot: a device whose last chunk was lost with its connection comes back on
    // the old version and asks for that chunk again (onMoreBytes). Only a device that does not is a revert.
    const seen = (device.revertSeen ??= { at, version });
    if (at - seen.at >= rules.health.revertGraceMs) return fail(device, 'version_reverted', at, `came back reporting ${seen.version}`);
    return 'save';
  }
  if (device.state !== 'confirmed') return 'none';
  if (at <= (device.lastTelemetryAt ?? 0)) return 'none';
  device.lastTelemetryAt = at;
  return 'save';
}

function onConnected(device: CampaignDeviceStatus, at: number, rules: DeviceRules): Change {
  const { reconnects, withinMs } = rules.health.bootLoop;
  if (device.state === 'downloaded') {
    // Reconnected without a disconnect seen first (a session takeover): the reboot happened all the same.
    device.state = 'rebooting';
    device.rebootAt = at;
    device.recentConnects = [at];
    return 'event';
  }
  if (device.state !== 'rebooting' && device.state !== 'confirmed') return 'none';
  const recent = (device.recentConnects ?? []).filter((time) => at - time < withinMs);
  recent.push(at);
  device.recentConnects = recent;
  if (recent.length >= reconnects) return fail(device, 'boot_loop', at, `${recent.length} connections within ${withinMs} ms`);
  return 'save';
}

/**
 * More of the image served after it was all served: the last answer never
 * reached the device (lost with a connection the broker or the network
 * dropped), so whatever looked like its reboot was a reconnect.
 */
function onMoreBytes(device: CampaignDeviceStatus, bytes: number, at: number, rules: DeviceRules): Change {
  if (bytes <= (device.bytes ?? 0)) return 'none';
  device.bytes = bytes;
  // The image a second time over is no lost chunk: a reverted device that takes the offer again. Its reboot
  // (and the revert seen after it) stands, and its reconnect time-out keeps counting.
  if (bytes >= 2 * rules.imageSize) return 'save';
  device.downloadedAt = at;
  if (device.state === 'downloaded') return 'save';
  device.state = 'downloaded';
  delete device.rebootAt;
  delete device.recentConnects;
  delete device.revertSeen;
  return 'event';
}

function confirm(device: CampaignDeviceStatus, at: number): Change {
  delete device.revertSeen;
  device.state = 'confirmed';
  device.confirmedAt = at;
  device.lastTelemetryAt = at;
  return 'event';
}

function fail(device: CampaignDeviceStatus, reason: CampaignFailReason, at: number, detail: string): Change {
  device.state = 'failed';
  device.reason = reason;
  device.detail = detail;
  device.settledAt = at;
  return 'event';
}
