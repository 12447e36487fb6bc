//! Kubernetes versions as they are written in fleet repos, and the style each field uses.
//!
//! A field may hold `v1.32.4`, `1.32.5`, `"1.32"`, `v1.33.2+k0s.0` or `v1.34.3-k0s.0`;
//! a new value is rendered in the style of the value it replaces.

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    /// None for minor-only values such as `"1.31"`.
    pub patch: Option<u32>,
    pub v_prefix: bool,
    /// Distribution suffix including its separator, e.g. `+k0s.0` or `-k0s.0`.
    pub suffix: String,
}

impl KubeVersion {
    pub fn parse(s: &str) -> Option<Self> {
        let (v_prefix, rest) = match s.strip_prefix('v') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let split = rest.find(['+', '-']).unwrap_or(rest.len());
        let (core, suffix) = rest.split_at(split);
        if suffix.len() == 1
            || !suffix
                .chars()
                .skip(1)
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return None;
        }
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
        if parts.next().is_some() || major != 1 {
            return None;
        }
        Some(KubeVersion {
            major,
            minor,
            patch,
            v_prefix,
            suffix: suffix.to_string(),
        })
    }

    pub fn is_minor_only(&self) -> bool {
        self.patch.is_none()
    }

    /// `self` written in the style of `old`: same `v` prefix, suffix and precision.
    /// None when `old` holds a full version and `self` is minor-only.
    pub fn render_like(&self, old: &KubeVersion) -> Option<String> {
        let v = if old.v_prefix { "v" } else { "" };
        match (old.patch, self.patch) {
            (None, _) => Some(format!("{v}{}.{}{}", self.major, self.minor, old.suffix)),
            (Some(_), Some(p)) => Some(format!(
                "{v}{}.{}.{p}{}",
                self.major, self.minor, old.suffix
            )),
            (Some(_), None) => None,
        }
    }

    /// Ordering by numbers only; a minor-only value sorts as its `.0` patch.
    pub fn cmp_numbers(&self, other: &KubeVersion) -> Ordering {
        (self.major, self.minor, self.patch.unwrap_or(0)).cmp(&(
            other.major,
            other.minor,
            other.patch.unwrap_or(0),
        ))
    }

    /// Whether `self` is the same version as `other` at `other`'s precision.
    pub fn same_as(&self, other: &KubeVersion) -> bool {
        self.major == other.major
            && self.minor == other.minor
            && (other.patch.is_none() || self.patch.is_none() || self.patch == other.patch)
    }

    /// `v1.33.5`, the canonical form used in messages.
    pub fn canonical(&self) -> String {
        match self.patch {
            Some(p) => format!("v{}.{}.{p}", self.major, self.minor),
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
        assert_eq!(v("1.34").render_like(&v("v1.32.4")), None);
        assert_eq!(v("1.34").render_like(&v("1.32")).unwrap(), "1.34");
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
