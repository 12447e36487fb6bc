#!/usr/bin/env node
// Check that GitHub's own examples pass Prism's response validation on a trimmed description:
// serve each GET operation's success example from a local upstream, ask for it through
// `prism proxy --errors`, and print every operation whose example Prism rejects. Run this after
// bumping @octokit/openapi or @stoplight/prism-cli; fix what it finds in trim.mjs.
//
//   node check-examples.mjs [TRIMMED_JSON]      (default: trims the installed description first)

import http from "node:http";
import net from "node:net";
import { spawn } from "node:child_process";
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { trim } from "./trim.mjs";

const here = dirname(fileURLToPath(import.meta.url));
let specPath = process.argv[2];
let tmp;
if (!specPath) {
  const src = join(here, "node_modules/@octokit/openapi/generated/api.github.com.json");
  tmp = mkdtempSync(join(tmpdir(), "fleetwave-spec-"));
  specPath = join(tmp, "github.json");
  writeFileSync(specPath, JSON.stringify(trim(JSON.parse(readFileSync(src, "utf8")))));
}
const spec = JSON.parse(readFileSync(specPath, "utf8"));
const deref = (o) => (o?.$ref ? deref(o.$ref.split("/").slice(1).reduce((a, k) => a[k], spec)) : o);

// One concrete request per GET operation that has a JSON success example.
const cases = [];
for (const [path, item] of Object.entries(spec.paths)) {
  const op = item.get;
  if (!op) continue;
  for (const [status, resp] of Object.entries(op.responses)) {
    if (!/^2/.test(status)) continue;
    const media = deref(resp).content?.["application/json"];
    const ex = media && Object.values(media.examples ?? {})[0];
    if (!ex) continue;
    const values = { owner: "o", repo: "r", ref: "main", sha: "a".repeat(40), org: "o", username: "u", team_slug: "t" };
    const url = path.replace(/\{(\w+)\}/g, (_, n) => values[n] ?? "1");
    cases.push({ url, status: Number(status), body: deref(ex).value, op: op.operationId });
    break;
  }
}

const freePort = () =>
  new Promise((ok) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });

const byUrl = new Map(cases.map((c) => [c.url, c]));
const upstream = http.createServer((req, res) => {
  const c = byUrl.get(req.url);
  res.writeHead(c ? c.status : 404, { "content-type": "application/json" });
  res.end(JSON.stringify(c ? c.body : { message: "Not Found" }));
});
await new Promise((ok) => upstream.listen(0, "127.0.0.1", ok));
const port = await freePort();
const prism = spawn(
  join(here, "node_modules/.bin/prism"),
  ["proxy", "-p", String(port), "--errors", specPath, `http://127.0.0.1:${upstream.address().port}`],
  { stdio: "ignore" },
);
const deadline = Date.now() + 60_000;
for (;;) {
  const up = await new Promise((ok) => {
    const s = net.connect(port, "127.0.0.1", () => ok(s.end() && true)).on("error", () => ok(false));
  });
  if (up) break;
  if (Date.now() > deadline) throw new Error("prism did not start");
  await new Promise((ok) => setTimeout(ok, 100));
}

let bad = 0;
for (const c of cases) {
  const r = await fetch(`http://127.0.0.1:${port}${c.url}`, {
    headers: { accept: "application/vnd.github+json", authorization: "token x" },
  });
  const v = r.headers.get("sl-violations");
  if (r.status !== c.status || v) {
    bad++;
    console.log(`${c.op} GET ${c.url}: ${r.status} ${v ?? ""}`);
  }
}
console.log(`${cases.length - bad} of ${cases.length} examples pass`);
prism.kill();
upstream.close();
if (tmp) rmSync(tmp, { recursive: true, force: true });
process.exitCode = bad ? 1 : 0;
