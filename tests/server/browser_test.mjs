// Drives the chat page of a running "tessera serve" in headless Chromium
// over the Chrome DevTools Protocol (a small client on the ws package).
// Environment: TS_URL (server), TS_CDP_DIR (Chromium's --user-data-dir: its
// DevToolsActivePort file names the debugging port), TS_MODEL_DIR (facts
// model: eval_dev.json), TS_SCREENSHOT (PNG path).
// Prints FAIL lines and "browser_test: N passed, N failed".
import fs from "node:fs";
import WebSocket from "ws";

const URL = process.env.TS_URL;
const KEY = process.env.TS_KEY; // the server requires this API key
const shot = process.env.TS_SCREENSHOT;
const cases = JSON.parse(fs.readFileSync(process.env.TS_MODEL_DIR + "/eval_dev.json", "utf8")).cases;
const kase = cases.find((c) => c.n_docs === 2 && c.reference_output === c.answer);

let passed = 0, failed = 0;
function check(cond, what, detail) {
  if (cond) { passed++; return true; }
  failed++;
  console.log("FAIL " + what + (detail !== undefined ? ": " + JSON.stringify(detail) : ""));
  return false;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* ---- a minimal CDP client: one WebSocket to one page target ---- */
class Cdp {
  constructor(ws) {
    this.ws = ws; this.next = 1; this.pending = new Map(); this.listeners = [];
    ws.on("message", (data) => {
      const m = JSON.parse(data.toString());
      if (m.id && this.pending.has(m.id)) {
        const {resolve, reject, method} = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error) reject(new Error(method + ": " + m.error.message)); else resolve(m.result);
      } else if (m.method) {
        for (const l of this.listeners) l(m.method, m.params);
      }
    });
    ws.on("close", () => { for (const p of this.pending.values()) p.reject(new Error("CDP socket closed")); });
  }
  send(method, params = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, {resolve, reject, method});
      this.ws.send(JSON.stringify({id, method, params}));
    });
  }
  on(fn) { this.listeners.push(fn); }
  // Evaluates an expression in the page and returns its value (awaits promises).
  async eval(expr) {
    const r = await this.send("Runtime.evaluate", {expression: expr, returnByValue: true, awaitPromise: true});
    if (r.exceptionDetails) throw new Error("page: " + (r.exceptionDetails.exception && r.exceptionDetails.exception.description || r.exceptionDetails.text));
    return r.result.value;
  }
  // Polls expr until it is truthy; returns its value or null after ms.
  async waitFor(expr, ms) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const v = await this.eval(expr).catch(() => null);
      if (v) return v;
      await sleep(100);
    }
    return null;
  }
}

async function connect() {
  const file = process.env.TS_CDP_DIR + "/DevToolsActivePort";
  let port = null;
  for (let i = 0; i < 300 && !port; i++) {
    try { port = fs.readFileSync(file, "utf8").split("\n")[0].trim() || null; } catch (e) { await sleep(100); }
  }
  if (!port) throw new Error("Chromium did not write " + file);
  let page = null;
  for (let i = 0; i < 100 && !page; i++) {
    try {
      const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
      page = list.find((t) => t.type === "page");
    } catch (e) { /* not ready */ }
    if (!page) await sleep(100);
  }
  if (!page) throw new Error("no page target in Chromium");
  const ws = new WebSocket(page.webSocketDebuggerUrl, {perMessageDeflate: false});
  await new Promise((resolve, reject) => { ws.once("open", resolve); ws.once("error", reject); });
  return new Cdp(ws);
}

// Sets a form field's value the way typing would (fires input/change).
const setField = (id, value) => `(() => { const e = document.getElementById(${JSON.stringify(id)});
  e.focus(); e.value = ${JSON.stringify(value)}; e.dispatchEvent(new Event("input", {bubbles: true}));
  e.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`;

async function main() {
  const cdp = await connect();
  const exceptions = [], responses = [];
  cdp.on((method, p) => {
    if (method === "Runtime.exceptionThrown") exceptions.push(p.exceptionDetails.exception ? p.exceptionDetails.exception.description : p.exceptionDetails.text);
    if (method === "Network.responseReceived") responses.push({url: p.response.url, status: p.response.status, mime: p.response.mimeType});
  });
  await cdp.send("Runtime.enable");
  await cdp.send("Network.enable");
  await cdp.send("Page.enable");
  await cdp.send("Emulation.setDeviceMetricsOverride", {width: 1280, height: 860, deviceScaleFactor: 1, mobile: false});
  await cdp.send("Page.navigate", {url: URL + "/"});
  const loaded = await cdp.waitFor(`document.readyState === "complete" && !!document.getElementById("send")`, 15000);
  check(loaded, "the chat page loads from GET /");
  if (!loaded) return;
  const modelText = `(() => { const t = document.getElementById("model").textContent; return t.includes("…") ? null : t; })()`;
  const noKey = await cdp.waitFor(modelText, 10000);
  check(noKey === "API key needed", "without a key the page says one is needed", noKey);
  await cdp.eval(setField("apikey", KEY));
  const model = await cdp.waitFor(`(() => { const t = ${modelText}; return t && t !== "API key needed" ? t : null; })()`, 10000);
  check(model && !/models:|no model/.test(model), "with the key the page shows the model name", model);
  const external = responses.filter((r) => !r.url.startsWith(URL) && !r.url.startsWith("data:"));
  check(external.length === 0, "nothing fetched from outside the server", external);

  // documents panel: paste each document and register it as a chunk
  for (let i = 0; i < kase.documents.length; i++) {
    await cdp.eval(setField("doctext", kase.documents[i]));
    await cdp.eval(`document.getElementById("register").click(), true`);
    const n = await cdp.waitFor(`document.querySelectorAll("#chunks li").length >= ${i + 1} && document.getElementById("doctext").value === "" ? document.querySelectorAll("#chunks li").length : 0`, 10000);
    check(n === i + 1, `document ${i + 1} registered and listed`,
          await cdp.eval(`document.getElementById("docerr").textContent`).catch(() => null));
  }
  const ticked = await cdp.eval(`[...document.querySelectorAll("#chunks input[type=checkbox]")].filter((b) => b.checked).length`);
  check(ticked === kase.documents.length, "registered documents are ticked for the next message", ticked);

  // ask the case's question
  await cdp.eval(setField("system", kase.system));
  // exact: chunk tokens computed like text, so the answer is the full-prefill one
  await cdp.eval(setField("chunkmode", "exact"));
  await cdp.eval(setField("input", kase.question));
  await cdp.eval(`document.getElementById("send").click(), true`);
  const answer = await cdp.waitFor(`(() => { const m = [...document.querySelectorAll("#log .msg.assistant")].pop();
    return m && m.dataset.done ? m.querySelector(".body").textContent : null; })()`, 30000);
  const err = await cdp.eval(`[...document.querySelectorAll("#log .msg.error .body")].map((e) => e.textContent).join(" | ")`);
  check(answer && answer.trim().length > 0 && !err, "a streamed answer appears", {answer, err});
  check(answer && answer.includes(kase.answer), "the answer from the ticked chunks is right", {answer, want: kase.answer});
  const sse = responses.find((r) => r.url.endsWith("/v1/chat/completions"));
  check(sse && sse.status === 200 && sse.mime === "text/event-stream", "the answer came as server-sent events", sse);
  const meta = await cdp.eval(`[...document.querySelectorAll("#log .msg.assistant .meta")].pop().textContent`);
  check(/finish: stop/.test(meta) && /generated tokens/.test(meta), "finish reason and usage shown", meta);

  // live statistics: the poller fills them within a few seconds
  const stats = await cdp.waitFor(`(() => { const g = (id) => document.getElementById(id).textContent;
    return g("s-prefix") !== "–" && g("s-chunk") !== "–" && /\\d/.test(g("s-kv")) && g("s-tps") !== "–" ?
      {prefix: g("s-prefix"), chunk: g("s-chunk"), kv: g("s-kv"), tps: g("s-tps")} : null; })()`, 6000);
  check(stats && /%$/.test(stats.prefix) && /%$/.test(stats.chunk), "cache statistics shown", stats);
  // and they follow the server: the answer's tokens show in tokens/s (10 s window) at the next poll
  const tps = await cdp.waitFor(`(() => { const v = parseFloat(document.getElementById("s-tps").textContent);
    return v > 0 ? v : null; })()`, 6000);
  check(tps > 0, "live statistics update after the answer (tokens/s > 0)", tps);

  await cdp.send("Page.bringToFront");
  const png = await cdp.send("Page.captureScreenshot", {format: "png"});
  fs.writeFileSync(shot, Buffer.from(png.data, "base64"));
  check(fs.statSync(shot).size > 10000, "screenshot saved", shot);

  // an error is shown, not swallowed: cite a chunk deleted behind the page's back
  const first = await cdp.eval(`document.querySelector("#chunks input[type=checkbox]").dataset.id`);
  const del = await fetch(URL + "/v1/chunks/" + first, {method: "DELETE", headers: {Authorization: "Bearer " + KEY}});
  check(del.status === 200, "chunk deleted through the API", del.status);
  const nErr = await cdp.eval(`document.querySelectorAll("#log .msg.error").length`);
  await cdp.eval(setField("input", kase.question));
  await cdp.eval(`document.getElementById("send").click(), true`);
  const shown = await cdp.waitFor(`document.querySelectorAll("#log .msg.error").length > ${nErr} ?
    [...document.querySelectorAll("#log .msg.error .body")].pop().textContent : null`, 15000);
  check(shown && /404/.test(shown), "a request citing a deleted chunk shows the server's error", shown);
  check(exceptions.length === 0, "no uncaught exceptions in the page", exceptions);
  cdp.ws.close();
}

try {
  await main();
} catch (e) {
  check(false, "browser test threw", (e && e.stack) || String(e));
}
console.log(`browser_test: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
