//! Git's smart HTTP push (`git-receive-pack`, protocol v0), for one ref update with a pack
//! that [`super::sparse`] chose: what lets a push cost the files it changes.
//!
//! Wire format: Git's `gitprotocol-http` and `gitprotocol-pack` documents. A request is
//! `GET …/info/refs?service=git-receive-pack` (the remote's refs and capabilities), then
//! `POST …/git-receive-pack` with `old new ref\0caps`, a flush and the pack; the answer is
//! a `report-status`, inside side band 1 when `side-band-64k` was asked for.
//!
//! Proxies are not used, as libgit2 (which fetches) is given none; the CA roots are the
//! platform's plus `GIT_SSL_CAINFO`, as git honours it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use git2::{Oid, Repository};

const ADVERTISEMENT: &str = "application/x-git-receive-pack-advertisement";
const AGENT: &str = concat!("fleetwave/", env!("CARGO_PKG_VERSION"));

/// Why the push did not happen over this path.
#[derive(Debug)]
pub(super) enum Failure {
    /// Nothing was sent (the remote could not be listed, or does not speak this protocol):
    /// the caller may push another way.
    NotSent(String),
    /// The update was sent and its answer is unknown (lost, or not understood): the caller
    /// reads the branch back.
    Unknown(String),
}

/// The remote's refs and capabilities (`GET …/info/refs`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Advertised {
    pub refs: BTreeMap<String, Oid>,
    /// `.have` lines: objects the remote holds through an alternate.
    pub haves: Vec<Oid>,
    pub caps: Vec<String>,
}

impl Advertised {
    fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    /// Why this remote cannot take the update (a delete when `delete`), if it cannot.
    fn lacks(&self, delete: bool) -> Option<&'static str> {
        if !self.has("report-status") {
            return Some("the remote does not report status");
        }
        if delete && !self.has("delete-refs") {
            return Some("the remote does not delete refs");
        }
        // libgit2's pack builder refers to delta bases by offset.
        if !delete && !self.has("ofs-delta") {
            return Some("the remote does not take offset deltas");
        }
        None
    }

    /// Every tip the remote holds: what a pack may leave out.
    pub fn tips(&self) -> Vec<Oid> {
        self.refs.values().chain(&self.haves).copied().collect()
    }
}

/// What `report-status` said.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Report {
    /// `unpack ok`, or the unpack error.
    pub unpack: Result<(), String>,
    /// Per ref: Ok, or the reason given with `ng`.
    pub refs: BTreeMap<String, Result<(), String>>,
}

/// The packets of `data` up to the first flush; Err when a length is malformed.
fn packets(mut data: &[u8]) -> Result<(Vec<&[u8]>, &[u8]), String> {
    let mut out = Vec::new();
    loop {
        let head = data.get(..4).ok_or("truncated packet length")?;
        let len = std::str::from_utf8(head)
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("bad packet length {:?}", String::from_utf8_lossy(head)))?;
        if len == 0 {
            return Ok((out, &data[4..]));
        }
        if len < 4 {
            return Err(format!("unexpected special packet {len:04x}"));
        }
        let body = data.get(4..len).ok_or("truncated packet")?;
        out.push(body);
        data = &data[len..];
    }
}

fn pkt_line(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(format!("{:04x}", payload.len() + 4).as_bytes());
    out.extend_from_slice(payload);
}

fn trim_lf(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// Parse the body of `GET …/info/refs?service=git-receive-pack`.
pub(super) fn parse_advertisement(body: &[u8]) -> Result<Advertised, String> {
    let (first, rest) = packets(body)?;
    if first.first().map(|l| trim_lf(l)) != Some(b"# service=git-receive-pack") {
        return Err("not a git-receive-pack advertisement".into());
    }
    let (lines, _) = packets(rest)?;
    let mut adv = Advertised::default();
    for (i, line) in lines.iter().enumerate() {
        let line = trim_lf(line);
        let (line, caps) = match line.iter().position(|&b| b == 0) {
            Some(nul) => (&line[..nul], Some(&line[nul + 1..])),
            None => (line, None),
        };
        if let Some(caps) = caps.filter(|_| i == 0) {
            let caps = String::from_utf8_lossy(caps);
            adv.caps = caps
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
        }
        let text = std::str::from_utf8(line).map_err(|_| "ref line is not UTF-8")?;
        let (id, name) = text
            .split_once(' ')
            .ok_or_else(|| format!("bad ref line {text:?}"))?;
        let id = Oid::from_str(id).map_err(|_| format!("bad object id in {text:?}"))?;
        match name {
            // An empty repository advertises its capabilities on a placeholder.
            "capabilities^{}" => {}
            ".have" => adv.haves.push(id),
            _ => {
                adv.refs.insert(name.to_string(), id);
            }
        }
    }
    Ok(adv)
}

/// The body of `POST …/git-receive-pack` for one update.
fn request(
    adv: &Advertised,
    refname: &str,
    old: Option<Oid>,
    new: Option<Oid>,
    pack: &[u8],
) -> Vec<u8> {
    let mut caps = vec!["report-status"];
    if adv.has("side-band-64k") {
        caps.push("side-band-64k");
    }
    // A client may name itself only to a server that named itself.
    let agent = format!("agent={AGENT}");
    if adv.caps.iter().any(|c| c.starts_with("agent=")) {
        caps.push(&agent);
    }
    let old = old.unwrap_or(Oid::ZERO_SHA1);
    let new = new.unwrap_or(Oid::ZERO_SHA1);
    let mut cmd = format!("{old} {new} {refname}").into_bytes();
    cmd.push(0);
    cmd.extend_from_slice(caps.join(" ").as_bytes());
    let mut out = Vec::with_capacity(pack.len() + cmd.len() + 8);
    pkt_line(&mut out, &cmd);
    out.extend_from_slice(b"0000");
    out.extend_from_slice(pack);
    out
}

/// Parse the answer to the POST; `banded` when side-band-64k was asked for.
pub(super) fn parse_report(body: &[u8], banded: bool) -> Result<Report, String> {
    let status: Vec<u8> = if banded {
        let (pkts, _) = packets(body)?;
        let mut data = Vec::new();
        for p in pkts {
            match p.split_first() {
                Some((1, rest)) => data.extend_from_slice(rest),
                Some((2, _)) => {}
                Some((3, msg)) => {
                    return Err(format!("remote: {}", String::from_utf8_lossy(trim_lf(msg))));
                }
                _ => return Err("unknown side band".into()),
            }
        }
        data
    } else {
        body.to_vec()
    };
    let (lines, _) = packets(&status)?;
    let mut lines = lines
        .into_iter()
        .map(|l| String::from_utf8_lossy(trim_lf(l)));
    let unpack = match lines
        .next()
        .as_deref()
        .and_then(|l| l.strip_prefix("unpack "))
    {
        Some("ok") => Ok(()),
        Some(err) => Err(err.to_string()),
        None => return Err("no unpack status in the report".into()),
    };
    let mut refs = BTreeMap::new();
    for line in lines {
        if let Some(name) = line.strip_prefix("ok ") {
            refs.insert(name.to_string(), Ok(()));
        } else if let Some(rest) = line.strip_prefix("ng ") {
            let (name, why) = rest.split_once(' ').unwrap_or((rest, "rejected"));
            refs.insert(name.to_string(), Err(why.to_string()));
        }
    }
    Ok(Report { unpack, refs })
}

/// Credentials sent with each request, as libgit2's callback would give them.
pub(super) struct Basic {
    pub user: String,
    pub secret: String,
}

/// One remote reached over smart HTTP.
pub(super) struct Remote {
    client: reqwest::Client,
    /// The repository URL, after any redirect of the listing.
    base: String,
    basic: Option<Basic>,
}

/// An error with its causes: reqwest's own message alone says only "error sending request".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn client() -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        // Servers tell smart clients by a `git/` agent.
        .user_agent(format!("git/2.0 ({AGENT})"))
        .no_proxy()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(300))
        .redirect(reqwest::redirect::Policy::limited(3));
    if let Some(file) = std::env::var_os("GIT_SSL_CAINFO").filter(|f| !f.is_empty()) {
        let pem = std::fs::read(&file)
            .map_err(|e| format!("GIT_SSL_CAINFO={}: {e}", file.to_string_lossy()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("GIT_SSL_CAINFO={}: {e}", file.to_string_lossy()))?;
        b = b.tls_certs_merge(certs);
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}

impl Remote {
    pub fn new(url: &str, basic: Option<Basic>) -> Result<Remote, String> {
        Ok(Remote {
            client: client()?,
            base: url.trim_end_matches('/').to_string(),
            basic,
        })
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.basic {
            Some(b) => req.basic_auth(&b.user, Some(&b.secret)),
            None => req,
        }
    }

    /// The remote's refs; follows a redirect for the POST as git does.
    pub async fn advertised(&mut self) -> Result<Advertised, String> {
        let url = format!("{}/info/refs?service=git-receive-pack", self.base);
        let res = self.auth(self.client.get(&url)).send().await;
        let res = res.map_err(|e| format!("list refs: {}", chain(&e.without_url())))?;
        let status = res.status();
        let kind = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if let Some(base) = res
            .url()
            .as_str()
            .strip_suffix("/info/refs?service=git-receive-pack")
        {
            self.base = base.to_string();
        }
        if !status.is_success() || kind != ADVERTISEMENT {
            return Err(format!("list refs: HTTP {status}, {kind:?}"));
        }
        let body = res.bytes().await.map_err(|e| format!("list refs: {e}"))?;
        parse_advertisement(&body)
    }

    /// Send one update and its pack; the report, or why it is unknown.
    pub async fn send(
        &self,
        adv: &Advertised,
        refname: &str,
        old: Option<Oid>,
        new: Option<Oid>,
        pack: &[u8],
    ) -> Result<Report, Failure> {
        if let Some(why) = adv.lacks(new.is_none()) {
            return Err(Failure::NotSent(why.into()));
        }
        let body = request(adv, refname, old, new, pack);
        let req = self
            .client
            .post(format!("{}/git-receive-pack", self.base))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-git-receive-pack-request",
            )
            .header(
                reqwest::header::ACCEPT,
                "application/x-git-receive-pack-result",
            )
            .body(body);
        let unknown = |what: String| Failure::Unknown(what);
        let res = self.auth(req).send().await;
        let res = res.map_err(|e| unknown(format!("push: {}", chain(&e.without_url()))))?;
        let status = res.status();
        if !status.is_success() {
            return Err(unknown(format!("push: HTTP {status}")));
        }
        let body = res
            .bytes()
            .await
            .map_err(|e| unknown(format!("push: {e}")))?;
        parse_report(&body, adv.has("side-band-64k")).map_err(|e| unknown(format!("push: {e}")))
    }
}

/// The pack of what `new` adds to what the remote has; how many objects it holds.
fn pack_for(cache: &Path, new: Oid, adv: &Advertised) -> Result<(Vec<u8>, usize), Failure> {
    let not_sent = |e: git2::Error| Failure::NotSent(format!("pack: {}", e.message()));
    let repo = Repository::open_bare(cache).map_err(not_sent)?;
    // What this cache fetched from the remote is still there but for a rewrite: a moved
    // branch must not make the pack carry the fleet's history. Were it gone, the server's
    // connectivity check refuses the pack and libgit2 pushes instead.
    let mut tips = adv.tips();
    tips.extend(super::sparse::fetched_tips(&repo).map_err(not_sent)?);
    let objects = super::sparse::new_objects(&repo, new, &tips).map_err(not_sent)?;
    let pack = super::sparse::pack(&repo, &objects).map_err(not_sent)?;
    Ok((pack, objects.len()))
}

/// What the remote answered to a push.
#[derive(Debug)]
pub(super) enum Answer {
    /// The lease failed before anything was sent: the ref's value (None: absent).
    Lost(Option<Oid>),
    /// The remote's report, and how many objects the pack held.
    Report(Report, usize),
}

/// Push `new` to `refname` (None: delete it) if the remote has it at `old`, sending only
/// what [`super::sparse::new_objects`] lists (a delete sends no pack). Runs on a thread of its own, with its own
/// runtime and its own handle on the cache at `cache` (the caller's may be an async task).
pub(super) fn push(
    cache: &Path,
    url: &str,
    basic: Option<Basic>,
    refname: &str,
    new: Option<Oid>,
    old: Option<Oid>,
) -> Result<Answer, Failure> {
    let run = || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::NotSent(format!("runtime: {e}")))?;
        rt.block_on(async {
            let mut remote = Remote::new(url, basic).map_err(Failure::NotSent)?;
            let adv = remote.advertised().await.map_err(Failure::NotSent)?;
            let found = adv.refs.get(refname).copied();
            if found != old {
                return Ok(Answer::Lost(found));
            }
            if let Some(why) = adv.lacks(new.is_none()) {
                return Err(Failure::NotSent(why.into()));
            }
            let (pack, sent) = match new {
                Some(new) => pack_for(cache, new, &adv)?,
                None => (Vec::new(), 0),
            };
            let report = remote.send(&adv, refname, old, new, &pack).await?;
            Ok(Answer::Report(report, sent))
        })
    };
    std::thread::scope(|s| s.spawn(run).join())
        .unwrap_or_else(|_| Err(Failure::NotSent("the push thread panicked".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkts(lines: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            if l.is_empty() {
                out.extend_from_slice(b"0000");
            } else {
                pkt_line(&mut out, l);
            }
        }
        out
    }

    /// The reference discovery of git's `gitprotocol-pack` document (its receive-pack
    /// example), behind the service line `gitprotocol-http` puts first.
    #[test]
    fn the_documented_advertisement_parses() {
        let mut body = pkts(&[b"# service=git-receive-pack\n", b""]);
        body.extend_from_slice(
            b"006274730d410fcb6603ace96f1dc55ea6196122532d refs/heads/local\0report-status delete-refs ofs-delta\n\
              003e7d1665144a3a975c05f1f43902ddaf084e784dbe refs/heads/debug\n\
              003f74730d410fcb6603ace96f1dc55ea6196122532d refs/heads/master\n\
              003d5a3f6be755bbb7deae50065988cbfa1ffa9ab68a refs/heads/team\n\
              0000",
        );
        let adv = parse_advertisement(&body).unwrap();
        assert_eq!(adv.refs.len(), 4);
        assert_eq!(
            adv.refs["refs/heads/debug"].to_string(),
            "7d1665144a3a975c05f1f43902ddaf084e784dbe"
        );
        assert!(adv.has("report-status") && !adv.has("side-band-64k"));
        assert_eq!(adv.lacks(false), None);
        assert_eq!(adv.lacks(true), None);

        // An empty repository names its capabilities on a placeholder, and no ref.
        let mut empty = pkts(&[b"# service=git-receive-pack\n", b""]);
        empty.extend_from_slice(
            b"00750000000000000000000000000000000000000000 capabilities^{}\0report-status delete-refs side-band-64k quiet ofs-delta\n0000",
        );
        let adv = parse_advertisement(&empty).unwrap();
        assert!(adv.refs.is_empty() && adv.has("side-band-64k"), "{adv:?}");
        let old_server = Advertised {
            caps: vec!["report-status".into()],
            ..Advertised::default()
        };
        assert!(old_server.lacks(false).is_some() && old_server.lacks(true).is_some());
        assert!(parse_advertisement(b"001e# service=git-upload-pack\n0000").is_err());
    }

    #[test]
    fn the_request_asks_only_for_what_the_server_offers() {
        let (old, new) = (
            Oid::from_bytes(&[1; 20]).unwrap(),
            Oid::from_bytes(&[2; 20]).unwrap(),
        );
        let plain = Advertised {
            caps: vec!["report-status".into(), "ofs-delta".into()],
            ..Advertised::default()
        };
        let body = request(&plain, "refs/heads/x", Some(old), Some(new), b"PACK");
        let (cmds, pack) = packets(&body).unwrap();
        assert_eq!(
            cmds,
            vec![format!("{old} {new} refs/heads/x\0report-status").as_bytes()]
        );
        assert_eq!(pack, b"PACK");
        let rich = Advertised {
            caps: vec![
                "report-status".into(),
                "side-band-64k".into(),
                "agent=git/2.47".into(),
            ],
            ..Advertised::default()
        };
        let body = request(&rich, "refs/heads/x", None, None, b"");
        let (cmds, _) = packets(&body).unwrap();
        let want = format!(
            "{z} {z} refs/heads/x\0report-status side-band-64k agent={AGENT}",
            z = Oid::ZERO_SHA1
        );
        assert_eq!(cmds, vec![want.as_bytes()]);
    }

    #[test]
    fn packets_refuse_bad_lengths() {
        assert!(packets(b"00").is_err());
        assert!(packets(b"zzzz").is_err());
        assert!(packets(b"0009abc").is_err());
        assert!(packets(b"0001").is_err());
        let (p, rest) = packets(b"0006ab0000xyz").unwrap();
        assert_eq!(p, vec![b"ab".as_slice()]);
        assert_eq!(rest, b"xyz");
    }

    #[test]
    fn a_banded_report_with_a_refusal() {
        let status = pkts(&[
            b"unpack ok\n",
            b"ng refs/heads/main protected branch\n",
            b"",
        ]);
        let mut band = vec![1u8];
        band.extend_from_slice(&status);
        let body = pkts(&[b"\x02remote: resolving\n", &band, b""]);
        let r = parse_report(&body, true).unwrap();
        assert_eq!(r.unpack, Ok(()));
        assert_eq!(
            r.refs.get("refs/heads/main"),
            Some(&Err("protected branch".to_string()))
        );
        let err = parse_report(&pkts(&[b"\x03denied\n", b""]), true).unwrap_err();
        assert_eq!(err, "remote: denied");
    }
}
