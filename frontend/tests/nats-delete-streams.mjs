// Deletes JetStream streams by name over the plain NATS protocol (no client library):
// `node nats-delete-streams.mjs nats://127.0.0.1:4222 STREAM_A STREAM_B`. Used by
// scripts/test-frontend to remove the per-run streams it created. Missing streams are fine.

import net from "node:net";

const [url = "nats://127.0.0.1:4222", ...streams] = process.argv.slice(2);
const u = new URL(url);
const host = u.hostname || "127.0.0.1";
const port = Number(u.port || 4222);

function run() {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const inbox = `_INBOX.nlui${process.pid}`;
    let buf = "";
    let pending = streams.length;
    const results = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`NATS at ${host}:${port} did not answer in time`));
    }, 10_000);
    const done = () => {
      clearTimeout(timer);
      sock.end();
      resolve(results);
    };
    sock.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    let started = false;
    sock.on("data", (chunk) => {
      buf += chunk.toString("utf8");
      for (;;) {
        const nl = buf.indexOf("\r\n");
        if (nl < 0) return;
        const line = buf.slice(0, nl);
        if (line.startsWith("MSG ")) {
          const size = Number(line.split(" ").pop());
          if (buf.length < nl + 2 + size + 2) return; // wait for the whole payload
          const payload = buf.slice(nl + 2, nl + 2 + size);
          buf = buf.slice(nl + 2 + size + 2);
          const index = Number(line.split(" ")[1].split(".").pop());
          results.push([streams[index] ?? "?", payload]);
          pending -= 1;
          if (pending === 0) done();
          continue;
        }
        buf = buf.slice(nl + 2);
        if (line.startsWith("INFO ") && !started) {
          started = true;
          let out = `CONNECT {"verbose":false,"pedantic":false,"name":"netledger-ui-cleanup"}\r\nSUB ${inbox}.* 1\r\n`;
          streams.forEach((s, i) => {
            out += `PUB $JS.API.STREAM.DELETE.${s} ${inbox}.${i} 0\r\n\r\n`;
          });
          sock.write(out);
          if (streams.length === 0) done();
        } else if (line === "PING") {
          sock.write("PONG\r\n");
        } else if (line.startsWith("-ERR")) {
          clearTimeout(timer);
          sock.destroy();
          reject(new Error(line));
          return;
        }
      }
    });
  });
}

run()
  .then((results) => {
    for (const [name, r] of results) console.log(`nats: delete ${name}: ${r}`);
  })
  .catch((e) => {
    console.error(`nats cleanup failed: ${e.message}`);
    process.exit(1);
  });
