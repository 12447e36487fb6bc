//! Git reference names, checked without Git: the rules of `git check-ref-format` as the Git
//! library fleetwave links applies them to a full name such as `refs/tags/2026.02`.

/// Whether Git accepts `name` as a full reference name of two or more components: every
/// `/`-separated component is non-empty, does not start with `.` and does not end with
/// `.lock`; no byte is a control character, space, `~`, `^`, `:`, `\`, `?`, `[` or `*`; the name
/// holds neither `..` nor `@{` and does not end with `.`; and its first component is not all
/// capitals and underscores (`HEAD`, `FETCH_HEAD`).
pub fn is_valid_full_name(name: &str) -> bool {
    let mut parts = 0;
    for part in name.split('/') {
        parts += 1;
        let b = part.as_bytes();
        if b.is_empty() || b[0] == b'.' || part.ends_with(".lock") {
            return false;
        }
        if b.iter()
            .any(|&c| c <= b' ' || c == 0x7f || b"~^:\\?[*".contains(&c))
        {
            return false;
        }
        if part.contains("..") || part.contains("@{") {
            return false;
        }
    }
    let first = name.split('/').next().unwrap_or("");
    parts > 1 && !name.ends_with('.') && !first.bytes().all(|c| c.is_ascii_uppercase() || c == b'_')
}
