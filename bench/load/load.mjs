// Load test for "tessera serve": N concurrent clients, each sending streamed
// chat completions back to back for a fixed time (questions from the facts
// model's eval_dev.json, documents in the system message or, with
// --chunks, registered once as chunks and cited). Reports failures,
// throughput, latency percentiles and the server's resident memory.
//
//   node bench/load/load.mjs --url http://127.0.0.1:8000 --model-dir DIR
//        [--clients 32] [--warmup 30] [--duration 60] [--max-tokens 32]
//        [--pid SERVER_PID] [--chunks] [--cases N (the first N only)] [--json OUT.json]
import fs from "node:fs";

const args = {clients: 32, duration: 60, warmup: 30, "max-tokens": 32, url: "", "model-dir": "", pid: "",
              json: "", chunks: false, cases: 0};
for (let i = 2; i < process.argv.length; i++) {
  const k = process.argv[i].replace(/^--/, "");
  if (!(k in args)) { console.error("unknown option " + process.argv[i]); process.exit(2); }
  if (typeof args[k] === "boolean") args[k] = true; else args[k] = process.argv[++i];
}
// warm-up first (not measured), then the measured duration
const N = +args.clients, WARM = +args.warmup * 1000, DUR = WARM + +args.duration * 1000, MAXTOK = +args["max-tokens"];
const URL = args.url;
const allCases = JSON.parse(fs.readFileSync(args["model-dir"] + "/eval_dev.json", "utf8")).cases;
const cases = +args.cases > 0 ? allCases.slice(0, +args.cases) : allCases;

function rssKiB(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/);
    return m ? +m[1] : null;
  } catch (e) { return null; }
}

// CPU seconds the server has used (utime + stime, 100 ticks per second).
function cpuSec(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch (e) { return null; }
}

// Per-case chunk ids (--chunks): registered once before the run.
const chunkIds = new Map();
async function registerChunks() {
  for (const c of cases) {
    const ids = [];
    for (const d of c.documents) {
      const r = await fetch(URL + "/v1/chunks", {method: "POST", headers: {"Content-Type": "application/json"},
                                                 body: JSON.stringify({text: d, type: "document"})});
      if (!r.ok) throw new Error("POST /v1/chunks: " + r.status + " " + await r.text());
      ids.push((await r.json()).id);
    }
    chunkIds.set(c, ids);
  }
}
function messagesOf(c) {
  if (!args.chunks)
    return [{role: "system", content: c.system + c.documents.map((d, i) => `\n\n[Document ${i + 1}]\n${d}`).join("")},
            {role: "user", content: c.question}];
  const parts = [];
  chunkIds.get(c).forEach((id, i) => {
    parts.push({type: "text", text: (i === 0 ? c.system : "") + `\n\n[Document ${i + 1}]\n`});
    parts.push({type: "chunk", chunk_id: id});
  });
  return [{role: "system", content: parts}, {role: "user", content: c.question}];
}

let t0 = performance.now(); // reset when the clients start
// counts cover the whole run; throughput and latencies the measured part
const stats = {ok: 0, failed: 0, errors: {}, correct: 0, tokens: 0, ttft: [], itl: [], e2e: [],
               okAfterWarm: 0, tokensAfterWarm: 0};
function fail(why) {
  stats.failed++;
  stats.errors[why] = (stats.errors[why] || 0) + 1;
}

// One streamed request; records its timings.
async function one(c) {
  const start = performance.now();
  let res;
  try {
    res = await fetch(URL + "/v1/chat/completions", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({model: "tessera", messages: messagesOf(c), temperature: 0, max_tokens: MAXTOK,
                            stream: true, stream_options: {include_usage: true}})});
  } catch (e) { fail("connect: " + (e.cause && e.cause.code || e.message)); return; }
  if (res.status !== 200) { fail("HTTP " + res.status); await res.text().catch(() => ""); return; }
  const reader = res.body.getReader(), dec = new TextDecoder();
  let buf = "", text = "", first = null, last = null, usage = null, finish = null, done = false;
  const gaps = [];
  try {
    for (;;) {
      const {value, done: end} = await reader.read();
      if (end) break;
      buf += dec.decode(value, {stream: true});
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, i); buf = buf.slice(i + 2);
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") { done = true; continue; }
        const ev = JSON.parse(data);
        if (ev.error) throw new Error("stream error: " + ev.error.message);
        if (ev.usage) usage = ev.usage;
        for (const ch of ev.choices || []) {
          if (ch.delta && ch.delta.content) {
            const now = performance.now();
            if (first === null) first = now; else gaps.push(now - last);
            last = now;
            text += ch.delta.content;
          }
          if (ch.finish_reason) finish = ch.finish_reason;
        }
      }
    }
  } catch (e) { fail(e.message.slice(0, 80)); return; }
  if (!done || !usage || !finish || first === null) { fail("incomplete stream"); return; }
  const end = performance.now();
  stats.ok++;
  stats.tokens += usage.completion_tokens;
  if (text.trim() === c.answer) stats.correct++;
  if (start - t0 < WARM) return;
  stats.okAfterWarm++; stats.tokensAfterWarm += usage.completion_tokens;
  stats.ttft.push(first - start);
  stats.e2e.push(end - start);
  for (const g of gaps) stats.itl.push(g);
}

async function client(k) {
  let i = k * 7;
  while (performance.now() - t0 < DUR) await one(cases[(i++ * 13) % cases.length]);
}

const r2 = (x) => Math.round(x * 100) / 100;
function pct(a, p) {
  if (!a.length) return NaN;
  const s = Float64Array.from(a).sort();
  return s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))];
}

if (args.chunks) await registerChunks();
t0 = performance.now();
const rss = [];
// Every second: the server's VmRSS, CPU time and KV evictions so far (once
// the pool has been full, i.e. after the first eviction, all of it is resident).
async function evictions() {
  try {
    const m = (await (await fetch(URL + "/metrics")).text()).match(/^tessera_kv_evictions_total (\S+)/m);
    return m ? Number(m[1]) : null;
  } catch (e) { return null; }
}
const sampler = args.pid ? setInterval(async () => {
  const t = (performance.now() - t0) / 1000, kib = rssKiB(args.pid);
  rss.push({t, kib, cpu: cpuSec(args.pid), ccpu: process.cpuUsage(), ev: await evictions()});
}, 1000) : null;
const rssStart = args.pid ? rssKiB(args.pid) : null;
const t0Real = t0;
await Promise.all(Array.from({length: N}, (_, k) => client(k)));
const wall = (performance.now() - t0Real) / 1000;
if (sampler) clearInterval(sampler);
const rssEnd = args.pid ? rssKiB(args.pid) : null;
// the server's own view at the end (Prometheus text)
const server = {};
try {
  const text = await (await fetch(URL + "/metrics")).text();
  const want = {"tessera_kv_blocks{state=\"total\"}": "kv_blocks_total", "tessera_kv_blocks{state=\"cached\"}": "kv_blocks_cached",
                tessera_prefix_cache_hit_rate: "prefix_hit_rate", tessera_kv_evictions_total: "kv_evictions",
                tessera_preemptions_total: "preemptions", tessera_cascade_steps_total: "cascade_steps",
                tessera_chunk_hit_rate: "chunk_hit_rate"};
  for (const line of text.split("\n")) {
    const sp = line.lastIndexOf(" ");
    const k = line.slice(0, sp);
    if (k in want) server[want[k]] = Number(line.slice(sp + 1));
  }
} catch (e) { server.error = e.message; }

const afterWarm = rss.filter((r) => r.t >= WARM / 1000 && r.kib);
const evAtWarm = afterWarm.length ? afterWarm[0].ev : null;
// CPU over the measured part: server and this client, in cores busy
let cpu = null;
if (afterWarm.length) {
  const a = afterWarm[0], endCpu = cpuSec(args.pid), endC = process.cpuUsage(), dt = (performance.now() - t0) / 1000 - a.t;
  cpu = {server_cores: r2((endCpu - a.cpu) / dt),
         client_cores: r2((endC.user + endC.system - a.ccpu.user - a.ccpu.system) / 1e6 / dt)};
}
const rssWarm = afterWarm.length ? afterWarm[0].kib : null;
const rssMaxAfterWarm = afterWarm.length ? Math.max(...afterWarm.map((r) => r.kib)) : null;
const measured = wall - WARM / 1000; // (requests in flight at the end finish after DUR)
const out = {
  clients: N, cases: cases.length, warmup_s: WARM / 1000, measured_s: r2(measured), requests_in_warmup: stats.ok - stats.okAfterWarm, max_tokens: MAXTOK, mode: args.chunks ? "chunks" : "text",
  requests_ok: stats.ok, requests_failed: stats.failed, errors: stats.errors,
  answers_correct: stats.correct,
  requests_per_s: r2(stats.okAfterWarm / measured), tokens_per_s: r2(stats.tokensAfterWarm / measured),
  ttft_ms: {p50: r2(pct(stats.ttft, 50)), p90: r2(pct(stats.ttft, 90)), p99: r2(pct(stats.ttft, 99))},
  itl_ms: {p50: r2(pct(stats.itl, 50)), p90: r2(pct(stats.itl, 90)), p99: r2(pct(stats.itl, 99))},
  e2e_ms: {p50: r2(pct(stats.e2e, 50)), p90: r2(pct(stats.e2e, 90)), p99: r2(pct(stats.e2e, 99))},
  server,
  rss_mib_every_5s: rss.filter((r, i) => i % 5 === 4).map((r) => r.kib && Math.round(r.kib / 1024)).join(" "),
  kv_evictions_at_warmup_end: evAtWarm,
  cpu_during_measurement: cpu,
  rss_kib: {start: rssStart, after_warmup: rssWarm, max_after_warmup: rssMaxAfterWarm, end: rssEnd},
};
console.log(JSON.stringify(out, null, 1));
if (args.json) fs.writeFileSync(args.json, JSON.stringify(out) + "\n");
process.exit(stats.failed ? 1 : 0);
