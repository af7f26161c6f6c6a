// Entry point of web/test.html: imports every suite, runs them, publishes the report.
import { runAll } from './runner.js';
import './crypto.test.js';
import './core.test.js';

const report = await runAll();
/** @type {any} */ (window).__ephemeshTestReport = report;
const list = document.getElementById('results');
for (const r of report.results) {
  const li = document.createElement('li');
  li.className = r.ok ? 'ok' : 'fail';
  li.textContent = r.ok ? `✓ ${r.name}` : `✗ ${r.name} — ${r.error}`;
  list?.append(li);
}
const summary = document.getElementById('summary');
if (summary) summary.textContent = `${report.passed} passed, ${report.failed} failed`;
