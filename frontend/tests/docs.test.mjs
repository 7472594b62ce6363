// Browser test of the API's own interactive docs page (`/docs`, served by the API process,
// not by the UI build): it renders every operation of /openapi.json in Debian's chromium and
// "Try it" sends a real authenticated request. Started by scripts/test-frontend like the UI
// tests (same environment variables).

import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";

import { BASE, EMAIL, PASSWORD, SHOTS, launchChromium } from "./harness.mjs";

let browser;
let page;
const pageErrors = [];

before(async () => {
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(m.text());
  });
});

after(async () => {
  await browser?.close();
});

test("/docs renders every operation of the OpenAPI document and sends a real request", async () => {
  const spec = await (await fetch(`${BASE}/openapi.json`)).json();
  let operations = 0;
  for (const item of Object.values(spec.paths)) {
    for (const m of ["get", "post", "put", "patch", "delete"]) if (item[m]) operations += 1;
  }
  assert.ok(operations > 40, `only ${operations} operations in /openapi.json`);

  await page.goto(`${BASE}/docs`);
  await page.waitForFunction((n) => document.querySelectorAll("#ops .op").length === n, operations);
  assert.equal(await page.textContent("#title"), spec.info.title);

  // Pick "list devices" and send it with a real token.
  const login = await fetch(`${BASE}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
  });
  assert.equal(login.status, 200);
  const { access_token: token } = await login.json();
  const listDevices = spec.paths["/api/v1/devices"]?.get;
  assert.ok(listDevices, "GET /api/v1/devices is in the document");
  await page.click(`#ops .op[data-id="${listDevices.operationId}"]`);
  await page.waitForSelector("#detail h1 code");
  assert.equal(await page.textContent("#detail h1 code"), "/api/v1/devices");
  await page.fill("#token", token);
  await page.click("#detail button");
  await page.waitForFunction(() => /^\d{3} /.test(document.querySelector("#detail pre:last-of-type")?.textContent ?? ""));
  const out = await page.textContent("#detail pre:last-of-type");
  assert.match(out, /^200 /, out.slice(0, 300));
  assert.match(out, /"items"/, out.slice(0, 300));
  await page.screenshot({ path: path.join(SHOTS, "api-docs.png"), fullPage: false });
  assert.deepEqual(pageErrors, []);
});
