// Unit tests of the SSE parser in src/api/live.ts (compiled on the fly with esbuild, which
// Vite ships): messages split at any byte boundary, CRLF, comments, ids, retry, multi-line
// data. The live connection itself is exercised by the browser tests against the server.

import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";

import { build } from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));

async function loadLive() {
  const out = await build({
    entryPoints: [path.join(here, "..", "src", "api", "live.ts")],
    bundle: true,
    format: "esm",
    platform: "neutral",
    write: false,
    logLevel: "silent",
  });
  const dir = mkdtempSync(path.join(tmpdir(), "nl-sse-"));
  const file = path.join(dir, "live.mjs");
  writeFileSync(file, out.outputFiles[0].text);
  return import(pathToFileURL(file).href);
}

const { SseParser } = await loadLive();

function parseAll(chunks) {
  const messages = [];
  const retries = [];
  const p = new SseParser(
    (m) => messages.push(m),
    (ms) => retries.push(ms),
  );
  for (const c of chunks) p.feed(c);
  return { messages, retries };
}

const STREAM =
  ": keep-alive\r\n\r\n" +
  "retry: 3000\r\n" +
  "id: 41\r\nevent: DeviceOnline\r\ndata: {\"position\":41}\r\n\r\n" +
  "id: 42\nevent: WorkflowStarted\ndata: {\"a\":\ndata: 1}\n\n" +
  "data:no-space\r\r" +
  "event: ignored-without-data\n\n";

test("parses ids, types, multi-line data, comments and retry", () => {
  const { messages, retries } = parseAll([STREAM]);
  assert.deepEqual(retries, [3000]);
  assert.deepEqual(messages, [
    { id: "41", event: "DeviceOnline", data: '{"position":41}' },
    { id: "42", event: "WorkflowStarted", data: '{"a":\n1}' },
    { id: null, event: "message", data: "no-space" },
  ]);
});

test("gives the same messages whatever the chunk boundaries", () => {
  const whole = parseAll([STREAM]).messages;
  for (let size = 1; size <= 7; size++) {
    const chunks = [];
    for (let i = 0; i < STREAM.length; i += size) chunks.push(STREAM.slice(i, i + size));
    assert.deepEqual(parseAll(chunks).messages, whole, `chunks of ${size}`);
  }
  // A CRLF split between chunks is one line end, not two.
  assert.deepEqual(parseAll(["data: x\r", "\n\r", "\n"]).messages, [{ id: null, event: "message", data: "x" }]);
});

test("an incomplete message is not delivered", () => {
  assert.deepEqual(parseAll(["id: 7\ndata: half"]).messages, []);
});
