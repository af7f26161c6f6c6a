// Developer shortcut: replay the recorded traces against the JS core under Node (>= 20, WebCrypto with
// Ed25519/X25519). The suite itself replays them in headless Chromium (tests/browser/test_traces.py).
//   node --no-warnings scripts/replay_traces_node.mjs [name ...]
import { readFileSync, readdirSync } from 'node:fs';
import { replayTrace } from '../web/js/test/traces.js';

const dir = new URL('../tests/vectors/traces/', import.meta.url);
const names = process.argv.slice(2).length ? process.argv.slice(2) : readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));
let failed = 0;
for (const name of names) {
  const doc = JSON.parse(readFileSync(new URL(`${name}.json`, dir), 'utf8'));
  const { steps, problems } = await replayTrace(doc);
  console.log(`${problems.length ? 'FAIL' : 'ok  '} ${name}: ${steps}/${(doc.steps ?? doc.ops).length} steps`);
  for (const p of problems) console.log(`     ${p}`);
  if (problems.length) failed += 1;
}
process.exit(failed ? 1 : 0);
