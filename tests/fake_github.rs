//! The fake GitHub used by the forge tests behaves like GitHub where fleetwave depends on it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use common::fake_github::{Call, FakeGitHub, Faults, INSTALLATION_ID, encode_b64};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const TOKEN: &str = "ghp_fake_token_123";

fn fleet_files() -> BTreeMap<PathBuf, Vec<u8>> {
    BTreeMap::from([
        (
            PathBuf::from("clusters/prod-eu-1/cluster.yaml"),
            b"kubernetesVersion: 1.33.5\n".to_vec(),
        ),
        (
            PathBuf::from("clusters/dev-1/cluster.yaml"),
            b"kubernetesVersion: 1.33.5\n".to_vec(),
        ),
        (PathBuf::from("README.md"), b"# fleet\n".to_vec()),
    ])
}

fn start() -> FakeGitHub {
    let fake = FakeGitHub::start(TOKEN);
    let t = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
    fake.create_repo("acme", "fleet", &fleet_files(), t);
    fake
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            client: reqwest::Client::new(),
            base: base.to_string(),
            token: Some(TOKEN.to_string()),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call_with(method, path, body, &[]).await
    }

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("accept", "application/vnd.github+json")
            .header("user-agent", "fleetwave-test");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).to_string()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }
}

/// Commit `file` = `content` on `branch` (created from `from`) directly in the bare repo.
fn commit_in_bare(repo: &Path, branch: &str, from: &str, file: &str, content: &str) -> String {
    let git = git2::Repository::open_bare(repo).unwrap();
    let parent = git
        .find_reference(&format!("refs/heads/{from}"))
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let mut index = git2::Index::new().unwrap();
    index.read_tree(&parent.tree().unwrap()).unwrap();
    let blob = git.blob(content.as_bytes()).unwrap();
    let mut entry = index.get_path(Path::new("README.md"), 0).unwrap();
    entry.id = blob;
    entry.path = file.as_bytes().to_vec();
    entry.file_size = content.len() as u32;
    index.add(&entry).unwrap();
    let tree = git.find_tree(index.write_tree_to(&git).unwrap()).unwrap();
    let sig = git2::Signature::now("fleetwave", "fleetwave@example.com").unwrap();
    git.commit(
        Some(&format!("refs/heads/{branch}")),
        &sig,
        &sig,
        &format!("change {file}"),
        &tree,
        &[&parent],
    )
    .unwrap()
    .to_string()
}

fn callbacks<'a>() -> git2::RemoteCallbacks<'a> {
    let mut cb = git2::RemoteCallbacks::new();
    cb.credentials(|_url, _user, _allowed| git2::Cred::userpass_plaintext("x-access-token", TOKEN));
    cb
}

/// Clone over smart HTTP, commit a change on `branch`, push it over smart HTTP.
fn push_change_over_http(fake: &FakeGitHub, branch: &str, content: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut fo = git2::FetchOptions::new();
    fo.remote_callbacks(callbacks());
    let repo = git2::build::RepoBuilder::new()
        .fetch_options(fo)
        .clone(&fake.git_url("acme", "fleet"), dir.path())
        .expect("clone over smart HTTP");
    let base = repo.head().unwrap().peel_to_commit().unwrap();
    let path = dir.path().join("clusters/dev-1/cluster.yaml");
    std::fs::write(&path, content).unwrap();
    let mut index = repo.index().unwrap();
    index
        .add_path(Path::new("clusters/dev-1/cluster.yaml"))
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("fleetwave", "fleetwave@example.com").unwrap();
    let head = repo
        .commit(
            Some(&format!("refs/heads/{branch}")),
            &sig,
            &sig,
            "bump dev-1",
            &tree,
            &[&base],
        )
        .unwrap();
    let mut remote = repo.find_remote("origin").unwrap();
    let rejected = std::cell::RefCell::new(None);
    let mut cb = callbacks();
    cb.push_update_reference(|r, status| {
        if let Some(s) = status {
            *rejected.borrow_mut() = Some(format!("{r}: {s}"));
        }
        Ok(())
    });
    let mut po = git2::PushOptions::new();
    po.remote_callbacks(cb);
    remote
        .push(
            &[format!("refs/heads/{branch}:refs/heads/{branch}")],
            Some(&mut po),
        )
        .expect("push over smart HTTP");
    assert_eq!(rejected.take(), None);
    (base.id().to_string(), head.to_string())
}

fn bare_tip(fake: &FakeGitHub, branch: &str) -> String {
    let git = git2::Repository::open_bare(fake.repo_path("acme", "fleet")).unwrap();
    git.refname_to_id(&format!("refs/heads/{branch}"))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_pull_request_goes_from_push_to_merge() {
    let fake = start();
    let api = Api::new(&fake.base_url());
    let branch = "fleetwave/plan-a/wave-1";
    let (base, head) = push_change_over_http(&fake, branch, "kubernetesVersion: 1.34.2\n");
    assert_eq!(bare_tip(&fake, branch), head);

    let repo = api.get("/repos/acme/fleet").await;
    assert_eq!(repo.status, 200);
    assert_eq!(repo.body["default_branch"], "main");
    assert_eq!(repo.body["full_name"], "acme/fleet");
    assert_eq!(repo.body["owner"]["login"], "acme");

    let spec = json!({"title": "fleetwave(plan-a): wave-1", "head": format!("acme:{branch}"),
        "base": "main", "body": "table\n<!-- fleetwave:step -->"});
    let created = api.post("/repos/acme/fleet/pulls", spec.clone()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let n = created.body["number"].as_u64().unwrap();
    assert_eq!(created.body["head"]["sha"], head.as_str());
    assert_eq!(created.body["head"]["ref"], branch);
    assert_eq!(created.body["head"]["label"], format!("acme:{branch}"));
    assert_eq!(created.body["base"]["sha"], base.as_str());
    assert_eq!(created.body["user"]["login"], "fleetwave-bot");

    let again = api.post("/repos/acme/fleet/pulls", spec).await;
    assert_eq!(again.status, 422);
    assert_eq!(
        again.body["errors"][0]["message"],
        format!("A pull request already exists for acme:{branch}.")
    );
    let missing = api
        .post(
            "/repos/acme/fleet/pulls",
            json!({"title": "x", "head": "no-such-branch", "base": "main"}),
        )
        .await;
    assert_eq!(missing.status, 422);

    // Listing by head finds it; ETag + If-None-Match gives 304 without counting.
    let listed = api
        .get(&format!(
            "/repos/acme/fleet/pulls?state=open&head=acme:{branch}"
        ))
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    let got = api.get(&format!("/repos/acme/fleet/pulls/{n}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["state"], "open");
    assert_eq!(got.body["merged"], false);
    assert_eq!(got.body["mergeable"], true);
    assert_eq!(got.body["requested_teams"], json!([]));
    let etag = got.header("etag").unwrap().to_string();
    let remaining: u64 = got
        .header("x-ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap();
    let cached = api
        .call_with(
            Method::GET,
            &format!("/repos/acme/fleet/pulls/{n}"),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(cached.status, 304);
    assert_eq!(cached.body, Value::Null);
    assert_eq!(
        cached.header("x-ratelimit-remaining").unwrap(),
        remaining.to_string()
    );

    // Statuses: the combined state is the latest per context.
    let st = api
        .post(
            &format!("/repos/acme/fleet/statuses/{head}"),
            json!({"state": "pending", "context": "fleetwave/gate", "description": "soaking"}),
        )
        .await;
    assert_eq!(st.status, 201);
    api.post(
        &format!("/repos/acme/fleet/statuses/{head}"),
        json!({"state": "success", "context": "fleetwave/gate", "description": "passed"}),
    )
    .await;
    let bad = api
        .post(
            &format!("/repos/acme/fleet/statuses/{head}"),
            json!({"state": "green"}),
        )
        .await;
    assert_eq!(bad.status, 422);
    let combined = api
        .get(&format!("/repos/acme/fleet/commits/{head}/status"))
        .await;
    assert_eq!(combined.body["state"], "success");
    assert_eq!(combined.body["total_count"], 1);
    let all = api
        .get(&format!("/repos/acme/fleet/commits/{branch}/statuses"))
        .await;
    assert_eq!(all.body.as_array().unwrap().len(), 2);
    assert_eq!(all.body[0]["state"], "success", "newest first");
    assert_eq!(fake.statuses(&head).len(), 2);

    // The managed comment is edited in place.
    let c = api
        .post(
            &format!("/repos/acme/fleet/issues/{n}/comments"),
            json!({"body": "state: soaking"}),
        )
        .await;
    assert_eq!(c.status, 201);
    let cid = c.body["id"].as_u64().unwrap();
    let edited = api
        .call(
            Method::PATCH,
            &format!("/repos/acme/fleet/issues/comments/{cid}"),
            Some(json!({"body": "state: passed"})),
        )
        .await;
    assert_eq!(edited.status, 200);
    let comments = api
        .get(&format!("/repos/acme/fleet/issues/{n}/comments"))
        .await;
    assert_eq!(comments.body.as_array().unwrap().len(), 1);
    assert_eq!(comments.body[0]["body"], "state: passed");
    assert_eq!(fake.comments(n)[0]["body"], "state: passed");

    // Labels: add, add again (no duplicate), replace.
    let l = api
        .post(
            &format!("/repos/acme/fleet/issues/{n}/labels"),
            json!({"labels": ["fleetwave", "wave-1"]}),
        )
        .await;
    assert_eq!(l.status, 200);
    api.post(
        &format!("/repos/acme/fleet/issues/{n}/labels"),
        json!({"labels": ["fleetwave"]}),
    )
    .await;
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    };
    let l = api
        .get(&format!("/repos/acme/fleet/issues/{n}/labels"))
        .await;
    assert_eq!(names(&l.body), ["fleetwave", "wave-1"]);
    let l = api
        .call(
            Method::PUT,
            &format!("/repos/acme/fleet/issues/{n}/labels"),
            Some(json!({"labels": ["fleetwave", "passed"]})),
        )
        .await;
    assert_eq!(names(&l.body), ["fleetwave", "passed"]);

    // Reviews.
    fake.add_review("acme", "fleet", n, "alice", "APPROVED", &head);
    let reviews = api
        .get(&format!("/repos/acme/fleet/pulls/{n}/reviews"))
        .await;
    assert_eq!(reviews.body[0]["user"]["login"], "alice");
    assert_eq!(reviews.body[0]["state"], "APPROVED");
    assert_eq!(reviews.body[0]["commit_id"], head.as_str());

    // Merge: a stale sha is refused, the verified one merges.
    let stale = api
        .call(
            Method::PUT,
            &format!("/repos/acme/fleet/pulls/{n}/merge"),
            Some(json!({"sha": base, "merge_method": "merge"})),
        )
        .await;
    assert_eq!(stale.status, 409);
    assert_eq!(
        stale.body["message"],
        "Head branch was modified. Review and try the merge again."
    );
    assert_eq!(bare_tip(&fake, "main"), base);
    let merged = api
        .call(
            Method::PUT,
            &format!("/repos/acme/fleet/pulls/{n}/merge"),
            Some(json!({"sha": head, "merge_method": "merge"})),
        )
        .await;
    assert_eq!(merged.status, 200, "{}", merged.body);
    assert_eq!(merged.body["merged"], true);
    let sha = merged.body["sha"].as_str().unwrap().to_string();
    assert_eq!(bare_tip(&fake, "main"), sha);
    let git = git2::Repository::open_bare(fake.repo_path("acme", "fleet")).unwrap();
    let commit = git.find_commit(git2::Oid::from_str(&sha).unwrap()).unwrap();
    let parents: Vec<String> = commit.parent_ids().map(|p| p.to_string()).collect();
    assert_eq!(parents, [base.clone(), head.clone()]);
    assert_eq!(commit.committer().name().unwrap(), "GitHub");
    let blob = commit
        .tree()
        .unwrap()
        .get_path(Path::new("clusters/dev-1/cluster.yaml"))
        .unwrap()
        .to_object(&git)
        .unwrap()
        .peel_to_blob()
        .unwrap();
    assert_eq!(blob.content(), b"kubernetesVersion: 1.34.2\n");

    let after = api.get(&format!("/repos/acme/fleet/pulls/{n}")).await;
    assert_eq!(after.body["state"], "closed");
    assert_eq!(after.body["merged"], true);
    assert_eq!(after.body["merge_commit_sha"], sha.as_str());
    assert_eq!(after.body["merged_by"]["login"], "fleetwave-bot");
    assert_eq!(after.body["head"]["sha"], head.as_str());
    let twice = api
        .call(
            Method::PUT,
            &format!("/repos/acme/fleet/pulls/{n}/merge"),
            Some(json!({"sha": head})),
        )
        .await;
    assert_eq!(twice.status, 405);
    assert_eq!(fake.pulls().len(), 1);
}

#[tokio::test]
async fn pushes_show_up_and_humans_merge() {
    let fake = start();
    let api = Api::new(&fake.base_url());
    let repo = fake.repo_path("acme", "fleet");
    let first = commit_in_bare(&repo, "step", "main", "a.txt", "1");
    let pr = api
        .post(
            "/repos/acme/fleet/pulls",
            json!({"title": "t", "head": "step", "base": "main"}),
        )
        .await;
    let n = pr.body["number"].as_u64().unwrap();
    assert_eq!(pr.body["head"]["sha"], first.as_str());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = commit_in_bare(&repo, "step", "step", "b.txt", "2");
    let got = api.get(&format!("/repos/acme/fleet/pulls/{n}")).await;
    assert_eq!(got.body["head"]["sha"], second.as_str());
    assert_ne!(got.body["updated_at"], pr.body["updated_at"]);
    assert_eq!(got.body["commits"], 2);

    let main_before = bare_tip(&fake, "main");
    let sha = fake.merge_as_human("acme", "fleet", n, "bob");
    assert_eq!(bare_tip(&fake, "main"), sha);
    let got = api.get(&format!("/repos/acme/fleet/pulls/{n}")).await;
    assert_eq!(got.body["merged"], true);
    assert_eq!(got.body["merged_by"]["login"], "bob");
    assert_eq!(got.body["base"]["sha"], main_before.as_str());

    // A head pushed straight into the base marks its pull request merged.
    let third = commit_in_bare(&repo, "other", "main", "c.txt", "3");
    let pr2 = api
        .post(
            "/repos/acme/fleet/pulls",
            json!({"title": "t2", "head": "other", "base": "main"}),
        )
        .await;
    assert_eq!(pr2.body["number"], n + 1);
    let git = git2::Repository::open_bare(&repo).unwrap();
    git.reference(
        "refs/heads/main",
        git2::Oid::from_str(&third).unwrap(),
        true,
        "ff",
    )
    .unwrap();
    let got = api.get(&format!("/repos/acme/fleet/pulls/{}", n + 1)).await;
    assert_eq!(got.body["state"], "closed");
    assert_eq!(got.body["merged"], true);
}

#[tokio::test]
async fn lists_paginate_with_link_headers() {
    let fake = start();
    let api = Api::new(&fake.base_url());
    let repo = fake.repo_path("acme", "fleet");
    for i in 0..35 {
        let branch = format!("step-{i:02}");
        commit_in_bare(&repo, &branch, "main", "x.txt", &i.to_string());
        let r = api
            .post(
                "/repos/acme/fleet/pulls",
                json!({"title": branch, "head": branch, "base": "main"}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let p1 = api.get("/repos/acme/fleet/pulls?state=all").await;
    assert_eq!(p1.body.as_array().unwrap().len(), 30);
    assert_eq!(p1.body[0]["number"], 35, "newest first by default");
    let link = p1.header("link").unwrap().to_string();
    assert!(link.contains("page=2>; rel=\"next\""), "{link}");
    assert!(link.contains("rel=\"last\""), "{link}");
    let next = link
        .split(", ")
        .find(|l| l.ends_with("rel=\"next\""))
        .unwrap();
    let url = &next[1..next.find('>').unwrap()];
    let path = url.strip_prefix(&fake.base_url()).unwrap();
    let p2 = api.get(path).await;
    assert_eq!(p2.body.as_array().unwrap().len(), 5);
    let link2 = p2.header("link").unwrap();
    assert!(link2.contains("rel=\"prev\"") && !link2.contains("rel=\"next\""));
    let all = api
        .get("/repos/acme/fleet/pulls?per_page=100&direction=asc")
        .await;
    assert_eq!(all.body.as_array().unwrap().len(), 35);
    assert_eq!(all.body[0]["number"], 1);
    assert!(all.header("link").is_none());
    let small = api.get("/repos/acme/fleet/pulls?per_page=10&page=4").await;
    assert_eq!(small.body.as_array().unwrap().len(), 5);
    assert_eq!(fake.pulls().len(), 35);
}

#[tokio::test]
async fn credentials_are_required() {
    let fake = start();
    let mut api = Api::new(&fake.base_url());
    api.token = None;
    let r = api.get("/repos/acme/fleet").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["message"], "Requires authentication");
    api.token = Some("wrong".into());
    let r = api.get("/repos/acme/fleet").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["message"], "Bad credentials");

    let client = reqwest::Client::new();
    let refs = format!(
        "{}/info/refs?service=git-upload-pack",
        fake.git_url("acme", "fleet")
    );
    let r = client.get(&refs).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()["www-authenticate"].to_str().unwrap(),
        "Basic realm=\"GitHub\""
    );
    let basic = format!("Basic {}", encode_b64(format!("x:{TOKEN}").as_bytes()));
    let r = client
        .get(&refs)
        .header("authorization", basic)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/x-git-upload-pack-advertisement"
    );
    assert!(fake.calls().iter().all(|c| !c.path.ends_with("info/refs")));
    assert_eq!(fake.git_calls().len(), 2);

    // A clone without credentials fails.
    let dir = tempfile::tempdir().unwrap();
    assert!(git2::Repository::clone(&fake.git_url("acme", "fleet"), dir.path()).is_err());
}

#[tokio::test]
async fn faults_have_no_side_effects() {
    let fake = start();
    let api = Api::new(&fake.base_url());
    let repo = fake.repo_path("acme", "fleet");
    commit_in_bare(&repo, "step", "main", "a.txt", "1");
    fake.set_faults(Faults {
        rate: 1.0,
        seed: 7,
        retry_after_secs: 3,
        slow_ms: 0,
    });
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let r = api
            .post(
                "/repos/acme/fleet/pulls",
                json!({"title": "t", "head": "step", "base": "main"}),
            )
            .await;
        seen.insert(r.status);
        match r.status {
            500 | 502 => assert_eq!(r.body["message"], "Server Error"),
            429 => assert_eq!(r.header("retry-after"), Some("3")),
            403 => {
                assert_eq!(r.header("retry-after"), Some("3"));
                assert!(
                    r.body["message"]
                        .as_str()
                        .unwrap()
                        .contains("secondary rate limit")
                );
            }
            s => panic!("unexpected {s}"),
        }
        assert!(r.header("x-ratelimit-remaining").is_some());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [403, 429, 500, 502],
        "every kind shows up"
    );
    assert!(fake.pulls().is_empty());
    // Git is never faulted.
    let (_, head) = push_change_over_http(&fake, "step-2", "v: 2\n");
    assert_eq!(bare_tip(&fake, "step-2"), head);

    // The same seed gives the same sequence.
    let statuses = |calls: Vec<Call>| calls.iter().map(|c| c.status).collect::<Vec<_>>();
    let first = statuses(fake.calls());
    fake.reset_calls();
    fake.set_faults(Faults {
        rate: 1.0,
        seed: 7,
        retry_after_secs: 3,
        slow_ms: 0,
    });
    for _ in 0..40 {
        api.post(
            "/repos/acme/fleet/pulls",
            json!({"title": "t", "head": "step", "base": "main"}),
        )
        .await;
    }
    assert_eq!(statuses(fake.calls()), first);

    // Partial faults: roughly the requested share; slow answers are served.
    fake.set_faults(Faults {
        rate: 0.3,
        seed: 1,
        retry_after_secs: 0,
        slow_ms: 20,
    });
    fake.reset_calls();
    for _ in 0..100 {
        api.get("/repos/acme/fleet").await;
    }
    let failed = fake.calls().iter().filter(|c| c.status != 200).count();
    assert!((10..=40).contains(&failed), "{failed} faults of 100");
    fake.set_faults(Faults::default());
    let r = api
        .post(
            "/repos/acme/fleet/pulls",
            json!({"title": "t", "head": "step", "base": "main"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["number"], 1, "faulted calls used no numbers");
}

#[tokio::test]
async fn issues_teams_checks_and_misc() {
    let fake = start();
    let api = Api::new(&fake.base_url());
    fake.add_team_member("acme", "platform", "alice");
    assert_eq!(
        api.get("/orgs/acme/teams/platform/memberships/alice")
            .await
            .body["state"],
        "active"
    );
    assert_eq!(
        api.get("/orgs/acme/teams/platform/memberships/bob")
            .await
            .status,
        404
    );
    let nf = api.get("/repos/acme/fleet/nothing-here").await;
    assert_eq!(nf.status, 404);
    assert_eq!(nf.body["message"], "Not Found");
    assert_eq!(api.get("/repos/acme/missing").await.status, 404);

    let rl = api.get("/rate_limit").await;
    assert_eq!(rl.body["resources"]["core"]["limit"], 5000);
    assert_eq!(rl.header("x-ratelimit-resource"), Some("core"));

    let issue = api
        .post(
            "/repos/acme/fleet/issues",
            json!({"title": "fleetwave dashboard", "body": "..", "labels": ["fleetwave-dashboard"]}),
        )
        .await;
    assert_eq!(issue.status, 201);
    let n = issue.body["number"].as_u64().unwrap();
    let repo = fake.repo_path("acme", "fleet");
    commit_in_bare(&repo, "step", "main", "a.txt", "1");
    let pr = api
        .post(
            "/repos/acme/fleet/pulls",
            json!({"title": "t", "head": "step", "base": "main"}),
        )
        .await;
    assert_eq!(pr.body["number"], n + 1, "issues and pulls share numbers");
    let found = api
        .get("/repos/acme/fleet/issues?labels=fleetwave-dashboard&state=open&creator=fleetwave-bot")
        .await;
    assert_eq!(found.body.as_array().unwrap().len(), 1);
    let everything = api.get("/repos/acme/fleet/issues").await;
    assert_eq!(
        everything.body.as_array().unwrap().len(),
        2,
        "pull requests are issues"
    );
    assert!(everything.body[0]["pull_request"].is_object());
    let patched = api
        .call(
            Method::PATCH,
            &format!("/repos/acme/fleet/issues/{n}"),
            Some(json!({"body": "new", "state": "closed"})),
        )
        .await;
    assert_eq!(patched.body["state"], "closed");
    assert_eq!(fake.issues()[0]["body"], "new");

    let head = pr.body["head"]["sha"].as_str().unwrap().to_string();
    let run = api
        .post(
            "/repos/acme/fleet/check-runs",
            json!({"name": "fleetwave/gate", "head_sha": head, "status": "in_progress",
                "output": {"title": "soaking", "summary": "2 of 3 clusters"}}),
        )
        .await;
    assert_eq!(run.status, 201, "{}", run.body);
    let id = run.body["id"].as_u64().unwrap();
    let done = api
        .call(
            Method::PATCH,
            &format!("/repos/acme/fleet/check-runs/{id}"),
            Some(json!({"conclusion": "success", "output": {"title": "passed", "summary": "ok"}})),
        )
        .await;
    assert_eq!(done.body["status"], "completed");
    assert_eq!(done.body["output"]["title"], "passed");

    // PATCH a pull request's title and body; close it.
    let p = api
        .call(
            Method::PATCH,
            &format!("/repos/acme/fleet/pulls/{}", n + 1),
            Some(json!({"title": "t2", "body": "b2"})),
        )
        .await;
    assert_eq!(
        (p.body["title"].as_str(), p.body["body"].as_str()),
        (Some("t2"), Some("b2"))
    );
    let p = api
        .call(
            Method::PATCH,
            &format!("/repos/acme/fleet/pulls/{}", n + 1),
            Some(json!({"state": "closed"})),
        )
        .await;
    assert_eq!(p.body["state"], "closed");
    assert_eq!(p.body["merged"], false);
}

/// An unsigned JWT with the claims GitHub checks (the fake does not verify signatures).
fn jwt(app_id: u64) -> String {
    let b64url = |v: &Value| {
        encode_b64(v.to_string().as_bytes())
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    };
    let now = Utc::now().timestamp();
    format!(
        "{}.{}.c2ln",
        b64url(&json!({"alg": "RS256", "typ": "JWT"})),
        b64url(&json!({"iat": now - 60, "exp": now + 540, "iss": app_id.to_string()}))
    )
}

#[tokio::test]
async fn a_github_app_gets_an_installation_token() {
    let fake = start();
    let mut api = Api::new(&fake.base_url());
    api.token = Some(jwt(99));
    let inst = api.get("/repos/acme/fleet/installation").await;
    assert_eq!(inst.status, 200, "{}", inst.body);
    assert_eq!(inst.body["id"], INSTALLATION_ID);
    assert_eq!(inst.body["app_id"], 99);
    let tok = api
        .post(
            &format!("/app/installations/{INSTALLATION_ID}/access_tokens"),
            json!({}),
        )
        .await;
    assert_eq!(tok.status, 201);
    assert_eq!(tok.body["token"], TOKEN);
    // A JWT is no good for repository endpoints, nor a token for App endpoints.
    assert_eq!(api.get("/repos/acme/fleet").await.status, 401);
    api.token = Some(TOKEN.into());
    assert_eq!(api.get("/repos/acme/fleet/installation").await.status, 401);
}

/// Every answer the fake gives through Prism matches GitHub's OpenAPI description.
#[tokio::test]
async fn answers_match_githubs_openapi_description() {
    let fake = start();
    let prism = match common::prism::Prism::start(&fake.base_url()) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    let api = Api::new(&prism.url);
    let repo = fake.repo_path("acme", "fleet");
    let head = commit_in_bare(&repo, "step", "main", "a.txt", "1");
    let mut answers = Vec::new();
    answers.push(api.get("/repos/acme/fleet").await);
    let pr = api
        .post(
            "/repos/acme/fleet/pulls",
            json!({"title": "t", "head": "acme:step", "base": "main", "body": "b"}),
        )
        .await;
    let n = pr.body["number"].as_u64().unwrap_or(1);
    answers.push(pr);
    answers.push(
        api.get("/repos/acme/fleet/pulls?state=all&head=acme:step")
            .await,
    );
    answers.push(api.get(&format!("/repos/acme/fleet/pulls/{n}")).await);
    answers.push(
        api.call(
            Method::PATCH,
            &format!("/repos/acme/fleet/pulls/{n}"),
            Some(json!({"body": "b2"})),
        )
        .await,
    );
    answers.push(
        api.post(
            &format!("/repos/acme/fleet/statuses/{head}"),
            json!({"state": "pending", "context": "fleetwave/gate", "description": "d", "target_url": "https://example.com/x"}),
        )
        .await,
    );
    answers.push(
        api.get(&format!("/repos/acme/fleet/commits/{head}/status"))
            .await,
    );
    answers.push(
        api.get(&format!("/repos/acme/fleet/commits/{head}/statuses"))
            .await,
    );
    let c = api
        .post(
            &format!("/repos/acme/fleet/issues/{n}/comments"),
            json!({"body": "hello"}),
        )
        .await;
    let cid = c.body["id"].as_u64().unwrap_or(0);
    answers.push(c);
    answers.push(
        api.call(
            Method::PATCH,
            &format!("/repos/acme/fleet/issues/comments/{cid}"),
            Some(json!({"body": "hello again"})),
        )
        .await,
    );
    answers.push(
        api.get(&format!("/repos/acme/fleet/issues/{n}/comments"))
            .await,
    );
    answers.push(
        api.post(
            &format!("/repos/acme/fleet/issues/{n}/labels"),
            json!({"labels": ["fleetwave"]}),
        )
        .await,
    );
    answers.push(
        api.get(&format!("/repos/acme/fleet/issues/{n}/labels"))
            .await,
    );
    let issue = api
        .post(
            "/repos/acme/fleet/issues",
            json!({"title": "dashboard", "body": "x", "labels": ["fleetwave"]}),
        )
        .await;
    let inum = issue.body["number"].as_u64().unwrap_or(0);
    answers.push(issue);
    answers.push(api.get("/repos/acme/fleet/issues?labels=fleetwave").await);
    answers.push(
        api.call(
            Method::PATCH,
            &format!("/repos/acme/fleet/issues/{inum}"),
            Some(json!({"body": "y"})),
        )
        .await,
    );
    answers.push(api.get(&format!("/repos/acme/fleet/issues/{inum}")).await);
    let run = api
        .post(
            "/repos/acme/fleet/check-runs",
            json!({"name": "fleetwave/gate", "head_sha": head, "status": "in_progress",
                "output": {"title": "t", "summary": "s"}}),
        )
        .await;
    let rid = run.body["id"].as_u64().unwrap_or(0);
    answers.push(run);
    answers.push(
        api.call(
            Method::PATCH,
            &format!("/repos/acme/fleet/check-runs/{rid}"),
            Some(json!({"conclusion": "success"})),
        )
        .await,
    );
    answers.push(
        api.get(&format!("/repos/acme/fleet/check-runs/{rid}"))
            .await,
    );
    answers.push(api.get("/repos/acme/fleet/git/ref/heads/step").await);
    answers.push(
        api.get(&format!("/repos/acme/fleet/pulls/{n}/commits"))
            .await,
    );
    fake.add_review("acme", "fleet", n, "alice", "APPROVED", &head);
    answers.push(
        api.get(&format!("/repos/acme/fleet/pulls/{n}/reviews"))
            .await,
    );
    fake.add_team_member("acme", "platform", "alice");
    answers.push(api.get("/orgs/acme/teams/platform/memberships/alice").await);
    answers.push(api.get("/rate_limit").await);
    answers.push(
        api.call(
            Method::PUT,
            &format!("/repos/acme/fleet/pulls/{n}/merge"),
            Some(json!({"sha": "0000000000000000000000000000000000000000"})),
        )
        .await,
    );
    answers.push(
        api.call(
            Method::PUT,
            &format!("/repos/acme/fleet/pulls/{n}/merge"),
            Some(json!({"sha": head, "merge_method": "squash"})),
        )
        .await,
    );
    answers.push(api.get(&format!("/repos/acme/fleet/pulls/{n}")).await);
    let mut app = Api::new(&prism.url);
    app.token = Some(jwt(7));
    answers.push(app.get("/repos/acme/fleet/installation").await);
    answers.push(
        app.post(
            &format!("/app/installations/{INSTALLATION_ID}/access_tokens"),
            json!({}),
        )
        .await,
    );

    let mut problems = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        if let Some(v) = a.header("sl-violations") {
            problems.push(format!("answer {i} ({}): {v}", a.status));
        } else if a.status >= 500 || a.status == 422 && a.body.get("errors").is_none() {
            problems.push(format!("answer {i} ({}): {}", a.status, a.body));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nPrism log:\n{}",
        problems.join("\n"),
        prism.violations().join("\n")
    );
}

/// octocrab (what the GitHub forge is built on) reads every answer into its models.
#[tokio::test]
async fn octocrab_reads_the_answers() {
    use octocrab::models::StatusState;
    use octocrab::params::repos::Reference;

    let fake = start();
    let crab = octocrab::Octocrab::builder()
        .base_uri(fake.base_url())
        .unwrap()
        .personal_token(TOKEN.to_string())
        .build()
        .unwrap();
    let repo = fake.repo_path("acme", "fleet");
    let head = commit_in_bare(&repo, "fleetwave/step", "main", "a.txt", "1");
    let r = crab.repos("acme", "fleet").get().await.unwrap();
    assert_eq!(r.default_branch.as_deref(), Some("main"));
    let pr = crab
        .pulls("acme", "fleet")
        .create("title", "acme:fleetwave/step", "main")
        .body("body")
        .send()
        .await
        .unwrap();
    assert_eq!(pr.head.sha, head);
    let listed = crab
        .pulls("acme", "fleet")
        .list()
        .state(octocrab::params::State::Open)
        .head("acme:fleetwave/step")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let got = crab.pulls("acme", "fleet").get(pr.number).await.unwrap();
    assert_eq!(got.merged, Some(false));
    crab.repos("acme", "fleet")
        .create_status(head.clone(), StatusState::Pending)
        .context("fleetwave/gate".to_string())
        .description("soaking".to_string())
        .send()
        .await
        .unwrap();
    let combined = crab
        .repos("acme", "fleet")
        .combined_status_for_ref(&Reference::Branch("fleetwave/step".into()))
        .await
        .unwrap();
    assert_eq!(combined.total_count, 1);
    let issues = crab.issues("acme", "fleet");
    let c = issues.create_comment(pr.number, "hello").await.unwrap();
    let c2 = issues.update_comment(c.id, "hello again").await.unwrap();
    assert_eq!(c2.body.as_deref(), Some("hello again"));
    let all = issues.list_comments(pr.number).send().await.unwrap();
    assert_eq!(all.items.len(), 1);
    let labels = issues
        .add_labels(pr.number, &["fleetwave".to_string()])
        .await
        .unwrap();
    assert_eq!(labels[0].name, "fleetwave");
    let issue = issues
        .create("dashboard")
        .body("x")
        .labels(vec!["fleetwave-dashboard".to_string()])
        .send()
        .await
        .unwrap();
    let found = issues
        .list()
        .labels(&["fleetwave-dashboard".to_string()])
        .send()
        .await
        .unwrap();
    assert_eq!(found.items[0].number, issue.number);
    fake.add_review("acme", "fleet", pr.number, "alice", "APPROVED", &head);
    let reviews = crab
        .pulls("acme", "fleet")
        .list_reviews(pr.number)
        .send()
        .await
        .unwrap();
    assert_eq!(reviews.items[0].user.as_ref().unwrap().login, "alice");
    fake.add_team_member("acme", "platform", "alice");
    crab.teams("acme")
        .memberships("platform")
        .get("alice")
        .await
        .unwrap();
    assert!(
        crab.teams("acme")
            .memberships("platform")
            .get("bob")
            .await
            .is_err()
    );
    crab.checks("acme", "fleet")
        .create_check_run("fleetwave/gate", head.clone())
        .send()
        .await
        .unwrap();
    crab.ratelimit().get().await.unwrap();
    let stale = crab
        .pulls("acme", "fleet")
        .merge(pr.number)
        .sha("0000000000000000000000000000000000000000")
        .send()
        .await;
    assert!(stale.is_err());
    let merged = crab
        .pulls("acme", "fleet")
        .merge(pr.number)
        .sha(head.clone())
        .method(octocrab::params::pulls::MergeMethod::Squash)
        .send()
        .await
        .unwrap();
    assert!(merged.merged);
    let after = crab.pulls("acme", "fleet").get(pr.number).await.unwrap();
    assert_eq!(after.merged, Some(true));
    assert_eq!(after.merge_commit_sha, merged.sha);
}
