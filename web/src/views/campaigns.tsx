// Campaigns: every campaign, and one campaign's detail (funnel, stage table,
// failures, bytes, estimates, operator buttons), kept live by the
// `campaign.state` and `campaign.device` events.
//
// Answers and events may cross: an answer can be older than an event that
// arrived before it. So a summary never replaces a newer one (`updatedAt`
// moves on every campaign change), device records that change while
// `campaigns.show` is in flight are applied again after its answer (a
// device's events come in order, so its last one wins), and the list's counts
// of the shown campaign come from its device records.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ImageInfo } from '../api/types.js';
import { bytesServed, estimate, failedByReason, FUNNEL_STEPS, funnel, reached, STEPS, type CampaignDevice, type CampaignSpec, type CampaignSummary, type FunnelRow } from '../campaign-funnel.js';
import { formatBytes } from '../time.js';
import { useConsole, useLiveEvents, useOnReady } from '../ui/context.js';
import { useNow } from '../ui/now.js';
import { Page } from '../ui/shell.js';
import { Time } from '../ui/time.js';

/** Recent device changes shown in the detail: older ones are dropped, so a long rollout cannot grow the page. */
const MAX_LOG = 30;
/** Device events of campaigns not shown carry no summary: the list is asked for again, at most this often. */
const LIST_REFRESH_MS = 2000;

interface Selected {
  campaign: CampaignSummary;
  spec: CampaignSpec;
  devices: Map<string, CampaignDevice>;
}

interface LogEntry {
  key: number;
  at: number;
  text: string;
}

export function CampaignsView() {
  const { client, errors } = useConsole();
  const [campaigns, setCampaigns] = useState<Map<string, CampaignSummary>>(new Map());
  const [selected, setSelected] = useState<Selected | undefined>(undefined);
  const [log, setLog] = useState<LogEntry[]>([]);
  const [images, setImages] = useState<ImageInfo[]>([]);
  const [refusal, setRefusal] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  // Mirrors of the state for the event handlers and in-flight answers, which must see the latest.
  const state = useRef({ campaigns, selected, showing: undefined as undefined | { id: string; changed: Map<string, CampaignDevice> }, logKey: 0 });
  state.current.campaigns = campaigns;
  state.current.selected = selected;
  const listTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const abortDialog = useRef<HTMLDialogElement>(null);
  const [rollback, setRollback] = useState(false);

  /** Takes summaries unless newer ones are known; the shown campaign follows. */
  const accept = (summaries: readonly CampaignSummary[]) => {
    const next = new Map(state.current.campaigns);
    let shown = state.current.selected;
    for (const summary of summaries) {
      const known = next.get(summary.id);
      if (known && known.updatedAt > summary.updatedAt) continue;
      next.set(summary.id, summary);
      if (shown && shown.campaign.id === summary.id && shown.campaign.updatedAt <= summary.updatedAt) shown = { ...shown, campaign: summary };
    }
    state.current.campaigns = next;
    state.current.selected = shown;
    setCampaigns(next);
    setSelected(shown);
  };

  const addLog = (at: number, text: string) => {
    setLog((entries) => [{ key: ++state.current.logKey, at, text }, ...entries].slice(0, MAX_LOG));
  };

  const refreshList = async () => {
    const answer = await errors.track('campaigns.list', () => client.request<{ campaigns: CampaignSummary[] }>('campaigns.list'));
    if (answer) accept(answer.campaigns);
  };

  const select = async (id: string) => {
    const showing = { id, changed: new Map<string, CampaignDevice>() };
    state.current.showing = showing;
    const answer = await errors.track('campaigns.show', () => client.request<{ campaign: CampaignSummary; spec: CampaignSpec; devices: CampaignDevice[] }>('campaigns.show', { id, devices: true }));
    if (state.current.showing === showing) state.current.showing = undefined;
    if (!answer) return;
    const keepLog = state.current.selected?.campaign.id === id;
    const devices = new Map(answer.devices.map((device) => [device.uid, device]));
    for (const [uid, device] of showing.changed) devices.set(uid, device);
    const known = state.current.campaigns.get(id);
    const campaign = known && known.updatedAt > answer.campaign.updatedAt ? known : answer.campaign;
    state.current.selected = { campaign, spec: answer.spec, devices };
    setSelected(state.current.selected);
    accept([campaign]);
    if (!keepLog) setLog([]);
    setRefusal(undefined);
  };

  useOnReady(() => {
    void refreshList().then(() => {
      const shown = state.current.selected;
      if (shown) void select(shown.campaign.id);
    });
    void errors.track('images.list', () => client.request<{ images: ImageInfo[] }>('images.list')).then((answer) => answer && setImages(answer.images));
  }, []);
  useEffect(() => () => clearTimeout(listTimer.current), []);

  useLiveEvents((event) => {
    if (event.name === 'campaign.state') {
      const summary = event.data.campaign as CampaignSummary;
      accept([summary]);
      if (state.current.selected?.campaign.id === summary.id) addLog(Number(event.data.at), `campaign ${summary.state}, stage ${stageName(summary)} (${summary.reason})`);
    } else if (event.name === 'campaign.device') {
      const campaignId = String(event.data.campaignId);
      const device = event.data.device as CampaignDevice;
      if (state.current.showing?.id === campaignId) state.current.showing.changed.set(device.uid, device);
      const shown = state.current.selected;
      if (shown?.campaign.id === campaignId) {
        const devices = new Map(shown.devices);
        devices.set(device.uid, device);
        state.current.selected = { ...shown, devices };
        setSelected(state.current.selected);
        const why = device.state === 'failed' ? ` (${device.reason ?? 'unknown'})` : device.rolledBackTo ? ` (rolled back to ${device.rolledBackTo})` : '';
        addLog(Number(event.data.at), `${device.uid}: ${String(event.data.previous)} → ${device.state}${why}`);
      } else if (listTimer.current === undefined) {
        listTimer.current = setTimeout(() => {
          listTimer.current = undefined;
          void refreshList();
        }, LIST_REFRESH_MS);
      }
    }
  });

  /** Runs an operator command; the server's answer (the summary) or its refusal is shown at once. */
  const operate = async (cmd: string, args: Record<string, unknown> = {}) => {
    const shown = state.current.selected;
    if (!shown || busy) return;
    setBusy(true);
    setRefusal(undefined);
    try {
      accept([await client.request<CampaignSummary>(cmd, { id: shown.campaign.id, ...args })]);
    } catch (error) {
      setRefusal(`${cmd} refused: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      setBusy(false);
    }
  };

  const list = [...campaigns.values()].sort((a, b) => b.createdAt - a.createdAt || a.id.localeCompare(b.id));
  const running = list.filter((c) => c.state === 'running').length;
  return (
    <Page
      title={
        <>
          Campaigns <span class="hint" id="campaign-count">{list.length > 0 ? `${running} running / ${list.length}` : ''}</span>
        </>
      }
    >
      <div class="stack">
        <section class="card" id="campaigns-card" aria-label="Campaigns">
          {list.length === 0 ? (
            <p id="campaigns-empty" class="empty">
              No campaign yet: <code>campaigns.create</code> starts one (README "Campaigns").
            </p>
          ) : (
            <div class="table-box">
              <table id="campaigns" class="cards">
                <thead>
                  <tr>
                    <th scope="col">ID</th>
                    <th scope="col">Image</th>
                    <th scope="col">State</th>
                    <th scope="col">Stage</th>
                    <th scope="col" class="num">
                      Healthy
                    </th>
                    <th scope="col" class="num">
                      Failed
                    </th>
                    <th scope="col" class="num">
                      Devices
                    </th>
                    <th scope="col">Updated</th>
                    <th scope="col">
                      <span class="visually-hidden">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {list.map((campaign) => {
                    const counts = selected?.campaign.id === campaign.id ? funnel(campaign, selected.devices.values()).total.counts : campaign.counts;
                    const total = Object.values(counts).reduce<number>((sum, n) => sum + (n ?? 0), 0);
                    return (
                      <tr key={campaign.id} data-id={campaign.id} data-state={campaign.state} class={selected?.campaign.id === campaign.id ? 'selected' : ''}>
                        <td class="mono" data-label="ID">
                          {campaign.id}
                        </td>
                        <td class="mono" data-label="Image">
                          {campaign.imageId}
                        </td>
                        <td class="state" data-label="State">
                          <span class={`badge campaign-${campaign.state}`}>{campaign.state}</span>
                        </td>
                        <td class="stage" data-label="Stage">
                          {stageName(campaign)}
                        </td>
                        <td class="healthy num" data-label="Healthy">
                          {String(counts.healthy ?? 0)}
                        </td>
                        <td class={(counts.failed ?? 0) > 0 ? 'failed num warn' : 'failed num'} data-label="Failed">
                          {String(counts.failed ?? 0)}
                        </td>
                        <td class="total num" data-label="Devices">
                          {String(total)}
                        </td>
                        <td data-label="Updated">
                          <Time at={campaign.updatedAt} />
                        </td>
                        <td data-label="">
                          <button type="button" class="secondary" aria-label={`Show campaign ${campaign.id}`} onClick={() => void select(campaign.id)}>
                            Show
                          </button>
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
        </section>
        {selected && (
          <Detail
            selected={selected}
            log={log}
            busy={busy}
            refusal={refusal}
            imageSize={images.find((image) => image.id === selected.campaign.imageId)?.size}
            onOperate={(cmd) => void operate(cmd)}
            onAbort={() => {
              // The campaign's own setting is the default, as for `campaigns.abort` without `rollback`.
              setRollback(selected.spec.rollback?.enabled ?? false);
              abortDialog.current?.showModal();
            }}
            onClose={() => {
              state.current.selected = undefined;
              setSelected(undefined);
              setLog([]);
            }}
          />
        )}
      </div>
      <dialog id="abort-dialog" ref={abortDialog} aria-labelledby="abort-title">
        <h2 id="abort-title">
          Abort campaign <span class="mono">{selected?.campaign.id}</span>?
        </h2>
        <p>No device of a later stage will be notified. Devices in progress are no longer watched.</p>
        <label class="check">
          <input id="abort-rollback" type="checkbox" checked={rollback} onChange={(e) => setRollback(e.currentTarget.checked)} /> Roll back: link the current stage's notified devices back to their previous image
        </label>
        <div class="inline-form">
          <button
            id="abort-confirm"
            type="button"
            class="danger"
            onClick={() => {
              abortDialog.current?.close();
              void operate('campaigns.abort', { rollback });
            }}
          >
            Abort campaign
          </button>
          <button id="abort-cancel" type="button" class="secondary" onClick={() => abortDialog.current?.close()}>
            Cancel
          </button>
        </div>
      </dialog>
    </Page>
  );
}

function Detail({
  selected,
  log,
  busy,
  refusal,
  imageSize,
  onOperate,
  onAbort,
  onClose,
}: {
  selected: Selected;
  log: LogEntry[];
  busy: boolean;
  refusal: string | undefined;
  imageSize: number | undefined;
  onOperate: (cmd: string) => void;
  onAbort: () => void;
  onClose: () => void;
}) {
  const now = useNow(5000);
  const { campaign, spec } = selected;
  const devices = [...selected.devices.values()];
  const active = campaign.state === 'running' || campaign.state === 'paused';
  const counts = reached(devices);
  const { rows, total } = funnel(campaign, devices);
  const reasons = failedByReason(devices);
  const { downloadsDoneAt, earliestEndAt } = estimate({ summary: campaign, spec, devices, imageSize: imageSize ?? 0, now });
  return (
    <section id="campaign-detail" class="card" data-id={campaign.id} data-state={campaign.state} aria-labelledby="campaign-detail-title">
      <div class="page-head">
        <h2 id="campaign-detail-title">
          Campaign <span class="mono">{campaign.id}</span>{' '}
          <span id="campaign-state" class={`badge campaign-${campaign.state}`} role="status">
            {campaign.state}
          </span>
        </h2>
        <div class="page-actions" role="group" aria-label="Campaign actions">
          <button id="campaign-pause" type="button" disabled={busy || campaign.state !== 'running'} onClick={() => onOperate('campaigns.pause')}>
            Pause
          </button>
          <button id="campaign-resume" type="button" disabled={busy || campaign.state !== 'paused'} onClick={() => onOperate('campaigns.resume')}>
            Resume
          </button>
          {/* Promote stays offered at the last stage: the server is the one to say there is nothing to promote to. */}
          <button id="campaign-promote" type="button" disabled={busy || !active} onClick={() => onOperate('campaigns.promote')}>
            Promote to next stage
          </button>
          <button id="campaign-abort" type="button" class="danger" disabled={busy || !active} onClick={onAbort}>
            Abort…
          </button>
          <button id="campaign-close" type="button" class="secondary" onClick={onClose}>
            Close
          </button>
        </div>
      </div>
      <p class="hint" id="campaign-detail-summary">
        image <span class="mono">{campaign.imageId}</span> · stage {stageName(campaign)} · reason {campaign.reason} · updated <Time at={campaign.updatedAt} />
      </p>
      {refusal && (
        <p id="campaign-error" class="message error" role="alert">
          {refusal}
        </p>
      )}
      <div class="grid">
        <div>
          <h3>
            Funnel <span class="hint">(devices that got at least this far)</span>
          </h3>
          <ol id="campaign-funnel-bars" class="funnel">
            {FUNNEL_STEPS.map((step) => (
              <li key={step} data-step={step}>
                <span class="step">{step}</span>
                <meter min={0} max={Math.max(1, devices.length)} value={counts[step]} aria-label={`${step}: ${counts[step]} of ${devices.length}`} />
                <span class="value">{`${counts[step]} / ${devices.length}`}</span>
              </li>
            ))}
          </ol>
        </div>
        <div>
          <dl class="facts">
            <dt>Bytes served</dt>
            <dd id="campaign-bytes">{`${formatBytes(bytesServed(devices))}${imageSize ? ` (image ${formatBytes(imageSize)})` : ''}`}</dd>
            <dt>Stage downloads done</dt>
            <dd id="campaign-downloads-eta">{downloadsDoneAt === undefined ? '–' : <Eta at={downloadsDoneAt} />}</dd>
            <dt>Earliest end</dt>
            <dd id="campaign-end-eta">{earliestEndAt === undefined ? (campaign.state === 'running' ? '–' : `– (${campaign.state})`) : <Eta at={earliestEndAt} />}</dd>
          </dl>
          <h3>Failed by reason</h3>
          <ul id="campaign-failures" class="reasons">
            {reasons.length === 0 ? (
              <li class="hint">no device failed</li>
            ) : (
              reasons.map(({ reason, count }) => (
                <li key={reason} data-reason={reason}>
                  {`${reason}: ${count}`}
                </li>
              ))
            )}
          </ul>
        </div>
      </div>
      <div class="table-box">
        <table id="campaign-funnel">
          <caption>Devices per stage, by the state they are in now</caption>
          <thead>
            <tr>
              <th scope="col">Stage</th>
              <th scope="col" class="num">
                Devices
              </th>
              {STEPS.map((step) => (
                <th scope="col" class="num" key={step}>
                  {step}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <FunnelLine key={row.index} row={row} current={row.index === campaign.stage} />
            ))}
          </tbody>
          <tfoot>
            <FunnelLine row={total} current={false} />
          </tfoot>
        </table>
      </div>
      <h3>
        Recent device changes <span class="hint">(the last {MAX_LOG})</span>
      </h3>
      <ol id="campaign-log" class="feed">
        {log.map((entry) => (
          <li key={entry.key}>
            <Time at={entry.at} /> {entry.text}
          </li>
        ))}
      </ol>
    </section>
  );
}

function FunnelLine({ row, current }: { row: FunnelRow; current: boolean }) {
  return (
    <tr data-stage={String(row.index)} class={current ? 'current' : ''}>
      <th scope="row">{row.index >= 0 ? `${row.index + 1}. ${row.label}` : row.label}</th>
      <td class="num">{String(row.devices)}</td>
      {STEPS.map((step) => (
        <td key={step} class={row.counts[step] > 0 ? `num n ${step}` : `num n zero ${step}`}>
          {String(row.counts[step])}
        </td>
      ))}
    </tr>
  );
}

/** An estimate: relative ("in 3 min") like every time here, the absolute time on hover. */
function Eta({ at }: { at: number }) {
  return <Time at={at} />;
}

function stageName(campaign: CampaignSummary): string {
  const stage = campaign.stages[campaign.stage];
  return `${campaign.stage + 1}/${campaign.stages.length}${stage ? ` (${stage.label})` : ''}`;
}
