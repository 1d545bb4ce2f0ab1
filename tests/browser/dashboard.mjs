// Drives the embedded dashboard in headless Chromium against a running
// agenthub: node tests/browser/dashboard.mjs <base-url> <token> <workspace-id> <artifacts-dir>
// Plays the daemon itself through the HTTP API. Exits non-zero on failure.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";

const [base, token, ws, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);

async function api(path, body, method = body === undefined ? "GET" : "POST") {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "X-Workspace-ID": ws },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(data)}`);
  return data;
}
const register = async (daemon, type) =>
  (await api("/api/daemon/register", { workspace_id: ws, daemon_id: daemon, device_name: daemon, cli_version: "1.0.0",
    runtimes: [{ type, version: "2.1.0" }] })).runtimes[0].id;
const day = (ago) => new Date(Date.now() - ago * 86400000).toISOString().slice(0, 10);

// --- the daemon's side: runtimes, an agent, usage, a finished task ---------
const busy = await register("browser-mbp", "claude");
const doomed = await register("old-box", "codex");
const agent = await api("/api/agents", { name: "reviewer", runtime_id: busy, visibility: "workspace" });
const entries = [];
for (let i = 0; i < 20; i++) {
  entries.push({ date: day(i), provider: "anthropic", model: "claude-sonnet", input_tokens: 50000 + i * 1000, output_tokens: 4000 });
  if (i % 2 === 0) entries.push({ date: day(i), provider: "anthropic", model: "claude-opus", input_tokens: 20000, output_tokens: 3000 });
}
const report = await api(`/api/daemon/runtimes/${busy}/usage`, { entries });
assert.equal(report.accepted, entries.length);
const task = await api(`/api/agents/${agent.id}/tasks`, { prompt: "review the diff" });
await api(`/api/daemon/runtimes/${busy}/tasks/claim`, {});
await api(`/api/daemon/tasks/${task.id}/start`, {});
await api(`/api/daemon/tasks/${task.id}/usage`, { usage: [{ provider: "anthropic", model: "claude-sonnet", input_tokens: 12000, output_tokens: 800 }] });
await api(`/api/daemon/tasks/${task.id}/complete`, { output: "looks good" });

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const failures = [];
page.on("pageerror", (e) => failures.push(e.message));
page.on("requestfailed", (r) => { if (!r.url().includes("/api/events")) failures.push(`request failed: ${r.url()}`); });

try {
  step("sign in with a pasted token");
  await page.goto(base + "/");
  await page.fill("#token-input", token);
  await page.click("#sign-in");
  const row = (id) => page.locator(`#runtime-list li[data-id="${id}"]`);
  await row(busy).waitFor();
  await row(doomed).waitFor();
  assert.match(await page.textContent("#online-count"), /2\/2 online/);
  assert.match(await row(busy).textContent(), /claude/);

  step("a runtime registered now appears live");
  await page.evaluate(() => { window.__sameDocument = true; });
  const sleepy = await register("sleepy-laptop", "claude");
  await row(sleepy).waitFor({ timeout: 10000 });
  await page.screenshot({ path: `${artifacts}/runtimes.png` });

  step("usage of a runtime: chart, heatmap, activity, table");
  await row(busy).click();
  await page.waitForSelector("#usage-table tbody tr");
  assert.ok((await page.locator("#usage-table tbody tr").count()) >= 30);
  const datasets = await page.evaluate(() => Chart.getChart("usage-chart").data.datasets.map((d) => d.label).sort());
  assert.deepEqual(datasets, ["claude-opus", "claude-sonnet"]);
  assert.ok((await page.locator('#heatmap span[data-level="4"]').count()) >= 1);
  const activity = await page.evaluate(() => Chart.getChart("activity-chart").data.datasets[0].data.reduce((a, b) => a + b, 0));
  assert.equal(activity, 1);
  await page.screenshot({ path: `${artifacts}/runtime-usage.png`, fullPage: true });

  step("ping: the daemon answers on its heartbeat, the result shows live");
  await page.click("#ping-btn");
  let pingId;
  for (let i = 0; i < 50 && !pingId; i++) {
    const hb = await api("/api/daemon/heartbeat", { runtime_id: busy });
    pingId = hb.pending_ping && hb.pending_ping.id;
    if (!pingId) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(pingId, "the ping reached the daemon");
  await api(`/api/daemon/runtimes/${busy}/ping/${pingId}/result`, { status: "completed", output: "pong from claude", duration_ms: 42 });
  await page.waitForFunction(() => document.querySelector("#ping-result").dataset.status === "completed", null, { timeout: 10000 });
  assert.match(await page.textContent("#ping-result"), /completed in 42 ms[\s\S]*pong from claude/);

  step("a refused delete shows the server's reason");
  await page.click("#delete-btn");
  await page.click("#delete-yes");
  await page.waitForFunction(() => document.querySelector("#delete-error").textContent.length > 0);
  assert.match(await page.textContent("#delete-error"), /active agents bound to it/);

  step("delete with confirmation");
  await row(doomed).click();
  await page.click("#delete-btn");
  assert.ok(await page.isVisible("#delete-confirm"));
  await page.click("#delete-yes");
  await row(doomed).waitFor({ state: "detached", timeout: 10000 });

  step("a silent runtime goes offline live when swept");
  await page.waitForSelector(`#runtime-list li[data-id="${sleepy}"][data-status="offline"]`, { timeout: 20000 });
  assert.equal(await page.evaluate(() => window.__sameDocument), true, "no reload");
  await page.screenshot({ path: `${artifacts}/runtimes-swept.png` });

  step("workspace usage with 7/30/90-day ranges");
  await page.click("#nav-usage");
  await page.waitForSelector("#ws-usage-table tbody tr");
  assert.match(await page.textContent("#ws-usage-table tbody"), /claude-sonnet/);
  for (const days of ["7", "90", "30"]) {
    await page.click(`[data-days="${days}"]`);
    await page.waitForFunction((d) => Chart.getChart("ws-usage-chart").data.labels.length === Number(d), days);
  }
  await page.screenshot({ path: `${artifacts}/workspace-usage.png`, fullPage: true });

  step("phone width");
  const phone = await context.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(base + "/");
  await phone.locator(`#runtime-list li[data-id="${busy}"]`).waitFor();
  const width = await phone.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `no horizontal scroll at phone width (${width}px)`);
  await phone.screenshot({ path: `${artifacts}/runtimes-phone.png`, fullPage: true });

  assert.deepEqual(failures, [], "no page errors or failed requests");
  console.log("dashboard: all checks passed");
} catch (e) {
  await page.screenshot({ path: `${artifacts}/failure.png`, fullPage: true }).catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
