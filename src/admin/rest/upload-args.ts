import { z } from 'zod';
import { COMMANDS } from '../commands.js';

const image = COMMANDS['images.add'].args.shape;
const upload = COMMANDS['uploads.begin'].args.shape;

/**
 * What PUT /images/{id} takes besides the bytes: `images.add`'s fields and
 * `uploads.begin`'s sha256, the same schemas, so both paths check the same.
 */
export const imageUploadArgs = z.strictObject({
  id: image.id,
  imageType: image.imageType,
  description: image.description,
  sha256: upload.sha256,
});
