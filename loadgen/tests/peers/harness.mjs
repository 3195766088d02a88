// The test harness around the two chat apps: their shared flags (--host, --port, --fault,
// --ping-interval), the faults, the counters behind GET /stats, and the lifecycle (listen,
// print "listening PORT", exit on SIGTERM, SIGINT or the end of standard input). It lives
// here so that each app file holds only the chat, as its users would write it. See README.md.
import { createServer } from "node:http";
import { parseArgs } from "node:util";

// Reads the command line of app `name` (on a bad one: a message, a usage line, exit code 2).
// `options` and `usage` add the app's own flags, in parseArgs form and for the usage line;
// with `zeroPingIsOff`, --ping-interval 0 is taken (the app's keepalive is then off).
// Returns:
// - opts: every flag's value; pingInterval: --ping-interval in ms, 0 when not given;
// - fault: the --fault in force (see below); stats: the counters that /stats shows;
// - httpServer: answers GET /stats; the app attaches its chat to it;
// - listen({ online, close }): starts serving. online() counts the names logged in now;
//   close(done) stops the chat and calls done.
export function harness(name, { options = {}, usage = "", zeroPingIsOff = false } = {}) {
  const fail = (message) => {
    console.error(`${name}: ${message}`);
    console.error(
      `usage: node ${name}.mjs [--host H] [--port P] [--fault drop:N|reorder|echo|keep-evicted]` +
        ` [--ping-interval MS]${usage && ` ${usage}`}`,
    );
    process.exit(2);
  };

  let opts;
  try {
    ({ values: opts } = parseArgs({
      options: {
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "0" },
        fault: { type: "string" },
        "ping-interval": { type: "string" },
        ...options,
      },
    }));
  } catch (err) {
    fail(err.message);
  }

  const port = Number(opts.port);
  if (!/^\d+$/.test(opts.port) || port > 65535) fail(`bad --port ${opts.port}`);
  const ping = opts["ping-interval"];
  if (ping !== undefined && !(zeroPingIsOff ? /^\d+$/ : /^[1-9]\d*$/).test(ping)) {
    fail(`bad --ping-interval ${ping}`);
  }

  const kind = opts.fault ?? "none";
  const drop = /^drop:([1-9]\d*)$/.exec(kind);
  if (!drop && !["none", "reorder", "echo", "keep-evicted"].includes(kind)) {
    fail(`unknown --fault ${kind}`);
  }
  let sends = 0; // every per-recipient send, delivered or dropped (for drop:N)
  const fault = {
    kind: drop ? "drop" : kind, // "none", "drop", "reorder", "echo" or "keep-evicted"
    // drop:N: whether to skip this send to a recipient (every Nth, counted over all of them).
    drops: () => drop !== null && ++sends % Number(drop[1]) === 0,
    // reorder: `send` as it is, or, with this fault, swapping one sender's messages in pairs.
    reorder: (send) => (kind === "reorder" ? swappingPairs(send) : send),
  };

  const stats = { broadcasts: 0, deliveries: 0, dropped: 0, evictions: 0 };
  let online = () => 0;
  const httpServer = createServer((req, res) => {
    if (req.method === "GET" && req.url === "/stats") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ ...stats, online: online() }));
    } else {
      res.writeHead(404).end();
    }
  });

  function listen(app) {
    online = app.online;
    const shutdown = () => {
      app.close(() => process.exit(0));
      setTimeout(() => process.exit(0), 1000).unref();
    };
    process.on("SIGTERM", shutdown);
    process.on("SIGINT", shutdown);
    process.stdin.on("end", shutdown);
    process.stdin.on("close", shutdown);
    process.stdin.resume();
    httpServer.listen(port, opts.host, () => {
      process.stdout.write(`listening ${httpServer.address().port}\n`);
    });
  }

  return { opts, pingInterval: Number(ping ?? 0), fault, stats, httpServer, listen };
}

// The reorder fault: holds a sender's 1st, 3rd, 5th… message until the next one has gone
// out, or for 50 ms when no next one comes.
function swappingPairs(send) {
  let held = null;
  let timer;
  return (message) => {
    if (held === null) {
      held = message;
      timer = setTimeout(() => {
        send(held);
        held = null;
      }, 50);
    } else {
      clearTimeout(timer);
      send(message);
      send(held);
      held = null;
    }
  };
}
