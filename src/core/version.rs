//! Kubernetes versions as they are written in fleet repos, and the style each field uses.
//!
//! A field may hold `v1.32.4`, `1.32.5`, `"1.32"`, `v1.33.2+k0s.0`, `v1.34.3-k0s.0`,
//! `v1.30.8+rke2r1`, a pre-release such as `v1.37.0-rc.1` or a provider build such as
//! `1.23.8-gke.1700`; a new value is rendered in the style of the value it replaces.
//!
//! Ordering follows semver precedence: numbers, then a pre-release sorts before its release
//! (`v1.37.0-rc.1` < `v1.37.0`); distribution and provider suffixes do not take part.
//!
//! Suffixes, by kind (see [`suffix_rule`]):
//! - pre-release (`-rc.1`, `-alpha.0`, `-beta.2`): belongs to one version; never carried to a
//!   new value. A plan target may itself be a pre-release and is then written as such.
//! - k0s (`+k0s.N`, and the older hyphen form `-k0s.N` that k0smotron still accepts): the
//!   k0s build counter restarts at every Kubernetes release, so it is carried reset to `.0`.
//! - RKE2 (`+rke2rN`) and K3s (`+k3sN`): carried reset to the first build, `+rke2r1`/`+k3s1`.
//! - anything else (`-gke.N`, `-eks-…`, other `+build` metadata) names one provider build that
//!   cannot be derived for another version: fleetwave refuses and asks for the exact value in
//!   the plan's `versionOverrides`.

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    /// None for minor-only values such as `"1.31"`.
    pub patch: Option<u32>,
    pub v_prefix: bool,
    /// Semver pre-release without its `-`, e.g. `rc.1`.
    pub pre: Option<String>,
    /// Distribution or provider suffix including its separator, e.g. `+k0s.0`, `-k0s.0`,
    /// `+rke2r1` or `-gke.1700`.
    pub suffix: String,
}

/// What a field's suffix becomes when the field moves to another version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuffixRule {
    /// No suffix.
    None,
    /// A version-independent distribution suffix, written in its first-build form.
    Reset(String),
    /// A provider build of one version only (`-gke.N`, `-eks-…`, unknown build metadata).
    Opaque,
}

/// Why a version cannot be written in a field's style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrenderable {
    /// The field holds a full version and the new value is minor-only.
    MinorOnly,
    /// The field's suffix names a provider build that cannot be derived.
    Suffix(String),
}

/// `k0s.3` → Some(3) for `name` = `k0s.`: the counter after a fixed prefix.
fn counter<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.strip_prefix(prefix)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

pub fn suffix_rule(suffix: &str) -> SuffixRule {
    let (sep, body) = match suffix.chars().next() {
        None => return SuffixRule::None,
        Some(c) => (c, &suffix[1..]),
    };
    if counter(body, "k0s.").is_some() {
        SuffixRule::Reset(format!("{sep}k0s.0"))
    } else if sep == '+' && counter(body, "rke2r").is_some() {
        SuffixRule::Reset("+rke2r1".into())
    } else if sep == '+' && counter(body, "k3s").is_some() {
        SuffixRule::Reset("+k3s1".into())
    } else {
        SuffixRule::Opaque
    }
}

/// A hyphen part that is a distribution or provider build, not a semver pre-release.
fn is_build_hyphen(h: &str) -> bool {
    counter(h, "k0s.").is_some() || h.starts_with("gke.") || h.starts_with("eks-")
}

fn valid_idents(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// Semver pre-release precedence: numeric identifiers below alphanumeric ones, then by
/// value; a shorter list of equal identifiers sorts first.
fn cmp_pre(a: &str, b: &str) -> Ordering {
    let key = |p: &str| match p.parse::<u64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, p.to_string()),
    };
    let (x, y): (Vec<_>, Vec<_>) = (
        a.split('.').map(key).collect(),
        b.split('.').map(key).collect(),
    );
    x.cmp(&y)
}

/// Split what follows `1.2.3` into a pre-release and a distribution/provider suffix.
fn split_tail(tail: &str) -> Option<(Option<String>, String)> {
    if tail.is_empty() {
        return Some((None, String::new()));
    }
    let (hyphen, plus) = match tail.strip_prefix('-') {
        Some(h) => match h.find('+') {
            Some(i) => (Some(&h[..i]), &h[i..]),
            None => (Some(h), ""),
        },
        None => (None, tail),
    };
    if !plus.is_empty() && !valid_idents(&plus[1..]) {
        return None;
    }
    match hyphen {
        None => Some((None, plus.to_string())),
        Some(h) if !valid_idents(h) => None,
        Some(h) if is_build_hyphen(h) => plus.is_empty().then(|| (None, format!("-{h}"))),
        Some(h) => Some((Some(h.to_string()), plus.to_string())),
    }
}

impl KubeVersion {
    pub fn parse(s: &str) -> Option<Self> {
        let (v_prefix, rest) = match s.strip_prefix('v') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let split = rest.find(['+', '-']).unwrap_or(rest.len());
        let (core, tail) = rest.split_at(split);
        let (pre, suffix) = split_tail(tail)?;
        let mut parts = core.split('.');
        let num = |p: Option<&str>| -> Option<u32> {
            let p = p?;
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                return None;
            }
            p.parse().ok()
        };
        let major = num(parts.next())?;
        let minor = num(parts.next())?;
        let patch = match parts.next() {
            None => None,
            Some(p) => Some(num(Some(p))?),
        };
        if parts.next().is_some() || major != 1 || (patch.is_none() && pre.is_some()) {
            return None;
        }
        Some(KubeVersion {
            major,
            minor,
            patch,
            v_prefix,
            pre,
            suffix,
        })
    }

    pub fn is_minor_only(&self) -> bool {
        self.patch.is_none()
    }

    /// `self` written in the style of `old`: same `v` prefix and precision; `old`'s
    /// pre-release is dropped, `self`'s is written; `old`'s suffix is carried by its
    /// [`suffix_rule`] or, when it cannot be derived, refused.
    pub fn render_like(&self, old: &KubeVersion) -> Result<String, Unrenderable> {
        let v = if old.v_prefix { "v" } else { "" };
        let suffix = match suffix_rule(&old.suffix) {
            SuffixRule::None => String::new(),
            SuffixRule::Reset(s) => s,
            SuffixRule::Opaque => return Err(Unrenderable::Suffix(old.suffix.clone())),
        };
        let pre = self.pre.as_ref().map_or(String::new(), |p| format!("-{p}"));
        match (old.patch, self.patch) {
            (None, _) => Ok(format!("{v}{}.{}{suffix}", self.major, self.minor)),
            (Some(_), Some(p)) => Ok(format!("{v}{}.{}.{p}{pre}{suffix}", self.major, self.minor)),
            (Some(_), None) => Err(Unrenderable::MinorOnly),
        }
    }

    /// The value exactly as it was written.
    pub fn written(&self) -> String {
        let v = if self.v_prefix { "v" } else { "" };
        let pre = self.pre.as_ref().map_or(String::new(), |p| format!("-{p}"));
        match self.patch {
            Some(x) => format!("{v}{}.{}.{x}{pre}{}", self.major, self.minor, self.suffix),
            None => format!("{v}{}.{}{}", self.major, self.minor, self.suffix),
        }
    }

    /// Semver precedence: numbers (a minor-only value sorts as its `.0` patch), then a
    /// pre-release before its release. Suffixes do not take part.
    pub fn cmp_precedence(&self, other: &KubeVersion) -> Ordering {
        let nums = |v: &KubeVersion| (v.major, v.minor, v.patch.unwrap_or(0));
        nums(self)
            .cmp(&nums(other))
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => cmp_pre(a, b),
            })
    }

    /// Whether `self` is the same version as `other` at `other`'s precision.
    pub fn same_as(&self, other: &KubeVersion) -> bool {
        self.major == other.major
            && self.minor == other.minor
            && (other.patch.is_none()
                || self.patch.is_none()
                || (self.patch == other.patch && self.pre == other.pre))
    }

    /// `v1.33.5` or `v1.33.0-rc.1`, the canonical form used in messages.
    pub fn canonical(&self) -> String {
        let pre = self.pre.as_ref().map_or(String::new(), |p| format!("-{p}"));
        match self.patch {
            Some(p) => format!("v{}.{}.{p}{pre}", self.major, self.minor),
            None => format!("v{}.{}", self.major, self.minor),
        }
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// Compare two opaque tags (CalVer `2026.01.2`, `v0.1.0`) numerically by segments when both
/// parse as dotted numbers; None when they cannot be compared.
pub fn compare_tags(a: &str, b: &str) -> Option<Ordering> {
    fn nums(s: &str) -> Option<Vec<u64>> {
        s.strip_prefix('v')
            .unwrap_or(s)
            .split('.')
            .map(|p| p.parse().ok())
            .collect()
    }
    let (mut x, mut y) = (nums(a)?, nums(b)?);
    let n = x.len().max(y.len());
    x.resize(n, 0);
    y.resize(n, 0);
    Some(x.cmp(&y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> KubeVersion {
        KubeVersion::parse(s).unwrap()
    }

    #[test]
    fn parses_the_styles_found_in_fleets() {
        assert_eq!(v("v1.32.4").patch, Some(4));
        assert!(v("1.31").is_minor_only());
        assert_eq!(v("v1.33.2+k0s.0").suffix, "+k0s.0");
        assert_eq!(v("v1.34.3-k0s.0").suffix, "-k0s.0");
        for bad in [
            "banana", "1.x", "v1", "1.32.4.1", "2.0.1", "v1.032.1", "v1.32+", "",
        ] {
            assert!(KubeVersion::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn renders_in_the_old_style() {
        let target = v("v1.33.5");
        assert_eq!(target.render_like(&v("1.32.5")).unwrap(), "1.33.5");
        assert_eq!(target.render_like(&v("1.32")).unwrap(), "1.33");
        assert_eq!(
            target.render_like(&v("v1.32.4+k0s.0")).unwrap(),
            "v1.33.5+k0s.0"
        );
        assert_eq!(
            target.render_like(&v("v1.32.4-k0s.0")).unwrap(),
            "v1.33.5-k0s.0"
        );
        assert_eq!(
            v("1.34").render_like(&v("v1.32.4")),
            Err(Unrenderable::MinorOnly)
        );
        assert_eq!(v("1.34").render_like(&v("1.32")).unwrap(), "1.34");
    }

    #[test]
    fn pre_releases_follow_semver_precedence() {
        let rc = v("v1.37.0-rc.1");
        assert_eq!((rc.pre.as_deref(), rc.suffix.as_str()), (Some("rc.1"), ""));
        assert_eq!(rc.cmp_precedence(&v("v1.37.0")), Ordering::Less);
        assert_eq!(rc.cmp_precedence(&v("v1.37.0-rc.2")), Ordering::Less);
        assert_eq!(v("v1.37.0-rc.10").cmp_precedence(&rc), Ordering::Greater);
        assert_eq!(v("v1.37.0-alpha.3").cmp_precedence(&rc), Ordering::Less);
        assert_eq!(rc.cmp_precedence(&v("v1.36.9")), Ordering::Greater);
        // The old pre-release is never carried; a pre-release target is written as such.
        assert_eq!(v("v1.38.0").render_like(&rc).unwrap(), "v1.38.0");
        assert_eq!(
            v("v1.33.0-rc.1").render_like(&v("1.32.4")).unwrap(),
            "1.33.0-rc.1"
        );
        assert_eq!(rc.canonical(), "v1.37.0-rc.1");
        assert_eq!(rc.written(), "v1.37.0-rc.1");
        assert!(KubeVersion::parse("1.37-rc.1").is_none());
    }

    #[test]
    fn distribution_suffixes_reset_and_provider_builds_refuse() {
        let t = v("v1.31.4");
        for (old, want) in [
            ("v1.30.8+rke2r3", "v1.31.4+rke2r1"),
            ("v1.30.8+k3s2", "v1.31.4+k3s1"),
            ("v1.30.1+k0s.2", "v1.31.4+k0s.0"),
            ("v1.27.2-k0s.1", "v1.31.4-k0s.0"),
            ("v1.30.0-rc.1+k0s.0", "v1.31.4+k0s.0"),
        ] {
            assert_eq!(t.render_like(&v(old)).unwrap(), want, "{old}");
        }
        let gke = v("1.23.8-gke.1700");
        assert_eq!((gke.pre.clone(), gke.suffix.as_str()), (None, "-gke.1700"));
        assert_eq!(
            t.render_like(&gke),
            Err(Unrenderable::Suffix("-gke.1700".into()))
        );
        let eks = v("v1.28.3-eks-e71965b");
        assert_eq!(eks.suffix, "-eks-e71965b");
        assert!(t.render_like(&eks).is_err());
        assert!(t.render_like(&v("v1.30.1+build.7")).is_err());
        assert_eq!(gke.cmp_precedence(&v("1.23.8")), Ordering::Equal);
    }

    #[test]
    fn tags_compare_by_segments() {
        assert_eq!(compare_tags("2026.01", "2026.01.2"), Some(Ordering::Less));
        assert_eq!(
            compare_tags("2026.02", "2026.01.2"),
            Some(Ordering::Greater)
        );
        assert_eq!(compare_tags("v0.1.0", "v0.1"), Some(Ordering::Equal));
        assert_eq!(compare_tags("release-2025.3.0-rc1", "2026.01"), None);
    }
}
