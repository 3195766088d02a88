// A chat client that is not loadgen: it mints its own JSON Web Token with jose (the most
// used JWT library of JavaScript) and logs in with ws, so chat-server's authentication is
// checked against code that shares nothing with ours. One login per run; it prints one
// JSON line: {"kind", "status", "body", "open"} — status 101 and open true when the
// session opened and stayed open for half a second.
//
// node client.mjs --url ws://127.0.0.1:PORT/ --sub NAME --kind KIND --alg ALG --key FILE
//   [--public FILE] [--in header|query]
// KIND: good (a valid token), none (an unsecured token, alg none), confusion (HS256 whose
// HMAC key is the bytes of the server's public key file, --public), tampered (a good
// token whose payload was replaced by one naming "eve"), expired (exp an hour ago).
// ALG: HS256 (--key is a secret file: its bytes less one line ending), ES256 or EdDSA
// (--key is a PKCS#8 PEM private key).
import { readFileSync } from "node:fs";
import { SignJWT, UnsecuredJWT, importPKCS8, base64url } from "jose";
import WebSocket from "ws";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
}
const now = Math.floor(Date.now() / 1000);

async function signingKey() {
  const bytes = readFileSync(args.key);
  if (args.alg === "HS256") {
    let text = bytes.toString("latin1");
    text = text.replace(/\r?\n$/, "");
    return Buffer.from(text, "latin1");
  }
  return importPKCS8(bytes.toString("utf8"), args.alg);
}

async function token() {
  const exp = args.kind === "expired" ? now - 3600 : now + 600;
  switch (args.kind) {
    case "none":
      return new UnsecuredJWT({}).setSubject(args.sub).setIssuedAt(now).setExpirationTime(exp).encode();
    case "confusion":
      return new SignJWT({})
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .setSubject(args.sub)
        .setIssuedAt(now)
        .setExpirationTime(exp)
        .sign(readFileSync(args.public));
    default: {
      const signed = await new SignJWT({})
        .setProtectedHeader({ alg: args.alg, typ: "JWT" })
        .setSubject(args.sub)
        .setIssuedAt(now)
        .setExpirationTime(exp)
        .sign(await signingKey());
      if (args.kind !== "tampered") return signed;
      const [header, , signature] = signed.split(".");
      const payload = base64url.encode(JSON.stringify({ sub: "eve", iat: now, exp: now + 600 }));
      return `${header}.${payload}.${signature}`;
    }
  }
}

const jwt = await token();
const query = args.in === "query" ? `?token=${encodeURIComponent(jwt)}` : "";
const headers = args.in === "query" ? {} : { Authorization: `Bearer ${jwt}` };
const socket = new WebSocket(args.url + query, { headers });
const done = (result) => {
  process.stdout.write(JSON.stringify({ kind: args.kind, ...result }) + "\n");
  process.exit(0);
};
socket.on("unexpected-response", (request, response) => {
  let body = "";
  response.on("data", (chunk) => (body += chunk));
  response.on("end", () => done({ status: response.statusCode, body: body.trim(), open: false }));
});
socket.on("open", () => {
  const timer = setTimeout(() => {
    socket.close(1000);
    done({ status: 101, body: "", open: true });
  }, 500);
  socket.on("close", (code, reason) => {
    clearTimeout(timer);
    done({ status: 101, body: `closed ${code} ${reason}`, open: false });
  });
});
socket.on("error", (error) => done({ status: 0, body: String(error.message), open: false }));
