// The dashboard in headless Chromium (issue 11), against a real weir-server this test starts:
// the page shows a session made over TCP from Node and one made over WebSocket from the page
// itself, and its chart data moves while messages flow. Keeps target/dashboard.png.
//
// WEIR_SERVER_BIN: the server binary (default ../../target/release/weir-server).

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import * as weir from "./weir.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const serverBin = process.env.WEIR_SERVER_BIN || join(repo, "target/release/weir-server");
const WAIT_MS = 20_000;

const cleanups = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function freePort() {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => ok(port));
    });
  });
}

async function startServer() {
  const [tcpPort, wsPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), "weir-dashboard-"));
  const config = join(dir, "weir.toml");
  writeFileSync(config, [
    `http_listen = "127.0.0.1:${httpPort}"`,
    "[[listeners]]",
    `listen = "127.0.0.1:${tcpPort}"`,
    "[[listeners]]",
    `listen = "127.0.0.1:${wsPort}"`,
    'transport = "websocket"',
    // The page comes from the HTTP listener, another port: its origin must be allowed.
    `websocket_allowed_origins = ["http://127.0.0.1:${httpPort}"]`,
    "",
  ].join("\n"));
  const child = spawn(serverBin, ["-c", config], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr.on("data", (d) => { log += d; });
  cleanups.push(async () => {
    child.kill("SIGTERM");
    await new Promise((ok) => child.once("exit", ok));
    rmSync(dir, { recursive: true, force: true });
  });
  await waitFor("the HTTP listener", async () => {
    try {
      return (await fetch(`http://127.0.0.1:${httpPort}/stats.json`)).ok;
    } catch {
      return false;
    }
  }, () => log);
  return { tcpPort, wsPort, httpPort, log: () => log };
}

async function waitFor(what, condition, detail = () => "") {
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((ok) => setTimeout(ok, 50));
  }
  throw new Error(`timed out waiting for ${what}\n${detail()}`);
}

/**
 * A raw Weir connection over TCP: sends frames, keeps the op of each received one. With
 * `ackLag`, it acknowledges deliveries but keeps that many in flight (so the page shows some).
 */
async function tcpClient(port, name, ackLag = undefined) {
  const socket = connect(port, "127.0.0.1");
  await new Promise((ok, fail) => socket.once("connect", ok).once("error", fail));
  const client = { socket, frames: [], buffer: new Uint8Array(0), delivered: 0n, acked: 0n };
  socket.on("data", (chunk) => {
    const joined = new Uint8Array(client.buffer.length + chunk.length);
    joined.set(client.buffer);
    joined.set(chunk, client.buffer.length);
    const [frames, rest] = weir.decodeFrames(joined);
    for (const f of frames) {
      if (f.op === 0x82) {
        client.delivered = new DataView(f.body.buffer, f.body.byteOffset).getBigUint64(0);
      } else if (client.frames.length < 100) {
        client.frames.push({ op: f.op });
      }
    }
    client.buffer = Uint8Array.from(rest);
    if (ackLag !== undefined && client.delivered - BigInt(ackLag) > client.acked) {
      client.acked = client.delivered - BigInt(ackLag);
      socket.write(weir.ack(client.acked));
    }
  });
  socket.write(weir.hello(name));
  await waitFor(`WELCOME for ${name}`, () => client.frames.some((f) => f.op === 0x81));
  cleanups.push(() => socket.destroy());
  return client;
}

/** Waits for `condition` in the page; on timeout, fails with what the page holds. */
async function waitInPage(page, what, condition) {
  try {
    await page.waitForFunction(condition, null, { timeout: WAIT_MS });
  } catch (error) {
    const state = await page.evaluate(() => JSON.stringify({
      browserClient: window.browserClient,
      polls: window.weirDashboard?.polls,
      errors: window.weirDashboard?.errors,
      sessions: window.weirDashboard?.last?.sessions?.map((s) => [s.client_name, s.state]),
      samples: window.weirDashboard?.samples?.slice(-3),
    }));
    throw new Error(`timed out waiting for ${what}: ${state}`);
  }
}

/** Headless Debian Chromium with a fresh profile (playwright passes it as --user-data-dir). */
async function launch(viewport, bypassCSP = false) {
  const userDataDir = mkdtempSync(join(tmpdir(), "weir-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
    headless: true,
    viewport,
    bypassCSP,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  cleanups.push(async () => {
    await context.close();
    rmSync(userDataDir, { recursive: true, force: true });
  });
  return context.newPage();
}

test("the dashboard shows live sessions, queues and moving charts", async () => {
  const server = await startServer();
  // Acks all but the last 200 deliveries: its in-flight count stays in view, its queue bounded.
  const subscriber = await tcpClient(server.tcpPort, "node-subscriber", 200);
  subscriber.socket.write(weir.subscribeAll("orders"));
  await waitFor("SUBSCRIBED", () => subscriber.frames.some((f) => f.op === 0x84));
  const publisher = await tcpClient(server.tcpPort, "node-publisher");

  // The dashboard's CSP allows connections to its own origin only; the test's WebSocket client
  // in the page goes to the WebSocket listener's port, so the CSP is bypassed for it (the
  // Origin header it sends is still the dashboard's, allowed by websocket_allowed_origins).
  const page = await launch({ width: 1280, height: 1000 }, true);
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(`http://127.0.0.1:${server.httpPort}/`);

  // A browser client over the WebSocket listener, from the dashboard's own origin: HELLO,
  // SUBSCRIBE, then ACK every DELIVER (one Weir frame per message, as protocol.md says).
  const weirSource = readFileSync(join(here, "weir.mjs"), "utf8").replaceAll("export ", "");
  await page.evaluate(({ source, url }) => {
    // eslint-disable-next-line no-new-func
    const w = new Function(`${source}; return { hello, subscribeAll, ack, decodeFrames };`)();
    const state = { ops: [], delivered: 0, wholeFrames: true };
    window.browserClient = state;
    const ws = new WebSocket(url, "weir.v1");
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      ws.send(w.hello("browser-ws"));
      ws.send(w.subscribeAll("orders"));
    };
    ws.onmessage = (event) => {
      const bytes = new Uint8Array(event.data);
      const [frames, rest] = w.decodeFrames(bytes);
      if (frames.length !== 1 || rest.length !== 0) state.wholeFrames = false;
      for (const f of frames) {
        state.ops.push(f.op);
        if (f.op === 0x82) {
          state.delivered += 1;
          const seq = new DataView(f.body.buffer, f.body.byteOffset).getBigUint64(0);
          ws.send(w.ack(seq));
        }
      }
    };
    ws.onclose = (event) => { state.closed = event.code; };
  }, { source: weirSource, url: `ws://127.0.0.1:${server.wsPort}/` });

  const rows = page.locator("#sessions tbody tr");
  await waitInPage(page, "three sessions on the page", () => {
    const names = [...document.querySelectorAll("#sessions tbody tr")].map((r) => r.dataset.client);
    return ["node-subscriber", "node-publisher", "browser-ws"].every((n) => names.includes(n));
  });
  assert.equal(await rows.count(), 3);
  const subscriberRow = page.locator('#sessions tr[data-client="node-subscriber"]');
  assert.match(await subscriberRow.innerText(), /connected/);
  assert.match(await subscriberRow.innerText(), /orders/);

  // Publish in bursts (rising, so the chart has a shape) until the screenshot is taken; the
  // charts' samples must rise above zero.
  let seq = 0;
  let burst = 50;
  const publishing = setInterval(() => {
    burst = Math.min(burst + 10, 400);
    for (let i = 0; i < burst; i++) {
      seq += 1;
      publisher.socket.write(weir.publish(seq, "orders", "created", `order ${seq}`));
    }
  }, 50);
  let peak, client;
  const shot = join(repo, "target/dashboard.png");
  try {
    await waitInPage(page, "the charts to move", () => {
      const samples = window.weirDashboard.samples;
      return samples.filter((s) => s.published > 0 && s.delivered > 0).length >= 3;
    });
    const dashboard = await page.evaluate(() => window.weirDashboard);
    peak = Math.max(...dashboard.samples.map((s) => s.published));
    assert.ok(peak > 100, `published/s peaks at ${peak}`);
    const queueRow = page.locator('#queues tr[data-queue="orders"]');
    const queueCells = await queueRow.locator("td").allInnerTexts();
    assert.equal(queueCells[0], "orders");
    assert.equal(queueCells[2], "2", "two subscribers");

    // The browser's own session got its messages, one frame per WebSocket message.
    client = await page.evaluate(() => window.browserClient);
    assert.ok(client.delivered > 0, "the browser client received deliveries");
    assert.ok(client.wholeFrames, "each message held exactly one whole frame");
    assert.deepEqual(client.ops.slice(0, 2), [0x81, 0x84]);

    // The node subscriber holds 200 unacked: its in-flight count shows on the page.
    await waitInPage(page, "in-flight deliveries of the node subscriber", () => {
      const row = document.querySelector('#sessions tr[data-client="node-subscriber"]');
      return row && Number(row.children[7].textContent.replace("k", "e3")) > 0;
    });
    await waitInPage(page, "a few more samples for the picture", () =>
      window.weirDashboard.samples.filter((s) => s.published > 0).length >= 6);
    mkdirSync(join(repo, "target"), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
  } finally {
    clearInterval(publishing);
  }
  assert.deepEqual(pageErrors, []);
  console.log(`published ${seq} messages; peak ${Math.round(peak)}/s; browser client got ` +
    `${client.delivered}; screenshot ${shot}`);
});

test("a page from another origin cannot open the WebSocket", async () => {
  const server = await startServer();
  const page = await launch({ width: 800, height: 600 });
  // A data: URL's origin is "null": not the same host, not listed.
  await page.goto("data:text/html,<title>elsewhere</title>");
  const outcome = await page.evaluate((url) => new Promise((ok) => {
    const ws = new WebSocket(url, "weir.v1");
    ws.onopen = () => ok("open");
    ws.onerror = () => ok("refused");
  }), `ws://127.0.0.1:${server.wsPort}/`);
  assert.equal(outcome, "refused");
  const stats = await (await fetch(`http://127.0.0.1:${server.httpPort}/stats.json`)).json();
  assert.equal(stats.server.sessions, 0);
});
