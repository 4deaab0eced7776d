// Images: the firmware images, an upload in chunks over the socket with its
// progress, and removal (asked first).
import { useRef, useState } from 'preact/hooks';
import type { ImageInfo } from '../api/types.js';
import { formatBytes } from '../time.js';
import { useConsole, useOnReady } from '../ui/context.js';
import { Page } from '../ui/shell.js';
import { Time } from '../ui/time.js';
import { uploadImage, type UploadProgress } from '../upload.js';

export function ImagesView() {
  const { client, errors } = useConsole();
  const [images, setImages] = useState<ImageInfo[] | undefined>(undefined);
  const [progress, setProgress] = useState<UploadProgress | undefined>(undefined);
  const [done, setDone] = useState<string | undefined>(undefined);
  const [removing, setRemoving] = useState<string | undefined>(undefined);
  const form = useRef<HTMLFormElement>(null);
  const dialog = useRef<HTMLDialogElement>(null);

  const load = () => {
    void errors.track('images.list', () => client.request<{ images: ImageInfo[] }>('images.list')).then((answer) => answer && setImages(answer.images));
  };
  useOnReady(load, []);

  const submit = (event: Event) => {
    event.preventDefault();
    const element = form.current;
    if (!element || progress) return;
    const data = new FormData(element);
    const file = data.get('file');
    const text = (name: string) => {
      const value = data.get(name);
      return typeof value === 'string' ? value.trim() : '';
    };
    const id = text('version');
    if (!(file instanceof File) || !id) return;
    const description = text('description');
    const imageType = text('type') || 'primary';
    setDone(undefined);
    setProgress({ sent: 0, total: file.size });
    void errors
      .track(`upload ${id}`, () => uploadImage(client, file, { id, imageType, ...(description ? { description } : {}) }, setProgress))
      .then((result) => {
        setProgress(undefined);
        if (result === undefined) return;
        setDone(`uploaded image ${id} (${formatBytes(file.size)})`);
        element.reset();
        load();
      });
  };

  return (
    <Page title="Images">
      <div class="stack">
        <section class="card" aria-labelledby="upload-title">
          <h2 id="upload-title">Upload an image</h2>
          <form id="upload-form" ref={form} class="inline-form" onSubmit={submit}>
            <div class="field">
              <label for="upload-file">Firmware file</label>
              <input id="upload-file" name="file" type="file" required />
            </div>
            <div class="field">
              <label for="upload-version">Version id</label>
              <input id="upload-version" name="version" type="text" placeholder="1.2.3-4-g965b9df" pattern="\d+\.\d+\.\d+-\d+-[0-9A-Za-z]{1,8}" required />
            </div>
            <div class="field">
              <label for="upload-type">Type</label>
              <select id="upload-type" name="type">
                <option value="primary">primary</option>
                <option value="secondary">secondary</option>
              </select>
            </div>
            <div class="field">
              <label for="upload-description">Description</label>
              <input id="upload-description" name="description" type="text" placeholder="optional" maxLength={1000} />
            </div>
            <button id="upload-button" type="submit" disabled={progress !== undefined}>
              Upload
            </button>
          </form>
          {progress && (
            <div class="progress" id="upload-progress">
              <progress max={progress.total} value={progress.sent} aria-label="Upload progress" />
              <span>
                {progress.total > 0 ? Math.floor((progress.sent / progress.total) * 100) : 0} % · {formatBytes(progress.sent)} of {formatBytes(progress.total)}
              </span>
            </div>
          )}
          {done && (
            <p class="message ok" id="upload-done" role="status">
              {done}
            </p>
          )}
        </section>
        <section class="card" aria-labelledby="images-title">
          <h2 id="images-title">
            Images <span class="hint">{images ? images.length : ''}</span>
          </h2>
          {images && images.length === 0 && <p class="empty">No image yet.</p>}
          {images && images.length > 0 && (
            <div class="table-box">
              <table id="images" class="cards">
                <thead>
                  <tr>
                    <th scope="col">ID</th>
                    <th scope="col">Type</th>
                    <th scope="col" class="num">
                      Size
                    </th>
                    <th scope="col">Added</th>
                    <th scope="col">SHA-256</th>
                    <th scope="col">Description</th>
                    <th scope="col">
                      <span class="visually-hidden">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {images.map((image) => (
                    <tr key={image.id} data-id={image.id}>
                      <td class="mono" data-label="ID">
                        {image.id}
                      </td>
                      <td data-label="Type">{image.imageType}</td>
                      <td class="num" data-label="Size">
                        {formatBytes(image.size)}
                      </td>
                      <td data-label="Added">
                        <Time at={image.dateAdded} />
                      </td>
                      <td class="mono" data-label="SHA-256" title={image.sha256}>
                        {image.sha256.slice(0, 12)}
                      </td>
                      <td class="wrap" data-label="Description">
                        {image.description ?? '–'}
                      </td>
                      <td data-label="">
                        <button
                          type="button"
                          class="danger"
                          aria-label={`Remove image ${image.id}`}
                          onClick={() => {
                            setRemoving(image.id);
                            dialog.current?.showModal();
                          }}
                        >
                          Remove…
                        </button>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </section>
      </div>
      <dialog id="remove-image-dialog" ref={dialog} aria-labelledby="remove-image-title">
        <h2 id="remove-image-title">
          Delete image <span class="mono">{removing}</span>?
        </h2>
        <p>Devices and groups linked to it are no longer offered it.</p>
        <div class="inline-form">
          <button
            type="button"
            id="remove-image-confirm"
            class="danger"
            onClick={() => {
              dialog.current?.close();
              const id = removing;
              if (!id) return;
              void errors.track(`remove ${id}`, () => client.request('images.remove', { id })).then((result) => {
                if (result !== undefined) setDone(`removed image ${id}`);
                load();
              });
            }}
          >
            Delete
          </button>
          <button type="button" class="secondary" onClick={() => dialog.current?.close()}>
            Cancel
          </button>
        </div>
      </dialog>
    </Page>
  );
}
