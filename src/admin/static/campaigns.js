// The dashboard's Campaigns card: the list of campaigns and one campaign's
// detail (funnel, failures, bytes, estimates, operator buttons), kept live by
// the `campaign.state` and `campaign.device` events. It owns only its DOM; the
// connection (request, messages) is app.js's and passed in.
import { STEPS, FUNNEL_STEPS, bytesServed, estimate, failedByReason, funnel, reached } from './campaign-funnel.js';

/** Recent device changes shown in the detail (index.html says "the last 30"): older ones are dropped, so a long rollout cannot grow the page. */
const MAX_LOG = 30;
/** Device events come in bursts (a stage starts): the detail is drawn at most this often. */
const RENDER_DELAY_MS = 100;
/** The estimates are relative to now: redrawn this often while a campaign is shown. */
const CLOCK_REFRESH_MS = 5000;
/** Device events of campaigns not shown carry no summary: their list row is asked for again, at most this often. */
const LIST_REFRESH_MS = 2000;

const $ = (selector) => document.querySelector(selector);

/**
 * @param {{ request: (cmd: string, args?: object) => Promise<any>, imageSize: (id: string) => number | undefined, formatBytes: (n: number) => string }} deps
 */
export function createCampaignsView({ request, imageSize, formatBytes }) {
  const view = {
    campaigns: new Map(),
    /** The campaign shown in detail: its summary, spec and device records by uid. */
    selected: undefined,
    /** A `campaigns.show` in flight: the device records that changed meanwhile, by uid, to apply after its answer. */
    showing: undefined,
    log: [],
    renderTimer: undefined,
    clockTimer: undefined,
    listTimer: undefined,
    busy: false,
  };

  // --- data ---------------------------------------------------------------------
  //
  // Answers and events may cross: an answer can be older than an event that
  // arrived before it. So a summary never replaces a newer one (`updatedAt`
  // moves on every campaign change), device records that change while
  // `campaigns.show` is in flight are applied again after its answer (a
  // device's events come in order, so its last one wins), and the list's
  // counts of the shown campaign come from its device records.

  async function refresh() {
    const { campaigns } = await request('campaigns.list');
    // Campaigns are never deleted (ids are not reused): the known ones are only brought up to date.
    for (const campaign of campaigns) accept(campaign);
    renderList();
    if (view.selected) await select(view.selected.campaign.id);
  }

  async function select(id) {
    const showing = { id, changed: new Map() };
    view.showing = showing;
    let answer;
    try {
      answer = await request('campaigns.show', { id, devices: true });
    } finally {
      if (view.showing === showing) view.showing = undefined;
    }
    const keepLog = view.selected?.campaign.id === id;
    const devices = new Map(answer.devices.map((device) => [device.uid, device]));
    for (const [uid, device] of showing.changed) devices.set(uid, device);
    accept(answer.campaign);
    view.selected = { campaign: view.campaigns.get(id) ?? answer.campaign, spec: answer.spec, devices };
    if (!keepLog) view.log = [];
    hideError();
    renderList();
    renderDetail();
    clearInterval(view.clockTimer);
    view.clockTimer = setInterval(() => renderDetail(), CLOCK_REFRESH_MS);
  }

  /** Takes a summary unless a newer one is known; the shown campaign follows. */
  function accept(summary) {
    const known = view.campaigns.get(summary.id);
    if (known && known.updatedAt > summary.updatedAt) return;
    view.campaigns.set(summary.id, summary);
    if (view.selected?.campaign.id === summary.id && view.selected.campaign.updatedAt <= summary.updatedAt) view.selected.campaign = summary;
  }

  /** A `campaign.*` event from the live stream. */
  function onEvent(name, data) {
    if (name === 'campaign.state') {
      accept(data.campaign);
      if (view.selected?.campaign.id === data.campaign.id) addLog(`${time(data.at)} campaign ${data.campaign.state}, stage ${stageName(data.campaign)} (${data.campaign.reason})`);
      scheduleRender();
    } else if (name === 'campaign.device') {
      if (view.showing?.id === data.campaignId) view.showing.changed.set(data.device.uid, data.device);
      if (view.selected?.campaign.id === data.campaignId) {
        view.selected.devices.set(data.device.uid, data.device);
        const why = data.device.state === 'failed' ? ` (${data.device.reason ?? 'unknown'})` : data.device.rolledBackTo ? ` (rolled back to ${data.device.rolledBackTo})` : '';
        addLog(`${time(data.at)} ${data.device.uid}: ${data.previous} → ${data.device.state}${why}`);
      } else {
        scheduleListRefresh();
      }
      scheduleRender();
    }
  }

  function scheduleListRefresh() {
    if (view.listTimer !== undefined) return;
    view.listTimer = setTimeout(() => {
      view.listTimer = undefined;
      request('campaigns.list')
        .then(({ campaigns }) => {
          for (const campaign of campaigns) accept(campaign);
          scheduleRender();
        })
        .catch((error) => console.warn('campaigns.list', error));
    }, LIST_REFRESH_MS);
  }

  function addLog(text) {
    view.log.unshift(text);
    if (view.log.length > MAX_LOG) view.log.length = MAX_LOG;
  }

  /** Logged out or disconnected: nothing is kept of the old session. */
  function reset() {
    clearInterval(view.clockTimer);
    clearTimeout(view.renderTimer);
    clearTimeout(view.listTimer);
    view.renderTimer = undefined;
    view.listTimer = undefined;
    view.campaigns.clear();
    view.selected = undefined;
    view.showing = undefined;
    view.log = [];
    renderList();
    renderDetail();
  }

  // --- actions --------------------------------------------------------------------

  /** Runs an operator command; the server's answer (the summary) or its refusal is shown at once. */
  async function operate(cmd, args) {
    if (!view.selected || view.busy) return;
    view.busy = true;
    hideError();
    renderButtons();
    try {
      accept(await request(cmd, { id: view.selected.campaign.id, ...args }));
    } catch (error) {
      showError(`${cmd} refused: ${error.message}`);
    } finally {
      view.busy = false;
      renderList();
      renderDetail();
    }
  }

  function askAbort() {
    if (!view.selected) return;
    const dialog = $('#abort-dialog');
    $('#abort-campaign-id').textContent = view.selected.campaign.id;
    // The campaign's own setting is the default, as for `campaigns.abort` without `rollback`.
    $('#abort-rollback').checked = view.selected.spec.rollback?.enabled ?? false;
    dialog.showModal();
  }

  $('#campaign-pause').addEventListener('click', () => void operate('campaigns.pause', {}));
  $('#campaign-resume').addEventListener('click', () => void operate('campaigns.resume', {}));
  $('#campaign-promote').addEventListener('click', () => void operate('campaigns.promote', {}));
  $('#campaign-abort').addEventListener('click', () => askAbort());
  $('#abort-cancel').addEventListener('click', () => $('#abort-dialog').close());
  $('#abort-confirm').addEventListener('click', () => {
    const rollback = $('#abort-rollback').checked;
    $('#abort-dialog').close();
    void operate('campaigns.abort', { rollback });
  });
  $('#campaign-close').addEventListener('click', () => {
    clearInterval(view.clockTimer);
    view.selected = undefined;
    view.log = [];
    renderList();
    renderDetail();
  });

  // --- rendering (textContent only) -----------------------------------------------

  function scheduleRender() {
    if (view.renderTimer !== undefined) return;
    view.renderTimer = setTimeout(() => {
      view.renderTimer = undefined;
      renderList();
      renderDetail();
    }, RENDER_DELAY_MS);
  }

  function renderList() {
    const campaigns = [...view.campaigns.values()].sort((a, b) => b.createdAt - a.createdAt || a.id.localeCompare(b.id));
    $('#campaign-count').textContent = campaigns.length ? `${campaigns.filter((c) => c.state === 'running').length} running / ${campaigns.length}` : '';
    $('#campaigns-empty').hidden = campaigns.length > 0;
    $('#campaigns tbody').replaceChildren(
      ...campaigns.map((campaign) => {
        const row = document.createElement('tr');
        row.dataset.id = campaign.id;
        row.dataset.state = campaign.state;
        if (view.selected?.campaign.id === campaign.id) row.className = 'selected';
        const show = document.createElement('button');
        show.type = 'button';
        show.className = 'secondary';
        show.textContent = 'Show';
        show.setAttribute('aria-label', `Show campaign ${campaign.id}`);
        show.addEventListener('click', () => void select(campaign.id).catch((error) => showError(`campaigns.show: ${error.message}`)));
        const actions = document.createElement('td');
        actions.append(show);
        const counts = view.selected?.campaign.id === campaign.id ? funnel(campaign, view.selected.devices.values()).total.counts : campaign.counts;
        const total = Object.values(counts).reduce((sum, n) => sum + n, 0);
        row.append(
          cell(campaign.id, 'mono'),
          cell(campaign.imageId, 'mono'),
          stateCell(campaign.state),
          cell(stageName(campaign), 'stage'),
          cell(String(counts.healthy), 'healthy'),
          cell(String(counts.failed), counts.failed > 0 ? 'failed warn' : 'failed'),
          cell(String(total), 'total'),
          actions,
        );
        return row;
      }),
    );
  }

  function renderDetail() {
    const detail = $('#campaign-detail');
    const selected = view.selected;
    detail.hidden = !selected;
    if (!selected) return;
    const { campaign, spec } = selected;
    const devices = [...selected.devices.values()];
    detail.dataset.id = campaign.id;
    detail.dataset.state = campaign.state;
    $('#campaign-detail-id').textContent = campaign.id;
    const badge = $('#campaign-state');
    badge.textContent = campaign.state;
    badge.className = `badge campaign-${campaign.state}`;
    $('#campaign-detail-summary').textContent = `image ${campaign.imageId} · stage ${stageName(campaign)} · reason ${campaign.reason} · updated ${time(campaign.updatedAt)}`;
    renderButtons();
    renderFunnelBars(devices);
    renderFunnelTable(campaign, devices);
    renderFailures(devices);
    renderFigures(campaign, spec, devices);
    $('#campaign-log').replaceChildren(
      ...view.log.map((text) => {
        const item = document.createElement('li');
        item.textContent = text;
        return item;
      }),
    );
  }

  function renderButtons() {
    const state = view.selected?.campaign.state;
    const active = state === 'running' || state === 'paused';
    $('#campaign-pause').disabled = view.busy || state !== 'running';
    $('#campaign-resume').disabled = view.busy || state !== 'paused';
    // Promote stays offered at the last stage: the server is the one to say there is nothing to promote to.
    $('#campaign-promote').disabled = view.busy || !active;
    $('#campaign-abort').disabled = view.busy || !active;
  }

  /** The funnel: how many devices got at least this far, as bars over the campaign's size. */
  function renderFunnelBars(devices) {
    const counts = reached(devices);
    const total = Math.max(1, devices.length);
    $('#campaign-funnel-bars').replaceChildren(
      ...FUNNEL_STEPS.map((step) => {
        const item = document.createElement('li');
        item.dataset.step = step;
        const label = document.createElement('span');
        label.className = 'step';
        label.textContent = step;
        const meter = document.createElement('meter');
        meter.min = 0;
        meter.max = total;
        meter.value = counts[step];
        meter.setAttribute('aria-label', `${step}: ${counts[step]} of ${devices.length}`);
        const value = document.createElement('span');
        value.className = 'value';
        value.textContent = `${counts[step]} / ${devices.length}`;
        item.append(label, meter, value);
        return item;
      }),
    );
  }

  function renderFunnelTable(campaign, devices) {
    const { rows, total } = funnel(campaign, devices);
    const line = (row, current) => {
      const tr = document.createElement('tr');
      tr.dataset.stage = String(row.index);
      if (current) tr.className = 'current';
      const head = document.createElement('th');
      head.scope = 'row';
      head.textContent = row.index >= 0 ? `${row.index + 1}. ${row.label}` : row.label;
      tr.append(head, cell(String(row.devices)), ...STEPS.map((step) => cell(String(row.counts[step]), row.counts[step] > 0 ? `n ${step}` : `n zero ${step}`)));
      return tr;
    };
    $('#campaign-funnel tbody').replaceChildren(...rows.map((row) => line(row, row.index === campaign.stage)));
    $('#campaign-funnel tfoot').replaceChildren(line(total, false));
  }

  function renderFailures(devices) {
    const reasons = failedByReason(devices);
    const list = $('#campaign-failures');
    if (reasons.length === 0) {
      const item = document.createElement('li');
      item.className = 'hint';
      item.textContent = 'no device failed';
      list.replaceChildren(item);
      return;
    }
    list.replaceChildren(
      ...reasons.map(({ reason, count }) => {
        const item = document.createElement('li');
        item.dataset.reason = reason;
        item.textContent = `${reason}: ${count}`;
        return item;
      }),
    );
  }

  function renderFigures(campaign, spec, devices) {
    const size = imageSize(campaign.imageId);
    const now = Date.now();
    const { downloadsDoneAt, earliestEndAt } = estimate({ summary: campaign, spec, devices, imageSize: size ?? 0, now });
    $('#campaign-bytes').textContent = `${formatBytes(bytesServed(devices))}${size ? ` (image ${formatBytes(size)})` : ''}`;
    $('#campaign-downloads-eta').textContent = downloadsDoneAt === undefined ? '–' : `${time(downloadsDoneAt)} (in ${duration(downloadsDoneAt - now)})`;
    $('#campaign-end-eta').textContent =
      earliestEndAt === undefined ? (campaign.state === 'running' ? '–' : `– (${campaign.state})`) : `${time(earliestEndAt)} (in ${duration(earliestEndAt - now)})`;
  }

  function showError(text) {
    const box = $('#campaign-error');
    box.textContent = text;
    box.hidden = false;
  }

  function hideError() {
    $('#campaign-error').hidden = true;
  }

  return { refresh, onEvent, reset };
}

function stageName(campaign) {
  const stage = campaign.stages[campaign.stage];
  return `${campaign.stage + 1}/${campaign.stages.length}${stage ? ` (${stage.label})` : ''}`;
}

function stateCell(state) {
  const td = document.createElement('td');
  td.className = 'state';
  const badge = document.createElement('span');
  badge.className = `badge campaign-${state}`;
  badge.textContent = state;
  td.append(badge);
  return td;
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function time(ms) {
  return new Date(ms).toLocaleString();
}

function duration(ms) {
  const minutes = Math.max(0, Math.round(ms / 60_000));
  if (minutes < 1) return 'under a minute';
  if (minutes < 120) return `${minutes} min`;
  return `${(minutes / 60).toFixed(1)} h`;
}
