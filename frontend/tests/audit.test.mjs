// Browser test of the Audit section for the `auditor` role against a real backend
// (`netledger all --demo-fleet 3`, started by scripts/test-frontend), Debian's chromium driven
// by playwright-core like tests/changes.test.mjs. Set up through the API as the admin: an
// auditor and an approver account, a time T0 with the first device's configuration known,
// then a change request on that device (a pool added) that the approver approves and the
// admin starts, run to `completed` (a chain of events: the request, its approval, run,
// rollout, per-device workflow and the device's events). Then, signed in as the auditor in
// the browser: the timeline filtered to the request (its id as correlation id) shows exactly
// its chain, the URL shares the view, a correlation id in an entry follows the chain, the CSV
// download holds the same entries; the device as of T0 shows its state and the configuration
// it had then (commit and text without the pool), "Now" shows the pool, a version picked
// moves the time to it, the fleet as of T0 lists the demo fleet; "Verify history now" says
// OK and is recorded as a security event; a bad bound of the bundle shows the API's problem,
// and the bundle download gives a file whose SHA-256 and size are the ones the page shows and
// whose first tar member is manifest.json. Screenshots: test-results/screenshots/4x-audit-*.
//
// Environment: NL_UI_BASE_URL, NL_UI_ADMIN_EMAIL, NL_UI_ADMIN_PASSWORD, optional
// NL_UI_CHROMIUM (default /usr/bin/chromium), NL_UI_SCREENSHOTS.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";

import { BASE, EMAIL, PASSWORD, SHOTS, launchChromium, call, login } from "./harness.mjs";

const RUN = `${process.pid}-${Date.now().toString(36)}`;
const AUDITOR = { email: `auditor-${RUN}@netledger.test`, name: "Ada Auditor", password: "auditor-password-1234" };
const APPROVER = { email: `audit-approver-${RUN}@netledger.test`, name: "Abe Approver", password: "approver-password-1234" };
const TITLE = `Audit trail pool (${RUN})`;
// A pool name unique per run: the config after the change differs from the one at T0.
const POOL = `audit-pool-${process.pid}`;
const SCRIPT = `/ip pool\nadd name=${POOL} ranges=10.96.0.10-10.96.0.20`;

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

const adminToken = await login(EMAIL, PASSWORD);

let browser;
let page; // the auditor's tab
const pageErrors = [];
const failedResponses = [];
let auditorId = null;
let device = null; // {id, name} of the device the change request touches
let t0 = null; // RFC 3339, whole seconds: before the change request
let configAtT0 = null; // the device's config version at T0 (from /devices/{id}/configs)
let changeId = null;
let chain = []; // the audit feed's entries with correlation id = changeId (through the API)

async function shot(name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** Every entry of the audit feed for `query` (all pages), as `token`. */
async function feedAll(token, query) {
  const items = [];
  let cursor = null;
  do {
    const qs = new URLSearchParams({ ...query, limit: "500", ...(cursor ? { cursor } : {}) });
    const r = await call(token, "GET", `/api/v1/audit/feed?${qs}`);
    assert.equal(r.status, 200, `audit feed ${qs}: ${r.status} ${r.text}`);
    items.push(...r.body.items);
    cursor = r.body.next_cursor ?? null;
  } while (cursor);
  return items;
}

/** Waits until the audit table shows the current filters' entries, all pages loaded; then its rows. */
async function allRows(p = page) {
  for (;;) {
    await p.waitForFunction(() => document.querySelector("[data-testid=audit-table]")?.getAttribute("data-settled") === "true");
    const more = p.getByRole("button", { name: "Load more" });
    if (!(await more.count())) break;
    await more.click();
  }
  return p.locator("[data-testid=audit-table] > tbody > tr[data-position]");
}

/** Collects a tab's uncaught errors and 5xx answers (checked by the last test). */
function watch(p) {
  p.on("pageerror", (e) => pageErrors.push(String(e)));
  p.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`console: ${m.text()}`);
  });
  p.on("response", (r) => {
    if (r.status() >= 500) failedResponses.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  return p;
}

/**
 * Loads `url` as a new document and waits until the session is restored (the signed-in shell
 * shows the role). Every document load exchanges the refresh cookie (`POST /auth/refresh`),
 * and the server rotates it and treats a used one presented again as stolen (the whole
 * session is revoked). A navigation started while that exchange is in flight cancels it in
 * the browser after the server may have rotated the cookie: the new cookie is never stored,
 * the next document presents the used one, and the tab is signed out. So no navigation may
 * follow a load before its session is restored: always load pages through here.
 */
async function open(p, url) {
  await p.goto(url);
  await p.locator(".topbar .role").waitFor();
}

/** Waits until `selector`'s attribute `attr` is `expected`; on timeout, fails naming what it was. */
async function waitForAttr(selector, attr, expected, what) {
  try {
    await page.waitForFunction(([s, a, e]) => document.querySelector(s)?.getAttribute(a) === e, [selector, attr, expected]);
  } catch (e) {
    const actual = await page.locator(selector).first().getAttribute(attr, { timeout: 1000 }).catch(() => "(not shown)");
    assert.equal(actual, expected, `${what} (${e.name})`);
  }
}

before(async () => {
  const me = await call(adminToken, "GET", "/api/v1/auth/me");
  assert.equal(me.status, 200, me.text);
  for (const u of [
    { ...AUDITOR, role: "auditor" },
    { ...APPROVER, role: "approver" },
  ]) {
    const r = await call(adminToken, "POST", "/api/v1/users", { email: u.email, display_name: u.name, role: u.role, password: u.password });
    assert.equal(r.status, 201, `creating the ${u.role}: ${r.status} ${r.text}`);
    if (u.role === "auditor") auditorId = r.body.user?.id ?? r.body.id;
  }
  assert.match(auditorId ?? "", /^[0-9a-f-]{36}$/, "the auditor's id");

  // Every demo device has its first archived configuration (as in changes.test.mjs).
  const devices = (await call(adminToken, "GET", "/api/v1/devices?limit=50")).body.items;
  assert.equal(devices.length, 3, "the demo fleet has 3 devices");
  const deadline = Date.now() + 120_000;
  for (const d of devices) {
    for (;;) {
      const r = await call(adminToken, "GET", `/api/v1/devices/${d.id}/configs?limit=1`);
      assert.equal(r.status, 200, `config history of ${d.name}: ${r.status} ${r.text}`);
      if (r.body.items.length) break;
      assert.ok(Date.now() < deadline, `${d.name} has no archived configuration after 120 s`);
      await sleep(1000);
    }
  }
  device = { id: devices[0].id, name: devices[0].name };

  // T0: a whole second (what a datetime-local input holds) after the configuration above.
  await sleep(1100);
  t0 = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString();
  await sleep(1100);
  const versions = (await call(adminToken, "GET", `/api/v1/devices/${device.id}/configs?limit=200`)).body.items;
  configAtT0 = versions
    .filter((v) => Date.parse(v.recorded_at) <= Date.parse(t0))
    .sort((a, b) => b.position - a.position)[0];
  assert.ok(configAtT0, `a config version of ${device.name} at or before ${t0}`);

  // A change request on that device, approved by a second person and run to completion.
  const created = await call(adminToken, "POST", "/api/v1/change-requests", {
    title: TITLE,
    reason: "the audit browser test's change",
    ticket: `AUD-${RUN}`,
    target: { kind: "devices", device_ids: [device.id] },
    action: { kind: "script", script: SCRIPT },
    plan: { canaries: 0, batch_size: 1, parallelism: 1, failure_threshold: 1, rollback_on_halt: false },
    risk: "low",
  });
  assert.equal(created.status, 201, `creating the change request: ${created.status} ${created.text}`);
  changeId = created.body.change_request_id;
  const submitted = await call(adminToken, "POST", `/api/v1/change-requests/${changeId}/submit`);
  assert.equal(submitted.status, 200, `submitting: ${submitted.status} ${submitted.text}`);
  const approverToken = await login(APPROVER.email, APPROVER.password);
  const approved = await call(approverToken, "POST", `/api/v1/change-requests/${changeId}/approve`, { comment: "fine for the audit test" });
  assert.equal(approved.status, 200, `approving: ${approved.status} ${approved.text}`);
  let state = approved.body.change_request?.state;
  if (state === "approved") {
    const started = await call(adminToken, "POST", `/api/v1/change-requests/${changeId}/start`);
    assert.ok([200, 202].includes(started.status), `starting: ${started.status} ${started.text}`);
  }
  const runDeadline = Date.now() + 300_000;
  for (;;) {
    const r = await call(adminToken, "GET", `/api/v1/change-requests/${changeId}`);
    assert.equal(r.status, 200, r.text);
    state = r.body.state;
    if (["completed", "failed", "rolled_back", "cancelled"].includes(state)) break;
    assert.ok(Date.now() < runDeadline, `the change request is still ${state} after 300 s`);
    await sleep(1000);
  }
  assert.equal(state, "completed", `the change request ended ${state}`);
  const workflowId = (await call(adminToken, "GET", `/api/v1/change-requests/${changeId}`)).body.workflow_id;
  assert.ok(workflowId, "the change request has its run");
  // The chain as the API gives it, once complete (the run finishes after the request) and
  // settled (the same twice in a row).
  const feedDeadline = Date.now() + 60_000;
  let previous = -1;
  for (;;) {
    chain = await feedAll(adminToken, { correlation_id: changeId });
    const complete =
      chain.some((e) => e.event_type === "ChangeRequestFinished") &&
      chain.some((e) => e.event_type === "WorkflowFinished" && e.stream === `workflow-${workflowId}`) &&
      chain.some((e) => e.stream.startsWith("device-"));
    if (complete && chain.length === previous) break;
    assert.ok(Date.now() < feedDeadline, `the chain is incomplete: ${chain.map((e) => e.event_type).join(", ")}`);
    previous = complete ? chain.length : -1;
    await sleep(1500);
  }

  browser = await launchChromium();
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, baseURL: BASE, acceptDownloads: true });
  context.setDefaultTimeout(20_000);
  await context.addInitScript(() => {
    document.addEventListener("DOMContentLoaded", () => {
      const style = document.createElement("style");
      style.textContent = ".topbar { position: static !important; }";
      document.head.append(style);
    });
  });
  page = watch(await context.newPage());
});

after(async () => {
  await browser?.close();
});

test("the auditor signs in and opens the Audit section", async () => {
  await page.goto("/");
  await page.getByLabel("E-mail").fill(AUDITOR.email);
  await page.getByLabel("Password").fill(AUDITOR.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet" }).waitFor();
  assert.match(await page.locator(".topbar .role").innerText(), /auditor/);
  await page.getByRole("navigation").getByRole("link", { name: "Audit", exact: true }).click();
  await page.getByRole("heading", { name: "Audit" }).waitFor();
  for (const name of ["Timeline", "Device as of", "Verification", "Bundle download", "Reports"]) {
    assert.equal(await page.getByRole("tab", { name }).count(), 1, `the ${name} view is offered`);
  }
  const rows = await allRows();
  assert.ok((await rows.count()) > 0, "the feed shows entries");
  // Unfiltered, the feed holds more than the request's chain (the auditor's own login, ...).
  const others = await page.locator(`[data-testid=audit-table] tr[data-position]:not([data-correlation="${changeId}"])`).count();
  assert.ok(others > 0, "entries of other chains are shown before filtering");
});

test("the timeline filtered to the change request shows exactly its chain, and the URL shares it", async () => {
  assert.ok(changeId, "the change request was made");
  await page.getByLabel("Change request").selectOption(changeId);
  await page.waitForURL((u) => new URL(u).searchParams.get("correlation_id") === changeId);
  await page.locator("[data-testid=correlation-filter]").waitFor();
  assert.match(await page.locator("[data-testid=correlation-filter]").innerText(), new RegExp(TITLE.replace(/[()]/g, "\\$&")));
  const rows = await allRows();
  const n = await rows.count();
  assert.equal(n, chain.length, `the page shows ${n} entries, the API's chain has ${chain.length}`);
  const correlations = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-correlation")));
  assert.deepEqual([...new Set(correlations)], [changeId], "every entry shown belongs to the chain");
  const positions = await rows.evaluateAll((trs) => trs.map((tr) => Number(tr.getAttribute("data-position"))));
  assert.deepEqual(positions, chain.map((e) => e.position), "the same entries, newest first");
  const types = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-event-type")));
  for (const t of ["ChangeRequestCreated", "ChangeRequestSubmitted", "ChangeRequestApproved", "ChangeRequestStarted", "ChangeRequestFinished"]) {
    assert.ok(types.includes(t), `${t} is in the chain`);
  }
  const streams = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-stream")));
  for (const kind of ["change-", "workflow-", "device-"]) {
    assert.ok(streams.some((s) => s.startsWith(kind)), `the chain reaches a ${kind}* stream: ${[...new Set(streams)].join(", ")}`);
  }
  // The approver's approval shows who gave it.
  assert.match(await page.locator('[data-testid=audit-table] tr[data-event-type="ChangeRequestApproved"]').first().innerText(), /Abe Approver/);
  await shot("40-audit-timeline-chain");

  // The URL is the view: opened afresh in another tab (the auditor's same browser, as a
  // shared link is opened), it shows the same chain. One document load, waited for until its
  // session is restored (see `open`): two loads back to back (`goto` elsewhere, then `goto`
  // the URL) cancel the first one's refresh and sign the browser out when the machine is slow.
  const url = page.url();
  const shared = watch(await page.context().newPage());
  try {
    await open(shared, url);
    const sharedRows = await allRows(shared);
    assert.equal(await sharedRows.count(), chain.length, "the shared URL shows the same chain");
    assert.deepEqual(
      await sharedRows.evaluateAll((trs) => trs.map((tr) => Number(tr.getAttribute("data-position")))),
      chain.map((e) => e.position),
      "the shared URL shows the same entries",
    );
    assert.equal(await shared.getByLabel("Correlation id").inputValue(), changeId);
  } finally {
    await shared.close();
  }

  // The CSV of this view holds the same entries.
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download CSV" }).click()]);
  const csv = readFileSync(await download.path(), "utf8");
  const lines = csv.split("\n").filter((l) => l.trim());
  // The feed's columns (by name: the CSV may carry more of them, e.g. names beside the ids).
  const columns = lines[0].split(",");
  assert.equal(columns[0], "position", `the CSV's first column: ${lines[0]}`);
  for (const c of ["recorded_at", "event_type", "stream", "category", "actor", "summary", "correlation_id"]) {
    assert.ok(columns.includes(c), `the CSV has a ${c} column: ${lines[0]}`);
  }
  const data = lines.slice(1);
  assert.equal(data.length, chain.length, `the CSV has ${data.length} rows`);
  assert.deepEqual(data.map((l) => Number(l.split(",")[0])), chain.map((e) => e.position), "the CSV lists the chain's positions");
  assert.ok(data.every((l) => l.includes(changeId)), "every CSV row carries the correlation id");
  await page.locator("[data-testid=csv-saved]").waitFor();
});

test("clearing the filter shows other chains; an entry's correlation id follows its chain", async () => {
  await page.getByRole("button", { name: "Clear correlation filter" }).click();
  await page.waitForURL((u) => !new URL(u).searchParams.has("correlation_id"));
  await allRows();
  assert.ok((await page.locator(`[data-testid=audit-table] tr[data-position]:not([data-correlation="${changeId}"])`).count()) > 0);
  // Only approvals; then the chain of the one our approver gave.
  const input = page.getByLabel("Event type");
  await input.fill("ChangeRequestApproved");
  await input.press("Enter");
  await page.waitForURL((u) => new URL(u).searchParams.get("event_type") === "ChangeRequestApproved");
  const rows = await allRows();
  assert.ok((await rows.count()) >= 1);
  assert.deepEqual(
    [...new Set(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-event-type"))))],
    ["ChangeRequestApproved"],
    "only approvals",
  );
  await shot("41-audit-timeline-approvals");
  await page.locator(`[data-testid=audit-table] tr[data-correlation="${changeId}"]`).first().getByTestId("correlation-link").click();
  await page.waitForURL((u) => {
    const q = new URL(u).searchParams;
    return q.get("correlation_id") === changeId && !q.has("event_type");
  });
  const chainRows = await allRows();
  assert.equal(await chainRows.count(), chain.length, "the whole chain, the event type filter dropped");
});

/** `YYYY-MM-DDTHH:MM:SS` in the browser's time zone (what a datetime-local input takes). */
async function localInput(iso) {
  return page.evaluate((i) => {
    const d = new Date(i);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }, iso);
}

test("a device as of a past time: its state and the configuration it had then", async () => {
  assert.ok(configAtT0, "the config at T0 is known");
  await page.getByRole("tab", { name: "Device as of" }).click();
  await page.waitForURL(/\/audit\/as-of/);
  await page.locator('form[aria-label="Device as of"]').getByLabel("Device").selectOption(device.id);
  await page.locator('form[aria-label="Device as of"]').getByLabel("As of").fill(await localInput(t0));
  await page.waitForURL((u) => new URL(u).searchParams.get("at") === t0 && new URL(u).searchParams.get("device") === device.id);
  const config = page.locator("[data-testid=asof-config]");
  await waitForAttr("[data-testid=asof-config]", "data-commit", configAtT0.commit, "the config shown as of T0 is the version of T0");
  assert.equal(await config.getAttribute("data-sha256"), configAtT0.sha256);
  assert.equal(Number(await config.getAttribute("data-position")), configAtT0.position);
  assert.match(await config.innerText(), new RegExp(configAtT0.commit), "the commit is shown");
  const text = await page.locator("[data-testid=asof-config-text]").innerText();
  assert.match(text, /\/ip/, "the config text is shown");
  assert.doesNotMatch(text, new RegExp(POOL), "the pool added after T0 is not in the config then");
  const state = page.locator("[data-testid=asof-state]");
  assert.equal((await state.locator('[data-fact="Name"]').innerText()).trim(), device.name);
  assert.match(await state.locator('[data-fact="Registered"]').innerText(), /registered/);
  assert.match(await state.locator('[data-fact="Status"]').innerText(), /online|offline|unknown/);
  assert.match(await state.locator('[data-fact="RouterOS"]').innerText(), /\d+\.\d+/);
  assert.match(await state.locator('[data-fact="Polling"]').innerText(), /active|suspended/);
  const position = Number(await state.getAttribute("data-position"));
  assert.ok(position >= configAtT0.position, `the state is folded through position ${position}`);
  assert.ok(position < Math.min(...chain.map((e) => e.position)), "and not through anything the change request caused");
  // Versions known then: none after T0.
  const versions = page.locator("[data-testid=asof-versions] tbody tr");
  const known = await versions.evaluateAll((trs) => trs.map((tr) => Number(tr.getAttribute("data-position"))));
  assert.ok(known.length >= 1 && known.every((p) => p <= position), `versions known then: ${known.join(", ")}`);
  // The fleet as of T0: the three demo devices, ours with the same commit.
  const fleet = page.locator("[data-testid=fleet-asof] tbody tr");
  await fleet.first().waitFor();
  assert.equal(await fleet.count(), 3);
  assert.equal(await page.locator(`[data-testid=fleet-asof] tr[data-device-id="${device.id}"] td[data-commit]`).getAttribute("data-commit"), configAtT0.commit);
  await shot("42-audit-device-as-of");

  // Now: the change request's pool is in the configuration.
  await page.getByRole("button", { name: "Now", exact: true }).click();
  await page.waitForFunction((c) => {
    const el = document.querySelector("[data-testid=asof-config]");
    return el && el.getAttribute("data-commit") !== c;
  }, configAtT0.commit);
  assert.match(await page.locator("[data-testid=asof-config-text]").innerText(), new RegExp(`add name=${POOL} ranges=10\\.96\\.0\\.10-10\\.96\\.0\\.20`));
  // Picking the version of T0 moves the time to it.
  await page
    .locator(`[data-testid=asof-versions] tbody tr[data-position="${configAtT0.position}"]`)
    .getByRole("button", { name: /^as of version/ })
    .click();
  await waitForAttr("[data-testid=asof-config]", "data-commit", configAtT0.commit, "picking the version of T0 shows it");
  assert.equal(Date.parse(new URL(page.url()).searchParams.get("at")), Date.parse(configAtT0.recorded_at), "the time is the version's");
  assert.doesNotMatch(await page.locator("[data-testid=asof-config-text]").innerText(), new RegExp(POOL));
  await shot("43-audit-device-version-picked");
});

test("verification runs, says OK, and is recorded as a security event", async () => {
  await page.getByRole("tab", { name: "Verification" }).click();
  await page.getByRole("button", { name: "Verify history now" }).click();
  const result = page.locator("[data-testid=verify-result]");
  await result.waitFor({ timeout: 60_000 });
  assert.equal(await result.getAttribute("data-ok"), "true", await result.innerText());
  const signed = Number(await result.getAttribute("data-signed-through"));
  assert.ok(signed >= 1, `signed through position ${signed}`);
  assert.match(await result.innerText(), new RegExp(`OK[\\s\\S]*signed through position ${signed}`));
  await page.locator("[data-testid=checkpoint-table] tbody tr").first().waitFor();
  await shot("44-audit-verification");
  // The run is in the feed: an AuditVerificationRun by the auditor.
  await open(page, `/audit?event_type=AuditVerificationRun&actor=${encodeURIComponent(`user:${auditorId}`)}`);
  const rows = await allRows();
  assert.ok((await rows.count()) >= 1, "the verification run is recorded");
  assert.match(await rows.first().innerText(), /Ada Auditor/);
});

test("the bundle: a bad bound shows the API's problem; the download matches the SHA-256 shown", async () => {
  await page.getByRole("tab", { name: "Bundle download" }).click();
  const form = page.locator('form[aria-label="Audit bundle"]');
  await form.getByLabel("From (optional)").fill("not-a-time");
  await form.getByRole("button", { name: "Download bundle" }).click();
  const problem = page.locator('[role=alert][data-problem="bad-request"]');
  await problem.waitFor();
  assert.match(await problem.innerText(), /400/);
  // A bound that is not a position goes as a time (`from_time`); the API's problem names it.
  assert.match(await problem.innerText(), /from_time/);
  assert.equal(await page.locator("[data-testid=bundle-result]").count(), 0, "no file from a refused request");
  await shot("45-audit-bundle-problem");

  await form.getByLabel("From (optional)").fill("");
  const [download] = await Promise.all([page.waitForEvent("download"), form.getByRole("button", { name: "Download bundle" }).click()]);
  const bytes = readFileSync(await download.path());
  const result = page.locator("[data-testid=bundle-result]");
  await result.waitFor();
  const sha = createHash("sha256").update(bytes).digest("hex");
  assert.equal((await page.locator("[data-testid=bundle-sha256]").innerText()).trim(), sha, "the page shows the file's SHA-256");
  assert.equal(Number(await result.getAttribute("data-bytes")), bytes.length, "and its size");
  assert.match(await page.locator("[data-testid=bundle-size]").innerText(), new RegExp(bytes.length.toLocaleString("en")));
  assert.equal(await page.locator("[data-testid=bundle-file]").innerText(), download.suggestedFilename());
  assert.match(download.suggestedFilename(), /\.tar$/);
  await result.getByText("matches the server's").waitFor();
  // A tar whose first member is manifest.json (the name field: bytes 0..100).
  assert.equal(bytes.subarray(0, 100).toString("latin1").replace(/\0+$/, ""), "manifest.json");
  assert.equal(await page.locator("[data-testid=bundle-manifest]").getAttribute("data-first-member"), "manifest.json");
  const commands = await page.locator("[data-testid=verify-commands]").innerText();
  assert.match(commands, new RegExp(`netledger audit verify ${download.suggestedFilename().replace(/\./g, "\\.")} --trusted-key <platform key>`));
  assert.match(commands, /python3 tools\/audit-verify\.py .+ --trusted-key <platform key>/);
  await shot("46-audit-bundle");
  // The server recorded the download with the same SHA-256.
  const exported = await feedAll(adminToken, { event_type: "AuditBundleExported", actor: `user:${auditorId}` });
  assert.ok(
    exported.some((e) => e.summary.includes(sha.slice(0, 12))),
    `an AuditBundleExported event names ${sha.slice(0, 12)}: ${exported.map((e) => e.summary).join(" | ")}`,
  );
});

test("reports: the change log as a PDF and the inventory as CSV", async () => {
  await page.getByRole("tab", { name: "Reports" }).click();
  const row = (kind) => page.locator(`[data-testid=reports] tr[data-kind=${kind}]`);
  const [pdf] = await Promise.all([page.waitForEvent("download"), row("change-log").getByRole("button", { name: "PDF" }).click()]);
  const pdfBytes = readFileSync(await pdf.path());
  assert.equal(pdfBytes.subarray(0, 5).toString("latin1"), "%PDF-", "a PDF document");
  assert.match(pdf.suggestedFilename(), /change-log\.pdf$/);
  assert.match(pdfBytes.toString("latin1"), /Change log/, "its title is in the page text");
  const [csv] = await Promise.all([page.waitForEvent("download"), row("inventory").getByRole("button", { name: "CSV" }).click()]);
  const text = readFileSync(await csv.path(), "utf8");
  assert.match(text, /^# Device inventory\n/);
  assert.match(text, /\nname,device_id,status,routeros_version,config_commit,position\n/);
  const devices = text.split("\n").filter((l) => l && !l.startsWith("#")).length - 1;
  assert.ok(devices >= 1, `the inventory lists the demo fleet: ${text}`);
  const result = page.locator("[data-testid=report-result]");
  assert.equal(await result.getAttribute("data-file"), csv.suggestedFilename());
  await shot("47-audit-reports");
});

test("no uncaught page errors and no 5xx answers", () => {
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(failedResponses, []);
});
