// What the browser tests share (not a test itself: scripts/test-frontend lists the test
// files): the backend's address and admin credentials from the environment, the screenshot
// folder, the API login and call helpers, and Debian's chromium launched headless with the
// flags this machine needs.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

export const BASE = process.env.NL_UI_BASE_URL;
export const EMAIL = process.env.NL_UI_ADMIN_EMAIL;
export const PASSWORD = process.env.NL_UI_ADMIN_PASSWORD;
if (!BASE || !EMAIL || !PASSWORD) {
  throw new Error("set NL_UI_BASE_URL, NL_UI_ADMIN_EMAIL and NL_UI_ADMIN_PASSWORD (scripts/test-frontend does)");
}
const here = path.dirname(fileURLToPath(import.meta.url));
export const SHOTS = process.env.NL_UI_SCREENSHOTS ?? path.join(here, "..", "test-results", "screenshots");
mkdirSync(SHOTS, { recursive: true });

/** Logs in through the API: the access token. */
export async function login(email, password) {
  const res = await fetch(`${BASE}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  const body = await res.text();
  assert.equal(res.status, 200, `API login of ${email}: ${res.status} ${body}`);
  return JSON.parse(body).access_token;
}

/** An API call with `token`: status, body parsed as JSON (null when empty or not JSON) and text. */
export async function call(token, method, p, body) {
  const res = await fetch(`${BASE}${p}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", accept: "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed, text };
}

/** Chromium (NL_UI_CHROMIUM, default Debian's /usr/bin/chromium), headless, no network of its own. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.NL_UI_CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
