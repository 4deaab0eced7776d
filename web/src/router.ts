// Hash routes (#/devices, #/devices/<uid>, ...): the console is one page served
// as one file, so the hash is what a bookmark or a reload keeps. Pure parsing
// here; the hook that follows `hashchange` is in ui/route.ts.

export type Route =
  | { view: 'overview' }
  | { view: 'devices' }
  | { view: 'device'; uid: string }
  | { view: 'images' }
  | { view: 'groups' }
  | { view: 'campaigns' }
  | { view: 'audit' };

export type ViewName = Route['view'];

/** The navigation, in order: every view but the device page, which is reached from the devices list. */
export const NAV: ReadonlyArray<{ view: Exclude<ViewName, 'device'>; label: string }> = [
  { view: 'overview', label: 'Overview' },
  { view: 'devices', label: 'Devices' },
  { view: 'images', label: 'Images' },
  { view: 'groups', label: 'Groups' },
  { view: 'campaigns', label: 'Campaigns' },
  { view: 'audit', label: 'Audit' },
];

const SIMPLE = new Set<string>(NAV.map((item) => item.view));

/** `#/devices/352656100000001` → the device page; anything unknown → the overview. */
export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter((part) => part !== '');
  const [first, second] = parts;
  if (first === 'devices' && second !== undefined && parts.length === 2) return { view: 'device', uid: safeDecode(second) };
  if (first !== undefined && parts.length === 1 && SIMPLE.has(first)) return { view: first as Exclude<ViewName, 'device'> };
  return { view: 'overview' };
}

export function routeHref(route: Route): string {
  return route.view === 'device' ? `#/devices/${encodeURIComponent(route.uid)}` : `#/${route.view}`;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    // A hand-typed "%" that is no escape: the text as it is names the device.
    return text;
  }
}
