// Attachments in the page: how a file message looks (inline image preview from the sender's thumbnail,
// the image itself once fetched, a download button with progress, an audio player for voice notes),
// and the ways to send one: attach button, drag and drop, paste an image, record a voice note
// (MediaRecorder). Everything is built with DOM calls and textContent (never innerHTML).

/** @typedef {import('../net/files.js').FileStatus} FileStatus */

/** @param {number} n */
export function humanSize(n) {
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(1)} GB`;
}

/**
 * @param {string} tag @param {string} cls @param {string} [text]
 */
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * The attachment part of a message item.
 * @param {import('./state.js').Message} m @param {FileStatus|undefined} st
 */
export function attachmentView(m, st) {
  const f = /** @type {{name: string, size: number, mime: string}} */ (m.file);
  const box = el('div', 'attachment');
  box.dataset.file = st?.fileId ?? '';
  const isImage = f.mime.startsWith('image/'), isAudio = f.mime.startsWith('audio/');
  if (isImage && (st?.url || st?.thumbUrl)) {
    const img = /** @type {HTMLImageElement} */ (el('img', st?.url ? 'attachment-image' : 'attachment-thumb'));
    img.src = /** @type {string} */ (st?.url ?? st?.thumbUrl);
    img.alt = f.name;
    box.append(img);
  }
  if (isAudio && st?.url) {
    const audio = /** @type {HTMLAudioElement} */ (el('audio', 'attachment-audio'));
    audio.controls = true;
    audio.src = st.url;
    audio.setAttribute('aria-label', `Voice note ${f.name}`);
    box.append(audio);
  }
  const line = el('p', 'attachment-name', `📎 ${f.name} · ${humanSize(f.size)}`);
  if (st?.durationMs) line.textContent += ` · ${(st.durationMs / 1000).toFixed(1)} s`;
  box.append(line);
  if (st?.failed) box.append(el('p', 'attachment-failed', `Cannot fetch this file (${st.failed}).`));
  else if (st?.done && st.url) {
    const a = /** @type {HTMLAnchorElement} */ (el('a', 'attachment-save secondary', 'Save'));
    a.href = st.url;
    a.download = f.name;
    box.append(a);
  } else {
    const pct = st && f.size ? Math.floor((100 * st.bytes) / f.size) : 0;
    const busy = Boolean(st && (st.bytes > 0 || st.total > 0));
    const b = /** @type {HTMLButtonElement} */ (el('button', 'attachment-fetch secondary', busy ? `Downloading… ${pct}%` : 'Download'));
    b.type = 'button';
    b.dataset.action = 'fetch-file';
    b.dataset.id = m.id;
    b.setAttribute('aria-label', `Download ${f.name}`);
    const bar = /** @type {HTMLProgressElement} */ (el('progress', 'attachment-progress'));
    bar.max = 100;
    bar.value = pct;
    bar.setAttribute('aria-label', `Downloading ${f.name}`);
    box.append(b, bar);
  }
  return box;
}

/**
 * Wire the composer's attach button, drag and drop, paste and the voice recorder to `send`.
 * @param {{send: (blob: Blob, name: string, mime: string, o?: {thumb?: Uint8Array|null, thumbMime?: string|null, durationMs?: number|null}) => Promise<unknown>,
 *   thumbnail: (blob: Blob) => Promise<Uint8Array|null>, error: (text: string) => void}} h
 */
export function wireAttachments(h) {
  const composer = /** @type {HTMLFormElement} */ (document.getElementById('composer'));
  const picker = /** @type {HTMLInputElement} */ (document.getElementById('attach-input'));
  const attach = document.getElementById('attach-button');
  const record = /** @type {HTMLButtonElement} */ (document.getElementById('record-button'));
  const conversation = document.querySelector('.conversation') ?? document.body;

  /** @param {File|Blob} file @param {string} [name] */
  const sendOne = async (file, name) => {
    const mime = file.type || 'application/octet-stream';
    const fname = name ?? (file instanceof File && file.name ? file.name : `file.${mime.split('/')[1] || 'bin'}`);
    const thumb = mime.startsWith('image/') ? await h.thumbnail(file) : null;
    await h.send(file, fname.replace(/[/\\\x00-\x1f\x7f]/g, '_').slice(0, 255) || 'file', mime, { thumb, thumbMime: thumb ? 'image/jpeg' : null });
  };

  attach?.addEventListener('click', () => picker.click());
  picker?.addEventListener('change', () => {
    for (const f of picker.files ?? []) void sendOne(f);
    picker.value = '';
  });
  conversation.addEventListener('dragover', (e) => {
    const ev = /** @type {DragEvent} */ (e);
    if (ev.dataTransfer?.types.includes('Files')) { ev.preventDefault(); conversation.classList.add('dropping'); }
  });
  conversation.addEventListener('dragleave', () => conversation.classList.remove('dropping'));
  conversation.addEventListener('drop', (e) => {
    const ev = /** @type {DragEvent} */ (e);
    conversation.classList.remove('dropping');
    if (!ev.dataTransfer?.files.length) return;
    ev.preventDefault();
    for (const f of ev.dataTransfer.files) void sendOne(f);
  });
  composer?.addEventListener('paste', (e) => {
    const items = /** @type {ClipboardEvent} */ (e).clipboardData?.items ?? [];
    for (const item of items) {
      if (item.kind === 'file') {
        const f = item.getAsFile();
        if (f) {
          e.preventDefault();
          void sendOne(f, f.name && f.name !== 'image.png' ? f.name : `pasted.${(f.type.split('/')[1] || 'png')}`);
        }
      }
    }
  });

  /** @type {MediaRecorder|null} */
  let recorder = null;
  let started = 0;
  record?.addEventListener('click', async () => {
    if (recorder) {
      recorder.stop();
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      h.error('No microphone (or permission refused): cannot record a voice note.');
      return;
    }
    const mime = MediaRecorder.isTypeSupported('audio/webm') ? 'audio/webm' : '';
    const rec = new MediaRecorder(stream, mime ? { mimeType: mime } : undefined);
    /** @type {Blob[]} */
    const parts = [];
    rec.ondataavailable = (ev) => { if (ev.data.size) parts.push(ev.data); };
    rec.onstop = () => {
      for (const t of stream.getTracks()) t.stop();
      recorder = null;
      record.textContent = '🎙';
      record.setAttribute('aria-pressed', 'false');
      record.setAttribute('aria-label', 'Record a voice note');
      const type = (rec.mimeType || 'audio/webm').split(';')[0];
      const blob = new Blob(parts, { type });
      const durationMs = Math.round(performance.now() - started);
      if (blob.size) void h.send(blob, `voice-${new Date().toISOString().slice(11, 19).replaceAll(':', '')}.${type.split('/')[1] || 'webm'}`, type, { durationMs });
    };
    recorder = rec;
    started = performance.now();
    rec.start(250);
    record.textContent = '■';
    record.setAttribute('aria-pressed', 'true');
    record.setAttribute('aria-label', 'Stop recording and send the voice note');
  });
}
