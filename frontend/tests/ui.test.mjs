// Browser tests of the built UI against a real backend (`netledger all --demo-fleet 3`,
// started by scripts/test-frontend): Debian's chromium driven by playwright-core. Scenarios
// run in order in one browser tab, like an operator's session. Screenshots of each main
// screen go to test-results/screenshots/ (gitignored).
//
// Environment: NL_UI_BASE_URL, NL_UI_ADMIN_EMAIL, NL_UI_ADMIN_PASSWORD, optional
// NL_UI_CHROMIUM (default /usr/bin/chromium), NL_UI_SCREENSHOTS.

import assert from "node:assert/strict";
import { createHash, generateKeyPairSync } from "node:crypto";
import path from "node:path";
import { after, before, test } from "node:test";

import { BASE, EMAIL, PASSWORD, SHOTS, launchChromium } from "./harness.mjs";

const PUSH_SCRIPT = "/ip pool\nadd name=ui-pool ranges=10.99.0.10-10.99.0.20";

let browser;
let page;
const pageErrors = [];
const failedResponses = [];
let deviceId = null;
let deviceName = null;

/**
 * A fresh Ed25519 key pair: the private key as PKCS#8 PEM (what the form takes), and what the
 * device page should show of it, computed here: the OpenSSH public key's base64 (the wire
 * encoding `string "ssh-ed25519", string key`) and its `SHA256:` fingerprint.
 */
function ed25519Key() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519", {
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "der" },
  });
  const raw = publicKey.subarray(publicKey.length - 32);
  const field = (b) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    return Buffer.concat([len, b]);
  };
  const blob = Buffer.concat([field(Buffer.from("ssh-ed25519")), field(raw)]);
  return {
    privatePem: privateKey,
    publicB64: blob.toString("base64"),
    fingerprint: `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`,
  };
}

async function shot(name, { top = true } = {}) {
  if (top) await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** A token of our own (a separate session) for changes made "by someone else". */
async function apiToken() {
  const res = await fetch(`${BASE}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
  });
  const body = await res.text();
  assert.equal(res.status, 200, `API login: ${res.status} ${body}`);
  return JSON.parse(body).access_token;
}

/** Sets the admin's tenant's change control (`optional` or `required`). */
async function setChangeControl(mode) {
  const token = await apiToken();
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const me = await (await fetch(`${BASE}/api/v1/auth/me`, { headers })).json();
  const res = await fetch(`${BASE}/api/v1/tenants/${me.tenant_id}/change-policy`, {
    method: "PUT",
    headers,
    body: JSON.stringify({ change_control: mode, approvals: { low: 1, medium: 1, high: 2 } }),
  });
  assert.equal(res.status, 200, `set change control ${mode}: ${res.status} ${await res.text()}`);
}

before(async () => {
  browser = await launchChromium();
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, baseURL: BASE });
  context.setDefaultTimeout(20_000);
  page = await context.newPage();
  // Full-page screenshots with a sticky top bar show it mid-page; screenshots only.
  await context.addInitScript(() => {
    document.addEventListener("DOMContentLoaded", () => {
      const style = document.createElement("style");
      style.textContent = ".topbar { position: static !important; }";
      document.head.append(style);
    });
  });
  // These tests drive the direct push, upgrade and rollout screens, which a lab tenant keeps:
  // change control `optional`. (The bootstrap tenant is change-controlled by default;
  // changes.test.mjs sets it back to `required` and covers that path.)
  await setChangeControl("optional");
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    // Failed requests are logged by the browser itself; the response listener judges them.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`console: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 500) failedResponses.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
});

after(async () => {
  await browser?.close();
});

test("a wrong password is refused and the problem is shown", async () => {
  await page.goto("/");
  await page.getByLabel("E-mail").fill(EMAIL);
  await page.getByLabel("Password").fill("definitely-not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  const problem = page.locator('[role=alert][data-problem="invalid-credentials"]');
  await problem.waitFor();
  assert.match(await problem.innerText(), /401/);
  await shot("01-login-error");
  // Still on the sign-in form.
  assert.equal(await page.getByRole("button", { name: "Sign in" }).count(), 1);
});

test("sign in lands on the fleet", async () => {
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet" }).waitFor();
  await page.locator('.live-indicator[data-live="live"]').waitFor({ timeout: 20_000 });
});

test("a reload restores the session from the refresh cookie, in two tabs at once", async () => {
  // Both tabs refresh with the same cookie at the same moment: the UI serialises refreshes
  // (Web Locks across tabs), otherwise the server's reuse detection would revoke the session.
  const other = await page.context().newPage();
  await Promise.all([page.reload(), other.goto("/workflows")]);
  await page.getByRole("heading", { name: "Fleet" }).waitFor();
  await other.getByRole("heading", { name: "Workflows" }).waitFor();
  await other.close();
  // The session is still good afterwards: a third load refreshes again.
  await page.reload();
  await page.getByRole("heading", { name: "Fleet" }).waitFor();
  await page.locator('.live-indicator[data-live="live"]').waitFor();
});

test("the fleet shows the 3 demo devices online", async () => {
  await page.evaluate(() => {
    window.__noReload = true;
  });
  const rows = page.locator('[data-testid=device-table] tbody tr');
  // The poller reports each device online after its first poll.
  await page.waitForFunction(
    () => {
      const trs = document.querySelectorAll("[data-testid=device-table] tbody tr");
      return trs.length === 3 && [...trs].every((tr) => tr.querySelector('.badge[data-value="online"]'));
    },
    null,
    // The first poll of each device comes within one poll interval (60 s, jittered).
    { timeout: 180_000 },
  );
  assert.equal(await rows.count(), 3);
  assert.equal(await page.evaluate(() => window.__noReload), true, "the fleet updated without a reload");
  for (let i = 0; i < 3; i++) {
    const text = await rows.nth(i).innerText();
    assert.match(text, /online/);
    assert.match(text, /\d+\.\d+/, "a RouterOS version is shown");
  }
  await shot("02-fleet");
  // Filters go to the API: a status nobody has gives an empty list.
  await page.getByLabel("Status").selectOption("offline");
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=device-table] tbody tr").length === 0);
  await page.getByLabel("Status").selectOption("");
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=device-table] tbody tr").length === 3);
});

test("a device shows its facts and config versions", async () => {
  const first = page.locator("[data-testid=device-table] tbody tr").first();
  deviceName = await first.getAttribute("data-device");
  await first.getByRole("link", { name: deviceName }).click();
  await page.locator("[data-testid=device-name]").waitFor();
  assert.equal(await page.locator("[data-testid=device-name]").innerText(), deviceName);
  deviceId = await page.locator("[data-device-id]").getAttribute("data-device-id");
  assert.match(deviceId, /^[0-9a-f-]{36}$/);
  const facts = page.locator("[data-testid=facts]");
  assert.match(await facts.locator('[data-fact="RouterOS"]').innerText(), /\d+\.\d+/);
  assert.notEqual((await facts.locator('[data-fact="Board"]').innerText()).trim(), "—");
  assert.match(await facts.locator('[data-fact="Status"]').innerText(), /online/);
  // The poller's first export is recorded as a config version.
  await page.locator("[data-testid=config-versions] tbody tr").first().waitFor({ timeout: 120_000 });
  await page.locator("#metrics .chart").first().waitFor();
  await shot("03-device");
});

test("a backup runs and finishes through live updates, without a reload", async () => {
  await page.evaluate(() => {
    window.__noReload = true;
  });
  const before = await page.locator("[data-testid=config-versions] tbody tr").count();
  const received = await page.evaluate(() => window.__netledgerLive.received);
  await page.getByRole("button", { name: "Start backup" }).click();
  const card = page.locator("[data-testid=active-workflow]").first();
  await card.waitFor();
  await page.waitForFunction(
    () => document.querySelector("[data-testid=active-workflow]")?.getAttribute("data-state") === "succeeded",
    null,
    { timeout: 90_000 },
  );
  // Steps arrived with it.
  assert.ok((await card.locator("[data-step]").count()) > 0, "the steps are shown");
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was not reloaded");
  // The run's journal came over the live connection (started, steps, finished).
  const now = await page.evaluate(() => window.__netledgerLive.received);
  assert.ok(now - received >= 4, `only ${now - received} live events during the backup`);
  // The backup's snapshot shows up in the history (the list reloads on the device's events).
  await page.locator('[data-testid=config-versions] tbody tr[data-reason="on_demand"]').first().waitFor({ timeout: 30_000 });
  assert.ok((await page.locator("[data-testid=config-versions] tbody tr").count()) > before);
});

test("a config push commits and its change shows in a new config version's diff", async () => {
  await page.getByRole("tab", { name: "Config push" }).click();
  await page.locator('textarea[name="script"]').fill(PUSH_SCRIPT);
  await page.getByRole("button", { name: "Push change" }).click();
  const card = page.locator("[data-testid=active-workflow]").first();
  await page.waitForFunction(
    () => {
      const s = document.querySelector("[data-testid=active-workflow]")?.getAttribute("data-state");
      return s && ["committed", "rolled_back", "failed", "cancelled"].includes(s);
    },
    null,
    { timeout: 120_000 },
  );
  const state = await card.getAttribute("data-state");
  assert.equal(state, "committed", `push ended ${state}: ${await card.innerText()}`);
  assert.ok((await card.locator('[data-step="commit"]').count()) === 1, "the commit step is in the timeline");
  // The post-push snapshot is the newest version; the default comparison is against the
  // version before it.
  await page.locator('[data-testid=config-versions] tbody tr[data-reason="post_push"]').first().waitFor({ timeout: 30_000 });
  await page.getByRole("button", { name: "Compare selected" }).click();
  const diff = page.locator("[data-testid=config-diff]");
  await diff.waitFor();
  const text = await diff.innerText();
  assert.match(text, /ui-pool/);
  assert.match(text, /10\.99\.0\.10-10\.99\.0\.20/);
  assert.ok((await diff.locator(".d-add").filter({ hasText: "ui-pool" }).count()) >= 1, "the change is an added line");
  await shot("04-device-push-diff");
});

test("an edit based on a stale version gets the 412 message and can be redone", async () => {
  await page.getByRole("button", { name: "Edit tags" }).click();
  const base = Number(await page.locator("[data-testid=edit-base]").innerText());
  // Someone else changes the device meanwhile.
  const token = await apiToken();
  const res = await fetch(`${BASE}/api/v1/devices/${deviceId}/tags`, {
    method: "PUT",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "if-match": "*" },
    body: JSON.stringify({ tags: ["changed-elsewhere"] }),
  });
  const body = await res.text();
  assert.equal(res.status, 200, body);
  const written = JSON.parse(body);
  assert.ok(written.version > base);
  await page.locator('input[name="tags"]').fill("ui-edit, core");
  await page.getByRole("button", { name: "Save tags" }).click();
  const stale = page.locator("[data-testid=stale-edit]");
  await stale.waitFor();
  assert.match(await stale.innerText(), /changed since you started editing/);
  assert.match(await stale.innerText(), new RegExp(`version ${base}`));
  await shot("05-device-stale-edit");
  // The form now starts from the current version and shows the other change.
  await page.waitForFunction((b) => Number(document.querySelector("[data-testid=edit-base]")?.textContent) > b, base);
  assert.equal(await page.locator('input[name="tags"]').inputValue(), "changed-elsewhere");
  await page.locator('input[name="tags"]').fill("ui-edit, core");
  await page.getByRole("button", { name: "Save tags" }).click();
  await page.getByText("Tags saved.").waitFor();
  await page.waitForFunction(() => document.querySelector('[data-fact="Tags"]')?.textContent?.includes("ui-edit"));
});

test("config as of a time, and a refused registration shows the validation problem", async () => {
  await page.getByRole("button", { name: "Show", exact: true }).click();
  const text = page.locator("[data-testid=config-text]");
  await text.waitFor();
  assert.match(await text.innerText(), /add name=ui-pool ranges=10\.99\.0\.10-10\.99\.0\.20/);
  await page.getByRole("navigation").getByRole("link", { name: "Fleet", exact: true }).click();
  await page.getByRole("button", { name: "Register device" }).click();
  const form = page.locator('form[aria-label="Register device"]');
  // New devices default to API-SSL (the plain API sends the password in clear text).
  assert.equal(await form.getByLabel("Transport").inputValue(), "tls_verified");
  await form.getByLabel("Name").fill("not a valid name!");
  await form.getByLabel("Host").fill("192.0.2.10");
  await form.getByLabel("API user").fill("admin");
  await form.getByLabel("API password").fill("secret");
  await form.getByRole("button", { name: "Register", exact: true }).click();
  const problem = form.locator("[role=alert]");
  await problem.waitFor();
  assert.match(await problem.innerText(), /422/);
  assert.equal(await page.locator("[data-testid=device-table] tbody tr").count(), 3, "nothing was registered");
  await page.getByRole("button", { name: "Close" }).click();
});

test("a device registered with SSH (trust on first use) and an SSH login key shows both; a public key as key is refused, credentials without one drop it; SSH access, then the device, are removed", async () => {
  const key = ed25519Key();
  await page.getByRole("button", { name: "Register device" }).click();
  const form = page.locator('form[aria-label="Register device"]');
  const name = `ui-ssh-${process.pid}`;
  await form.getByLabel("Name").fill(name);
  await form.getByLabel("Host", { exact: true }).fill("192.0.2.20");
  await form.getByLabel("API user").fill("admin");
  await form.getByLabel("API password").fill("secret");
  // Its first poll comes at a random moment of the interval: a day, so no poll event moves
  // its version under the edits below.
  await form.getByLabel("Poll interval (s)").fill("86400");
  await form.getByLabel("Enable SSH access").check();
  assert.equal(await form.getByLabel("SSH port").inputValue(), "22");
  // A fingerprint in neither accepted form is explained before anything is sent.
  await form.getByLabel("Host key fingerprint").fill("SHA256:not-a-fingerprint");
  assert.match(await form.locator("[data-testid=ssh-fingerprint-error]").innerText(), /43 base64 characters/);
  await form.getByLabel("Trust on first use").check();
  await form.locator("[data-testid=tofu-warning]").waitFor();
  // The SSH login key: PKCS#8 PEM, as Node writes it.
  await form.getByLabel("SSH private key").fill(key.privatePem);
  await shot("16-register-ssh");
  await form.getByRole("button", { name: "Register", exact: true }).click();
  // The form lands on the new device's page.
  await page.waitForFunction((n) => document.querySelector("[data-testid=device-name]")?.textContent === n, name);
  const ssh = page.locator('[data-fact="SSH access"]');
  assert.match(await ssh.innerText(), /port 22/);
  assert.match(await ssh.innerText(), /awaiting first use/);
  assert.equal(await ssh.locator("[data-testid=ssh-access]").getAttribute("data-trust"), "first_use");
  // The SSH login shows the key's public half: what the test computed from its own key.
  const login = page.locator('[data-fact="SSH login"]');
  await login.locator('[data-testid=ssh-login][data-login="key"]').waitFor();
  assert.equal(await page.locator("dt", { hasText: /^SSH login key$/ }).count(), 1, "the row is named SSH login key");
  assert.equal(await login.locator("[data-testid=ssh-login]").getAttribute("data-login"), "key");
  assert.equal(await login.locator("[data-testid=ssh-login]").getAttribute("data-algorithm"), "ssh-ed25519");
  const fingerprint = (await login.locator("[data-testid=ssh-login-key-fingerprint]").innerText()).trim();
  assert.match(fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
  assert.equal(fingerprint, key.fingerprint);
  const publicLine = (await login.locator("[data-testid=ssh-login-public-key]").innerText()).trim();
  assert.match(publicLine, /^ssh-ed25519 AAAA/);
  assert.equal(publicLine.split(/\s+/)[1], key.publicB64);
  assert.match(
    await login.locator("[data-testid=ssh-login-key-hint]").innerText(),
    /\/user ssh-keys import public-key-file=\S+ user=admin/,
  );
  assert.doesNotMatch(await page.locator(".main").innerText(), /PRIVATE KEY/, "the private key is never shown");
  // Copy: to the clipboard, or (where it cannot be written) the line is selected for Ctrl+C.
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"]);
  await login.getByRole("button", { name: "Copy public key" }).click();
  const copied = login.locator("[data-copied]");
  await copied.waitFor();
  const how = await copied.getAttribute("data-copied");
  const got = await page.evaluate(
    (h) => (h === "copied" ? navigator.clipboard.readText() : String(window.getSelection())),
    how,
  );
  assert.equal(got.trim(), publicLine, `copy (${how})`);
  await shot("17-device-ssh-first-use");
  // New credentials with a public key where the private key goes: the API's 422 says so,
  // and nothing typed is lost.
  await page.getByRole("button", { name: "Change credentials" }).click();
  const creds = page.locator('form[aria-label="Change credentials"]');
  const note = await creds.locator("[data-testid=ssh-key-removal-note]").innerText();
  assert.ok(note.includes(`The device has an SSH key (${key.fingerprint}); leave empty to remove it`), note);
  await creds.getByLabel("API user").fill("ui-key-user");
  await creds.getByLabel("API password").fill("secret-2");
  await creds.getByLabel("SSH private key").fill(`${publicLine}\n`);
  await creds.getByRole("button", { name: "Save credentials" }).click();
  const refused = page.locator('.settings [role=alert]').filter({ hasText: "holds a public key" });
  await refused.waitFor();
  assert.match(await refused.innerText(), /422/);
  assert.equal(await creds.getByLabel("API user").inputValue(), "ui-key-user");
  assert.equal(await creds.getByLabel("API password").inputValue(), "secret-2");
  assert.equal((await creds.getByLabel("SSH private key").inputValue()).trim(), publicLine);
  assert.equal(await creds.getByLabel("SSH private key").getAttribute("aria-invalid"), "true");
  await shot("17b-device-ssh-key-refused", { top: false });
  // The stored key stays.
  assert.equal(await login.locator("[data-testid=ssh-login]").getAttribute("data-login"), "key");
  // Saved without a key, the device has none: SSH logs in with the password.
  await creds.getByLabel("SSH private key").fill("");
  await creds.getByRole("button", { name: "Save credentials" }).click();
  await page.getByText("Credentials saved.").waitFor();
  await page.waitForFunction(
    () =>
      document.querySelector('[data-fact="SSH login"] [data-testid=ssh-login]')?.getAttribute("data-login") ===
      "password",
  );
  assert.match(await login.innerText(), /^password\b/);
  assert.equal(await page.locator("dt", { hasText: /^SSH login$/ }).count(), 1, "the row is named SSH login");
  assert.equal(await page.locator("dt", { hasText: /^SSH login key$/ }).count(), 0);
  assert.equal(await login.locator("[data-testid=ssh-login-public-key]").count(), 0);
  await page.waitForFunction(() =>
    document.querySelector('[data-fact="API user"]')?.textContent?.startsWith("ui-key-user"),
  );
  await page.getByRole("button", { name: "Edit SSH access" }).click();
  const edit = page.locator('form[aria-label="Edit SSH access"]');
  assert.equal(await edit.getByLabel("Trust on first use").isChecked(), true);
  await edit.getByRole("button", { name: "Remove SSH access" }).click();
  await edit.getByRole("button", { name: "Yes" }).click();
  await page.getByText("Removal of SSH access saved.").waitFor();
  await page.waitForFunction(() => document.querySelector('[data-fact="SSH access"]')?.textContent?.includes("none (API only)"));
  // The device goes too: the later tests expect the 3 demo devices only.
  await page.getByRole("button", { name: "Remove device…" }).click();
  await page.getByRole("button", { name: "Remove device", exact: true }).click();
  await page.getByRole("button", { name: "Yes" }).click();
  await page.getByRole("heading", { name: "Fleet", exact: true }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=device-table] tbody tr").length === 3);
});

test("workflows list and a run's step timeline", async () => {
  await page.getByRole("link", { name: "Workflows", exact: true }).click();
  await page.getByRole("heading", { name: "Workflows" }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll("[data-testid=workflow-table] tbody tr").length >= 2);
  await shot("06-workflows");
  await page.locator('[data-testid=workflow-table] tbody tr[data-kind="config_push"] a').first().click();
  await page.locator("[data-testid=steps] [data-step]").first().waitFor();
  assert.ok((await page.locator('[data-testid=steps] [data-state="completed"]').count()) >= 5);
  await shot("07-workflow-detail");
});

test("firmware upload lands in the cache", async () => {
  await page.getByRole("link", { name: "Firmware", exact: true }).click();
  await page.getByRole("heading", { name: "Firmware cache" }).waitFor();
  await page.locator('input[type="file"]').setInputFiles({
    name: "routeros-7.99.1-arm64.npk",
    mimeType: "application/octet-stream",
    buffer: Buffer.from("not a real package, just bytes for the cache\n"),
  });
  assert.equal(await page.getByLabel("RouterOS version").inputValue(), "7.99.1");
  await page.getByRole("button", { name: "Upload", exact: true }).click();
  await page.locator("[data-testid=firmware-table] tbody tr", { hasText: "routeros-7.99.1-arm64.npk" }).waitFor();
  await shot("08-firmware");
});

test("a firmware upgrade to the uploaded version succeeds and the device reports it", async () => {
  // The demo fleet is seeded: the first device is an arm64 board, like the package.
  await page.goto(`/devices/${deviceId}`);
  assert.equal(await page.locator('[data-fact="Architecture"]').innerText(), "arm64");
  await page.getByRole("tab", { name: "Firmware upgrade" }).click();
  const form = page.locator('form[aria-label="Firmware upgrade"]');
  await form.getByLabel("Target version").selectOption("7.99.1");
  await form.getByRole("button", { name: "Upgrade" }).click();
  await page.waitForFunction(
    () => {
      const s = document.querySelector("[data-testid=active-workflow]")?.getAttribute("data-state");
      return s && ["succeeded", "failed", "rolled_back", "cancelled"].includes(s);
    },
    null,
    { timeout: 120_000 },
  );
  const card = page.locator("[data-testid=active-workflow]").first();
  assert.equal(await card.getAttribute("data-state"), "succeeded", await card.innerText());
  assert.equal(await card.locator('[data-step="await_version"][data-state="completed"]').count(), 1);
  // The poller sees the new version at its next poll (within a poll interval, 60 s
  // jittered); the facts follow through live events.
  await page.waitForFunction(() => document.querySelector('[data-fact="RouterOS"]')?.textContent?.includes("7.99.1"), null, {
    timeout: 180_000,
  });
  await shot("09-device-firmware");
});

test("a rollout over a tag with a canary completes", async () => {
  await page.getByRole("link", { name: "Rollouts", exact: true }).click();
  await page.getByRole("heading", { name: "Rollouts" }).waitFor();
  await page.getByRole("button", { name: "New rollout" }).click();
  const form = page.locator('form[aria-label="New rollout"]');
  await form.getByLabel("Name").fill("ui rollout");
  await form.locator("textarea").fill("/ip pool\nadd name=ui-rollout-pool ranges=10.98.0.10-10.98.0.20");
  await form.getByLabel("Batch size").fill("2");
  await form.getByLabel("Parallelism").fill("2");
  // Every device carries the demo fleet's tags; the one we edited carries `ui-edit`.
  await form.getByLabel("Add every device with tags").fill("ui-edit");
  await form.getByRole("button", { name: "Add", exact: true }).click();
  await form.getByText("1 devices matched").waitFor();
  // Add the other two by hand; the first picked device becomes the canary.
  const names = await form.locator(".device-picker tbody tr td:nth-child(3)").allInnerTexts();
  for (const n of names) {
    const box = form.getByLabel(`include ${n}`);
    if (!(await box.isChecked())) await box.check();
  }
  await form.getByLabel(`canary ${deviceName}`).check();
  assert.match(await form.innerText(), /3\s*devices: 1 canaries/);
  await shot("10-rollout-new");
  await form.getByRole("button", { name: "Create and start" }).click();
  await page.locator(".page-head h1", { hasText: "ui rollout" }).waitFor();
  await page.waitForFunction(
    () => {
      const b = document.querySelector(".page-head h1 .badge");
      return b && ["completed", "halted", "cancelled"].includes(b.getAttribute("data-value"));
    },
    null,
    { timeout: 180_000 },
  );
  const state = await page.locator(".page-head h1 .badge").getAttribute("data-value");
  assert.equal(state, "completed", await page.locator(".main").innerText());
  await page.waitForFunction(() => document.body.innerText.includes("3/3"));
  await shot("10-rollout-progress");
});

test("events and the audit feed", async () => {
  await page.goto(`/events?stream=device-${deviceId}`);
  await page.locator("[data-testid=event-table] tbody tr").first().waitFor();
  assert.ok((await page.locator("[data-testid=event-table] tbody tr", { hasText: "DeviceTagsSet" }).count()) >= 1);
  await shot("11-events");
  await page.getByRole("link", { name: "Audit", exact: true }).click();
  await page.locator("[data-testid=audit-table] tbody tr").first().waitFor();
  // The admin's own login is in the identity part of the feed.
  await page.getByLabel("Category").selectOption("session");
  await page.locator("[data-testid=audit-table] tbody tr").first().waitFor();
  await shot("12-audit");
});

test("admin: users and an API key whose secret is shown once", async () => {
  await page.getByRole("link", { name: "Admin", exact: true }).click();
  await page.locator(`[data-testid=user-table] tr[data-user="${EMAIL.toLowerCase()}"]`).waitFor();
  await page.getByRole("tab", { name: "API keys" }).click();
  const form = page.locator('form[aria-label="New API key"]');
  await form.getByLabel("Name").fill("ui-test key");
  await form.getByRole("button", { name: "Issue key" }).click();
  const secret = page.locator("[data-testid=api-key-secret] .secret");
  await secret.waitFor();
  const value = await secret.innerText();
  assert.match(value, /^nlk_/);
  await shot("14-admin-api-key");
  // The key works.
  const res = await fetch(`${BASE}/api/v1/devices?limit=1`, { headers: { authorization: `Bearer ${value}` } });
  assert.equal(res.status, 200);
  await page.getByRole("button", { name: "I stored it" }).click();
  assert.equal(await page.locator("[data-testid=api-key-secret]").count(), 0);
});

const VIEWER = { email: "viewer@netledger.test", password: "viewer-password-1234" };

test("a viewer sees no actions its role cannot take", async () => {
  await page.getByRole("tab", { name: "Users & roles" }).click();
  await page.getByRole("button", { name: "New user" }).click();
  const form = page.locator('form[aria-label="New user"]');
  await form.getByLabel("E-mail").fill(VIEWER.email);
  await form.getByLabel("Display name").fill("Vera Viewer");
  await form.getByLabel("Role").selectOption("viewer");
  await form.getByLabel("Initial password").fill(VIEWER.password);
  await form.getByRole("button", { name: "Create user" }).click();
  await page.locator(`[data-testid=user-table] tr[data-user="${VIEWER.email}"]`).waitFor();
  await shot("13-admin-users");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("E-mail").fill(VIEWER.email);
  await page.getByLabel("Password").fill(VIEWER.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Fleet" }).waitFor();
  assert.equal(await page.getByRole("button", { name: "Register device" }).count(), 0);
  assert.equal(await page.getByRole("link", { name: "Admin", exact: true }).count(), 0);
  assert.equal(await page.getByRole("link", { name: "Audit", exact: true }).count(), 0);
  await page.goto(`/devices/${deviceId}`);
  await page.locator("[data-testid=config-versions] tbody tr").first().waitFor();
  assert.equal(await page.getByRole("button", { name: "Start backup" }).count(), 0);
  assert.equal(await page.getByRole("button", { name: "Edit tags" }).count(), 0);
  assert.equal(await page.getByRole("button", { name: "Change credentials" }).count(), 0);
  await shot("15-device-as-viewer");
  await page.goto("/rollouts");
  await page.getByRole("heading", { name: "Rollouts" }).waitFor();
  assert.equal(await page.getByRole("button", { name: "New rollout" }).count(), 0);
  // The server refuses what the UI hides: the problem names the permission.
  const token = await (async () => {
    const res = await fetch(`${BASE}/api/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(VIEWER),
    });
    return JSON.parse(await res.text()).access_token;
  })();
  const res = await fetch(`${BASE}/api/v1/workflows/backup`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ device_id: deviceId }),
  });
  assert.equal(res.status, 403);
});

test("sign out ends the session (a reload does not restore it)", async () => {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  await page.reload();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  assert.equal(await page.getByRole("link", { name: "Fleet" }).count(), 0);
});

test("no uncaught page errors and no 5xx responses", () => {
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(failedResponses, []);
});
