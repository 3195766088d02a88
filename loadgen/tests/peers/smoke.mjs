// A smoke test of the two test peers on their own, without loadgen: it starts each app
// with each fault and speaks its wire protocol by hand over ws (raw Engine.IO packets for
// the Socket.IO chat), so a change to an app can be checked with `node smoke.mjs`.
import { spawn } from "node:child_process";
import { once } from "node:events";
import assert from "node:assert/strict";
import test from "node:test";
import WebSocket from "ws";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function start(app, ...args) {
  const proc = spawn(process.execPath, [app, ...args], {
    cwd: import.meta.dirname,
    stdio: ["pipe", "pipe", "inherit"],
  });
  const [line] = await once(proc.stdout, "data");
  const port = /^listening (\d+)\n$/.exec(String(line))[1];
  const exited = once(proc, "exit");
  return {
    port,
    stats: async () => (await fetch(`http://127.0.0.1:${port}/stats`)).json(),
    stop: async () => {
      proc.stdin.end();
      return exited;
    },
  };
}

// A client that logs in and keeps what it hears: `chats` are the chat messages received as
// { from, text }, `frames` every frame as text, `closed` resolves to [code, reason].
function client(url, onOpen, onFrame) {
  const ws = new WebSocket(url);
  const c = { ws, frames: [], chats: [] };
  c.closed = once(ws, "close").then(([code, reason]) => [code, String(reason)]);
  ws.on("open", () => onOpen(c));
  ws.on("message", (data) => {
    c.frames.push(String(data));
    onFrame(c, String(data));
  });
  return c;
}

function sioClient(port, auth, { nsp = "", pong = true } = {}) {
  const prefix = nsp ? `${nsp},` : "";
  const c = client(
    `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`,
    () => {},
    (c, frame) => {
      if (frame.startsWith("0")) c.ws.send(`40${prefix}${JSON.stringify(auth)}`);
      if (frame === "2" && pong) c.ws.send("3");
      if (frame.startsWith(`42${prefix}[`)) c.chats.push(JSON.parse(frame.slice(2 + prefix.length))[1]);
    },
  );
  c.say = (text) => c.ws.send(`42${prefix}${JSON.stringify(["chat", text])}`);
  c.ready = until(() => c.frames.find((f) => f.startsWith(`40${prefix}{`) || f.startsWith(`44${prefix}`)));
  return c;
}

function jsonClient(port, user, { pong = true, first } = {}) {
  const c = client(
    `ws://127.0.0.1:${port}/any/path`,
    (c) => c.ws.send(first ?? JSON.stringify({ type: "join", user })),
    (c, frame) => {
      const message = JSON.parse(frame);
      if (message.type === "ping" && pong) c.ws.send('{"type":"pong"}');
      if (message.type === "said") c.chats.push({ from: message.from, text: message.text });
    },
  );
  c.say = (text) => c.ws.send(JSON.stringify({ type: "say", text }));
  c.ready = until(() => c.frames.find((f) => /"type":"(joined|error)"/.test(f)));
  return c;
}

async function until(check, ms = 2000) {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(10)) {
    const value = check();
    if (value) return value;
  }
  throw new Error(`timed out waiting for ${check}`);
}

const apps = {
  "socketio-chat.mjs": (port, user, opts) => sioClient(port, { user }, opts),
  "json-chat.mjs": jsonClient,
};

for (const [app, connect] of Object.entries(apps)) {
  async function room(...args) {
    const server = await start(app, ...args);
    const [ann, bob, cat] = ["ann", "bob", "cat"].map((name) => connect(server.port, name));
    await Promise.all([ann.ready, bob.ready, cat.ready]);
    return { server, ann, bob, cat };
  }
  const texts = (c) => c.chats.map((m) => m.text);

  test(`${app}: each message goes to every other user once, in order`, async () => {
    const { server, ann, bob, cat } = await room();
    const big = "x".repeat(64 * 1024);
    for (const text of ["1", "2", "3", big]) ann.say(text);
    await until(() => bob.chats.length === 4 && cat.chats.length === 4);
    await sleep(100);
    assert.deepEqual(texts(bob), ["1", "2", "3", big]);
    assert.deepEqual(texts(cat), ["1", "2", "3", big]);
    assert.deepEqual(bob.chats[0], { from: "ann", text: "1" });
    assert.deepEqual(ann.chats, []);
    assert.deepEqual(await server.stats(), { broadcasts: 4, deliveries: 8, dropped: 0, evictions: 0, online: 3 });
    assert.equal((await server.stop())[0], 0);
  });

  test(`${app}: --fault echo sends a message back to its sender`, async () => {
    const { server, ann, bob } = await room("--fault", "echo");
    ann.say("hi");
    await until(() => ann.chats.length === 1 && bob.chats.length === 1);
    assert.deepEqual(ann.chats, [{ from: "ann", text: "hi" }]);
    assert.equal((await server.stats()).deliveries, 3);
    await server.stop();
  });

  test(`${app}: --fault drop:3 skips every third recipient send`, async () => {
    const { server, ann, bob, cat } = await room("--fault", "drop:3");
    for (let i = 0; i < 6; i++) ann.say(`${i}`);
    await until(() => bob.chats.length + cat.chats.length === 8);
    await sleep(100);
    assert.equal(bob.chats.length + cat.chats.length, 8);
    assert.deepEqual(await server.stats(), { broadcasts: 6, deliveries: 8, dropped: 4, evictions: 0, online: 3 });
    await server.stop();
  });

  test(`${app}: --fault reorder swaps each pair and flushes a lone one`, async () => {
    const { server, ann, bob } = await room("--fault", "reorder");
    for (const text of ["a", "b", "c"]) ann.say(text);
    await until(() => bob.chats.length === 2);
    await sleep(20);
    assert.deepEqual(texts(bob), ["b", "a"]);
    await until(() => bob.chats.length === 3);
    assert.deepEqual(texts(bob), ["b", "a", "c"]);
    await server.stop();
  });

  test(`${app}: a second login evicts the first`, async () => {
    const { server, ann, bob } = await room();
    const again = connect(server.port, "ann");
    await again.ready;
    const [code, reason] = await ann.closed;
    if (app === "json-chat.mjs") {
      assert.deepEqual([code, reason], [4001, "replaced"]);
      assert.deepEqual(JSON.parse(ann.frames.at(-1)), { type: "evicted", reason: "logged in elsewhere" });
    } else {
      assert.equal(code, 1005); // disconnect(true): a DISCONNECT packet, then a close frame with no code
      assert.equal(ann.frames.at(-1), "41");
    }
    again.say("back");
    await until(() => bob.chats.length === 1);
    assert.deepEqual(await server.stats(), { broadcasts: 1, deliveries: 2, dropped: 0, evictions: 1, online: 3 });
    await server.stop();
  });

  test(`${app}: --fault keep-evicted leaves the first login open`, async () => {
    const { server, ann } = await room("--fault", "keep-evicted");
    await connect(server.port, "ann").ready;
    await sleep(200);
    assert.equal(ann.ws.readyState, WebSocket.OPEN);
    assert.equal((await server.stats()).evictions, 0);
    await server.stop();
  });

  test(`${app}: --ping-interval closes a client that does not answer`, async () => {
    const server = await start(app, "--ping-interval", "200");
    const quiet = connect(server.port, "quiet", { pong: false });
    const lively = connect(server.port, "lively");
    await Promise.all([quiet.ready, lively.ready]);
    const [code] = await quiet.closed;
    assert.equal(code, app === "json-chat.mjs" ? 4408 : 1005);
    await sleep(500);
    assert.equal(lively.ws.readyState, WebSocket.OPEN);
    await server.stop();
  });
}

test("socketio-chat.mjs: login errors, tokens and the /chat namespace", async () => {
  const server = await start("socketio-chat.mjs", "--token", "s3cret");
  assert.equal(await sioClient(server.port, {}).ready, '44{"message":"a user name is required"}');
  assert.equal(await sioClient(server.port, { user: "ann", token: "x" }).ready, '44{"message":"bad token"}');
  const ann = sioClient(server.port, { user: "ann", token: "s3cret:ann" }, { nsp: "/chat" });
  const bob = sioClient(server.port, { user: "bob", token: "s3cret:bob" }, { nsp: "/chat" });
  assert.match(await ann.ready, /^40\/chat,\{"sid":/);
  await bob.ready;
  ann.say("hi");
  ann.say(42); // not a string: ignored
  await until(() => bob.chats.length === 1);
  assert.deepEqual(bob.chats, [{ from: "ann", text: "hi" }]);
  await server.stop();
});

test("json-chat.mjs: a bad first frame is an error and close 4400", async () => {
  const server = await start("json-chat.mjs");
  for (const first of ["not json", '{"type":"say","text":"hi"}', '{"type":"join","user":7}']) {
    const c = jsonClient(server.port, "x", { first });
    assert.equal(JSON.parse(await c.ready).type, "error");
    assert.deepEqual(await c.closed, [4400, "join first"]);
  }
  const ann = jsonClient(server.port, "ann");
  assert.deepEqual(JSON.parse(await ann.ready), { type: "joined", user: "ann", online: 1 });
  ann.ws.send('{"type":"dance"}');
  await until(() => ann.frames.length === 2);
  assert.equal(JSON.parse(ann.frames[1]).type, "error");
  assert.equal(ann.ws.readyState, WebSocket.OPEN);
  await server.stop();
});
