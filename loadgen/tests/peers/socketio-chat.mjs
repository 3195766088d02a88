// A Socket.IO 4 chat room, written the way its users write one, that loadgen's tests run as
// a real foreign server for loadgen's Socket.IO profile. Each client logs in with
// auth { user } (and, with --token, auth { token }); a "chat" event with a string goes to
// every other client of the namespace as "chat" { from, text }. A second login of a name
// disconnects the first. --fault breaks it on purpose so the tests can see loadgen notice.
//
// node socketio-chat.mjs [--host 127.0.0.1] [--port 0] [--fault KIND]
//   [--ping-interval MS] [--token SECRET]
// harness.mjs handles these flags but --token, the faults, GET /stats and the lifecycle
// (see README.md).
import { Server } from "socket.io";
import { harness } from "./harness.mjs";

const { opts, pingInterval, fault, stats, httpServer, listen } = harness("socketio-chat", {
  options: { token: { type: "string" } },
  usage: "[--token SECRET]",
});

const logins = []; // per namespace, a Map from user name to its socket
const io = new Server(httpServer, {
  serveClient: false,
  ...(pingInterval > 0 && { pingInterval, pingTimeout: 2 * pingInterval }),
});

// Sends one chat message from `socket` to the rest of its namespace (everyone with echo).
function broadcast(socket, message) {
  stats.broadcasts++;
  const nsp = socket.nsp;
  if (fault.kind === "drop") {
    for (const peer of nsp.sockets.values()) {
      if (peer === socket) continue;
      if (fault.drops()) {
        stats.dropped++;
      } else {
        peer.emit("chat", message);
        stats.deliveries++;
      }
    }
  } else if (fault.kind === "echo") {
    stats.deliveries += nsp.sockets.size;
    nsp.emit("chat", message);
  } else {
    stats.deliveries += nsp.sockets.size - (nsp.sockets.has(socket.id) ? 1 : 0);
    socket.broadcast.emit("chat", message);
  }
}

function serveChat(nsp) {
  const users = new Map();
  logins.push(users);

  nsp.use((socket, next) => {
    const { user, token } = socket.handshake.auth;
    if (typeof user !== "string" || user === "") return next(new Error("a user name is required"));
    if (opts.token !== undefined && token !== `${opts.token}:${user}`) return next(new Error("bad token"));
    socket.data.user = user;
    next();
  });

  nsp.on("connection", (socket) => {
    const user = socket.data.user;
    const previous = users.get(user);
    if (previous && fault.kind !== "keep-evicted") {
      previous.disconnect(true);
      stats.evictions++;
    }
    users.set(user, socket);

    const send = (text) => broadcast(socket, { from: user, text });
    const say = fault.reorder(send);
    socket.on("chat", (text) => {
      if (typeof text === "string") say(text);
    });

    socket.on("disconnect", () => {
      if (users.get(user) === socket) users.delete(user);
    });
  });
}

serveChat(io.of("/"));
serveChat(io.of("/chat"));

listen({
  online: () => logins.reduce((sum, users) => sum + users.size, 0),
  close: (done) => io.close(done),
});
