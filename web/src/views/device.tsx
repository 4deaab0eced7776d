// The device page (#/devices/<uid>): devices.detail (identity, sessions,
// firmware history, OTA progress, the last hour of telemetry, app messages),
// kept live by the device's own events (the page narrows the live stream to
// its uid, telemetry included), and the operator's actions: kick, revoke,
// unrevoke, link an image, set a password.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { DeviceDetail, DeviceRecord, ImageInfo, Telemetry } from '../api/types.js';
import { appendTelemetry, chartData, type FieldSeries } from '../telemetry-series.js';
import { formatBytes, formatDuration } from '../time.js';
import { OnlineBadge, OtaBadge } from '../ui/badges.js';
import { Chart } from '../ui/chart.js';
import { useConsole, useLiveEvents, useOnReady } from '../ui/context.js';
import { Page } from '../ui/shell.js';
import { Time } from '../ui/time.js';

const DEFAULT_KINDS = ['device', 'ota', 'campaign', 'health'] as const;
/** Bursts of events (a download) ask for the page again at most this often. */
const REFRESH_MS = 1000;

export function DevicePage({ uid }: { uid: string }) {
  const { client, errors } = useConsole();
  const [detail, setDetail] = useState<DeviceDetail | undefined>(undefined);
  const [missing, setMissing] = useState<string | undefined>(undefined);
  const [telemetry, setTelemetry] = useState<FieldSeries>({});
  const [payloads, setPayloads] = useState(false);
  const refreshTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  const load = () => {
    void client.request<DeviceDetail>('devices.detail', { uid, ...(payloads ? { payloads: true } : {}) }).then(
      (answer) => {
        errors.clear('devices.detail');
        setMissing(undefined);
        setDetail(answer);
        setTelemetry(answer.telemetry.fields);
      },
      (error: unknown) => {
        if (error instanceof Error && 'code' in error && error.code === 'NOT_FOUND') setMissing(error.message);
        else errors.fail('devices.detail', error);
      },
    );
  };
  useOnReady(load, [uid, payloads]);

  // The live stream narrowed to this device, telemetry included, while the page is open.
  useEffect(() => {
    void client.subscribe({ kinds: [...DEFAULT_KINDS, 'telemetry'], uid });
    return () => {
      clearTimeout(refreshTimer.current);
      void client.subscribe({ kinds: [...DEFAULT_KINDS] });
    };
  }, [client, uid]);

  useLiveEvents((event) => {
    if (event.data.uid !== uid) return;
    const device = event.data.device as DeviceRecord | undefined;
    if (event.name === 'telemetry') {
      const at = typeof event.data.at === 'number' ? event.data.at : Date.now();
      setTelemetry((series) => appendTelemetry(series, at, event.data.telemetry as Telemetry));
    }
    if (device && detail) setDetail({ ...detail, device: { ...detail.device, ...device } });
    // Sessions, firmware history and OTA progress are the server's to put together: asked for again, not too often.
    if (refreshTimer.current === undefined) {
      refreshTimer.current = setTimeout(() => {
        refreshTimer.current = undefined;
        load();
      }, REFRESH_MS);
    }
  });

  if (missing) {
    return (
      <Page title={uid}>
        <p class="empty" id="device-missing">
          {missing}
        </p>
        <a href="#/devices">Back to the devices</a>
      </Page>
    );
  }
  if (!detail) {
    return (
      <Page title={uid}>
        <p class="empty">Loading…</p>
      </Page>
    );
  }
  const { device } = detail;
  return (
    <Page
      title={
        <>
          <span class="mono" id="device-uid">
            {uid}
          </span>{' '}
          <OnlineBadge online={device.online} /> {detail.identity.revoked && <span class="badge revoked">revoked</span>}
        </>
      }
    >
      <div class="grid" id="device-page" data-uid={uid} data-online={String(device.online)} data-revoked={String(detail.identity.revoked !== null)}>
        <Actions detail={detail} reload={load} />
        <div class="wide pair">
          <Identity detail={detail} />
          <div class="stack">
            <Ota detail={detail} />
            <Firmware detail={detail} />
          </div>
        </div>
        <section class="card wide" aria-labelledby="telemetry-title">
          <h2 id="telemetry-title">Telemetry (the last hour)</h2>
          <TelemetrySource telemetry={detail.telemetry} />
          <TelemetryCharts series={telemetry} />
        </section>
        <Sessions detail={detail} />
        <Messages detail={detail} payloads={payloads} onPayloads={setPayloads} />
      </div>
    </Page>
  );
}

function Identity({ detail }: { detail: DeviceDetail }) {
  const { identity, device } = detail;
  return (
    <section class="card" aria-labelledby="identity-title" id="identity">
      <h2 id="identity-title">Identity</h2>
      <dl class="facts">
        <dt>Auth method</dt>
        <dd class="auth-method">{identity.authMethod ?? '–'}</dd>
        <dt>Certificate</dt>
        <dd class="mono certificate">{identity.certificate ? identity.certificate.serial : '–'}</dd>
        {identity.certificate && (
          <>
            <dt>Subject</dt>
            <dd class="mono">{identity.certificate.subject}</dd>
            <dt>Expires</dt>
            <dd class="cert-expiry">
              <Time at={identity.certificate.notAfter} />
            </dd>
          </>
        )}
        <dt>Password</dt>
        <dd class="has-password">{identity.hasPassword ? 'set' : 'none'}</dd>
        <dt>Revoked</dt>
        <dd class="revocation">
          {identity.revoked ? (
            <>
              <span class="badge revoked">revoked</span> <Time at={identity.revoked.at} />
              {identity.revoked.reason && <> · {identity.revoked.reason}</>}
              {identity.revoked.by && <> · by {identity.revoked.by}</>}
            </>
          ) : (
            'no'
          )}
        </dd>
        <dt>Last seen</dt>
        <dd>
          <Time at={device.lastSeen} />
        </dd>
        <dt>Address</dt>
        <dd class="mono">{device.online ? (device.remoteAddress ?? '–') : '–'}</dd>
        <dt>Groups</dt>
        <dd class="groups">{device.groups.length > 0 ? device.groups.join(', ') : '–'}</dd>
      </dl>
    </section>
  );
}

function Ota({ detail }: { detail: DeviceDetail }) {
  const { ota, device } = detail;
  const percent = ota.percent ?? (ota.totalBytes ? Math.min(100, (ota.bytesServed / ota.totalBytes) * 100) : undefined);
  return (
    <section class="card" aria-labelledby="ota-title" id="ota" data-state={ota.state}>
      <h2 id="ota-title">Firmware and OTA</h2>
      <dl class="facts">
        <dt>Running</dt>
        <dd class="mono">{device.firmwareVersion ?? '–'}</dd>
        <dt>OTA</dt>
        <dd>
          <OtaBadge status={ota.state} />
        </dd>
        <dt>Image</dt>
        <dd class="mono">{ota.imageId ?? '–'}</dd>
      </dl>
      {ota.state !== 'none' && (
        <div class="progress" id="ota-progress">
          <progress max={100} value={percent ?? 0} aria-label="Download progress" />
          <span class="ota-figures">
            {percent !== undefined ? `${percent.toFixed(0)} %` : '–'} · {formatBytes(ota.bytesServed)}
            {ota.totalBytes !== undefined ? ` of ${formatBytes(ota.totalBytes)}` : ''}
          </span>
        </div>
      )}
    </section>
  );
}

function TelemetrySource({ telemetry }: { telemetry: DeviceDetail['telemetry'] }) {
  return (
    <p class="hint" id="telemetry-source" data-source={telemetry.source}>
      {telemetry.source === 'influx' ? 'From InfluxDB.' : 'From the recent store of this instance.'}
      {telemetry.error !== undefined && <span id="telemetry-error"> InfluxDB could not be read: {telemetry.error}</span>}
    </p>
  );
}

function TelemetryCharts({ series }: { series: FieldSeries }) {
  const names = Object.keys(series).sort();
  if (names.length === 0) return <p class="empty">No numeric telemetry in the last hour.</p>;
  return (
    <div class="grid telemetry-charts">
      {names.map((name) => (
        <FieldChart key={name} name={name} points={series[name] ?? []} />
      ))}
    </div>
  );
}

function FieldChart({ name, points }: { name: string; points: Array<[number, number]> }) {
  const data = useMemo(() => chartData(points), [points]);
  const series = useMemo(() => [{ label: name }], [name]);
  const last = points.at(-1);
  return (
    <div class="telemetry-field" data-field={name} data-points={points.length}>
      <h3>
        {name} <span class="hint">{last ? `${last[1]} · ` : ''}</span>
        {last && <Time at={last[0]} />}
      </h3>
      <Chart series={series} data={data} height={160} legend={false} label={`${name}, the last hour`} />
    </div>
  );
}

function Sessions({ detail }: { detail: DeviceDetail }) {
  return (
    <section class="card wide" aria-labelledby="sessions-title">
      <h2 id="sessions-title">Sessions</h2>
      {detail.sessions.length === 0 ? (
        <p class="empty">No session seen.</p>
      ) : (
        <div class="table-box">
          <table id="sessions" class="cards">
            <thead>
              <tr>
                <th scope="col">Connected</th>
                <th scope="col">Disconnected</th>
                <th scope="col">Duration</th>
                <th scope="col">Reason</th>
                <th scope="col">Address</th>
                <th scope="col">Auth</th>
                <th scope="col">Instance</th>
              </tr>
            </thead>
            <tbody>
              {detail.sessions.map((session, index) => (
                <tr key={`${session.connectedAt ?? ''}-${index}`} data-reason={session.reason ?? ''}>
                  <td data-label="Connected">
                    <Time at={session.connectedAt} />
                  </td>
                  <td data-label="Disconnected">{session.disconnectedAt ? <Time at={session.disconnectedAt} /> : <span class="badge online">open</span>}</td>
                  <td data-label="Duration">{session.connectedAt && session.disconnectedAt ? formatDuration(session.disconnectedAt - session.connectedAt) : '–'}</td>
                  <td data-label="Reason" class="reason">
                    {session.reason ?? '–'}
                  </td>
                  <td data-label="Address" class="mono">
                    {session.remoteAddress ?? '–'}
                  </td>
                  <td data-label="Auth">{session.authMethod ?? '–'}</td>
                  <td data-label="Instance">{session.instance ?? '–'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Firmware({ detail }: { detail: DeviceDetail }) {
  return (
    <section class="card" aria-labelledby="firmware-title">
      <h2 id="firmware-title">Firmware history</h2>
      {detail.firmware.length === 0 ? (
        <p class="empty">No version reported yet.</p>
      ) : (
        <div class="table-box">
          <table id="firmware-history" class="cards">
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Since</th>
                <th scope="col">From</th>
              </tr>
            </thead>
            <tbody>
              {detail.firmware.map((entry) => (
                <tr key={`${entry.version}-${entry.at}`}>
                  <td class="mono" data-label="Version">
                    {entry.version}
                  </td>
                  <td data-label="Since">
                    <Time at={entry.at} />
                  </td>
                  <td data-label="From">{entry.source}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function Messages({ detail, payloads, onPayloads }: { detail: DeviceDetail; payloads: boolean; onPayloads: (show: boolean) => void }) {
  return (
    <section class="card wide" aria-labelledby="messages-title">
      <div class="page-head">
        <h2 id="messages-title">Last app messages</h2>
        <label class="check page-actions">
          <input id="show-payloads" type="checkbox" checked={payloads} onChange={(e) => onPayloads(e.currentTarget.checked)} /> Show payloads
        </label>
      </div>
      {detail.messages.length === 0 ? (
        <p class="empty">No app message seen.</p>
      ) : (
        <div class="table-box">
          <table id="messages" class="cards">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Target</th>
                <th scope="col" class="num">
                  Size
                </th>
                {payloads && <th scope="col">Payload</th>}
              </tr>
            </thead>
            <tbody>
              {detail.messages.map((message, index) => (
                <tr key={`${message.at}-${index}`}>
                  <td data-label="When">
                    <Time at={message.at} />
                  </td>
                  <td class="mono" data-label="Target">
                    {message.target}
                  </td>
                  <td class="num" data-label="Size">
                    {formatBytes(message.size)}
                  </td>
                  {payloads && (
                    <td data-label="Payload" class="wrap">
                      <pre class="payload">
                        {describePayload(message.payload)}
                        {message.payloadTruncated ? ' … (the first 128 bytes)' : ''}
                      </pre>
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** JSON carries payload bytes as base64: shown as text when they are printable UTF-8, as hex otherwise. */
export function describePayload(payload: unknown): string {
  if (typeof payload !== 'string') return payload === undefined ? '–' : JSON.stringify(payload);
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
  } catch (error) {
    return `${payload} (${error instanceof Error ? error.message : 'not base64'})`;
  }
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  // eslint-disable-next-line no-control-regex -- control characters are what tells text from binary here
  if (!/[\u0000-\u0008\u000e-\u001f\ufffd]/.test(text)) return text;
  const hex = [...bytes.subarray(0, 256)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  return `${hex}${bytes.length > 256 ? ' …' : ''}`;
}

function Actions({ detail, reload }: { detail: DeviceDetail; reload: () => void }) {
  const { client, errors } = useConsole();
  const uid = detail.device.uid;
  const [done, setDone] = useState<string | undefined>(undefined);
  const [password, setPassword] = useState<string | undefined>(undefined);
  const [images, setImages] = useState<ImageInfo[]>([]);
  const [image, setImage] = useState('');
  const [force, setForce] = useState(false);
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const dialog = useRef<HTMLDialogElement>(null);

  useOnReady(() => {
    void errors.track('images.list', () => client.request<{ images: ImageInfo[] }>('images.list')).then((answer) => answer && setImages(answer.images));
  }, []);

  const act = (action: string, cmd: string, args: Record<string, unknown>, said: (result: Record<string, unknown>) => string) => {
    setBusy(true);
    setDone(undefined);
    void errors.track(action, () => client.request<Record<string, unknown>>(cmd, args)).then((result) => {
      setBusy(false);
      if (!result) return;
      setDone(said(result));
      reload();
    });
  };

  const revoked = detail.identity.revoked !== null;
  return (
    <section class="card wide" aria-labelledby="actions-title" id="device-actions">
      <h2 id="actions-title">Actions</h2>
      <div class="inline-form">
        <button type="button" id="kick-button" disabled={busy || !detail.device.online} onClick={() => act(`kick ${uid}`, 'devices.kick', { uid }, () => `${uid}: session closed (it may connect again)`)}>
          Kick
        </button>
        {revoked ? (
          <button type="button" id="unrevoke-button" class="secondary" disabled={busy} onClick={() => act(`unrevoke ${uid}`, 'devices.unrevoke', { uid }, () => `${uid}: revocation lifted`)}>
            Lift revocation
          </button>
        ) : (
          <button type="button" id="revoke-button" class="danger" disabled={busy} onClick={() => dialog.current?.showModal()}>
            Revoke…
          </button>
        )}
        <button
          type="button"
          id="password-button"
          class="secondary"
          disabled={busy}
          onClick={() => {
            setBusy(true);
            setPassword(undefined);
            void errors.track(`set password ${uid}`, () => client.request<{ password: string }>('devices.add', { uid })).then((answer) => {
              setBusy(false);
              if (!answer) return;
              setPassword(answer.password);
              reload();
            });
          }}
        >
          {detail.identity.hasPassword ? 'New password' : 'Set a password'}
        </button>
      </div>
      <form
        class="inline-form"
        onSubmit={(event) => {
          event.preventDefault();
          if (!image) return;
          act(`link ${uid}`, 'ota.link', { device: uid, image, ...(force ? { force: true } : {}) }, () => `${uid} linked to ${image}`);
        }}
      >
        <div class="field">
          <label for="link-image">Link to image</label>
          <select id="link-image" value={image} onChange={(e) => setImage(e.currentTarget.value)}>
            <option value="">(choose an image)</option>
            {images.map((candidate) => (
              <option key={candidate.id} value={candidate.id}>
                {candidate.id}
              </option>
            ))}
          </select>
        </div>
        <label class="check">
          <input type="checkbox" id="link-force" checked={force} onChange={(e) => setForce(e.currentTarget.checked)} /> allow downgrade
        </label>
        <button type="submit" id="link-button" disabled={busy || !image}>
          Link
        </button>
      </form>
      {password !== undefined && (
        <div class="password-once" id="password-once" role="status">
          <p>
            The new MQTT password of <span class="mono">{uid}</span>, shown this once: <code id="new-password">{password}</code>
          </p>
          <button type="button" class="secondary" onClick={() => setPassword(undefined)}>
            I have copied it
          </button>
        </div>
      )}
      {done && (
        <p class="message ok" id="action-done" role="status">
          {done}
        </p>
      )}
      <dialog id="revoke-dialog" ref={dialog} aria-labelledby="revoke-title">
        <form
          method="dialog"
          onSubmit={(event) => {
            event.preventDefault();
            dialog.current?.close();
            act(`revoke ${uid}`, 'devices.revoke', { uid, ...(reason.trim() ? { reason: reason.trim() } : {}) }, () => `${uid}: revoked, its session closed`);
          }}
        >
          <h2 id="revoke-title">
            Revoke <span class="mono">{uid}</span>?
          </h2>
          <p>Its certificates and password are refused from now on, on every instance, and its session is closed.</p>
          <div class="field">
            <label for="revoke-reason">Reason</label>
            <input id="revoke-reason" type="text" maxLength={500} value={reason} onInput={(e) => setReason(e.currentTarget.value)} placeholder="revoked by an operator" />
          </div>
          <div class="inline-form">
            <button type="submit" id="revoke-confirm" class="danger">
              Revoke
            </button>
            <button type="button" id="revoke-cancel" class="secondary" onClick={() => dialog.current?.close()}>
              Cancel
            </button>
          </div>
        </form>
      </dialog>
    </section>
  );
}
