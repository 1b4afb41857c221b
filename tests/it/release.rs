//! Release hygiene: the declared `rust-version` against the dependencies and the toolchain,
//! the image's OCI labels and cross build, the changelog's form, the security policy.

use std::process::Command;

use crate::deployment::{dockerfile_instructions, final_stage, repo_file};

/// "1.91", "1.88.0", "1.95.0-nightly" as (major, minor, patch).
fn version(text: &str) -> (u64, u64, u64) {
    let core = text.split(['-', '+']).next().unwrap();
    let mut parts = core.split('.').map(|part| {
        part.parse::<u64>()
            .unwrap_or_else(|_| panic!("not a version: {text}"))
    });
    let major = parts.next().unwrap();
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    (major, minor, patch)
}

fn output(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// No toolchain but the one CI runs can be installed there, so the declared minimum is checked
/// as data: no locked dependency may ask for a newer Rust than ours (Cargo would refuse to
/// build it with ours), and ours may not be newer than the toolchain running the tests (CI's
/// would then be refused). `--offline --locked`: the versions in Cargo.lock, read from the
/// registry's copies Cargo already has; `--filter-platform` the packages this host builds.
#[test]
fn rust_version_covers_every_dependency_and_is_met_by_this_toolchain() {
    let ours = version(env!("CARGO_PKG_RUST_VERSION"));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let verbose = output(&rustc, &["-vV"]);
    let field = |name: &str| {
        verbose
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_else(|| panic!("rustc -vV has no {name}: {verbose}"))
            .trim()
            .to_owned()
    };
    let toolchain = version(&field("release:"));
    assert!(
        ours <= toolchain,
        "rust-version {ours:?} is newer than this toolchain {toolchain:?}"
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let metadata: serde_json::Value = serde_json::from_str(&output(
        &cargo,
        &[
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--filter-platform",
            &field("host:"),
        ],
    ))
    .expect("cargo metadata is JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    assert!(packages.len() > 50, "{} packages", packages.len());
    let too_new: Vec<String> = packages
        .iter()
        .filter_map(|package| {
            let wanted = package["rust_version"].as_str()?;
            (version(wanted) > ours)
                .then(|| format!("{} {} wants {wanted}", package["name"], package["version"]))
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "rust-version {} is lower than: {too_new:#?}",
        env!("CARGO_PKG_RUST_VERSION")
    );
    // Edition 2024 itself needs 1.85.
    assert!(ours >= (1, 85, 0));
}

fn label(name: &str) -> String {
    let labels: Vec<String> = final_stage()
        .into_iter()
        .filter(|(op, _)| op == "LABEL")
        .map(|(_, args)| args)
        .collect();
    let key = format!("org.opencontainers.image.{name}=");
    let joined = labels.join(" ");
    let start = joined
        .find(&key)
        .unwrap_or_else(|| panic!("no label {key}: {labels:?}"))
        + key.len();
    let rest = &joined[start..];
    let value = rest
        .strip_prefix('"')
        .and_then(|quoted| quoted.split_once('"'))
        .map(|(value, _)| value)
        .unwrap_or_else(|| panic!("{key} is quoted"));
    value.to_owned()
}

/// The default of the final stage's `ARG name=default`.
fn arg_default(name: &str) -> Option<String> {
    final_stage().into_iter().find_map(|(op, args)| {
        (op == "ARG").then_some(())?;
        let (arg, default) = args.split_once('=').unwrap_or((&args, ""));
        (arg == name).then(|| default.to_owned())
    })
}

#[test]
fn the_image_carries_oci_labels_that_agree_with_the_crate() {
    assert_eq!(label("title"), env!("CARGO_PKG_NAME"));
    assert!(!label("description").is_empty());
    assert_eq!(label("licenses"), env!("CARGO_PKG_LICENSE"));
    // The version: the crate's, through an ARG whose default is Cargo.toml's version.
    let version = label("version");
    let version = match version.strip_prefix('$') {
        Some(arg) => arg_default(arg.trim_matches(['{', '}']))
            .unwrap_or_else(|| panic!("the label's {arg} is an ARG of the final stage")),
        None => version,
    };
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    // The revision: the commit the binary reports, from the same build argument.
    assert_eq!(label("revision"), "$EXPLO_SHIM_COMMIT");
    assert!(arg_default("EXPLO_SHIM_COMMIT").is_some());
    let source = label("source");
    let source = source.trim_start_matches('$');
    assert!(
        arg_default(source).is_some(),
        "the source is a build argument: {source}"
    );
}

#[test]
fn the_build_stage_cross_compiles_on_the_build_platform() {
    let instructions = dockerfile_instructions();
    let froms: Vec<&str> = instructions
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, args)| args.as_str())
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(
        froms[0].starts_with("--platform=$BUILDPLATFORM ") && froms[0].ends_with(" AS build"),
        "the build stage runs natively: {}",
        froms[0]
    );
    let run = |needle: &str| {
        instructions
            .iter()
            .any(|(op, args)| op == "RUN" && args.contains(needle))
    };
    for needle in [
        "rustup target add \"$target\"",
        "gcc=gcc-aarch64-linux-gnu",
        "gcc=gcc-x86-64-linux-gnu",
        "\"libc6-dev-$arch-cross\"",
        "CARGO_TARGET_${triple}_LINKER=$gnu-gcc",
        "CC_$(echo \"$target\" | tr '-' '_')=$gnu-gcc",
        ". /cross.env",
    ] {
        assert!(run(needle), "the build stage runs {needle}");
    }
}

#[test]
fn the_changelog_is_by_version_in_keep_a_changelog_form() {
    let changelog = repo_file("CHANGELOG.md");
    let headings: Vec<&str> = changelog
        .lines()
        .filter(|line| line.starts_with("## "))
        .collect();
    assert_eq!(headings.first(), Some(&"## [Unreleased]"), "{headings:?}");
    let released: Vec<&str> = headings[1..]
        .iter()
        .map(|heading| {
            heading
                .strip_prefix("## [")
                .and_then(|rest| rest.split_once("] - "))
                .filter(|(_, date)| date.len() == 10 && date.as_bytes()[4] == b'-')
                .unwrap_or_else(|| panic!("not `## [VERSION] - YYYY-MM-DD`: {heading}"))
                .0
        })
        .collect();
    assert_eq!(
        released.first(),
        Some(&env!("CARGO_PKG_VERSION")),
        "the newest release is the crate's version"
    );
    let mut ordered = released.clone();
    ordered.sort_by_key(|text| std::cmp::Reverse(version(text)));
    assert_eq!(released, ordered, "newest first");
    for line in changelog.lines().filter(|line| line.starts_with("### ")) {
        assert!(
            [
                "### Added",
                "### Changed",
                "### Deprecated",
                "### Removed",
                "### Fixed",
                "### Security"
            ]
            .contains(&line),
            "Keep a Changelog's kinds of change only: {line}"
        );
    }
}

#[test]
fn the_security_policy_says_how_to_report_and_is_linked() {
    let policy = repo_file("SECURITY.md");
    for needle in [
        "## Reporting a vulnerability",
        "private vulnerability reporting",
        "## Supported versions",
        "## Scope",
        "Explo-Authorization",
        "constant time",
        "OTLP",
    ] {
        assert!(policy.contains(needle), "SECURITY.md says {needle}");
    }
    let (major, minor, _) = version(env!("CARGO_PKG_VERSION"));
    assert!(
        policy.contains(&format!("{major}.{minor}.x")),
        "SECURITY.md names the supported {major}.{minor}.x"
    );
    assert!(!policy.contains('@'), "no made-up address");
    assert!(repo_file("README.md").contains("(SECURITY.md)"));
}
