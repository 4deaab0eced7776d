// A firmware upload over the admin socket: uploads.begin, then the file in
// chunks (base64 in JSON, each acknowledged before the next, so memory stays
// small and RATE_LIMITED answers are waited out), then images.add. An upload
// that fails half-way is aborted on the server.
import type { ConsoleClient } from './api/client.js';
import type { ImageInfo } from './api/types.js';

export interface UploadProgress {
  sent: number;
  total: number;
}

export async function uploadImage(
  client: ConsoleClient,
  file: Blob,
  image: { id: string; imageType: string; description?: string },
  onProgress: (progress: UploadProgress) => void,
): Promise<ImageInfo> {
  const { uploadId, chunkBytes } = await client.request<{ uploadId: string; chunkBytes: number }>('uploads.begin', { size: file.size });
  try {
    for (let offset = 0; offset < file.size; offset += chunkBytes) {
      const chunk = new Uint8Array(await file.slice(offset, offset + chunkBytes).arrayBuffer());
      await client.requestPatiently('uploads.chunk', { uploadId, offset, data: toBase64(chunk) });
      onProgress({ sent: Math.min(file.size, offset + chunk.length), total: file.size });
    }
  } catch (error) {
    client.request('uploads.abort', { uploadId }).catch((abortError: unknown) => console.warn('could not abort the upload', abortError));
    throw error;
  }
  return client.requestPatiently<ImageInfo>('images.add', { ...image, uploadId });
}

function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}
