//! Helpers shared by the integration tests.

pub mod fake_github;

/// Deterministic pseudo-random numbers (kill points, fault picks).
#[allow(dead_code)]
pub struct Lcg(pub u64);

#[allow(dead_code)]
impl Lcg {
    /// The next number in `0..n`.
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Run `cmd`, or, while fewer than `max_kills` ticks were killed and the dice say so (two in
/// three), kill it at a random point within `within_ms`: None when it was killed mid-way (a
/// run that finished first is waited for as usual).
#[allow(dead_code)]
pub fn run_or_kill(
    cmd: &mut std::process::Command,
    rng: &mut Lcg,
    kills: &mut usize,
    max_kills: usize,
    within_ms: u64,
) -> Option<std::process::Output> {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if *kills < max_kills && rng.next(3) > 0 {
        std::thread::sleep(std::time::Duration::from_millis(rng.next(within_ms)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            *kills += 1;
            return None;
        }
    }
    Some(child.wait_with_output().unwrap())
}

/// The tag `cluster`'s cert-manager source pins on main (the example fleet's layout).
#[allow(dead_code)]
pub fn cert_manager_tag(git: &fleetwave::git::GitRepo, cluster: &str) -> String {
    git.fetch().unwrap();
    let head = git.branch_head("main").unwrap().unwrap();
    let path = std::path::Path::new("applications/overlays")
        .join(cluster)
        .join("services/sources/opencenter-cert-manager.yaml");
    let text = String::from_utf8(git.read_file(&head, &path).unwrap().unwrap()).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("tag: "))
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// Compare two texts line by line: they must have the same lines, and each changed line may
/// differ only in one run of version-like characters (`[A-Za-z0-9.+-]`). Returns how many
/// lines changed, or the first change that is not a value bump.
pub fn only_values_changed(old: &str, new: &str) -> Result<usize, String> {
    if old.lines().count() != new.lines().count() {
        return Err(format!(
            "line count {} → {}",
            old.lines().count(),
            new.lines().count()
        ));
    }
    let mut changed = 0;
    for (a, b) in old.lines().zip(new.lines()) {
        if a == b {
            continue;
        }
        changed += 1;
        let (a8, b8) = (a.as_bytes(), b.as_bytes());
        let prefix = a8.iter().zip(b8).take_while(|(x, y)| x == y).count();
        let room = a8.len().min(b8.len()) - prefix;
        let suffix = a8
            .iter()
            .rev()
            .zip(b8.iter().rev())
            .take_while(|(x, y)| x == y)
            .count()
            .min(room);
        let versionish = |s: &[u8]| {
            s.iter()
                .all(|c| c.is_ascii_alphanumeric() || b".-+".contains(c))
        };
        if !versionish(&a8[prefix..a8.len() - suffix])
            || !versionish(&b8[prefix..b8.len() - suffix])
        {
            return Err(format!("not a value bump: {a:?} → {b:?}"));
        }
    }
    Ok(changed)
}

#[test]
fn value_bumps_are_told_from_other_changes() {
    assert_eq!(
        only_values_changed("a: v1.2\nb: x\n", "a: v1.3\nb: x\n"),
        Ok(1)
    );
    assert_eq!(
        only_values_changed("tag: 2026.01.2\n", "tag: 2026.02\n"),
        Ok(1)
    );
    assert!(only_values_changed("a: v1 # c\n", "a: v1 # d\n").is_ok_and(|n| n == 1));
    assert!(only_values_changed("a: v1\n", "a: v1\nb: 2\n").is_err());
    assert!(only_values_changed("a: 'v1'\n", "a: \"v1\"\n").is_err());
    assert!(only_values_changed("é: v1\n", "é: v2\n").is_ok());
}
pub mod fake_kube;
pub mod prism;
