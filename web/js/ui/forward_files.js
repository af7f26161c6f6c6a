// Forwarding an attachment from the page (mirrors peer/forwarding.py; PROTOCOL.md "Forwarded
// attachments"):
// - the page must hold the whole file, verified: if it does not yet, it is fetched first (from whoever
//   holds it), and the forward is refused with a clear error if that fails or takes longer than
//   FETCH_TIMEOUT_MS;
// - it is re-sealed under a FRESH key into the target room's blobs (new chunks, index, manifest and file
//   id; the core's forwardFile refuses a reused key or manifest); name, mime, thumbnail and duration
//   carry over; the whole plaintext is verified against the original manifest first (assemble);
// - it goes out as a new file message of ours marked forwarded, expiring at min(original's, now + ttl);
//   an expired original is refused before any work;
// - if the original is erased (expiry, unsend) meanwhile, nothing is sent and the re-sealed blobs are
//   dropped from the target room at once.

import { b64uEncode } from '../core/bytes.js';
import { fileId, openManifest } from '../core/files.js';

/** @typedef {import('./app.js').App} App */
/** @typedef {import('./state.js').Message} Message */

export const FETCH_TIMEOUT_MS = 120_000;

/** @param {string} what */
const fail = (what) => new Error(`cannot forward: ${what}`);

/** Drop every blob of file `fid` held by `files`, in memory and IndexedDB (a re-seal that will not be sent). @param {import('../net/files.js').FileTransfers} files @param {string} fid */
function dropBlobs(files, fid) {
  files.dropBlobs(fid);
}

/**
 * Forward the attachment message `source` (shown in `app`'s room) to `target`'s room.
 * @param {App} app @param {App} target @param {any} source @param {string} fromName
 * @param {{timeoutMs?: number}} [o] @returns {Promise<Message>} throws Error('cannot forward: …')
 */
export async function forwardAttachment(app, target, source, fromName, o = {}) {
  const room = target.room;
  const ref = source.file;
  if (!room || !ref) throw fail('not in that room');
  const { ttlS } = target.store.getState();
  room.forwardExpiry(source, target.now(), { ttlS }); // an expired original: refused before any work
  const timeoutMs = o.timeoutMs ?? FETCH_TIMEOUT_MS;
  /** @type {ReturnType<typeof setTimeout>|undefined} */
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(() => resolve(null), timeoutMs); });
  const got = await Promise.race([app.files.fetch(source.id), late]);
  clearTimeout(timer);
  if (got === null) throw fail(`the attachment could not be fetched within ${timeoutMs / 1000} s (no online member holds all of it)`);
  const gone = () => !app.room?.message(source.id);
  if (!got || gone()) throw fail(gone() ? 'the original was erased (expired or unsent)' : 'the attachment could not be fetched');
  const whole = await app.files.assemble(fileId(ref)); // decrypted, and checked against its manifest
  const mid = b64uEncode(ref.manifest);
  const mblob = (await app.files.readSome(fileId(ref), [mid])).get(mid); // (the blobs are in IndexedDB)
  if (!mblob || gone()) throw fail('the original was erased (expired or unsent)');
  const m = await openManifest(ref.key, mblob, ref);
  const sealed = await target.files.seal(whole, m.name, m.mime, { thumb: m.thumb, thumbMime: m.thumbMime, durationMs: m.durationMs });
  const fid = fileId(sealed);
  /** @type {Message} */
  let message;
  try {
    if (gone()) throw fail('the original was erased (expired or unsent)');
    message = await room.forwardFile(source, sealed, fromName, target.now(), { ttlS });
  } catch (err) {
    dropBlobs(target.files, fid);
    throw err;
  }
  target.files.onMessage(message, true);
  return message;
}
