import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, before, it } from 'node:test';

import { Client, ConnectionError } from '../src/index.js';
import { startServer, tempDir, type ServerHandle } from './helpers.js';

let server: ServerHandle;
let ca: string;
let dir: string;
before(async () => {
  dir = tempDir();
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  // A self-signed certificate for 127.0.0.1 and localhost, made with the openssl CLI.
  execFileSync(
    'openssl',
    [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  ca = readFileSync(cert, 'utf8');
  server = await startServer(`tls_cert = "${cert}"\ntls_key = "${key}"\n`);
});
after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

it('TLS with a self-signed certificate: pub/sub inside TLS', async () => {
  const c = await Client.connect({ host: '127.0.0.1', port: server.port }, { name: 'tls', tls: { ca } });
  const s = await c.subscribe('secure');
  await c.publish('secure', 'e', 'over tls');
  assert.equal((await s.next()).value!.text(), 'over tls');
  const st = await c.stats();
  assert.equal(st.sessions.length, 1);
  await c.close();

  const byName = await Client.connect({ host: 'localhost', port: server.port }, { tls: { ca } });
  await byName.close();
});

it('TLS: an untrusted certificate is refused', async () => {
  await assert.rejects(
    Client.connect({ host: '127.0.0.1', port: server.port }, { tls: true, connectTimeoutMs: 5000 }),
    (e: unknown) => e instanceof ConnectionError && /self.signed|certificate/i.test(e.message),
  );
});
