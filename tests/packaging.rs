//! What a release ships: the licence, the binary's shared-library needs, shell completions and
//! man pages, and the container image (built only where a container engine works).

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleetwave")
}

fn have(cmd: &str) -> bool {
    Command::new("bash")
        .args(["-c", "command -v \"$1\" >/dev/null", "_", cmd])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn licence_changelog_and_manifest_agree() {
    let licence = std::fs::read_to_string(root().join("LICENSE")).unwrap();
    assert!(licence.contains("Apache License"), "LICENSE");
    assert!(licence.contains("Version 2.0, January 2004"), "LICENSE");
    assert!(
        licence.contains("END OF TERMS AND CONDITIONS"),
        "the full text"
    );
    assert_eq!(env!("CARGO_PKG_LICENSE"), "Apache-2.0");
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).unwrap();
    assert!(changelog.contains("## [Unreleased]"), "CHANGELOG.md");
}

/// The shared libraries the binary asks the dynamic loader for (ELF `NEEDED`).
#[cfg(target_os = "linux")]
fn needed(path: &str) -> Option<Vec<String>> {
    if !have("readelf") {
        return None;
    }
    let out = Command::new("readelf")
        .args(["-d", "-W", path])
        .output()
        .unwrap();
    assert!(out.status.success(), "readelf -d {path}");
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .filter(|l| l.contains("(NEEDED)"))
            .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_string))
            .collect(),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn the_binary_needs_no_libz_and_nothing_beyond_libc_and_openssl() {
    let Some(libs) = needed(bin()) else {
        eprintln!(
            "skipped: readelf (binutils) is not installed, so the ELF NEEDED entries cannot be read"
        );
        return;
    };
    eprintln!("{} needs: {}", bin(), libs.join(", "));
    assert!(
        !libs.iter().any(|l| l.starts_with("libz.")),
        "zlib must be linked statically (libz-sys feature `static`): {libs:?}"
    );
    let vendored = cfg!(feature = "vendored");
    let openssl = |l: &str| l.starts_with("libssl.") || l.starts_with("libcrypto.");
    if vendored {
        assert!(
            !libs.iter().any(|l| openssl(l)),
            "--features vendored links OpenSSL statically: {libs:?}"
        );
    } else {
        eprintln!(
            "note: built without --features vendored, so OpenSSL stays a shared library; the release binaries and the image use vendored"
        );
    }
    // glibc and the compiler runtime only (none at all for the musl release build).
    let libc = |l: &str| {
        [
            "libc.so",
            "libm.so",
            "libgcc_s.so",
            "libpthread.so",
            "libdl.so",
            "librt.so",
        ]
        .iter()
        .any(|p| l.starts_with(p))
            || l.starts_with("ld-linux")
    };
    let other: Vec<&String> = libs
        .iter()
        .filter(|l| !libc(l) && (vendored || !openssl(l)))
        .collect();
    assert!(other.is_empty(), "unexpected shared libraries: {other:?}");
}

#[test]
fn completions_generate_for_every_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _fleetwave"),
        ("zsh", "#compdef fleetwave"),
        ("fish", "complete -c fleetwave"),
        ("elvish", "edit:completion:arg-completer[fleetwave]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        for cmd in ["reconcile", "plan", "serve", "rollback"] {
            assert!(text.contains(cmd), "{shell}: no {cmd}");
        }
    }
    let out = Command::new(bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_render_for_the_command_and_each_subcommand() {
    use clap::CommandFactory;
    let cmd = fleetwave::cli::Cli::command();
    let mut top = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut top).unwrap();
    let top = String::from_utf8(top).unwrap();
    assert!(
        top.starts_with(".ie") || top.contains(".TH fleetwave"),
        "{top}"
    );
    assert!(top.contains("reconcile"));
    let dir = tempfile::tempdir().unwrap();
    // What examples/man.rs does at release time.
    clap_mangen::generate_to(cmd, dir.path()).unwrap();
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    pages.sort();
    for want in [
        "fleetwave.1",
        "fleetwave-plan.1",
        "fleetwave-reconcile.1",
        "fleetwave-serve.1",
        "fleetwave-completions.1",
    ] {
        assert!(pages.iter().any(|p| p == want), "{want} not in {pages:?}");
    }
    assert!(!pages.iter().any(|p| p.contains("dev")), "{pages:?}");
}

// ---------------------------------------------------------------------------------------
// The container image

/// The Dockerfile's stages: (name, FROM image, instructions).
fn stages(text: &str) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut logical = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        if let Some(cont) = l.strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(l);
        let ins = std::mem::take(&mut logical);
        if ins.to_ascii_uppercase().starts_with("FROM ") {
            let words: Vec<&str> = ins
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = words
                .iter()
                .position(|w| w.eq_ignore_ascii_case("AS"))
                .map(|i| words[i + 1].to_string())
                .unwrap_or_default();
            out.push((name, words[1].to_string(), Vec::new()));
        } else if let Some(s) = out.last_mut() {
            s.2.push(ins);
        }
    }
    out
}

#[test]
fn dockerfile_runs_as_65532_on_distroless_from_a_vendored_build() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let st = stages(&text);
    let names: Vec<&str> = st.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names.last(),
        Some(&"runtime"),
        "the default target is the runtime image"
    );
    for (name, from, _) in &st {
        assert!(!from.ends_with(":latest"), "{name}: {from} is not pinned");
        assert!(from.contains(':'), "{name}: {from} has no tag");
    }
    let build = st.iter().find(|s| s.0 == "build").expect("a build stage");
    let cargo = build
        .2
        .iter()
        .find(|i| i.contains("cargo build"))
        .expect("cargo build");
    for flag in ["--locked", "--release", "--features vendored"] {
        assert!(cargo.contains(flag), "{cargo}");
    }
    for name in ["runtime", "prebuilt"] {
        let (_, from, ins) = st.iter().find(|s| s.0 == name).unwrap();
        assert!(from.starts_with("gcr.io/distroless/"), "{name}: {from}");
        assert!(from.ends_with(":nonroot"), "{name}: {from}");
        assert!(
            ins.iter().any(|i| i == "USER 65532:65532"),
            "{name}: {ins:?}"
        );
        assert!(
            ins.iter()
                .any(|i| i.starts_with("ENTRYPOINT [\"/usr/local/bin/fleetwave\"]")),
            "{name}"
        );
        assert!(
            ins.iter()
                .any(|i| i.contains("--chown=65532:65532") && i.ends_with("/var/cache/fleetwave")),
            "{name}: a cache directory the user owns"
        );
        assert!(
            ins.iter().any(|i| i.contains("XDG_CACHE_HOME=/var/cache")),
            "{name}"
        );
        assert!(
            !ins.iter().any(|i| i.starts_with("RUN ")),
            "{name}: distroless has no shell"
        );
    }
    let prebuilt = &st.iter().find(|s| s.0 == "prebuilt").unwrap().2;
    assert!(
        prebuilt
            .iter()
            .any(|i| i.contains("dist/${TARGETPLATFORM}/fleetwave")),
        "{prebuilt:?}"
    );
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let lines: Vec<&str> = ignore
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(lines.first(), Some(&"*"), "the context is an allow-list");
    for want in [
        "!Cargo.toml",
        "!Cargo.lock",
        "!src/",
        "!fixtures/fleet/",
        "!fixtures/plans/",
    ] {
        assert!(lines.contains(&want), "{want} missing from .dockerignore");
    }
}

/// A container engine that can build and run here, or why there is none.
fn engine() -> Result<&'static str, String> {
    let mut why = Vec::new();
    for engine in ["docker", "podman"] {
        if !have(engine) {
            why.push(format!("{engine}: not installed"));
            continue;
        }
        let out = Command::new(engine).arg("info").output().unwrap();
        if out.status.success() {
            return Ok(engine);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        why.push(format!("`{engine} info` failed: {}", last.trim()));
    }
    Err(why.join("; "))
}

#[test]
fn the_image_builds_and_runs_read_only_as_65532() {
    let engine = match engine() {
        Ok(e) => e,
        Err(why) => {
            eprintln!("skipped: no working container engine ({why})");
            return;
        }
    };
    let tag = format!("fleetwave-test:{}", std::process::id());
    let st = Command::new(engine)
        .args(["build", "--target", "runtime", "-t", &tag, "."])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(st.success(), "{engine} build");
    let out = Command::new(engine)
        .args(["run", "--rm", "--read-only", &tag, "--version"])
        .output()
        .unwrap();
    let user = Command::new(engine)
        .args(["image", "inspect", "--format", "{{.Config.User}}", &tag])
        .output()
        .unwrap();
    let _ = Command::new(engine).args(["rmi", "-f", &tag]).status();
    assert!(out.status.success(), "{engine} run: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("fleetwave {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "65532:65532");
}
