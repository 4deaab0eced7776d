// The Nucleon dashboard: plain JavaScript, no build, nothing from a CDN.
// It speaks the admin protocol (JSON text frames) over /ws and logs in with the
// first message, because browsers cannot set headers on a WebSocket.
import { createAuditView } from './audit.js';
import { createCampaignsView } from './campaigns.js';

const SUBPROTOCOL = 'nucleon.admin.v1';
const KEY_STORAGE = 'nucleon.admin.key';
const MAX_FEED = 50;
const RECONNECT_MAX_MS = 10_000;

const $ = (selector) => document.querySelector(selector);

const state = {
  socket: null,
  nextId: 1,
  waiting: new Map(),
  devices: new Map(),
  images: [],
  groups: [],
  reconnectMs: 500,
  reconnectTimer: null,
  loggedOut: true,
  ingestTimer: null,
  auditTimer: null,
};
const INGEST_REFRESH_MS = 2000;
/** Actions of other admins (CLI, other browsers) show up within this time; our own at once. */
const AUDIT_REFRESH_MS = 10_000;

const audit = createAuditView({ request });

const campaigns = createCampaignsView({
  request,
  imageSize: (id) => state.images.find((image) => image.id === id)?.size,
  formatBytes: bytes,
});

// --- connection ---------------------------------------------------------------

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

function connect(apiKey) {
  clearTimeout(state.reconnectTimer);
  state.loggedOut = false;
  setStatus('connecting…', 'offline');
  const socket = new WebSocket(wsUrl(), SUBPROTOCOL);
  state.socket = socket;
  socket.addEventListener('open', async () => {
    try {
      await request('auth.login', { apiKey });
    } catch (error) {
      sessionStorage.removeItem(KEY_STORAGE);
      state.loggedOut = true;
      showLogin(`Login failed: ${error.message}`);
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, apiKey);
    state.reconnectMs = 500;
    setStatus('connected', 'online');
    showDashboard();
    try {
      await request('events.subscribe', { kinds: ['device', 'telemetry', 'ota', 'campaign'] });
      await Promise.all([refreshDevices(), refreshImages(), refreshGroups(), refreshIngest(), refreshCampaigns(), refreshAudit()]);
      clearInterval(state.ingestTimer);
      state.ingestTimer = setInterval(() => void refreshIngest().catch((error) => console.warn('ingest status', error)), INGEST_REFRESH_MS);
      clearInterval(state.auditTimer);
      state.auditTimer = setInterval(() => void refreshAudit(), AUDIT_REFRESH_MS);
    } catch (error) {
      showMessage(error.message, true);
    }
  });
  socket.addEventListener('message', (event) => onMessage(event.data));
  socket.addEventListener('close', (event) => {
    for (const { reject } of state.waiting.values()) reject(new Error(`connection closed (${event.code} ${event.reason})`));
    state.waiting.clear();
    if (state.socket !== socket) return;
    state.socket = null;
    clearInterval(state.ingestTimer);
    clearInterval(state.auditTimer);
    // Wrong key or too many attempts: back to the login form, never retry on our own.
    if (state.loggedOut || event.code === 4401 || event.code === 4429) {
      setStatus('not connected', 'offline');
      return;
    }
    setStatus(`disconnected (${event.code}); reconnecting`, 'error');
    state.reconnectTimer = setTimeout(() => connect(apiKey), state.reconnectMs);
    state.reconnectMs = Math.min(state.reconnectMs * 2, RECONNECT_MAX_MS);
  });
}

/** Like send(), but waits out RATE_LIMITED answers (a long upload sends many chunks). */
async function request(cmd, args = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send(cmd, args);
    } catch (error) {
      if (error.code !== 'RATE_LIMITED' || attempt >= 10) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }
}

function send(cmd, args) {
  return new Promise((resolve, reject) => {
    const socket = state.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      reject(new Error('not connected'));
      return;
    }
    const id = state.nextId++;
    state.waiting.set(id, { resolve, reject });
    socket.send(JSON.stringify({ v: 1, id, cmd, args }));
  });
}

function onMessage(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch (error) {
    showMessage(`unreadable message from the server: ${error.message}`, true);
    return;
  }
  if (message.event) {
    onEvent(message.event, message.data);
    return;
  }
  const entry = state.waiting.get(message.id);
  if (!entry) return;
  state.waiting.delete(message.id);
  if (message.ok) entry.resolve(message.result);
  else entry.reject(Object.assign(new Error(`${message.error.message} [${message.error.code}]`), { code: message.error.code }));
}

function onEvent(name, data) {
  // Campaign events carry a campaign's device record as `device`, not a fleet record: they go to their own view.
  if (name.startsWith('campaign.')) {
    campaigns.onEvent(name, data);
    return;
  }
  if (data && data.device) {
    state.devices.set(data.device.uid, data.device);
    renderDevices();
  }
  if (name === 'telemetry') addFeed(`${time(data.at)} ${data.uid} ${describeTelemetry(data.telemetry)}`);
  else if (name === 'device.connected') addFeed(`${time(data.at)} ${data.uid} connected from ${data.remoteAddress}`);
  else if (name === 'device.disconnected') addFeed(`${time(data.at)} ${data.uid} disconnected (${data.reason})`);
  else if (name === 'ota.progress') addFeed(`${time(data.at)} ${data.uid} ota: ${data.device.otaStatus}, ${data.state.bytesServed} bytes served`);
}

// --- data -------------------------------------------------------------------

async function refreshDevices() {
  const { devices } = await request('devices.list');
  state.devices = new Map(devices.map((d) => [d.uid, d]));
  renderDevices();
}

async function refreshImages() {
  try {
    const { images } = await request('images.list');
    state.images = images;
  } catch (error) {
    state.images = [];
    showMessage(`images: ${error.message}`, true);
  }
  renderImages();
}

/** The durable ingest log: how far behind each runner is (README "Durable ingest"). */
async function refreshIngest() {
  const status = await request('ingest.status');
  const summary = $('#ingest-summary');
  const body = $('#ingest tbody');
  body.replaceChildren();
  if (status.durability === 'memory') {
    summary.textContent = 'durability "memory": no log, events are in memory only';
    return;
  }
  const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  summary.textContent = `durability "${status.durability}", ${mb(status.bytes)} of ${mb(status.maxBytes)} in ${status.segments} segment(s), head ${status.headSeq}${status.full ? ' — FULL: devices are held back' : ''}${status.failing ? ' — writes failing' : ''}`;
  summary.className = status.full || status.failing ? 'error' : '';
  for (const runner of status.runners) {
    const row = document.createElement('tr');
    row.append(cell(runner.name), cell(String(runner.committed)), cell(String(runner.lagEvents), runner.lagEvents > 0 ? 'warn' : ''), cell(runner.registered ? 'yes' : 'no (kept until the log is full)'));
    body.append(row);
  }
}

async function refreshAudit() {
  try {
    await audit.refresh();
  } catch (error) {
    showMessage(`recent admin actions: ${error.message}`, true);
  }
}

async function refreshCampaigns() {
  try {
    await campaigns.refresh();
  } catch (error) {
    showMessage(`campaigns: ${error.message}`, true);
  }
}

async function refreshGroups() {
  try {
    const { groups } = await request('groups.list');
    state.groups = groups;
  } catch (error) {
    state.groups = [];
    showMessage(`groups: ${error.message}`, true);
  }
  renderGroups();
}

// --- rendering (textContent only: nothing from the server is parsed as HTML) ------

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function renderDevices() {
  const body = $('#devices tbody');
  const devices = [...state.devices.values()].sort((a, b) => a.uid.localeCompare(b.uid));
  body.replaceChildren(
    ...devices.map((d) => {
      const row = document.createElement('tr');
      row.dataset.uid = d.uid;
      row.dataset.online = String(d.online);
      const badge = document.createElement('span');
      badge.className = `badge ${d.online ? 'online' : 'offline'}`;
      badge.textContent = d.online ? 'online' : 'offline';
      const stateCell = document.createElement('td');
      stateCell.className = 'state';
      stateCell.append(badge);
      row.append(
        cell(d.uid, 'mono'),
        stateCell,
        cell(d.firmwareVersion ?? '–', 'mono firmware'),
        cell(d.otaStatus, 'ota'),
        cell(time(d.lastSeen), 'last-seen'),
        cell(d.remoteAddress ?? '–', 'mono'),
        cell(d.telemetry ? describeTelemetry(d.telemetry) : '–', 'mono telemetry'),
      );
      return row;
    }),
  );
  const online = devices.filter((d) => d.online).length;
  $('#device-count').textContent = `${online} online / ${devices.length}`;
  $('#known-devices').replaceChildren(
    ...devices.map((d) => {
      const option = document.createElement('option');
      option.value = d.uid;
      return option;
    }),
  );
}

function renderImages() {
  $('#images tbody').replaceChildren(
    ...state.images.map((image) => {
      const row = document.createElement('tr');
      row.dataset.id = image.id;
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'danger';
      remove.textContent = 'Remove';
      remove.addEventListener('click', () => removeImage(image.id));
      const actions = document.createElement('td');
      actions.append(remove);
      row.append(cell(image.id, 'mono'), cell(image.imageType), cell(bytes(image.size)), cell(shortDate(image.dateAdded)), cell(image.sha256.slice(0, 12), 'mono'), actions);
      return row;
    }),
  );
  const select = $('#link-image');
  const chosen = select.value;
  const none = document.createElement('option');
  none.value = '';
  none.textContent = '(no image)';
  select.replaceChildren(
    none,
    ...state.images.map((image) => {
      const option = document.createElement('option');
      option.value = image.id;
      option.textContent = image.id;
      return option;
    }),
  );
  select.value = state.images.some((i) => i.id === chosen) ? chosen : '';
}

function renderGroups() {
  $('#groups tbody').replaceChildren(
    ...state.groups.map((group) => {
      const row = document.createElement('tr');
      row.dataset.group = group.name;
      const unlink = document.createElement('button');
      unlink.type = 'button';
      unlink.className = 'danger';
      unlink.textContent = 'Unlink image';
      unlink.disabled = !group.imageId;
      unlink.addEventListener('click', () => runAction(() => request('ota.unlink', { group: group.name }), `unlinked group ${group.name}`));
      const actions = document.createElement('td');
      actions.append(unlink);
      row.append(cell(group.name, 'mono'), cell(group.imageId ?? '–', 'mono image'), cell(group.devices.join(', ') || '–', 'mono members'), actions);
      return row;
    }),
  );
}

function addFeed(text) {
  const feed = $('#telemetry');
  const item = document.createElement('li');
  item.textContent = text;
  feed.prepend(item);
  while (feed.children.length > MAX_FEED) feed.lastElementChild.remove();
}

// --- actions ------------------------------------------------------------------

async function runAction(work, done) {
  try {
    await work();
    showMessage(done, false);
  } catch (error) {
    showMessage(error.message, true);
  }
  await Promise.all([refreshImages(), refreshGroups(), refreshAudit()]);
}

function removeImage(id) {
  if (!confirm(`Delete image ${id}?`)) return;
  void runAction(() => request('images.remove', { id }), `removed image ${id}`);
}

/** Uploads in chunks (base64 in JSON), each acknowledged before the next, so memory stays small. */
async function uploadImage(file, id, imageType, description) {
  const progress = $('#upload-progress');
  progress.hidden = false;
  progress.value = 0;
  const { uploadId, chunkBytes } = await request('uploads.begin', { size: file.size });
  try {
    for (let offset = 0; offset < file.size; offset += chunkBytes) {
      const chunk = new Uint8Array(await file.slice(offset, offset + chunkBytes).arrayBuffer());
      await request('uploads.chunk', { uploadId, offset, data: toBase64(chunk) });
      progress.value = Math.min(1, (offset + chunk.length) / file.size);
    }
  } catch (error) {
    request('uploads.abort', { uploadId }).catch((abortError) => console.warn('could not abort the upload', abortError));
    throw error;
  }
  const args = { id, imageType, uploadId };
  if (description) args.description = description;
  return request('images.add', args);
}

function toBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

// --- page -----------------------------------------------------------------------

function setStatus(text, kind) {
  const status = $('#status');
  status.textContent = text;
  status.className = `status ${kind}`;
}

function showMessage(text, isError) {
  const box = $('#message');
  box.textContent = text;
  box.className = isError ? 'message error' : 'message';
  box.hidden = false;
}

function showLogin(problem) {
  $('#dashboard').hidden = true;
  $('#logout-button').hidden = true;
  $('#login').hidden = false;
  if (problem) showMessage(problem, true);
}

function showDashboard() {
  $('#login').hidden = true;
  $('#dashboard').hidden = false;
  $('#logout-button').hidden = false;
  $('#message').hidden = true;
}

function describeTelemetry(t) {
  // Configured extra fields ([[telemetry.fields]]) come as { name: { type, value } }.
  const { extra = {}, ...builtin } = t;
  return [...Object.entries(builtin), ...Object.entries(extra).map(([k, f]) => [k, f.value])]
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

function time(ms) {
  return ms ? new Date(ms).toLocaleString() : '–';
}

function shortDate(rfc3339) {
  return rfc3339.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, 'Z');
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

$('#login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  connect($('#api-key').value.trim());
});

$('#logout-button').addEventListener('click', () => {
  sessionStorage.removeItem(KEY_STORAGE);
  state.loggedOut = true;
  state.socket?.close(1000, 'logged out');
  campaigns.reset();
  showLogin();
});

$('#upload-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const file = $('#upload-file').files[0];
  const id = $('#upload-version').value.trim();
  if (!file || !id) return;
  const button = $('#upload-button');
  button.disabled = true;
  void runAction(
    () => uploadImage(file, id, $('#upload-type').value, $('#upload-description').value.trim()),
    `uploaded image ${id} (${bytes(file.size)})`,
  ).finally(() => {
    button.disabled = false;
    $('#upload-progress').hidden = true;
    $('#upload-form').reset();
  });
});

$('#link-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const device = $('#link-device').value.trim();
  const group = $('#link-group').value.trim();
  const image = $('#link-image').value;
  const args = {};
  if (device) args.device = device;
  if (group) args.group = group;
  if (image) args.image = image;
  if ($('#link-force').checked) args.force = true;
  void runAction(() => request('ota.link', args), `linked ${[device && `device ${device}`, group && `group ${group}`].filter(Boolean).join(' and ')}${image ? ` to ${image}` : ''}`);
});

$('#unlink-button').addEventListener('click', () => {
  const device = $('#link-device').value.trim();
  const group = $('#link-group').value.trim();
  const args = {};
  if (device) args.device = device;
  else if (group) args.group = group;
  else {
    showMessage('give a device or a group to unlink', true);
    return;
  }
  void runAction(() => request('ota.unlink', args), `unlinked ${device ? `device ${device}` : `group ${group}`}`);
});

const remembered = sessionStorage.getItem(KEY_STORAGE);
if (remembered) connect(remembered);
