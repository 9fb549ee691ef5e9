// The whole story in a real browser (Debian's Chromium driven by playwright-core) against the
// real portal on its embedded defaults (own PostgreSQL, in-process Soho CRM simulator, dev
// mailbox): approve a partner in the simulator → open the invitation from the mailbox → register
// → dashboard → submit a lead → see it synced → change its status in the simulator → see the row
// and the dashboard change without a reload → invite a sub-account → log in as it → it sees only
// its own leads → a public-form submission appears for the admin. Every page is screenshotted
// into e2e/artifacts/ and checked with axe-core (no violation of any impact).
import { execFileSync, spawn } from "node:child_process";
import { createServer } from "node:http";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const artifacts = join(here, "artifacts");
rmSync(artifacts, { recursive: true, force: true });
mkdirSync(artifacts, { recursive: true });
const axeSource = readFileSync(join(here, "..", "node_modules", "axe-core", "axe.min.js"), "utf8");
const PASSWORD = "correct horse battery staple";

let passed = 0;
let failed = 0;
/// Every `step` below; a run that does not reach them all has failed, whatever threw.
const STEPS = 16;
/// Set when a step has reported its own failure (so the outer catch does not count it twice).
let reported = false;
const failures = [];

const binary = process.env.SOHO_PORTAL_BIN ?? join(root, "target", "debug", "soho-portal");

function startPortal() {
  const data = mkdtempSync(join(tmpdir(), "soho-e2e-"));
  // Reachable by the unprivileged user the embedded PostgreSQL runs as when we are root.
  chmodSync(data, 0o755);
  const child = spawn(binary, ["serve"], {
    cwd: tmpdir(),
    env: { PATH: process.env.PATH, HOME: process.env.HOME, DATA_DIR: data, LISTEN_ADDR: "127.0.0.1:0", WEB_DIR: join(here, "..", "dist"), RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let portal, simulator, buffer = "";
    const timer = setTimeout(() => reject(new Error("the portal did not start in 90 s")), 90_000);
    child.stdout.on("data", (chunk) => {
      buffer += chunk;
      simulator ??= buffer.match(/simulator \(in-process\): open (\S+)/)?.[1];
      portal ??= buffer.match(/Portal is running: open (\S+)/)?.[1];
      if (portal && simulator) {
        clearTimeout(timer);
        resolve({ child, portal, simulator: simulator.replace(/\/sim$/, ""), data });
      }
    });
    child.on("exit", (code) => reject(new Error(`the portal exited with ${code}`)));
  });
}

/// Content-Security-Policy refusals the browser reported, by page: the app must need none.
const blocked = new Map();
function watchPolicy(page) {
  page.on("console", (message) => {
    if (message.text().includes("Content Security Policy")) blocked.set(page, [...(blocked.get(page) ?? []), message.text()]);
  });
  return page;
}

async function check(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
  if (blocked.get(page)?.length) throw new Error(`${name}: the page broke its own policy: ${blocked.get(page).join(" | ")}`);
  // Evaluated through the DevTools protocol, not as a <script>: the page's policy allows none.
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => await globalThis.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations;
  if (bad.length) throw new Error(`${name}: accessibility: ${bad.map((v) => `${v.id} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`).join("; ")}`);
}

async function step(name, run) {
  try {
    await run();
    passed += 1;
    console.log(`ok - ${name}`);
  } catch (error) {
    failed += 1;
    failures.push(name);
    console.log(`not ok - ${name}\n  ${String(error?.stack ?? error).split("\n").slice(0, 6).join("\n  ")}`);
    reported = true;
    throw error;
  }
}

const { child, portal, simulator, data } = await startPortal();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const admin = watchPolicy(await (await browser.newContext()).newPage());
  const sim = await (await browser.newContext()).newPage();
  /// Every WebSocket the admin's pages open: the token must never be in its URL (contract 6).
  const sockets = [];
  admin.on("websocket", (socket) => sockets.push(socket.url()));

  await step("a partner approved in the Soho CRM simulator", async () => {
    await sim.goto(`${simulator}/sim`);
    await sim.fill("input[name=name]", "Acme Referrals Ltd");
    await sim.fill("input[name=email]", "owner@acme.example");
    await sim.click("text=Create");
    await sim.waitForSelector("#partners td:has-text('Acme Referrals Ltd')");
  });

  await step("the invitation from the dev mailbox, registration, and the dashboard", async () => {
    await admin.goto(`${portal}/dev/mailbox`);
    await admin.waitForSelector("a[href*='/register?token=']", { timeout: 20_000 });
    await check(admin, "01-dev-mailbox");
    await admin.click("a[href*='/register?token=']");
    await admin.waitForSelector("h1:has-text('Set up your account')");
    await admin.waitForSelector("[data-testid=invitation]:has-text('Acme Referrals Ltd'):has-text('owner@acme.example')");
    await check(admin, "02-register");
    await admin.fill("input[name=name]", "Olive Owner");
    await admin.fill("input[name=password]", PASSWORD);
    await admin.fill("input[name=confirm]", PASSWORD);
    await admin.click("button:has-text('Create my account')");
    await admin.waitForSelector("h1:has-text('Dashboard')");
    await admin.waitForSelector("[data-testid=total-leads]:has-text('0')");
    await admin.waitForSelector("section.getting-started li[data-step=lead][data-done=false] a:has-text('Submit your first lead')");
    await check(admin, "03-dashboard-empty");
  });

  let leadId;
  let publicFormUrl;
  await step("a lead submitted and synced with Soho CRM", async () => {
    await admin.click("nav >> text=New lead");
    await admin.click("button:has-text('Submit lead')");
    await admin.waitForSelector("text=Last name is required.");
    await check(admin, "04-new-lead-errors");
    await admin.fill("input[name=firstName]", "Ada");
    await admin.fill("input[name=lastName]", "Lovelace");
    await admin.fill("input[name=email]", "ada@example.com");
    await admin.fill("input[name=company]", "Analytical Engines");
    await admin.click("button:has-text('Submit lead')");
    const link = await admin.waitForSelector(".notice a");
    leadId = (await link.getAttribute("href")).split("/").pop();
    await admin.click("nav >> text=Leads");
    await admin.waitForSelector(`tr[data-lead='${leadId}'] [data-testid=sync-state]:has-text('synced')`, { timeout: 20_000 });
    await check(admin, "05-leads");
    await admin.click(`tr[data-lead='${leadId}'] a`);
    await admin.waitForSelector("[data-testid=sync-state]:has-text('synced (record')");
    await admin.waitForSelector("[data-testid=submitted]:has-text('by you')");
    await admin.waitForSelector("[data-testid=signed-in-as]:has-text('Olive Owner (admin)')");
    await check(admin, "06-lead");
    await admin.click("nav >> text=Leads");
    await admin.waitForSelector(`tr[data-lead='${leadId}']`);
  });

  await step("a status changed in the simulator updates the row and the dashboard without a reload", async () => {
    await sim.reload();
    const select = await sim.waitForSelector("#leads select");
    await select.selectOption("Contacted");
    await admin.waitForSelector(`tr[data-lead='${leadId}'] [data-testid=lead-status]:has-text('contacted')`, { timeout: 15_000 });
    await admin.waitForSelector(`tr.changed[data-lead='${leadId}']`);
    await admin.click("nav >> text=Dashboard");
    await admin.waitForSelector("[data-testid=status-contacted]:has-text('1')");
    await sim.selectOption("#leads select", "Converted");
    await admin.waitForSelector("[data-testid=status-converted]:has-text('1')", { timeout: 15_000 });
    await admin.waitForSelector("[data-testid=conversion-rate]:has-text('100.0')");
    if (sockets.length === 0) throw new Error("the pages opened no live socket");
    const leaked = sockets.filter((url) => /token/i.test(url));
    if (leaked.length > 0) throw new Error(`a token in a WebSocket URL: ${leaked.join(", ")}`);
    await check(admin, "07-dashboard-live");
  });

  const sub = watchPolicy(await (await browser.newContext()).newPage());
  await step("a sub-account invited, registered, and seeing only its own leads", async () => {
    await admin.click("nav >> text=Team");
    await admin.fill("form[aria-label='Invite a sub-account'] input[name=name]", "Sam Sub");
    await admin.fill("form[aria-label='Invite a sub-account'] input[name=email]", "sam@acme.example");
    await admin.click("button:has-text('Invite')");
    await admin.waitForSelector("td:has-text('sam@acme.example')");
    await admin.waitForSelector("[data-testid=owner] td:has-text('owner@acme.example')");
    await admin.waitForSelector("tr[data-account='sam@acme.example'] td:has-text('link works until')");
    await check(admin, "08-team");
    await sub.goto(`${portal}/dev/mailbox`);
    const invitation = await sub.waitForSelector("article:has-text('sam@acme.example') a[href*='/register?token=']");
    await sub.goto(await invitation.getAttribute("href"));
    await sub.waitForSelector("[data-testid=invitation]:has-text('Olive Owner invited you'):has-text('sam@acme.example')");
    if ((await sub.inputValue("input[name=name]")) !== "Sam Sub") throw new Error("the invited name is not prefilled");
    await sub.fill("input[name=password]", PASSWORD);
    await sub.fill("input[name=confirm]", PASSWORD);
    await sub.click("button:has-text('Create my account')");
    await sub.waitForSelector("[data-testid=total-leads]:has-text('0')");
    await sub.click("nav >> text=Leads");
    await sub.waitForSelector("text=No leads match.");
    if (await sub.$("nav >> text=Team")) throw new Error("a sub-account sees the Team page link");
    await sub.click("nav >> text=New lead");
    await sub.fill("input[name=lastName]", "Hopper");
    await sub.fill("input[name=email]", "grace@example.com");
    await sub.click("button:has-text('Submit lead')");
    await sub.waitForSelector(".notice");
    await sub.click("nav >> text=Leads");
    await sub.waitForSelector("td:has-text('Hopper')");
    if (await sub.$("td:has-text('Lovelace')")) throw new Error("the sub-account sees the admin's lead");
    await check(sub, "09-sub-leads");
    await sub.click("nav >> text=Profile");
    await sub.waitForSelector("h1:has-text('Acme Referrals Ltd')");
    if (await sub.$("text=Commission rate")) throw new Error("the sub-account sees private fields");
  });

  await step("a public-form submission appears for the admin", async () => {
    await admin.click("nav >> text=Profile");
    // The partner asks visitors for consent: the link and the code say so.
    await admin.check("input[name=askConsent]");
    const code = await admin.inputValue("textarea[readonly]");
    if (!code.includes("consent=1")) throw new Error("the embed code does not ask for consent");
    // Copy buttons, and the live preview of the form.
    await admin.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: portal });
    await admin.click("button:has-text('Copy embed code')");
    await admin.waitForSelector("text=Copied the embed code.");
    if ((await admin.evaluate(() => navigator.clipboard.readText())) !== code) throw new Error("the copied embed code differs");
    await admin.click("summary:has-text('Preview your form')");
    await admin.frameLocator("[data-testid=form-preview]").locator("h1:has-text('Contact Acme Referrals Ltd')").waitFor();
    await check(admin, "10-profile");
    const url = code.match(/src="([^"]+)"/)[1].replaceAll("&amp;", "&");
    publicFormUrl = url;
    // Pasted into a partner's page (another origin), the frame sizes itself to the form: Send is not cut off.
    const site = createServer((_, res) => res.writeHead(200, { "content-type": "text/html" }).end(
      `<!doctype html><html lang="en"><head><title>Acme</title></head><body><h1>Acme's site</h1>${code}</body></html>`));
    await new Promise((r) => site.listen(0, "127.0.0.1", r));
    const host = await (await browser.newContext()).newPage();
    host.on("dialog", (d) => { throw new Error(`the embed opened a dialog: ${d.message()}`); });
    await host.goto(`http://127.0.0.1:${site.address().port}/`);
    await host.waitForFunction(() => document.querySelector("iframe")?.style.height.endsWith("px"));
    const send = host.frameLocator("iframe").locator("button:has-text('Send')");
    await send.waitFor();
    // The frame follows the form's height as the form renders (the partner's name, then the
    // consent box): within a few seconds the whole form, Send included, must fit in it.
    let frameHeight = 0;
    let sendBottom = Infinity;
    for (const until = Date.now() + 10_000; Date.now() < until; await host.waitForTimeout(100)) {
      frameHeight = await host.$eval("iframe", (f) => f.getBoundingClientRect().height);
      sendBottom = await send.evaluate((b) => b.getBoundingClientRect().bottom);
      if (sendBottom <= frameHeight) break;
    }
    if (!(sendBottom <= frameHeight)) throw new Error(`the Send button (bottom ${sendBottom}) is cut off by the ${frameHeight} px frame`);
    site.close();
    await host.context().close();
    const visitor = watchPolicy(await (await browser.newContext()).newPage());
    const response = await visitor.goto(url);
    if (!(response.headers()["content-security-policy"] ?? "").includes("frame-ancestors *")) throw new Error("the public form cannot be framed");
    await visitor.waitForSelector("h1:has-text('Contact Acme Referrals Ltd')");
    await visitor.fill("input[name=lastName]", "Babbage");
    await visitor.fill("input[name=email]", "charles@example.com");
    await visitor.click("button:has-text('Send')");
    await visitor.waitForSelector("#consent-error:has-text('Tick the box')");
    await check(visitor, "11-public-form");
    await visitor.check("input[name=consent]");
    await visitor.click("button:has-text('Send')");
    await visitor.waitForSelector("text=Thank you!");
    await check(visitor, "12-public-form-thanks");
    await admin.click("nav >> text=Leads");
    await admin.waitForSelector("td:has-text('Babbage')", { timeout: 15_000 });
    // Submitters by name, and the team-member picker.
    const submitter = async (name) => (await admin.textContent(`tr:has(td:has-text('${name}')) [data-testid=submitted-by]`)).trim();
    for (const [lead, by] of [["Babbage", "Public form"], ["Lovelace", "You"], ["Hopper", "Sam Sub"]]) {
      const shown = await submitter(lead);
      if (shown !== by) throw new Error(`${lead} shows submitted by "${shown}", not "${by}"`);
    }
    await admin.selectOption("form[aria-label='Filter leads'] select[name=submittedBy]", { label: "Sam Sub" });
    await admin.click("form[aria-label='Filter leads'] button:has-text('Apply')");
    await admin.waitForURL(/submittedBy=/);
    await admin.waitForSelector("td:has-text('Hopper')");
    await admin.waitForFunction(() => !document.body.innerText.includes("Babbage") && !document.body.innerText.includes("Lovelace"));
    await admin.selectOption("form[aria-label='Filter leads'] select[name=submittedBy]", { label: "Public form" });
    await admin.click("form[aria-label='Filter leads'] button:has-text('Apply')");
    await admin.waitForSelector("td:has-text('Babbage')");
    await admin.waitForFunction(() => !document.body.innerText.includes("Hopper"));
    await admin.goto(`${portal}/leads`);
    await admin.waitForSelector("td:has-text('Hopper')");
    // Sorting by submission: oldest first puts the first lead on top, and stays in the address.
    await admin.click("th button:has-text('Submitted')");
    await admin.waitForURL(/sort=oldest/);
    await admin.waitForSelector("tbody tr:first-child td:has-text('Lovelace')");
    await admin.waitForSelector("th[aria-sort=ascending]");
    await admin.reload();
    await admin.waitForSelector("tbody tr:first-child td:has-text('Lovelace')");
    await admin.click("th button:has-text('Submitted')");
    await admin.waitForSelector("th[aria-sort=descending]");
    if ((await admin.textContent("tbody tr:first-child td[data-label=Name]")).includes("Lovelace")) throw new Error("newest first still shows the oldest lead on top");
    // Sorting by name (the last name, A to Z), from the column's header, kept in the address.
    await admin.click("th button:has-text('Name')");
    await admin.waitForURL(/sort=name/);
    await admin.waitForSelector("th[aria-sort=ascending] button:has-text('Name')");
    await admin.waitForFunction(() => {
      const names = [...document.querySelectorAll("tbody td[data-label=Name]")].map((td) => td.textContent);
      const at = (last) => names.findIndex((n) => n.includes(last));
      return at("Babbage") >= 0 && at("Babbage") < at("Hopper") && at("Hopper") < at("Lovelace");
    });
    // What the public-form visitor agreed to is on its lead, word for word.
    await admin.click("td:has-text('Babbage') a");
    await admin.waitForSelector("[data-testid=consent]:has-text('I agree that Acme Referrals Ltd may contact me about this enquiry.')");
    // The lead page's history starts with the submission, and says who changed what.
    await admin.goto(`${portal}/leads/${leadId}`);
    await admin.waitForSelector("[data-testid=history] li:first-child:has-text('submitted by you')");
    await admin.waitForSelector("[data-testid=history] li:has-text('in Soho CRM')");
    // A lead submitted, the team invited, the form's code copied: the checklist is done, and gone.
    await admin.goto(`${portal}/`);
    await admin.waitForSelector("[data-testid=total-leads]");
    await admin.waitForLoadState("networkidle");
    if (await admin.$("section.getting-started")) throw new Error("the getting-started list stays after every step is done");
  });

  await step("every page survives a reload and opens from a direct link", async () => {
    // Each page is reached in the app first (so the browser has fetched its data from the same
    // URL), then reloaded, then opened afresh in a new tab, as a link in an email would.
    const pages = [["/", "Dashboard"], ["/leads", "Leads"], [`/leads/${leadId}`, "Lovelace"], ["/leads/new", "New lead"], ["/team", "Team"], ["/profile", "Acme"]];
    for (const [path, heading] of pages) {
      await admin.goto(`${portal}${path}`);
      await admin.waitForSelector(`h1:has-text('${heading}')`);
      await admin.waitForLoadState("networkidle");
      await admin.reload();
      await admin.waitForSelector(`h1:has-text('${heading}')`);
      const tab = await admin.context().newPage();
      await tab.goto(`${portal}${path}`);
      await tab.waitForSelector(`h1:has-text('${heading}')`);
      if ((await tab.innerText("body")).includes("Unexpected token")) throw new Error(`${path}: JSON read as the page`);
      await tab.close();
    }
    // The lead list's filters live in the address: applied, they survive a reload and a link.
    await admin.goto(`${portal}/leads`);
    await admin.fill("input[name=q]", "lovelace");
    await admin.click("form[aria-label='Filter leads'] button:has-text('Apply')");
    await admin.waitForURL(/\/leads\?q=lovelace/);
    await admin.reload();
    await admin.waitForSelector("td:has-text('Lovelace')");
    if ((await admin.inputValue("input[name=q]")) !== "lovelace") throw new Error("the search was lost on reload");
    if ((await admin.locator("tbody tr").count()) !== 1) throw new Error("the filter was not applied after the reload");
    // Export CSV downloads the filtered list.
    const [file] = await Promise.all([admin.waitForEvent("download"), admin.click("button:has-text('Export CSV')")]);
    const csv = readFileSync(await file.path(), "utf8");
    if (!csv.includes("Lovelace") || csv.trim().split("\n").length !== 2) throw new Error(`the export is not the filtered list: ${csv}`);
  });

  await step("an access token that ran out is refreshed without a word", async () => {
    const expire = () => {
      const key = "soho-portal-session";
      const stored = JSON.parse(sessionStorage.getItem(key));
      stored.session.accessToken = "expired.token.value";
      sessionStorage.setItem(key, JSON.stringify(stored));
    };
    await admin.evaluate(expire);
    await admin.goto(`${portal}/team`);
    await admin.waitForSelector("h1:has-text('Team')");
    // The page's first call was refused, the token refreshed, and the call sent again.
    await admin.waitForFunction(() => JSON.parse(sessionStorage.getItem("soho-portal-session")).session.accessToken !== "expired.token.value");
    await admin.waitForSelector("td:has-text('sam@acme.example')");
    // A new tab has no access token, only the refresh cookie: it is in without logging in.
    const tab = await admin.context().newPage();
    await tab.goto(`${portal}/leads`);
    await tab.waitForSelector("td:has-text('Babbage')");
    await tab.close();
  });

  await step("a session that truly ended says so, keeps the half-written lead, and comes back to it", async () => {
    await admin.goto(`${portal}/leads/new`);
    await admin.fill("input[name=lastName]", "Draftington");
    await admin.fill("input[name=email]", "draft@example.com");
    // Logged out elsewhere: the refresh credential is revoked, and the access token runs out.
    await admin.evaluate(async () => {
      await fetch("/auth/logout", { method: "POST" });
      const key = "soho-portal-session";
      const stored = JSON.parse(sessionStorage.getItem(key));
      stored.session.accessToken = "expired.token.value";
      sessionStorage.setItem(key, JSON.stringify(stored));
    });
    // The page reloaded (its access token read again): what was typed is still there.
    await admin.reload();
    await admin.waitForSelector("text=What you were typing before is back");
    await admin.click("button:has-text('Submit lead')");
    await admin.waitForSelector("h1:has-text('Log in')");
    await admin.waitForSelector("text=Your session has ended");
    await check(admin, "13-login-expired");
    await admin.fill("input[name=email]", "owner@acme.example");
    await admin.fill("input[name=password]", PASSWORD);
    await admin.click("button:has-text('Log in')");
    await admin.waitForSelector("h1:has-text('New lead')");
    if ((await admin.inputValue("input[name=lastName]")) !== "Draftington") throw new Error("the draft was lost");
    await admin.click("button:has-text('Submit lead')");
    await admin.waitForSelector("text=Lead submitted");
  });

  await step("an admin creates an API key, sees it once, uses it, and revokes it", async () => {
    await admin.click("nav >> text=Profile");
    await admin.fill("form[aria-label='Create an API key'] input[name=name]", "Our CRM");
    await admin.click("button:has-text('Create key')");
    const shown = await admin.waitForSelector("input[readonly][value^='sk_live_']");
    const key = await shown.inputValue();
    await admin.waitForSelector("td:has-text('Our CRM')");
    await check(admin, "14-api-keys");
    const used = await fetch(`${portal}/leads`, { headers: { authorization: `Bearer ${key}`, accept: "application/json" } });
    if (used.status !== 200) throw new Error(`the key was refused: ${used.status}`);
    admin.once("dialog", (dialog) => dialog.accept());
    await admin.click("tr:has-text('Our CRM') button:has-text('Revoke')");
    await admin.waitForSelector("td:has-text('Our CRM')", { state: "detached" });
    const refused = await fetch(`${portal}/leads`, { headers: { authorization: `Bearer ${key}`, accept: "application/json" } });
    if (refused.status !== 401) throw new Error(`a revoked key was answered ${refused.status}`);
  });

  await step("an admin registers a webhook endpoint, sends a test event, and sees it delivered", async () => {
    // The partner's system: a receiver on this machine (dev mode takes loopback endpoints).
    const received = [];
    const receiver = createServer((request, response) => {
      let body = "";
      request.on("data", (chunk) => (body += chunk));
      request.on("end", () => {
        received.push({ id: request.headers["webhook-id"], signature: request.headers["webhook-signature"], body });
        response.writeHead(204).end();
      });
    });
    await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    try {
      await admin.click("nav >> text=Profile");
      await admin.fill("form[aria-label='Register a webhook endpoint'] input[name=url]", `http://127.0.0.1:${receiver.address().port}/hook`);
      await admin.click("button:has-text('Register endpoint')");
      await admin.waitForSelector("input[readonly][value^='whsec_']");
      await admin.click("button:has-text('Send test event')");
      for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
      if (received.length !== 1 || !received[0].signature?.startsWith("v1,")) throw new Error(`the receiver got ${JSON.stringify(received)}`);
      if (JSON.parse(received[0].body).type !== "webhook.test") throw new Error(`not the test event: ${received[0].body}`);
      await admin.click("button:has-text('Deliveries')");
      await admin.waitForSelector(`tr[data-delivery='${received[0].id}'] [data-testid=delivery-state]:has-text('delivered')`);
      await check(admin, "15-webhooks");
    } finally {
      receiver.close();
    }
  });

  await step("an auditor finds the lead, steps through its timeline, sees it between two changes, a partner's past figures, and the log verified", async () => {
    // Auditors are created by the operator, on the command line, against the running portal's data.
    const printed = execFileSync(binary, ["user", "create-auditor", "--email", "auditor@example.com"], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DATA_DIR: data, RUST_LOG: "warn" },
      encoding: "utf8",
    });
    const token = printed.match(/register\?token=(\S+)/)?.[1];
    if (!token) throw new Error(`no registration link in: ${printed}`);
    const auditor = watchPolicy(await (await browser.newContext()).newPage());
    await auditor.goto(`${portal}/register?token=${token}`);
    await auditor.fill("input[name=name]", "Audrey Auditor");
    await auditor.fill("input[name=password]", PASSWORD);
    await auditor.fill("input[name=confirm]", PASSWORD);
    await auditor.click("button:has-text('Create my account')");
    await auditor.waitForSelector("h1:has-text('Audit')");
    await auditor.fill("input[name=id]", leadId);
    await auditor.click("form[aria-label='Find a lead by its id'] button");
    await auditor.waitForSelector(`table a[href='/audit/leads/${leadId}']`);
    await check(auditor, "16-audit-find");
    await auditor.click(`table a[href='/audit/leads/${leadId}']`);
    await auditor.waitForSelector("[data-testid=timeline] li:has-text('Status contacted → converted')");
    await auditor.waitForSelector("[data-testid=state-status]:has-text('converted')");
    await auditor.click("button:has-text('Previous event')");
    await auditor.waitForSelector("[data-testid=state-status]:has-text('contacted')");
    await auditor.click("button:has-text('Check its receipt against the log')");
    await auditor.waitForSelector("[data-testid=receipt-check]:has-text('The receipt holds')");
    await check(auditor, "17-audit-lead");
    await auditor.click("dl >> a[href^='/audit/partners/']");
    await auditor.waitForSelector("h1:has-text('Acme Referrals Ltd')");
    await auditor.waitForSelector("[data-testid=status-converted]:has-text('1')");
    await auditor.fill("input[name=at]", "2020-01-01T00:00:00");
    await auditor.click("form[aria-label='Figures at an instant'] button");
    await auditor.waitForSelector("[data-testid=total-leads]:has-text('0')");
    await check(auditor, "18-audit-partner-past");
    // The auditor's pages survive a reload and open from a direct link, the instant kept.
    const pastUrl = auditor.url();
    await auditor.reload();
    await auditor.waitForSelector("[data-testid=total-leads]:has-text('0')");
    for (const path of [`/audit/leads/${leadId}`, new URL(pastUrl).pathname + new URL(pastUrl).search, "/audit"]) {
      const tab = await auditor.context().newPage();
      await tab.goto(`${portal}${path}`);
      await tab.waitForSelector("h1");
      if ((await tab.innerText("body")).includes("Unexpected token")) throw new Error(`${path}: JSON read as the page`);
      if (path.includes("at=")) await tab.waitForSelector("[data-testid=total-leads]:has-text('0')");
      await tab.close();
    }
    await auditor.click("nav >> text=Audit");
    await auditor.click("button:has-text('Verify the whole log')");
    await auditor.waitForSelector("[data-testid=verdict]:has-text('Intact')", { timeout: 30_000 });
    await check(auditor, "19-audit-verified");
    // The admin sees the lead's registration receipt on its page.
    await admin.goto(`${portal}/leads/${leadId}`);
    await admin.waitForSelector("[data-testid=receipt-hash]");
  });

  await step("a forgotten password is reset with an emailed link", async () => {
    const page = watchPolicy(await (await browser.newContext()).newPage());
    await page.goto(`${portal}/login`);
    await page.click("text=Forgot your password?");
    // The login form has an email field too: fill only once the page has changed (a client-side
    // route change, which click does not wait for), or the address lands in the login form and
    // the forgotten-password form is sent empty (the browser then refuses it: no request at all).
    await page.waitForSelector("h1:has-text('Forgot your password?')");
    await page.fill("input[name=email]", "sam@acme.example");
    await page.click("button:has-text('Send me a link')");
    await page.waitForSelector("h1:has-text('Check your email'), [role=alert]");
    if (!(await page.$("h1:has-text('Check your email')"))) throw new Error(`no link was sent: ${await page.textContent("main")}`);
    await check(page, "15-forgot-password");
    let link = null;
    for (let tries = 0; !link && tries < 20; tries += 1) {
      await page.goto(`${portal}/dev/mailbox`);
      link = await page.$("article:has-text('reset your password') a[href*='/reset-password?token=']");
      if (!link) await page.waitForTimeout(250);
    }
    if (!link) throw new Error("no password reset email in the dev mailbox");
    await page.goto(await link.getAttribute("href"));
    const fresh = "a brand new passphrase";
    await page.fill("input[name=password]", fresh);
    await page.fill("input[name=confirm]", fresh);
    await check(page, "16-reset-password");
    await page.click("button:has-text('Set the new password')");
    await page.waitForSelector("text=Your password is changed");
    await page.fill("input[name=email]", "sam@acme.example");
    await page.fill("input[name=password]", fresh);
    await page.click("button:has-text('Log in')");
    await page.waitForSelector("[data-testid=total-leads]");
    // The admin sees Sam's sign-in, and disabling asks first (and can be taken back).
    await admin.click("nav >> text=Team");
    const sam = "tr[data-account='sam@acme.example']";
    await admin.waitForSelector(`${sam} td[data-label='Last sign-in']:not(:has-text('Never'))`);
    await admin.click(`${sam} button:has-text('Disable…')`);
    await admin.click(`${sam} [role=group] button:has-text('Cancel')`);
    await admin.waitForSelector(`${sam} td:has-text('active')`);
    await admin.click(`${sam} button:has-text('Disable…')`);
    await check(admin, "17-team-confirm-disable");
    await admin.click(`${sam} button.danger:has-text('Disable Sam Sub')`);
    await admin.waitForSelector(`${sam} td:has-text('disabled')`);
    await admin.click(`${sam} button:has-text('Enable')`);
    await admin.waitForSelector(`${sam} td:has-text('active')`);
  });

  await step("on a phone-sized screen the pages still work", async () => {
    await admin.setViewportSize({ width: 390, height: 844 });
    await admin.click("nav >> text=Leads");
    await admin.waitForSelector("td:has-text('Babbage')");
    // Rows are cards whose values say which column they are.
    const label = await admin.$eval("tr:has(td:has-text('Babbage')) td[data-label='Status']", (td) => getComputedStyle(td, "::before").content);
    if (label !== '"Status"') throw new Error(`a phone-width lead card does not label its status: ${label}`);
    await check(admin, "14-leads-phone");
    // The headers that sort are hidden here; the filter form sorts as well.
    await admin.selectOption("form[aria-label='Filter leads'] select[name=sort]", { label: "Last update" });
    await admin.click("form[aria-label='Filter leads'] button:has-text('Apply')");
    await admin.waitForURL(/sort=updated/);
    await admin.waitForSelector("td:has-text('Babbage')");
    // Every other page at this width: laid out for it, and accessible.
    for (const [path, heading, name] of [[`/leads/${leadId}`, "Lovelace", "20-lead-phone"], ["/", "Dashboard", "21-dashboard-phone"], ["/leads/new", "New lead", "22-new-lead-phone"], ["/team", "Team", "23-team-phone"], ["/profile", "Acme", "24-profile-phone"]]) {
      await admin.goto(`${portal}${path}`);
      await admin.waitForSelector(`h1:has-text('${heading}')`);
      await admin.waitForLoadState("networkidle");
      await check(admin, name);
    }
    const phone = { viewport: { width: 390, height: 844 } };
    const visitor = watchPolicy(await (await browser.newContext(phone)).newPage());
    await visitor.goto(publicFormUrl);
    await visitor.waitForSelector("h1:has-text('Contact Acme Referrals Ltd')");
    await check(visitor, "25-public-form-phone");
    await visitor.context().close();
    // Registration, from an invitation sent at this width.
    await admin.goto(`${portal}/team`);
    await admin.fill("form[aria-label='Invite a sub-account'] input[name=name]", "Pat Phone");
    await admin.fill("form[aria-label='Invite a sub-account'] input[name=email]", "pat@acme.example");
    await admin.click("button:has-text('Invite')");
    await admin.waitForSelector("td:has-text('pat@acme.example')");
    const invitee = watchPolicy(await (await browser.newContext(phone)).newPage());
    await invitee.goto(`${portal}/dev/mailbox`);
    const invitation = await invitee.waitForSelector("article:has-text('pat@acme.example') a[href*='/register?token=']");
    await invitee.goto(await invitation.getAttribute("href"));
    await invitee.waitForSelector("[data-testid=invitation]:has-text('pat@acme.example')");
    await check(invitee, "26-register-phone");
    await invitee.context().close();
  });
  await step("a user renames itself and changes its own password", async () => {
    await admin.setViewportSize({ width: 1280, height: 800 });
    await admin.click("nav >> text=Profile");
    await admin.fill("form[aria-label='Your name'] input[name=name]", "Olive O'Owner");
    await admin.click("button:has-text('Save name')");
    await admin.waitForSelector("text=Your name is saved.");
    await admin.waitForSelector("header >> text=Olive O'Owner");
    await admin.fill("input[name=currentPassword]", "not the password!");
    await admin.fill("input[name=newPassword]", "an admin's new passphrase");
    await admin.fill("input[name=confirm]", "an admin's new passphrase");
    await admin.click("button:has-text('Change password')");
    await admin.waitForSelector("text=is not your current password");
    await admin.fill("input[name=currentPassword]", PASSWORD);
    await admin.click("button:has-text('Change password')");
    await admin.waitForSelector("text=Your password is changed");
    await check(admin, "18-your-account");
    // Still logged in here, with the new session.
    await admin.reload();
    await admin.waitForSelector("header >> text=Olive O'Owner");
    await admin.click("nav >> text=Leads");
    await admin.waitForSelector("td:has-text('Babbage')");
    // The CRM's change of Lovelace (earlier) was emailed to its submitter, with a way to stop.
    await admin.goto(`${portal}/dev/mailbox`);
    const stop = await admin.waitForSelector("article:has-text('Lovelace'):has-text('owner@acme.example') a[href*='/unsubscribe?user=']");
    await admin.goto(await stop.getAttribute("href"));
    await admin.click("button:has-text('Stop these emails')");
    await admin.waitForSelector("text=you will get no more emails about leads");
    await check(admin, "19-unsubscribed");
    await admin.click("a:has-text('Profile')");
    await admin.waitForSelector("input[name=notifications][value=off]:checked");
    await admin.click("label:has-text('As it happens')");
    await admin.waitForSelector("text=You will get an email as things happen to your leads.");
    await admin.click("label:has-text('Once a day')");
    await admin.waitForSelector("text=You will get one email a day about your leads.");
    await admin.reload();
    await admin.waitForSelector("input[name=notifications][value=daily]:checked");
  });
  await step("a partner renamed to markup gets an embed code that runs nothing on a host page", async () => {
    // Renamed in Soho CRM (its partner.updated webhook), as a hostile or careless operator might.
    const hostile = `Evil" onload="alert(document.domain)`;
    const state = await (await fetch(`${simulator}/sim/state`)).json();
    const acme = state.partners.find((p) => p.email === "owner@acme.example");
    const renamed = await fetch(`${simulator}/sim/partners`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...acme, name: hostile, approved: true }) });
    if (!renamed.ok) throw new Error(`the simulator refused the rename: ${renamed.status}`);
    let code = "";
    for (const until = Date.now() + 15_000; !code.includes("Evil") && Date.now() < until; await admin.waitForTimeout(200)) {
      await admin.goto(`${portal}/profile`);
      await admin.waitForSelector("textarea[readonly]");
      code = await admin.inputValue("textarea[readonly]");
    }
    if (!code.includes("Evil")) throw new Error("the partner's new name never reached the portal");
    const site = createServer((_, res) => res.writeHead(200, { "content-type": "text/html" }).end(
      `<!doctype html><html lang="en"><head><title>Host</title></head><body><h1>A partner's site</h1>${code}</body></html>`));
    await new Promise((r) => site.listen(0, "127.0.0.1", r));
    const host = await (await browser.newContext()).newPage();
    const dialogs = [];
    host.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss(); });
    await host.goto(`http://127.0.0.1:${site.address().port}/`);
    await host.frameLocator("iframe").locator("button:has-text('Send')").waitFor();
    // The name stayed an attribute's text: no handler, no dialog, the title exactly the name.
    const handlers = await host.$$eval("[onload], [onerror]", (found) => found.length);
    const title = await host.$eval("iframe", (f) => f.getAttribute("title"));
    site.close();
    await host.context().close();
    if (dialogs.length || handlers) throw new Error(`the embed ran the name as script: ${dialogs.join(", ")} (${handlers} handlers)`);
    if (title !== `Contact ${hostile}`) throw new Error(`the frame's title is not the name as text: ${title}`);
  });
} catch (error) {
  // A step's failure was reported by `step`; anything else (a browser context that would not
  // open, say) is a failure of its own.
  if (!reported) {
    failed += 1;
    console.log(`not ok - outside any step\n  ${String(error?.stack ?? error).split("\n").slice(0, 6).join("\n  ")}`);
  }
} finally {
  await browser.close();
  child.kill("SIGTERM");
  await new Promise((r) => child.on("exit", r));
  rmSync(data, { recursive: true, force: true });
}
if (passed + failures.length < STEPS) {
  failed += 1;
  console.log(`not ok - ${STEPS - passed - failures.length} of ${STEPS} steps never ran`);
}
console.log(`screenshots: ${artifacts}`);
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
