#!/usr/bin/env node
// Trim GitHub's OpenAPI description (@octokit/openapi) to the endpoints fleetwave calls, so that
// Prism starts in a few seconds instead of ~20 s, and patch the few places where Prism and the
// description disagree with what GitHub actually serves.
//
//   node trim.mjs [SOURCE_JSON] OUTPUT_JSON
//
// SOURCE_JSON defaults to node_modules/@octokit/openapi/generated/api.github.com.json next to
// this script. What it does:
//   * keeps only PATHS below (all their methods), and only the `components` entries they reference
//     transitively; drops `x-webhooks`;
//   * adds literal `heads/{ref}` and `tags/{ref}` variants of paths whose `{ref}` is a full git
//     ref: Prism matches a path parameter against a single segment, so `git/ref/heads/main` would
//     otherwise match no path at all;
//   * adds the required `type` to the team objects in GitHub's own examples (the pull-request
//     example lacks `requested_teams[].type`), so the examples are valid against their schemas;
//   * sets `servers` to a bare "/" so that no base path is stripped or required: Prism validates
//     whatever path it receives against the paths here.

import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const PATHS = [
  "/repos/{owner}/{repo}",
  "/repos/{owner}/{repo}/pulls",
  "/repos/{owner}/{repo}/pulls/{pull_number}",
  "/repos/{owner}/{repo}/pulls/{pull_number}/merge",
  "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
  "/repos/{owner}/{repo}/pulls/{pull_number}/commits",
  "/repos/{owner}/{repo}/statuses/{sha}",
  "/repos/{owner}/{repo}/commits/{ref}/status",
  "/repos/{owner}/{repo}/commits/{ref}/statuses",
  "/repos/{owner}/{repo}/check-runs",
  "/repos/{owner}/{repo}/check-runs/{check_run_id}",
  "/repos/{owner}/{repo}/issues",
  "/repos/{owner}/{repo}/issues/{issue_number}",
  "/repos/{owner}/{repo}/issues/{issue_number}/comments",
  "/repos/{owner}/{repo}/issues/comments/{comment_id}",
  "/repos/{owner}/{repo}/issues/{issue_number}/labels",
  "/repos/{owner}/{repo}/git/ref/{ref}",
  "/orgs/{org}/teams/{team_slug}/memberships/{username}",
  "/repos/{owner}/{repo}/installation",
  "/app/installations/{installation_id}/access_tokens",
  "/rate_limit",
];

// Paths whose `{ref}` is a full git ref (`heads/main`, `tags/v1`), not a single segment.
const GIT_REF_PATH = /\/git\/ref\/\{ref\}$/;
const REF_PREFIXES = ["heads", "tags"];

const HTTP_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

// Returns the trimmed description; `fixed` (optional array) receives the example fields patched.
export function trim(spec, fixed = []) {
  const paths = {};
  for (const p of PATHS) {
    const item = spec.paths[p];
    if (!item) throw new Error(`path ${p} is not in the source description`);
    paths[p] = item;
    if (GIT_REF_PATH.test(p)) {
      for (const prefix of REF_PREFIXES) {
        const variant = structuredClone(item);
        for (const m of HTTP_METHODS) {
          if (variant[m]?.operationId) variant[m].operationId += `-${prefix}`;
        }
        paths[p.replace("{ref}", `${prefix}/{ref}`)] = variant;
      }
    }
  }

  const components = keepReferenced(spec.components, paths);
  const out = {
    openapi: spec.openapi,
    info: {
      ...spec.info,
      description: `${spec.info.description ?? ""}\n\nTrimmed by fleetwave's tools/contract/trim.mjs.`,
    },
    servers: [{ url: "/" }],
    externalDocs: spec.externalDocs,
    paths,
    components,
  };
  fixed.push(...fixExamples(out));
  return out;
}

// Copy of `components` holding only the entries reachable from `root` through `$ref`s.
function keepReferenced(components, root) {
  const kept = {};
  const seen = new Set();
  const queue = [root];
  while (queue.length) {
    const node = queue.pop();
    if (Array.isArray(node)) {
      queue.push(...node);
      continue;
    }
    if (node === null || typeof node !== "object") continue;
    for (const [k, v] of Object.entries(node)) {
      if (k === "$ref" && typeof v === "string") {
        const m = /^#\/components\/([^/]+)\/([^/]+)$/.exec(v);
        if (!m) throw new Error(`unsupported $ref ${v}`);
        const [, kind, name] = m;
        if (seen.has(v)) continue;
        seen.add(v);
        const target = components[kind]?.[name];
        if (target === undefined) throw new Error(`dangling $ref ${v}`);
        (kept[kind] ??= {})[name] = target;
        queue.push(target);
      } else {
        queue.push(v);
      }
    }
  }
  // Stable output: same order as the source.
  const ordered = {};
  for (const kind of Object.keys(components)) {
    if (!kept[kind]) continue;
    ordered[kind] = {};
    for (const name of Object.keys(components[kind])) {
      if (name in kept[kind]) ordered[kind][name] = kept[kind][name];
    }
  }
  return ordered;
}

// Make GitHub's own examples valid against their schemas (check-examples.mjs finds the gaps):
//   * teams (`team-simple`, `team`) require `type`, which the examples predate (e.g. the
//     pull-request example's `requested_teams[]`): add `"organization"`. A team is recognised by
//     `members_url` + `repositories_url` + `slug` (users and repositories lack that set);
//   * repositories (`repository`, `full-repository`) require `language` (nullable), which
//     `full-repository-default-response` lacks at its top level and in `source`: add `null`.
//     A repository is recognised by `full_name` + `owner` + `private`.
function fixExamples(spec) {
  const fixed = [];
  const visit = (node, where) => {
    if (Array.isArray(node)) return node.forEach((n, i) => visit(n, `${where}[${i}]`));
    if (node === null || typeof node !== "object") return;
    if (
      typeof node.members_url === "string" &&
      typeof node.repositories_url === "string" &&
      typeof node.slug === "string" &&
      node.type === undefined
    ) {
      node.type = "organization";
      fixed.push(`${where}.type`);
    }
    if (
      typeof node.full_name === "string" &&
      typeof node.owner === "object" &&
      typeof node.private === "boolean" &&
      !("language" in node)
    ) {
      node.language = null;
      fixed.push(`${where}.language`);
    }
    for (const [k, v] of Object.entries(node)) visit(v, `${where}.${k}`);
  };
  const examples = spec.components.examples ?? {};
  for (const [name, ex] of Object.entries(examples)) {
    // Copy before patching: the source object is shared with the caller.
    examples[name] = structuredClone(ex);
    visit(examples[name].value, `examples.${name}`);
  }
  return fixed;
}

function main(argv) {
  const here = dirname(fileURLToPath(import.meta.url));
  let [src, dst] = argv;
  if (dst === undefined) {
    dst = src;
    src = join(here, "node_modules/@octokit/openapi/generated/api.github.com.json");
  }
  if (!dst) {
    console.error("usage: node trim.mjs [SOURCE_JSON] OUTPUT_JSON");
    process.exit(2);
  }
  const spec = JSON.parse(readFileSync(src, "utf8"));
  const fixed = [];
  const out = trim(spec, fixed);
  // Write then rename, so a reader never sees a half-written file.
  const tmp = `${dst}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(out, null, 1));
  renameSync(tmp, dst);
  const n = Object.values(out.components).reduce((a, c) => a + Object.keys(c).length, 0);
  console.error(`trim.mjs: ${Object.keys(out.paths).length} paths, ${n} components, ${fixed.length} example fields added → ${dst}`);
  for (const f of fixed) console.error(`  added ${f}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2));
}
