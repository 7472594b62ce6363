// Browser test of change control (issue #13) against a real backend (`netledger all
// --demo-fleet 3`, started by scripts/test-frontend), Debian's chromium driven by
// playwright-core like tests/ui.test.mjs: an operator writes a change request in the UI
// (script in the CodeMirror editor, the three demo devices, one canary), submits it; a
// second user, an approver, approves it in their own session (four eyes); the operator
// starts it and the request's page follows the rollout live to `completed`; the audit feed
// finds the request's events. An emergency request shows its red banner, runs before its
// approvals (break-glass), gets its retrospective review from the approver, and its entries
// (and its run's) carry the EMERGENCY badge in the audit feed. Screenshots go to test-results/screenshots/
// (gitignored), named 2x-changes-*.
//
// First the admin's tenant is made change-controlled (`required`; ui.test.mjs, which runs
// earlier, sets it `optional` for its direct push tests) and a direct config push must be
// refused (403, pointing at change requests).
//
// Environment: NL_UI_BASE_URL, NL_UI_ADMIN_EMAIL, NL_UI_ADMIN_PASSWORD, optional
// NL_UI_CHROMIUM (default /usr/bin/chromium), NL_UI_SCREENSHOTS.

import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";

import { BASE, EMAIL, PASSWORD, SHOTS, launchChromium, call, login } from "./harness.mjs";

const RUN = `${process.pid}-${Date.now().toString(36)}`;
const OPERATOR = { email: `change-operator-${RUN}@netledger.test`, name: "Olga Operator", password: "operator-password-1234" };
const APPROVER = { email: `change-approver-${RUN}@netledger.test`, name: "Arne Approver", password: "approver-password-1234" };
const TITLE = `Add the change pool (${RUN})`;
// Pool names unique per run: a second run against the same backend must change something.
const SCRIPT = `/ip pool\nadd name=change-pool-${process.pid} ranges=10.98.0.10-10.98.0.20`;

const adminToken = await login(EMAIL, PASSWORD);

let browser;
const pageErrors = [];
const failedResponses = [];
let operator; // page signed in as the operator
let approver; // page signed in as the approver (another browser context)
let changeId = null;

async function shot(page, name) {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function newSession(who) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, baseURL: BASE });
  context.setDefaultTimeout(20_000);
  await context.addInitScript(() => {
    document.addEventListener("DOMContentLoaded", () => {
      const style = document.createElement("style");
      style.textContent = ".topbar { position: static !important; }";
      document.head.append(style);
    });
  });
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(`${who.email}: ${e}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`${who.email} console: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 500) failedResponses.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  await page.goto("/");
  await page.getByLabel("E-mail").fill(who.email);
  await page.getByLabel("Password").fill(who.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet" }).waitFor();
  await page.locator('.live-indicator[data-live="live"]').waitFor({ timeout: 20_000 });
  return page;
}

async function changeState(page) {
  return page.locator("[data-testid=change-page]").getAttribute("data-state");
}

async function waitForState(page, states, timeout = 30_000) {
  await page.waitForFunction(
    (s) => s.includes(document.querySelector("[data-testid=change-page]")?.getAttribute("data-state") ?? ""),
    states,
    { timeout },
  );
  return changeState(page);
}

before(async () => {
  for (const u of [
    { ...OPERATOR, role: "operator" },
    { ...APPROVER, role: "approver" },
  ]) {
    const r = await call(adminToken, "POST", "/api/v1/users", { email: u.email, display_name: u.name, role: u.role, password: u.password });
    assert.equal(r.status, 201, `creating ${u.role}: ${r.status} ${r.text}`);
  }
  // The preview diffs each device's latest archived configuration: wait for the demo
  // fleet's first archive of every device (taken shortly after the backend starts).
  const devices = (await call(adminToken, "GET", "/api/v1/devices?limit=50")).body.items;
  assert.equal(devices.length, 3, "the demo fleet has 3 devices");
  const deadline = Date.now() + 120_000;
  for (const d of devices) {
    for (;;) {
      const r = await call(adminToken, "GET", `/api/v1/devices/${d.id}/configs?limit=1`);
      assert.equal(r.status, 200, `config history of ${d.name}: ${r.status} ${r.text}`);
      if (r.body.items.length) break;
      assert.ok(Date.now() < deadline, `${d.name} has no archived configuration after 120 s`);
      await new Promise((ok) => setTimeout(ok, 1000));
    }
  }
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
});

test("the tenant is change-controlled: a direct config push is refused", async () => {
  const me = await call(adminToken, "GET", "/api/v1/auth/me");
  assert.equal(me.status, 200, `auth/me: ${me.status} ${me.text}`);
  const policy = await call(adminToken, "PUT", `/api/v1/tenants/${me.body.tenant_id}/change-policy`, {
    change_control: "required",
    approvals: { low: 1, medium: 1, high: 2 },
  });
  assert.equal(policy.status, 200, `setting change control required: ${policy.status} ${policy.text}`);
  assert.equal(policy.body.change_control, "required");
  const read = await call(adminToken, "GET", `/api/v1/tenants/${me.body.tenant_id}/change-policy`);
  assert.equal(read.status, 200, `reading the change policy: ${read.status} ${read.text}`);
  assert.equal(read.body.change_control, "required");
  const devices = (await call(adminToken, "GET", "/api/v1/devices?limit=50")).body.items;
  assert.ok(devices.length >= 1, "the demo fleet has devices");
  const res = await fetch(`${BASE}/api/v1/workflows/config-push`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${adminToken}`,
      "content-type": "application/json",
      accept: "application/json",
      "idempotency-key": `changes-test-direct-${RUN}`,
    },
    body: JSON.stringify({ device_id: devices[0].id, script: "/ip pool\nadd name=direct-pool ranges=10.97.0.10-10.97.0.20" }),
  });
  const text = await res.text();
  assert.equal(res.status, 403, `a direct push in a change-controlled tenant: ${res.status} ${text}`);
  const problem = JSON.parse(text);
  assert.match(problem.detail ?? "", /change request/, `the refusal points at change requests: ${text}`);
});

test("an operator writes a change request and submits it", async () => {
  operator = await newSession(OPERATOR);
  await operator.getByRole("link", { name: "Changes", exact: true }).click();
  await operator.getByRole("heading", { name: "Changes" }).waitFor();
  await operator.getByRole("link", { name: "New change request" }).click();
  const form = operator.locator('form[aria-label="New change request"]');
  await form.waitFor();
  await form.getByLabel(/^Title/).fill(TITLE);
  await form.getByLabel(/^Ticket/).fill(`CHG-${RUN}`);
  await form.getByLabel(/^Reason/).fill("a pool for the browser test of change control");
  // The script goes into the CodeMirror editor (line numbers in its gutter).
  const editor = form.locator(".cm-content");
  await editor.waitFor();
  await editor.fill(SCRIPT);
  assert.ok((await form.locator(".cm-gutters .cm-lineNumbers").count()) >= 1, "the editor shows line numbers");
  // Every demo device, the first picked is the canary; batches of 2.
  const devices = (await call(adminToken, "GET", "/api/v1/devices?limit=50")).body.items;
  assert.equal(devices.length, 3, "the demo fleet has 3 devices");
  for (const d of devices) await form.getByLabel(`include ${d.name}`).check();
  await form.getByLabel(/^Canaries/).fill("1");
  await form.getByLabel(/^Batch size/).fill("2");
  await form.getByLabel(/^Parallelism/).fill("2");
  await shot(operator, "20-changes-new");
  await form.getByRole("button", { name: "Create draft" }).click();
  await operator.locator("[data-testid=change-page]").waitFor();
  changeId = operator.url().split("/changes/")[1]?.split(/[?#/]/)[0];
  assert.match(changeId ?? "", /^[0-9a-f-]{36}$/, `landed on ${operator.url()}`);
  assert.equal(await operator.locator("[data-testid=change-title]").innerText(), TITLE);
  assert.equal(await changeState(operator), "draft");
  // The preview shows per-device diffs side by side (the pool line is added).
  const preview = operator.locator("[data-testid=preview-device]");
  try {
    await preview.first().waitFor({ timeout: 15_000 });
  } catch {
    await operator.getByRole("button", { name: "Compute again" }).click();
    await preview.first().waitFor({ timeout: 60_000 });
  }
  const diffs = operator.locator("[data-testid=preview-diff]");
  await diffs.first().waitFor();
  assert.ok((await diffs.first().locator(".d-add").filter({ hasText: "change-pool" }).count()) >= 1, "the preview adds the pool");
  await shot(operator, "21-changes-draft-preview");
  await operator.getByRole("button", { name: "Submit for approval" }).click();
  assert.equal(await waitForState(operator, ["submitted"]), "submitted");
  // The author cannot approve their own request: no approve button for an operator.
  assert.equal(await operator.getByRole("button", { name: /^Approve/ }).count(), 0);
  const panel = operator.locator("[data-testid=four-eyes]");
  assert.ok(Number(await panel.getAttribute("data-missing")) >= 1, "approvals are missing");
});

test("a second user, an approver, approves it (four eyes)", async () => {
  assert.ok(changeId, "the change request was created");
  approver = await newSession(APPROVER);
  await approver.goto("/changes?state=submitted");
  const row = approver.locator(`[data-testid=change-table] tr[data-change="${changeId}"]`);
  await row.waitFor();
  assert.match(await row.innerText(), /submitted/);
  await shot(approver, "22-changes-list-submitted");
  await row.getByRole("link", { name: TITLE }).click();
  const panel = approver.locator("[data-testid=four-eyes]");
  await panel.waitFor();
  await panel.getByLabel(/^Comment/).fill("looks right: a pool nobody uses yet");
  await panel.getByRole("button", { name: "Approve" }).click();
  await approver.waitForFunction(
    () => document.querySelector("[data-testid=four-eyes]")?.getAttribute("data-missing") === "0",
    null,
    { timeout: 20_000 },
  );
  const approval = panel.locator("tbody tr").first();
  assert.match(await approval.innerText(), /Arne Approver|…/);
  assert.match(await approval.innerText(), /looks right/);
  const state = await waitForState(approver, ["approved", "scheduled", "running", "completed"]);
  assert.ok(["approved", "scheduled", "running", "completed"].includes(state), `approved, now ${state}`);
  await shot(approver, "23-changes-approved");
});

test("the operator starts it and the page follows the rollout live to completion", async () => {
  assert.ok(changeId, "the change request was created");
  await operator.evaluate(() => {
    window.__noReload = true;
  });
  // The operator's page learned of the approval through live events.
  const state = await waitForState(operator, ["approved", "scheduled", "running", "completed"], 30_000);
  if (state === "approved") {
    await operator.getByRole("button", { name: /^(Start|Schedule)$/ }).click();
  }
  // Running: the rollout shows on the request's page (canary first, then batches).
  await operator.locator("[data-testid=rollout-view]").waitFor({ timeout: 60_000 });
  await shot(operator, "24-changes-running");
  const final = await waitForState(operator, ["completed", "failed", "rolled_back", "cancelled"], 300_000);
  assert.equal(final, "completed", `the change ended ${final}: ${await operator.locator("[data-testid=change-page]").innerText()}`);
  await operator.waitForFunction(
    () => document.querySelector("[data-testid=rollout-view]")?.getAttribute("data-state") === "completed",
    null,
    { timeout: 30_000 },
  );
  const rollout = operator.locator("[data-testid=rollout-view]");
  assert.match(await rollout.innerText(), /3\/3/);
  assert.match(await rollout.innerText(), /canary/);
  assert.equal(await operator.evaluate(() => window.__noReload), true, "the page followed without a reload");
  // The timeline tells the story.
  const timeline = operator.locator("[data-testid=change-timeline]");
  for (const t of ["ChangeRequestCreated", "ChangeRequestSubmitted", "ChangeRequestApproved", "ChangeRequestStarted"]) {
    await timeline.locator(`li[data-event="${t}"]`).first().waitFor({ timeout: 20_000 });
  }
  await shot(operator, "25-changes-completed");
});

test("the audit feed finds the change request", async () => {
  assert.ok(changeId, "the change request was created");
  const admin = await newSession({ email: EMAIL, password: PASSWORD });
  await admin.getByRole("link", { name: "Audit", exact: true }).click();
  await admin.getByRole("heading", { name: "Audit" }).waitFor();
  await admin.goto(`/audit?stream=change-${changeId}`);
  const rows = admin.locator("[data-testid=audit-table] tbody tr");
  await rows.first().waitFor();
  const text = await admin.locator("[data-testid=audit-table]").innerText();
  for (const t of ["ChangeRequestCreated", "ChangeRequestApproved", "ChangeRequestFinished"]) {
    assert.match(text, new RegExp(t), `${t} is in the audit feed`);
  }
  // The stream links back to the request's page.
  await rows.first().getByRole("link", { name: `change-${changeId}` }).click();
  await admin.locator("[data-testid=change-page]").waitFor();
  await shot(admin, "26-changes-audit-link");
  await admin.context().close();
});

test("an emergency request is unmistakable: break-glass run, retrospective review, flagged audit", async () => {
  const token = await login(OPERATOR.email, OPERATOR.password);
  const devices = (await call(token, "GET", "/api/v1/devices?limit=50")).body.items;
  const r = await call(token, "POST", "/api/v1/change-requests", {
    title: `Emergency (${RUN})`,
    reason: "the browser test's emergency",
    ticket: null,
    target: { kind: "devices", device_ids: [devices[0].id] },
    action: { kind: "script", script: `/ip pool\nadd name=emergency-pool-${process.pid} ranges=10.99.0.10-10.99.0.20` },
    plan: { canaries: 0, batch_size: 1, parallelism: 1, failure_threshold: 1, rollback_on_halt: false },
    risk: "medium",
    window: null,
    overrides: { allow_without_timer: false, accept_policy_violations: false },
    emergency: true,
    emergency_reason: "core link down",
  });
  assert.equal(r.status, 201, `creating an emergency request: ${r.status} ${r.text}`);
  const id = r.body.change_request_id;
  await operator.goto("/changes");
  const row = operator.locator(`[data-testid=change-table] tr[data-change="${id}"]`);
  await row.waitFor();
  assert.equal(await row.locator('.badge[data-value="emergency"]').count(), 1, "the list marks it");
  await operator.goto(`/changes/${id}`);
  const banner = operator.locator("[data-testid=emergency-banner]");
  await banner.waitFor();
  assert.match(await banner.innerText(), /EMERGENCY CHANGE/);
  assert.match(await banner.innerText(), /core link down/);
  await shot(operator, "27-changes-emergency");
  // Break-glass: the author submits and starts it at once, before any approval.
  await operator.getByRole("button", { name: "Submit for approval" }).click();
  assert.equal(await waitForState(operator, ["submitted"]), "submitted");
  await operator.getByRole("button", { name: "Start" }).click();
  const final = await waitForState(operator, ["completed", "failed", "rolled_back", "cancelled"], 300_000);
  assert.equal(final, "completed", `the emergency change ended ${final}: ${await operator.locator("[data-testid=change-page]").innerText()}`);
  // It ran unapproved: its retrospective review is pending, and an approver gives it.
  await operator.locator('.badge[data-value="review_pending"]').waitFor({ timeout: 20_000 });
  assert.match(await banner.innerText(), /retrospective approval/);
  await shot(operator, "28-changes-emergency-review-pending");
  await approver.goto(`/changes/${id}`);
  const panel = approver.locator("[data-testid=four-eyes]");
  await panel.waitFor();
  await panel.getByLabel(/^Comment/).fill("reviewed after the fact: the pool was needed");
  await panel.getByRole("button", { name: "Approve retrospectively" }).click();
  await approver.waitForFunction(() => document.querySelector("[data-testid=four-eyes]")?.getAttribute("data-missing") === "0", null, {
    timeout: 20_000,
  });
  assert.match(await panel.locator("tbody tr").first().innerText(), /retrospective/);
  assert.equal(await approver.locator('.badge[data-value="review_pending"]').count(), 0, "the review is done");
  await shot(approver, "29-changes-emergency-reviewed");
  // The audit feed flags every entry of the emergency request and of its run, and none of
  // the ordinary request's.
  const dto = await call(token, "GET", `/api/v1/change-requests/${id}`);
  assert.equal(dto.status, 200, dto.text);
  assert.ok(dto.body.workflow_id, "the emergency request has its run");
  const admin = await newSession({ email: EMAIL, password: PASSWORD });
  for (const stream of [`change-${id}`, `workflow-${dto.body.workflow_id}`]) {
    await admin.goto(`/audit?stream=${stream}`);
    const rows = admin.locator("[data-testid=audit-table] tbody tr");
    await rows.first().waitFor();
    if (stream.startsWith("change-")) {
      await admin.locator('[data-testid=audit-table] tbody tr[data-event-type="ChangeRequestApproved"]').waitFor();
    }
    const n = await rows.count();
    assert.ok(n >= 2, `${stream} has ${n} audit entries`);
    assert.equal(await rows.locator('.badge[data-value="emergency"]').count(), n, `every entry of ${stream} has its EMERGENCY badge`);
    assert.equal(await admin.locator('[data-testid=audit-table] tbody tr[data-emergency="true"]').count(), n);
    assert.match(await rows.first().innerText(), /EMERGENCY/);
    if (stream.startsWith("change-")) await shot(admin, "30-changes-audit-emergency");
  }
  assert.ok(changeId, "the ordinary change request was created");
  await admin.goto(`/audit?stream=change-${changeId}`);
  await admin.locator("[data-testid=audit-table] tbody tr").first().waitFor();
  assert.equal(await admin.locator('[data-testid=audit-table] .badge[data-value="emergency"]').count(), 0, "an ordinary request is not flagged");
  await admin.context().close();
});

test("a submission with policy violations is refused and names them", async () => {
  const token = await login(OPERATOR.email, OPERATOR.password);
  const devices = (await call(token, "GET", "/api/v1/devices?limit=50")).body.items;
  const r = await call(token, "POST", "/api/v1/change-requests", {
    title: `Violating (${RUN})`,
    reason: "touches a forbidden menu",
    target: { kind: "devices", device_ids: [devices[1].id] },
    action: { kind: "script", script: "/user\nadd name=intruder group=full password=intruder-password" },
    plan: { canaries: 0, batch_size: 1, parallelism: 1, failure_threshold: 1, rollback_on_halt: false },
    risk: "low",
  });
  assert.equal(r.status, 201, `creating a violating request: ${r.status} ${r.text}`);
  const id = r.body.change_request_id;
  await operator.goto(`/changes/${id}`);
  await operator.locator("[data-testid=change-page]").waitFor();
  await operator.getByRole("button", { name: "Submit for approval" }).click();
  const box = operator.locator("[data-testid=policy-violations]");
  await box.waitFor();
  assert.match(await box.innerText(), new RegExp(devices[1].name), "the refusal names the device");
  assert.match(await box.innerText(), /user/i, "and its violation");
  assert.equal(await changeState(operator), "draft", "nothing was submitted");
  await shot(operator, "31-changes-policy-violations");
  const w = await call(token, "POST", `/api/v1/change-requests/${id}/withdraw`, { reason: "test done" });
  assert.equal(w.status, 200, `withdrawing: ${w.status} ${w.text}`);
});

test("no uncaught page errors and no 5xx answers", () => {
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(failedResponses, []);
});
