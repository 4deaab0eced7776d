// Devices: the fleet through devices.search (never devices.list), so a page
// costs the same with 10 devices or 100,000: a uid prefix box (debounced),
// group and firmware drop-downs from the answer's facets, online and OTA
// filters, sorting by column, paging, and the columns the operator chose
// (kept in localStorage). Rows link to the device page.
import type { JSX } from 'preact';
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import type { DeviceRecord, DeviceSearchAnswer, DeviceSearchArgs, DeviceSort, DeviceSummary, OtaStatus } from '../api/types.js';
import { routeHref } from '../router.js';
import { describeTelemetry, OnlineBadge, OtaBadge } from '../ui/badges.js';
import { useConsole, useLiveEvents, useOnReady } from '../ui/context.js';
import { Page } from '../ui/shell.js';
import { Time } from '../ui/time.js';

const COLUMNS_STORAGE = 'nucleon.console.deviceColumns';
const PAGE_SIZE_STORAGE = 'nucleon.console.devicePageSize';
const PAGE_SIZES = [25, 50, 100, 200, 500] as const;
const SEARCH_DEBOUNCE_MS = 250;
/** The page is asked for again this often: last seen and telemetry move without live events (telemetry is not streamed to the list). */
const REFRESH_MS = 10_000;
const OTA_STATES: readonly OtaStatus[] = ['none', 'assigned', 'downloading', 'updated'];

interface Column {
  id: string;
  label: string;
  sort?: DeviceSort;
  cell: (device: DeviceSummary) => JSX.Element | string;
  className?: string;
}

const COLUMNS: readonly Column[] = [
  { id: 'state', label: 'State', sort: 'online', cell: (d) => <OnlineBadge online={d.online} />, className: 'state' },
  { id: 'firmware', label: 'Firmware', sort: 'firmware', cell: (d) => d.firmwareVersion ?? '–', className: 'mono firmware' },
  { id: 'ota', label: 'OTA', sort: 'ota', cell: (d) => <OtaBadge status={d.otaStatus} />, className: 'ota' },
  { id: 'lastSeen', label: 'Last seen', sort: 'lastSeen', cell: (d) => <Time at={d.lastSeen} />, className: 'last-seen' },
  { id: 'groups', label: 'Groups', cell: (d) => (d.groups.length > 0 ? d.groups.join(', ') : '–'), className: 'groups' },
  { id: 'address', label: 'Address', cell: (d) => (d.online ? (d.remoteAddress ?? '–') : '–'), className: 'mono address' },
  { id: 'telemetry', label: 'Telemetry', cell: (d) => describeTelemetry(d.telemetry), className: 'mono telemetry' },
  { id: 'revoked', label: 'Revoked', cell: (d) => (d.revoked ? <span class="badge revoked">revoked</span> : '–'), className: 'revoked' },
  { id: 'auth', label: 'Auth', cell: (d) => d.authMethod ?? '–', className: 'auth' },
  { id: 'instance', label: 'Instance', cell: (d) => d.instance ?? '–', className: 'mono instance' },
];
const DEFAULT_COLUMNS = ['state', 'firmware', 'ota', 'lastSeen', 'groups', 'telemetry'];

interface Filters {
  q: string;
  group: string;
  firmware: string;
  online: '' | 'true' | 'false';
  ota: '' | OtaStatus;
  sort: DeviceSort;
  order: 'asc' | 'desc';
  offset: number;
  limit: number;
}

function searchArgs(filters: Filters): DeviceSearchArgs {
  return {
    ...(filters.q ? { q: filters.q } : {}),
    ...(filters.group ? { group: filters.group } : {}),
    ...(filters.firmware ? { firmware: filters.firmware } : {}),
    ...(filters.online ? { online: filters.online === 'true' } : {}),
    ...(filters.ota ? { ota: filters.ota } : {}),
    sort: filters.sort,
    order: filters.order,
    offset: filters.offset,
    limit: filters.limit,
  };
}

function storedColumns(): string[] {
  try {
    const parsed = JSON.parse(localStorage.getItem(COLUMNS_STORAGE) ?? 'null') as unknown;
    if (Array.isArray(parsed)) return parsed.filter((id): id is string => typeof id === 'string' && COLUMNS.some((c) => c.id === id));
  } catch (error) {
    console.warn('forgetting unreadable column choice', error);
  }
  return DEFAULT_COLUMNS;
}

function storedPageSize(): number {
  const size = Number(localStorage.getItem(PAGE_SIZE_STORAGE));
  return (PAGE_SIZES as readonly number[]).includes(size) ? size : 50;
}

export function DevicesView() {
  const { client, errors } = useConsole();
  const [filters, setFilters] = useState<Filters>(() => ({ q: '', group: '', firmware: '', online: '', ota: '', sort: 'uid', order: 'asc', offset: 0, limit: storedPageSize() }));
  const [typed, setTyped] = useState('');
  const [answer, setAnswer] = useState<DeviceSearchAnswer | undefined>(undefined);
  /** The query `answer` is for: until the answer to the current filters is in, the table is not "ready". */
  const [answered, setAnswered] = useState('');
  const [loading, setLoading] = useState(false);
  const [columns, setColumns] = useState<string[]>(storedColumns);
  const [showColumns, setShowColumns] = useState(false);
  const sequence = useRef(0);
  const askedAt = useRef(0);
  const table = useRef<HTMLTableElement>(null);

  const change = (patch: Partial<Filters>) => setFilters((current) => ({ ...current, offset: 0, ...patch }));

  // The uid box asks once typing pauses.
  useEffect(() => {
    const timer = setTimeout(() => setFilters((current) => (current.q === typed.trim() ? current : { ...current, q: typed.trim(), offset: 0 })), SEARCH_DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [typed]);

  const load = () => {
    const mine = ++sequence.current;
    const asked = searchArgs(filters);
    askedAt.current = performance.now();
    setLoading(true);
    void errors
      .track('devices.search', () => client.request<DeviceSearchAnswer>('devices.search', asked as Record<string, unknown>))
      .then((result) => {
        // An older answer that arrives after a newer one is dropped.
        if (mine !== sequence.current) return;
        setLoading(false);
        if (result) {
          setAnswer(result);
          setAnswered(JSON.stringify(asked));
        }
      });
  };
  useOnReady(load, [filters]);
  useEffect(() => {
    const timer = setInterval(() => {
      if (client.state.kind === 'connected' && document.visibilityState === 'visible') load();
    }, REFRESH_MS);
    return () => clearInterval(timer);
  }, [filters]);

  // Search-to-render, measured where the rows are in the DOM: the Chromium test reads it.
  useLayoutEffect(() => {
    if (!answer || !table.current) return;
    const elapsed = performance.now() - askedAt.current;
    table.current.dataset.renderMs = elapsed.toFixed(1);
    if (performance.getEntriesByName('console:devices-rendered').length === 0) performance.mark('console:devices-rendered');
  }, [answer]);

  // Live changes of devices on this page are shown in place; which devices match is the next search's business.
  useLiveEvents((event) => {
    const device = event.data.device as DeviceRecord | undefined;
    if (!answer || !device || typeof device.uid !== 'string' || !(event.name.startsWith('device.') || event.name === 'ota.progress' || event.name === 'telemetry')) return;
    const index = answer.items.findIndex((item) => item.uid === device.uid);
    if (index < 0) return;
    const items = answer.items.slice();
    const known = items[index] as DeviceSummary;
    items[index] = { ...known, ...device, groups: known.groups, revoked: known.revoked };
    setAnswer({ ...answer, items });
  });

  const shown = COLUMNS.filter((column) => columns.includes(column.id));
  const toggleColumn = (id: string) => {
    const next = columns.includes(id) ? columns.filter((c) => c !== id) : COLUMNS.filter((c) => c.id === id || columns.includes(c.id)).map((c) => c.id);
    setColumns(next);
    localStorage.setItem(COLUMNS_STORAGE, JSON.stringify(next));
  };
  const sortBy = (sort: DeviceSort) => change({ sort, order: filters.sort === sort && filters.order === 'asc' ? 'desc' : 'asc' });
  const total = answer?.total ?? 0;
  const first = total === 0 ? 0 : filters.offset + 1;
  const last = Math.min(total, filters.offset + (answer?.items.length ?? 0));
  const query = JSON.stringify(searchArgs(filters));

  return (
    <Page
      title={
        <>
          Devices <span class="hint" id="device-count">{answer ? `${total.toLocaleString('en-US')} matching` : ''}</span>
        </>
      }
      actions={
        <button type="button" class="secondary" aria-expanded={showColumns} aria-controls="device-columns" onClick={() => setShowColumns(!showColumns)}>
          Columns
        </button>
      }
    >
      <div class="card stack">
        {showColumns && (
          <fieldset id="device-columns" class="columns-menu">
            <legend>Columns shown</legend>
            {COLUMNS.map((column) => (
              <label class="check" key={column.id}>
                <input type="checkbox" name={`column-${column.id}`} checked={columns.includes(column.id)} onChange={() => toggleColumn(column.id)} />
                {column.label}
              </label>
            ))}
          </fieldset>
        )}
        <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
          <div class="field q">
            <label for="device-search">UID starts with</label>
            <input id="device-search" type="search" autocomplete="off" spellcheck={false} maxLength={128} value={typed} onInput={(e) => setTyped(e.currentTarget.value)} placeholder="e.g. 3526561" />
          </div>
          <div class="field">
            <label for="device-group">Group</label>
            <select id="device-group" value={filters.group} onChange={(e) => change({ group: e.currentTarget.value })}>
              <option value="">any</option>
              {(answer?.facets.groups ?? []).map((group) => (
                <option key={group} value={group}>
                  {group}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="device-firmware">Firmware</label>
            <select id="device-firmware" value={filters.firmware} onChange={(e) => change({ firmware: e.currentTarget.value })}>
              <option value="">any</option>
              {(answer?.facets.firmware ?? []).map((version) => (
                <option key={version} value={version}>
                  {version}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="device-online">State</label>
            <select id="device-online" value={filters.online} onChange={(e) => change({ online: e.currentTarget.value as Filters['online'] })}>
              <option value="">any</option>
              <option value="true">online</option>
              <option value="false">offline</option>
            </select>
          </div>
          <div class="field">
            <label for="device-ota">OTA</label>
            <select id="device-ota" value={filters.ota} onChange={(e) => change({ ota: e.currentTarget.value as Filters['ota'] })}>
              <option value="">any</option>
              {OTA_STATES.map((state) => (
                <option key={state} value={state}>
                  {state}
                </option>
              ))}
            </select>
          </div>
        </form>
        <div class="table-box">
          <table id="devices" ref={table} class="cards" data-query={answered} data-state={loading || answered !== query ? 'loading' : 'ready'} data-total={answer?.total ?? ''} aria-busy={loading}>
            <thead>
              <tr>
                <Header label="UID" sort="uid" filters={filters} onSort={sortBy} />
                {shown.map((column) => (column.sort ? <Header key={column.id} label={column.label} sort={column.sort} filters={filters} onSort={sortBy} /> : <th key={column.id} scope="col">{column.label}</th>))}
              </tr>
            </thead>
            <tbody>
              {answer?.items.map((device) => (
                <tr key={device.uid} data-uid={device.uid} data-online={String(device.online)}>
                  <td class="mono uid" data-label="UID">
                    <a href={routeHref({ view: 'device', uid: device.uid })}>{device.uid}</a>
                  </td>
                  {shown.map((column) => (
                    <td key={column.id} class={column.className} data-label={column.label}>
                      {column.cell(device)}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
          {answer && answer.items.length === 0 && <p class="empty">No device matches.</p>}
        </div>
        <div class="pager">
          <button type="button" class="secondary" id="page-prev" disabled={filters.offset === 0} onClick={() => setFilters({ ...filters, offset: Math.max(0, filters.offset - filters.limit) })}>
            ← Previous
          </button>
          <span class="range" id="page-range" aria-live="polite">
            {first.toLocaleString('en-US')}–{last.toLocaleString('en-US')} of {total.toLocaleString('en-US')}
          </span>
          <button type="button" class="secondary" id="page-next" disabled={filters.offset + filters.limit >= total} onClick={() => setFilters({ ...filters, offset: filters.offset + filters.limit })}>
            Next →
          </button>
          <span class="spacer" />
          <label for="page-size">Per page</label>
          <select
            id="page-size"
            value={String(filters.limit)}
            onChange={(e) => {
              const limit = Number(e.currentTarget.value);
              localStorage.setItem(PAGE_SIZE_STORAGE, String(limit));
              change({ limit });
            }}
          >
            {PAGE_SIZES.map((size) => (
              <option key={size} value={String(size)}>
                {size}
              </option>
            ))}
          </select>
        </div>
      </div>
    </Page>
  );
}

function Header({ label, sort, filters, onSort }: { label: string; sort: DeviceSort; filters: Filters; onSort: (sort: DeviceSort) => void }) {
  const active = filters.sort === sort;
  return (
    <th scope="col" aria-sort={active ? (filters.order === 'asc' ? 'ascending' : 'descending') : 'none'}>
      <button type="button" class="sort" data-sort={sort} onClick={() => onSort(sort)}>
        {label}
      </button>
    </th>
  );
}
