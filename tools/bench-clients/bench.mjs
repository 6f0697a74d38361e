// Publish-and-receive throughput of the TypeScript Weir client next to nats.js, in one
// process: one publisher and one subscriber connection, N messages of SIZE bytes pipelined,
// timed from the first publish to the last message received. Weir acks every delivery and
// confirms every publish with a RECEIPT; NATS core does neither (the comparison favours it).
// Usage: node bench.mjs weir|nats HOST PORT N SIZE
import { performance } from 'node:perf_hooks';

const [kind, host, portText, nText, sizeText] = process.argv.slice(2);
const port = Number(portText);
const n = Number(nText);
const payload = new Uint8Array(Number(sizeText)).fill(120);

async function weirRun() {
  const { Client } = await import('../../clients/typescript/dist/src/index.js');
  const subClient = await Client.connect({ host, port }, { name: 'bench-sub' });
  const pubClient = await Client.connect({ host, port }, { name: 'bench-pub' });
  const sub = await subClient.subscribe('bench', { events: ['e'] });
  const start = performance.now();
  const receive = (async () => {
    let got = 0;
    for await (const _ of sub) {
      got += 1;
      if (got === n) return;
    }
  })();
  let pending = [];
  for (let i = 0; i < n; i++) {
    pending.push(pubClient.publish('bench', 'e', payload));
    if (pending.length >= 4096) {
      await Promise.all(pending);
      pending = [];
    }
  }
  await Promise.all(pending);
  await receive;
  const elapsed = (performance.now() - start) / 1000;
  await pubClient.close();
  await subClient.close();
  return n / elapsed;
}

async function natsRun() {
  const { connect } = await import('nats');
  const subConn = await connect({ servers: `${host}:${port}` });
  const pubConn = await connect({ servers: `${host}:${port}` });
  let got = 0;
  let resolveDone;
  const done = new Promise((resolve) => { resolveDone = resolve; });
  subConn.subscribe('bench.e', { callback: () => { got += 1; if (got === n) resolveDone(); } });
  await subConn.flush();
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    pubConn.publish('bench.e', payload);
    if (i % 4096 === 0) await pubConn.flush();
  }
  await pubConn.flush();
  await done;
  const elapsed = (performance.now() - start) / 1000;
  await pubConn.close();
  await subConn.close();
  return n / elapsed;
}

const rate = kind === 'weir' ? await weirRun() : await natsRun();
console.log(Math.round(rate));
