//! Repository URLs compared by what they name, whatever their spelling.

/// `https://github.com/Org/Repo.git`, `git@github.com:org/repo`, `ssh://git@github.com/org/repo`
/// → `github.com/org/repo`. None when it does not look like a repository URL.
pub fn normalize_repo_url(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((scheme, rest))
            if ["https", "http", "ssh", "git", "git+ssh", "oci"].contains(&scheme) =>
        {
            rest
        }
        Some(_) => return None,
        None => {
            // scp-like `git@host:org/repo`, or kustomize's scheme-less `github.com/org/repo`
            if let Some((userhost, path)) = url
                .split_once(':')
                .filter(|(h, _)| h.contains('@') && !h.contains('/'))
            {
                return finish(&format!("{}/{}", userhost.rsplit('@').next()?, path));
            }
            url
        }
    };
    let rest = rest
        .rsplit_once('@')
        .filter(|(u, _)| !u.contains('/'))
        .map_or(rest, |(_, h)| h);
    return finish(rest);

    fn finish(s: &str) -> Option<String> {
        let s = s.trim_end_matches('/');
        let s = s.strip_suffix(".git").unwrap_or(s).to_ascii_lowercase();
        let (host, path) = s.split_once('/')?;
        let host = host.split(':').next()?; // drop a port
        (host.contains('.') && !path.is_empty() && !s.contains(char::is_whitespace))
            .then(|| format!("{host}/{path}"))
    }
}
