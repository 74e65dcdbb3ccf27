// Drives a running "tessera serve" with the official OpenAI Node SDK.
// Environment: TS_URL (server without a key), TS_URL_KEYED (server started
// with --api-key TS_KEY_A --api-key TS_KEY_B, --max-running 1
// --max-waiting 1; may be empty), TS_MODEL_DIR (the facts model: its
// eval_dev.json gives the questions and the expected answers).
// Prints FAIL lines and "sdk_test: N passed, N failed".
import fs from "node:fs";
import OpenAI from "openai";

const URL1 = process.env.TS_URL;
const URL2 = process.env.TS_URL_KEYED || "";
const KEY_A = process.env.TS_KEY_A, KEY_B = process.env.TS_KEY_B;
const cases = JSON.parse(fs.readFileSync(process.env.TS_MODEL_DIR + "/eval_dev.json", "utf8")).cases;

let passed = 0, failed = 0;
function check(cond, what, detail) {
  if (cond) { passed++; return true; }
  failed++;
  console.log("FAIL " + what + (detail !== undefined ? ": " + (typeof detail === "string" ? detail : JSON.stringify(detail)) : ""));
  return false;
}
// Runs one group; an exception fails the group instead of ending the run.
async function group(name, fn) {
  try { await fn(); } catch (e) { check(false, name + " threw", (e && e.stack) || String(e)); }
}
// Expects promise to reject with an SDK error of class cls and HTTP status.
async function expectError(what, promise, cls, status) {
  try {
    const r = await promise;
    check(false, what + " succeeded", r);
    return null;
  } catch (e) {
    check(e instanceof cls && e.status === status, what + ": " + cls.name + " " + status,
          (e && e.constructor && e.constructor.name) + " " + (e && e.status) + " " + (e && e.message));
    // OpenAI-style error object: {"error":{"message","type","param","code"}}
    const body = e && e.error;
    check(body && typeof body.message === "string" && body.message.length > 0 && typeof body.type === "string" &&
          "param" in body && "code" in body, what + ": OpenAI-style error object", body);
    return e;
  }
}

const client = (url, key) => new OpenAI({baseURL: url + "/v1", apiKey: key || "none", maxRetries: 0, timeout: 60000});
const api = client(URL1);
const trim = (s) => (s || "").trim();

// The facts model was trained on this layout: documents in the system message.
const systemText = (c) => c.system + c.documents.map((d, i) => `\n\n[Document ${i + 1}]\n${d}`).join("");
const messagesOf = (c) => [{role: "system", content: systemText(c)}, {role: "user", content: c.question}];
// Cases HF greedy answers right; short ones keep the test fast.
const good = cases.filter((c) => c.reference_output === c.answer);
const case1 = good.find((c) => c.n_docs === 2) || good[0];
const case3 = good.find((c) => c.n_docs === 3) || good[1];
// a case whose chunked prompt (documents tokenized on their own) still gets
// the full-prefill answer
const caseC = good.find((c) => c.n_docs === 2) || good[1];

let modelId = "tessera";
let greedy = null;     // the non-streamed greedy answer to case1

await group("models.list", async () => {
  const page = await api.models.list();
  const data = page.data;
  check(Array.isArray(data) && data.length >= 1, "models.list returns a model", data);
  if (data && data[0]) {
    modelId = data[0].id;
    check(typeof data[0].id === "string" && data[0].id.length > 0 && data[0].object === "model",
          "model object has id and object \"model\"", data[0]);
  }
});

await group("chat non-streamed", async () => {
  const r = await api.chat.completions.create({model: modelId, messages: messagesOf(case1), temperature: 0, max_tokens: 48});
  check(r.object === "chat.completion" && typeof r.id === "string", "chat.completion object", r);
  const ch = r.choices && r.choices[0];
  greedy = ch && ch.message && ch.message.content;
  check(ch && ch.message.role === "assistant", "assistant role", ch);
  check(trim(greedy) === case1.answer, "chat answer matches eval_dev", {got: greedy, want: case1.answer});
  check(ch && ch.finish_reason === "stop", "finish_reason stop", ch && ch.finish_reason);
  const u = r.usage || {};
  check(u.prompt_tokens > 20 && u.completion_tokens > 0 && u.total_tokens === u.prompt_tokens + u.completion_tokens,
        "usage counts", u);
  globalThis.usage1 = u;
});

await group("chat streamed", async () => {
  const stream = await api.chat.completions.create({model: modelId, messages: messagesOf(case1), temperature: 0,
                                                    max_tokens: 48, stream: true, stream_options: {include_usage: true}});
  let text = "", finish = null, usage = null, n = 0, objOk = true, usageBeforeEnd = false, afterUsage = 0;
  for await (const chunk of stream) {
    n++;
    if (chunk.object !== "chat.completion.chunk") objOk = false;
    if (usage) afterUsage++;
    if (chunk.usage) { if (chunk.choices && chunk.choices.length) usageBeforeEnd = true; usage = chunk.usage; }
    for (const c of chunk.choices || []) {
      if (c.delta && c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check(n >= 3, "stream has several chunks", n);
  check(objOk, "every chunk is a chat.completion.chunk");
  check(greedy !== null && text === greedy, "streamed text equals the non-streamed greedy answer", {text, greedy});
  check(finish === "stop", "stream finish_reason stop", finish);
  check(usage && !usageBeforeEnd && afterUsage === 0, "include_usage: usage in the last chunk (empty choices)", usage);
  const u1 = globalThis.usage1 || {};
  check(usage && usage.prompt_tokens === u1.prompt_tokens && usage.completion_tokens === u1.completion_tokens,
        "streamed usage equals the non-streamed usage", {usage, u1});

  // without include_usage no chunk carries usage
  const s2 = await api.chat.completions.create({model: modelId, messages: messagesOf(case1), temperature: 0,
                                                max_tokens: 4, stream: true});
  let anyUsage = false;
  for await (const chunk of s2) if (chunk.usage) anyUsage = true;
  check(!anyUsage, "no usage chunk without include_usage");
});

await group("completions", async () => {
  const r = await api.completions.create({model: modelId, prompt: case3.prompt, temperature: 0, max_tokens: 48});
  check(r.object === "text_completion", "text_completion object", r.object);
  const c = r.choices && r.choices[0];
  check(c && trim(c.text) === case3.answer, "completion of the raw prompt matches eval_dev", {got: c && c.text, want: case3.answer});
  check(c && c.finish_reason === "stop", "completion finish_reason stop", c && c.finish_reason);
  check(r.usage && r.usage.completion_tokens > 0 && r.usage.prompt_tokens > 20, "completion usage", r.usage);

  const s = await api.completions.create({model: modelId, prompt: case3.prompt, temperature: 0, max_tokens: 48, stream: true});
  let text = "";
  for await (const chunk of s) for (const ch of chunk.choices || []) text += ch.text || "";
  check(c && text === c.text, "streamed completion equals the non-streamed one", {text, want: c && c.text});
});

await group("stop strings", async () => {
  const full = greedy || case1.answer;
  // a stop string from the middle of the greedy answer: the text ends just before it
  const words = full.split(" ");
  const stop = " " + words[Math.floor(words.length / 2)];
  const want = full.slice(0, full.indexOf(stop));
  const r = await api.chat.completions.create({model: modelId, messages: messagesOf(case1), temperature: 0,
                                               max_tokens: 48, stop: [stop, "zzzz-never"]});
  const c = r.choices[0];
  check(c.message.content === want, "text ends before the stop string", {got: c.message.content, want, stop});
  check(c.finish_reason === "stop", "stop string gives finish_reason stop", c.finish_reason);
  const r2 = await api.completions.create({model: modelId, prompt: case1.prompt, temperature: 0, max_tokens: 48, stop});
  check(r2.choices[0].text === want, "completions: stop as one string", {got: r2.choices[0].text, want});
  // streamed: no piece of the stop string leaks out before it is recognised
  const s = await api.chat.completions.create({model: modelId, messages: messagesOf(case1), temperature: 0,
                                               max_tokens: 48, stop: [stop], stream: true});
  let text = "", finish = null;
  for await (const ch of s) for (const c of ch.choices || []) {
    text += (c.delta && c.delta.content) || "";
    if (c.finish_reason) finish = c.finish_reason;
  }
  check(text === want && finish === "stop", "streamed text ends before the stop string", {text, want, finish});
});

await group("max_tokens", async () => {
  const r = await api.chat.completions.create({model: modelId, messages: messagesOf(case1), temperature: 0, max_tokens: 3});
  check(r.choices[0].finish_reason === "length", "max_tokens 3: finish_reason length", r.choices[0].finish_reason);
  check(r.usage.completion_tokens === 3, "max_tokens 3: 3 tokens", r.usage);
  check(greedy && greedy.startsWith(r.choices[0].message.content), "truncated answer is a prefix of the full one",
        r.choices[0].message.content);
  const r2 = await api.chat.completions.create({model: modelId, messages: messagesOf(case1), temperature: 0,
                                                max_completion_tokens: 2});
  check(r2.choices[0].finish_reason === "length" && r2.usage.completion_tokens === 2, "max_completion_tokens 2", r2.usage);
});

await group("seed", async () => {
  const req = (seed) => api.chat.completions.create({model: modelId, temperature: 1.5, top_p: 0.95, seed, max_tokens: 24,
    messages: [{role: "user", content: "Tell me about a city."}]}).then((r) => r.choices[0].message.content);
  const a = await req(1234), b = await req(1234);
  check(a === b, "same seed, same text at temperature 1.5", {a, b});
  const others = new Set([a]);
  for (const s of [1, 2, 3, 4]) others.add(await req(s));
  check(others.size >= 2, "different seeds give different texts", [...others]);
});

// POST /v1/chunks through the SDK's generic methods (it has no chunks resource).
const chunkIds = [];
await group("chunks", async () => {
  for (const d of caseC.documents) {
    const r = await api.post("/chunks", {body: {text: d, type: "document"}});
    check(r && /^[0-9a-f]{64}$/.test(r.id) && r.object === "chunk" && r.tokens > 0 && r.type === "document",
          "POST /v1/chunks returns id, object, tokens, type", r);
    chunkIds.push(r.id);
  }
  const again = await api.post("/chunks", {body: {text: caseC.documents[0], type: "document"}});
  check(again.id === chunkIds[0], "same text registers as the same id", again);

  const list = await api.get("/chunks");
  const listed = (list && list.data || []).map((c) => c.id);
  check(chunkIds.every((id) => listed.includes(id)), "GET /v1/chunks lists them", list);
  const one = await api.get("/chunks/" + chunkIds[1]);
  check(one && one.id === chunkIds[1] && one.tokens > 0, "GET /v1/chunks/{id}", one);

  // cite them in the system message, in the layout the model was trained on
  const parts = [];
  chunkIds.forEach((id, i) => {
    parts.push({type: "text", text: (i === 0 ? caseC.system : "") + `\n\n[Document ${i + 1}]\n`});
    parts.push({type: "chunk", chunk_id: id});
  });
  const msgs = [{role: "system", content: parts}, {role: "user", content: caseC.question}];
  // chunk_mode "exact" (a tessera extension) computes chunk tokens like text:
  // the answer must be the full-prefill one
  const r = await api.chat.completions.create({model: modelId, messages: msgs, temperature: 0, max_tokens: 48,
                                               chunk_mode: "exact"});
  check(trim(r.choices[0].message.content) === caseC.answer, "answer with cited chunks (exact) matches eval_dev",
        {got: r.choices[0].message.content, want: caseC.answer});
  const s = await api.chat.completions.create({model: modelId, messages: msgs, temperature: 0, max_tokens: 48,
                                               stream: true, chunk_mode: "exact"});
  let text = "";
  for await (const ch of s) for (const c of ch.choices || []) text += (c.delta && c.delta.content) || "";
  check(text === r.choices[0].message.content, "streamed answer with cited chunks equals the non-streamed one", text);
  // the default mode places the chunks' cached KV: the chunks count hits
  const before = await api.get("/chunks/" + chunkIds[1]);
  const r1 = await api.chat.completions.create({model: modelId, messages: msgs, temperature: 0, max_tokens: 48});
  check(r1.choices[0].message.content.length > 0 && r1.choices[0].finish_reason === "stop",
        "answer with cited chunks (default mode)", r1.choices[0]);
  const afterUse = await api.get("/chunks/" + chunkIds[1]);
  check(afterUse.hits > before.hits, "a cited chunk counts a hit", {before: before.hits, after: afterUse.hits});
  // one document, reused as it is: the model still answers right
  const c0 = good.find((c) => c.n_docs === 1);
  const id0 = (await api.post("/chunks", {body: {text: c0.documents[0]}})).id;
  const r0 = await api.chat.completions.create({model: modelId, temperature: 0, max_tokens: 48, messages: [
    {role: "system", content: [{type: "text", text: c0.system + "\n\n[Document 1]\n"}, {type: "chunk", chunk_id: id0}]},
    {role: "user", content: c0.question}]});
  check(trim(r0.choices[0].message.content) === c0.answer, "one cited chunk (default mode) answers right",
        {got: r0.choices[0].message.content, want: c0.answer});
  // the brief's form: chunk parts then the question in one user message (accepted)
  const r2 = await api.chat.completions.create({model: modelId, temperature: 0, max_tokens: 8, messages: [
    {role: "user", content: [...chunkIds.map((id) => ({type: "chunk", chunk_id: id})), {type: "text", text: caseC.question}]}]});
  check(r2.choices[0].message.content.length > 0, "chunk parts in a user message are accepted", r2.choices[0]);

  const del = await api.delete("/chunks/" + chunkIds[0]);
  check(del && del.id === chunkIds[0] && del.deleted === true, "DELETE /v1/chunks/{id}", del);
  const after = await api.get("/chunks");
  check(!(after.data || []).some((c) => c.id === chunkIds[0]), "deleted chunk no longer listed", after);
  await expectError("GET deleted chunk", api.get("/chunks/" + chunkIds[0]), OpenAI.NotFoundError, 404);
  await expectError("DELETE deleted chunk", api.delete("/chunks/" + chunkIds[0]), OpenAI.NotFoundError, 404);
  await expectError("cite deleted chunk", api.chat.completions.create({model: modelId, max_tokens: 4,
    messages: [{role: "user", content: [{type: "chunk", chunk_id: chunkIds[0]}, {type: "text", text: "hi"}]}]}),
    OpenAI.NotFoundError, 404);
});

// One sample of GET /metrics (Prometheus text), by "name{labels}".
async function metrics(url) {
  const out = {};
  for (const line of (await (await fetch(url + "/metrics")).text()).split("\n")) {
    if (!line || line[0] === "#") continue;
    const sp = line.lastIndexOf(" ");
    out[line.slice(0, sp)] = Number(line.slice(sp + 1));
  }
  return out;
}

await group("disconnect", async () => {
  // a client that goes away mid-stream cancels its request and frees its KV
  const before = await metrics(URL1);
  const cancelledKey = 'tessera_generations_total{finish_reason="cancelled"}';
  check(cancelledKey in before && 'tessera_kv_blocks{state="used"}' in before, "metrics name cancelled generations and KV blocks used",
        Object.keys(before).filter((k) => /generations|kv_blocks/.test(k)));
  const stream = await api.completions.create({model: modelId, prompt: "The", temperature: 0, max_tokens: 3000, stream: true});
  let n = 0;
  for await (const chunk of stream) { if (++n === 3) break; } // break aborts the HTTP request
  check(n === 3, "streamed a few chunks before hanging up", n);
  let after = null;
  for (let i = 0; i < 50; i++) {
    after = await metrics(URL1);
    if (after[cancelledKey] > before[cancelledKey] && after.tessera_requests_running === 0 &&
        after['tessera_kv_blocks{state="used"}'] === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  check(after[cancelledKey] === before[cancelledKey] + 1, "the hang-up cancelled the generation",
        {before: before[cancelledKey], after: after[cancelledKey]});
  check(after.tessera_requests_running === 0 && after['tessera_kv_blocks{state="used"}'] === 0,
        "nothing left running, no KV blocks in use", {running: after.tessera_requests_running, used: after['tessera_kv_blocks{state="used"}']});
});

await group("errors", async () => {
  const raw = (s) => new TextEncoder().encode(s);
  await expectError("malformed JSON", api.post("/chat/completions", {body: raw("{\"messages\": [}"),
    headers: {"Content-Type": "application/json"}}), OpenAI.BadRequestError, 400);
  await expectError("messages of the wrong type", api.chat.completions.create({model: modelId, messages: "hello"}),
                    OpenAI.BadRequestError, 400);
  await expectError("temperature of the wrong type", api.chat.completions.create({model: modelId, temperature: "hot",
    messages: [{role: "user", content: "hi"}]}), OpenAI.BadRequestError, 400);
  await expectError("max_tokens of the wrong type", api.completions.create({model: modelId, prompt: "hi", max_tokens: "many"}),
                    OpenAI.BadRequestError, 400);
  await expectError("chunk without text", api.post("/chunks", {body: {type: "document"}}), OpenAI.BadRequestError, 400);
  await expectError("chunk of an unknown type", api.post("/chunks", {body: {text: "x y z", type: "poem"}}),
                    OpenAI.BadRequestError, 400);
  const hi = [{role: "user", content: "hi"}];
  await expectError("negative max_tokens", api.chat.completions.create({model: modelId, messages: hi, max_tokens: -1}),
                    OpenAI.BadRequestError, 400);
  await expectError("top_p above 1", api.chat.completions.create({model: modelId, messages: hi, top_p: 2}),
                    OpenAI.BadRequestError, 400);
  await expectError("negative temperature", api.chat.completions.create({model: modelId, messages: hi, temperature: -1}),
                    OpenAI.BadRequestError, 400);
  await expectError("no messages", api.chat.completions.create({model: modelId, messages: []}), OpenAI.BadRequestError, 400);
  await expectError("content of the wrong type", api.chat.completions.create({model: modelId,
    messages: [{role: "user", content: 42}]}), OpenAI.BadRequestError, 400);
  await expectError("message without a role", api.chat.completions.create({model: modelId, messages: [{content: "hi"}]}),
                    OpenAI.BadRequestError, 400);
  await expectError("unknown content part", api.chat.completions.create({model: modelId,
    messages: [{role: "user", content: [{type: "video", url: "x"}]}]}), OpenAI.BadRequestError, 400);
  await expectError("chunk part without chunk_id", api.chat.completions.create({model: modelId,
    messages: [{role: "user", content: [{type: "chunk"}]}]}), OpenAI.BadRequestError, 400);
  await expectError("stop of the wrong type", api.chat.completions.create({model: modelId, messages: hi, stop: 5}),
                    OpenAI.BadRequestError, 400);
  await expectError("completion without a prompt", api.completions.create({model: modelId, max_tokens: 2}),
                    OpenAI.BadRequestError, 400);
  // unknown fields are ignored
  const r = await api.chat.completions.create({model: modelId, max_tokens: 2, messages: [{role: "user", content: "hi"}],
                                               some_unknown_field: {x: 1}});
  check(r.choices && r.choices.length === 1, "unknown fields are ignored", r);

  // a prompt over the context (4096 tokens): random words, each at least one token
  let long = "";
  for (let i = 0; long.length < 60000; i++) long += (i * 7919 % 100003).toString(36) + " ";
  const e = await expectError("prompt over the context", api.chat.completions.create({model: modelId, max_tokens: 4,
    messages: [{role: "user", content: long}]}), OpenAI.BadRequestError, 400);
  check(e && /context|too long|tokens/i.test(e.message), "over-context message names the limit", e && e.message);
  // a body over the size limit (1 MiB by default)
  const huge = "x".repeat(2 << 20);
  const e2 = await expectError("body over the size limit", api.post("/chunks", {body: raw(JSON.stringify({text: huge})),
    headers: {"Content-Type": "application/json"}}), OpenAI.BadRequestError, 400);
  check(e2 && /body|size|large|limit/i.test(e2.message), "over-size message names the limit", e2 && e2.message);

  await expectError("unknown chunk", api.get("/chunks/" + "0".repeat(64)), OpenAI.NotFoundError, 404);
  await expectError("cite unknown chunk", api.chat.completions.create({model: modelId, max_tokens: 4,
    messages: [{role: "user", content: [{type: "chunk", chunk_id: "f".repeat(64)}]}]}), OpenAI.NotFoundError, 404);
  await expectError("unknown route", api.get("/no-such-route"), OpenAI.NotFoundError, 404);
  // the server still works afterwards
  const ok = await api.chat.completions.create({model: modelId, messages: messagesOf(case1), temperature: 0, max_tokens: 48});
  check(trim(ok.choices[0].message.content) === case1.answer, "server answers right after the errors");
});

if (URL2) {
  const a = client(URL2, KEY_A), b = client(URL2, KEY_B);
  await group("api keys", async () => {
    await expectError("no API key", client(URL2, "").models.list(), OpenAI.AuthenticationError, 401);
    await expectError("wrong API key", client(URL2, "sk-wrong").models.list(), OpenAI.AuthenticationError, 401);
    await expectError("chat without a key", client(URL2, "").chat.completions.create({model: modelId, max_tokens: 2,
      messages: [{role: "user", content: "hi"}]}), OpenAI.AuthenticationError, 401);
    const m = await a.models.list();
    check(m.data.length >= 1, "models.list with key A");
    const r = await a.chat.completions.create({model: modelId, messages: messagesOf(case1), temperature: 0, max_tokens: 48});
    check(trim(r.choices[0].message.content) === case1.answer, "chat with key A answers right");

    // key B does not see key A's chunk and cannot cite it
    const ca = await a.post("/chunks", {body: {text: case1.documents[0], type: "document"}});
    const la = await a.get("/chunks");
    check((la.data || []).some((c) => c.id === ca.id), "key A lists its chunk");
    const lb = await b.get("/chunks");
    check(!(lb.data || []).some((c) => c.id === ca.id), "key B does not list key A's chunk", lb);
    await expectError("key B gets key A's chunk", b.get("/chunks/" + ca.id), OpenAI.NotFoundError, 404);
    await expectError("key B cites key A's chunk", b.chat.completions.create({model: modelId, max_tokens: 4,
      messages: [{role: "user", content: [{type: "chunk", chunk_id: ca.id}, {type: "text", text: "hi"}]}]}),
      OpenAI.NotFoundError, 404);
    await expectError("key B deletes key A's chunk", b.delete("/chunks/" + ca.id), OpenAI.NotFoundError, 404);
    // the same text under key B is a different chunk
    const cb = await b.post("/chunks", {body: {text: case1.documents[0], type: "document"}});
    check(cb.id !== ca.id, "same text under key B gets another id", {a: ca.id, b: cb.id});
  });

  await group("queue full", async () => {
    // --max-running 1 --max-waiting 1: while a long stream runs, of 4 more
    // simultaneous requests at least one is answered 429 (RateLimitError)
    const long = await a.completions.create({model: modelId, prompt: "The", temperature: 0, max_tokens: 400, stream: true});
    const it = long[Symbol.asyncIterator]();
    await it.next(); // it is running now
    const reqs = [];
    for (let i = 0; i < 4; i++)
      reqs.push(a.chat.completions.create({model: modelId, max_tokens: 4, temperature: 0,
        messages: [{role: "user", content: "Where is city number " + i + "?"}]}).then(() => 200, (e) => e));
    await new Promise((r) => setTimeout(r, 500));
    await it.return(); // hang up: the running stream is cancelled and the queue moves
    const res = await Promise.all(reqs);
    const codes = res.map((x) => x === 200 ? 200 : x.status);
    check(res.some((x) => x instanceof OpenAI.RateLimitError && x.status === 429), "a full queue answers 429 (RateLimitError)", codes);
    check(res.every((x) => x === 200 || (x instanceof OpenAI.RateLimitError && x.status === 429)),
          "the other requests succeed", res.map((x) => x === 200 ? 200 : String(x)));
    // (the queued request may still hold the one place: the SDK retries 429s here)
    const patient = new OpenAI({baseURL: URL2 + "/v1", apiKey: KEY_A, maxRetries: 6, timeout: 60000});
    const ok = await patient.chat.completions.create({model: modelId, messages: messagesOf(case1), temperature: 0, max_tokens: 48});
    check(trim(ok.choices[0].message.content) === case1.answer, "the server answers right once the queue drains");
  });
} else {
  check(false, "no keyed server to test API keys against");
}

// Last, as it ends server 1: SIGTERM with a stream in flight. The stream
// must end (finished or cancelled) promptly; the shell then checks that the
// server exits with status 0.
if (process.env.TS_PID1) await group("sigterm", async () => {
  const stream = await api.completions.create({model: modelId, prompt: "The", temperature: 0, max_tokens: 3000, stream: true});
  let n = 0, finish = null, threw = null;
  const t = performance.now();
  try {
    for await (const chunk of stream) {
      if (++n === 3) process.kill(Number(process.env.TS_PID1), "SIGTERM");
      for (const c of chunk.choices || []) if (c.finish_reason) finish = c.finish_reason;
      if (performance.now() - t > 20000) break;
    }
  } catch (e) { threw = e; }
  const ms = performance.now() - t;
  check(n >= 3 && ms < 15000, "a stream in flight ends soon after SIGTERM", {chunks: n, ms: Math.round(ms)});
  check(!threw && finish !== null, "it ends with a finish_reason, not a broken connection",
        {finish, threw: threw && String(threw)});
  console.log(`note: stream ended after SIGTERM with finish_reason ${finish} after ${n} chunks`);
});

console.log(`sdk_test: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
