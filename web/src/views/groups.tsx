// Groups: each group's image and members. Add a device to a group (ota.link
// device+group: a device is in one group at a time, so this moves it), take
// it out (ota.unlink device+group), link a group to an image or unlink it.
import { useState } from 'preact/hooks';
import type { GroupInfo, ImageInfo } from '../api/types.js';
import { routeHref } from '../router.js';
import { useConsole, useOnReady } from '../ui/context.js';
import { Page } from '../ui/shell.js';

/** Members listed per group before "show all": a group can hold most of a 10,000-device fleet. */
const MEMBERS_SHOWN = 100;

export function GroupsView() {
  const { client, errors } = useConsole();
  const [groups, setGroups] = useState<GroupInfo[] | undefined>(undefined);
  const [images, setImages] = useState<ImageInfo[]>([]);
  const [device, setDevice] = useState('');
  const [group, setGroup] = useState('');
  const [done, setDone] = useState<string | undefined>(undefined);

  const load = () => {
    void errors.track('groups.list', () => client.request<{ groups: GroupInfo[] }>('groups.list')).then((answer) => answer && setGroups([...answer.groups].sort((a, b) => a.name.localeCompare(b.name))));
    void errors.track('images.list', () => client.request<{ images: ImageInfo[] }>('images.list')).then((answer) => answer && setImages(answer.images));
  };
  useOnReady(load, []);

  const change = (action: string, cmd: string, args: Record<string, unknown>, said: string) => {
    setDone(undefined);
    void errors.track(action, () => client.request(cmd, args)).then((result) => {
      if (result !== undefined) setDone(said);
      load();
    });
  };

  return (
    <Page title="Groups">
      <div class="stack">
        <section class="card" aria-labelledby="add-member-title">
          <h2 id="add-member-title">Put a device in a group</h2>
          <form
            id="add-member-form"
            class="inline-form"
            onSubmit={(event) => {
              event.preventDefault();
              const uid = device.trim();
              const name = group.trim();
              if (!uid || !name) return;
              change(`add ${uid} to ${name}`, 'ota.link', { device: uid, group: name }, `${uid} is in group ${name}`);
              setDevice('');
            }}
          >
            <div class="field">
              <label for="member-device">Device uid</label>
              <input id="member-device" type="text" required maxLength={64} value={device} onInput={(e) => setDevice(e.currentTarget.value)} />
            </div>
            <div class="field">
              <label for="member-group">Group (new or existing)</label>
              <input id="member-group" type="text" required maxLength={64} list="known-groups" value={group} onInput={(e) => setGroup(e.currentTarget.value)} />
              <datalist id="known-groups">
                {(groups ?? []).map((g) => (
                  <option key={g.name} value={g.name} />
                ))}
              </datalist>
            </div>
            <button id="add-member-button" type="submit">
              Add to group
            </button>
          </form>
          <p class="hint">A device is in one group at a time: adding it here takes it out of its old group.</p>
          {done && (
            <p class="message ok" id="groups-done" role="status">
              {done}
            </p>
          )}
        </section>
        {groups && groups.length === 0 && <p class="empty">No group yet.</p>}
        <div class="grid" id="groups">
          {(groups ?? []).map((g) => (
            <GroupCard key={g.name} group={g} images={images} onChange={change} />
          ))}
        </div>
      </div>
    </Page>
  );
}

function GroupCard({ group, images, onChange }: { group: GroupInfo; images: ImageInfo[]; onChange: (action: string, cmd: string, args: Record<string, unknown>, said: string) => void }) {
  const [image, setImage] = useState(group.imageId ?? '');
  const [force, setForce] = useState(false);
  const [filter, setFilter] = useState('');
  const [all, setAll] = useState(false);
  const members = [...group.devices].sort().filter((uid) => uid.toLowerCase().startsWith(filter.trim().toLowerCase()));
  const shown = all ? members : members.slice(0, MEMBERS_SHOWN);
  const slug = group.name.replace(/[^A-Za-z0-9_-]/g, '_');
  return (
    <section class="card group" data-group={group.name} aria-labelledby={`group-${slug}`}>
      <h2 id={`group-${slug}`}>
        <span class="mono">{group.name}</span> <span class="hint">{group.devices.length === 1 ? '1 device' : `${group.devices.length.toLocaleString('en-US')} devices`}</span>
      </h2>
      <dl class="facts">
        <dt>Image</dt>
        <dd class="mono image">{group.imageId ?? '–'}</dd>
      </dl>
      <form
        class="inline-form"
        onSubmit={(event) => {
          event.preventDefault();
          if (!image) return;
          onChange(`link ${group.name}`, 'ota.link', { group: group.name, image, ...(force ? { force: true } : {}) }, `group ${group.name} linked to ${image}`);
        }}
      >
        <div class="field">
          <label for={`group-image-${slug}`}>Link to image</label>
          <select id={`group-image-${slug}`} class="group-image" value={image} onChange={(e) => setImage(e.currentTarget.value)}>
            <option value="">(choose an image)</option>
            {images.map((candidate) => (
              <option key={candidate.id} value={candidate.id}>
                {candidate.id}
              </option>
            ))}
          </select>
        </div>
        <label class="check">
          <input type="checkbox" checked={force} onChange={(e) => setForce(e.currentTarget.checked)} /> allow downgrade
        </label>
        <button type="submit" class="link-group" disabled={!image}>
          Link
        </button>
        <button type="button" class="secondary unlink-group" disabled={!group.imageId} onClick={() => onChange(`unlink ${group.name}`, 'ota.unlink', { group: group.name }, `group ${group.name} has no image now`)}>
          Unlink image
        </button>
      </form>
      <h3>Members</h3>
      {group.devices.length > 10 && (
        <div class="field">
          <label for={`group-filter-${slug}`}>Filter by uid prefix</label>
          <input id={`group-filter-${slug}`} type="search" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
        </div>
      )}
      <ul class="members">
        {shown.map((uid) => (
          <li key={uid} data-uid={uid}>
            <a class="mono" href={routeHref({ view: 'device', uid })}>
              {uid}
            </a>
            <button type="button" class="link" aria-label={`Remove ${uid} from ${group.name}`} onClick={() => onChange(`remove ${uid} from ${group.name}`, 'ota.unlink', { device: uid, group: group.name }, `${uid} left group ${group.name}`)}>
              Remove
            </button>
          </li>
        ))}
      </ul>
      {members.length > shown.length && (
        <button type="button" class="secondary" onClick={() => setAll(true)}>
          Show all {members.length}
        </button>
      )}
      {group.devices.length === 0 && <p class="empty">No member.</p>}
    </section>
  );
}
