// Entry point of web/test.html: imports every suite, runs them, publishes the report.
import { runAll } from './runner.js';

// test.html?manual loads nothing: a Playwright test imports the harness modules it needs.
const manual = new URLSearchParams(location.search).has('manual');
if (!manual) {
  await import('./crypto.test.js');
  await import('./core.test.js');
  await import('./room.test.js');
}
const report = manual ? { passed: 0, failed: 0, results: [] } : await runAll();
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
