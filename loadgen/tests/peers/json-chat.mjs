// A hand-rolled JSON-over-WebSocket chat room on ws, of the kind people write every day, that
// loadgen's tests run as a real foreign server for loadgen's JSON profile. A client joins
// with {"type":"join","user":NAME}, says {"type":"say","text":T}, and every other joined
// client gets {"type":"said","from":NAME,"text":T}. A second join of a name evicts the
// first. --fault breaks it on purpose so the tests can see loadgen notice.
//
// node json-chat.mjs [--host 127.0.0.1] [--port 0] [--fault KIND] [--ping-interval MS]
// harness.mjs handles these flags, the faults, GET /stats and the lifecycle (see README.md).
import { WebSocketServer, WebSocket } from "ws";
import { harness } from "./harness.mjs";

const { pingInterval, fault, stats, httpServer, listen } = harness("json-chat", {
  zeroPingIsOff: true, // --ping-interval 0 (the default) turns the keepalive below off
});

const users = new Map(); // name -> the WebSocket logged in under it
const wss = new WebSocketServer({ server: httpServer });

const send = (ws, message) => ws.send(JSON.stringify(message));

// Sends one "said" frame from `sender` to every other joined client (everyone with echo).
function broadcast(sender, message) {
  stats.broadcasts++;
  const frame = JSON.stringify(message);
  for (const client of wss.clients) {
    if (client.user === undefined || client.readyState !== WebSocket.OPEN) continue;
    if (client === sender && fault.kind !== "echo") continue;
    if (fault.drops()) {
      stats.dropped++;
      continue;
    }
    client.send(frame);
    stats.deliveries++;
  }
}

function join(ws, user) {
  const previous = users.get(user);
  if (previous && fault.kind !== "keep-evicted") {
    send(previous, { type: "evicted", reason: "logged in elsewhere" });
    previous.close(4001, "replaced");
    stats.evictions++;
  }
  ws.user = user;
  ws.ponged = true;
  users.set(user, ws);
  send(ws, { type: "joined", user, online: users.size });
}

wss.on("connection", (ws) => {
  const say = (text) => broadcast(ws, { type: "said", from: ws.user, text });
  const sayInTurn = fault.reorder(say);

  ws.on("message", (data, isBinary) => {
    if (ws.readyState !== WebSocket.OPEN) return; // e.g. evicted, or told to join first
    let message;
    try {
      message = JSON.parse(isBinary ? "" : data.toString());
    } catch {
      message = null;
    }
    const type = message?.type;

    if (type === "pong") {
      ws.ponged = true;
    } else if (ws.user === undefined) {
      if (type !== "join" || typeof message.user !== "string" || message.user === "") {
        send(ws, { type: "error", message: 'send {"type":"join","user":NAME} first' });
        ws.close(4400, "join first");
      } else {
        join(ws, message.user);
      }
    } else if (type === "say" && typeof message.text === "string") {
      sayInTurn(message.text);
    } else if (type === "join") {
      send(ws, { type: "error", message: `already joined as ${ws.user}` });
    } else {
      send(ws, { type: "error", message: "expected say or pong" });
    }
  });

  ws.on("close", () => {
    if (ws.user !== undefined && users.get(ws.user) === ws) users.delete(ws.user);
  });
});

// Application keepalive: a joined client must answer each {"type":"ping"} before the next.
if (pingInterval > 0) {
  const timer = setInterval(() => {
    for (const ws of wss.clients) {
      if (ws.user === undefined || ws.readyState !== WebSocket.OPEN) continue;
      if (!ws.ponged) {
        ws.close(4408, "no pong");
      } else {
        ws.ponged = false;
        send(ws, { type: "ping" });
      }
    }
  }, pingInterval);
  timer.unref();
}

listen({
  online: () => users.size,
  close: (done) => {
    for (const ws of wss.clients) ws.terminate();
    wss.close();
    httpServer.close(done);
  },
});
