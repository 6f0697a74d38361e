// Runs the compiled tests with node's test runner. On Node 20 the WHATWG WebSocket global
// needs --experimental-websocket; newer Nodes have it (and may not know the flag).
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, 'dist', 'test');
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.test.js'))
  .sort()
  .map((f) => path.join(dir, f));
const flags = [];
if (typeof globalThis.WebSocket === 'undefined' && process.allowedNodeEnvironmentFlags.has('--experimental-websocket')) {
  flags.push('--experimental-websocket');
}
const r = spawnSync(process.execPath, [...flags, '--test', '--test-concurrency=1', ...process.argv.slice(2), ...files], {
  stdio: 'inherit',
  cwd: root,
});
process.exit(r.status ?? 1);
