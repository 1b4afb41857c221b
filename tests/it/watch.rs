//! Through the real binary: a change to a watched file reloads with no signal, as SIGHUP does
//! (`watch_files`): kubelet's `..data` swap of a ConfigMap or a Secret, an edit in place, a
//! refused file, a new token path, the watch turned off, SIGHUP beside it, and an idle shim
//! that the watch does not wake.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;
use serde_json::Value;

/// How long a reload is waited for: the shim's debounce (0.5 s of quiet) and the reload itself,
/// with room for a loaded machine.
const RELOADED_WITHIN: Duration = Duration::from_secs(10);

/// Longer than the watch's quiet time (0.5 s), so a second reload from the same burst, or a
/// reload the watch should not have made, would have happened within it.
const PAST_THE_QUIET_TIME: Duration = Duration::from_millis(1500);

const RELOADED: &str = "SIGHUP: configuration reloaded";
const REFUSED: &str = "SIGHUP: configuration refused";
const ARMED: &str = "watching the configured files' directories";
const UNCHANGED: &str = "the files are as the last reload read them";
/// The check a watcher makes once armed, for a change made before it was.
const ARMED_AND_CHECKED: &str = "the watch is armed, and the files are as last read";

/// A directory laid out as kubelet mounts a ConfigMap or Secret volume: `..<timestamp>/` with
/// the files, `..data` pointing at it, and each file a link through `..data`.
pub struct KubeletVolume {
    root: PathBuf,
    current: PathBuf,
    generation: usize,
}

impl KubeletVolume {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let root = temp_path("volume");
        std::fs::create_dir(&root).unwrap();
        let mut volume = Self {
            root,
            current: PathBuf::new(),
            generation: 0,
        };
        volume.current = volume.write_generation(files);
        std::os::unix::fs::symlink(
            volume.current.file_name().unwrap(),
            volume.root.join("..data"),
        )
        .unwrap();
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), volume.root.join(name)).unwrap();
        }
        volume
    }

    pub fn path(&self, name: &str) -> String {
        self.root.join(name).to_str().unwrap().to_owned()
    }

    /// A new timestamped directory holding `files`.
    fn write_generation(&mut self, files: &[(&str, &str)]) -> PathBuf {
        self.generation += 1;
        let dir = self.root.join(format!(
            "..2026_12_07_12_00_0{}.{}",
            self.generation,
            100 + self.generation
        ));
        std::fs::create_dir(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        dir
    }

    /// Kubelet's update: a new timestamped directory, `..data_tmp` pointing at it, renamed
    /// over `..data`, then the old directory removed.
    pub fn swap(&mut self, files: &[(&str, &str)]) {
        let next = self.write_generation(files);
        let temporary = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(next.file_name().unwrap(), &temporary).unwrap();
        std::fs::rename(&temporary, self.root.join("..data")).unwrap();
        std::fs::remove_dir_all(std::mem::replace(&mut self.current, next)).unwrap();
    }
}

impl Drop for KubeletVolume {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The `team_id` a legacy update's reply carries: the running config's `legacy.team_id`.
async fn team_id(shim: &Shim) -> Value {
    post_json(
        &shim.url("/api/update_user_group/"),
        &serde_json::json!({"user_group_id": "g1"}),
    )
    .await
    .json()["user_group"]["team_id"]
        .clone()
}

async fn wait_for_team_id(shim: &Shim, expected: i64) {
    until_ok(RELOADED_WITHIN, || async {
        let got = team_id(shim).await;
        if got == expected {
            Ok(())
        } else {
            Err(format!(
                "team_id is {got}, not {expected}: {:?}",
                shim.logs()
            ))
        }
    })
    .await;
}

fn reloads(result: &str, count: u32) -> String {
    format!("explo_shim_config_reloads_total{{result=\"{result}\"}} {count}")
}

/// The shim, once its watch is set up (a change before that would not be seen).
fn last_reload_successful(value: u8) -> String {
    format!("explo_shim_config_last_reload_successful {value}")
}

async fn watched_shim(upstream: &FakeUpstream, args: &[&str]) -> Shim {
    let shim = Shim::start(&upstream.url(), args);
    shim.wait_for_line("the watch was never set up", |line| line.contains(ARMED))
        .await;
    shim
}

/// The admin port's answer to `/usage` with `token` as the bearer.
async fn admin_status(shim: &Shim, token: &str) -> http::StatusCode {
    let bearer = format!("Bearer {token}");
    send(
        "GET",
        &shim.admin_url("/usage"),
        &[("authorization", &bearer)],
        "",
    )
    .await
    .status
}

/// Until the watch has made `count` reloads, at most [`RELOADED_WITHIN`].
async fn until_watch_reloads(shim: &Shim, count: usize, failure: &str) {
    until(RELOADED_WITHIN, failure, || async {
        (lines_of(shim, RELOADED, "file change") == count).then_some(())
    })
    .await;
}

/// The lines with `message` whose `trigger` is `trigger`.
fn lines_of(shim: &Shim, message: &str, trigger: &str) -> usize {
    shim.lines_so_far()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["message"] == message && event["trigger"] == trigger)
        .count()
}

#[tokio::test]
async fn a_kubelet_swap_of_the_config_map_reloads_once_with_no_signal() {
    let upstream = team_only_upstream().await;
    let mut volume = KubeletVolume::new(&[("config.toml", "[legacy]\nteam_id = 7\n")]);
    let shim = watched_shim(&upstream, &["--config", &volume.path("config.toml")]).await;
    assert_eq!(team_id(&shim).await, 7);

    volume.swap(&[("config.toml", "[legacy]\nteam_id = 8\n")]);
    wait_for_team_id(&shim, 8).await;
    shim.wait_for_metric(&reloads("success", 1), "the reload was not counted")
        .await;
    quiet_for(PAST_THE_QUIET_TIME).await;
    let metrics = shim.metrics_text().await;
    assert!(
        metrics.contains(&reloads("success", 1)),
        "one burst, one reload: {metrics}"
    );
    assert!(!metrics.contains("result=\"failure\"} 1"), "{metrics}");
    assert_eq!(lines_of(&shim, RELOADED, "file change"), 1);
}

/// The watch compares later reads with the bytes start-up built the running config from (its
/// own record of each read), not with what the files hold once the watch starts: a change in
/// between is then a change. Every watched file is found in that record.
#[tokio::test]
async fn the_watch_starts_from_the_bytes_start_up_read() {
    let upstream = team_only_upstream().await;
    let volume = KubeletVolume::new(&[("token", "first-token-0123456789abcdef0123456789\n")]);
    let config = TempConfig::new(&format!(
        "admin_token_file = \"{}\"\n[legacy]\nteam_id = 7\n",
        volume.path("token")
    ));
    let shim = watched_shim(&upstream, &["--config", config.path()]).await;
    let line = shim
        .wait_for_line("no start from start-up's digests", |line| {
            line.contains("the watch starts from the digests")
        })
        .await;
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&event["files"], &event["known"]),
        (&2.into(), &2.into()),
        "{line}"
    );
}

#[tokio::test]
async fn a_broken_swap_is_refused_and_counted_and_the_next_good_one_is_taken() {
    let upstream = team_only_upstream().await;
    let mut volume = KubeletVolume::new(&[("config.toml", "[legacy]\nteam_id = 7\n")]);
    let shim = watched_shim(&upstream, &["--config", &volume.path("config.toml")]).await;

    volume.swap(&[("config.toml", "[legacy\nteam_id = 8\n")]);
    shim.wait_for_metric(&reloads("failure", 1), "the refusal was not counted")
        .await;
    let refused = shim
        .wait_for_line("no refusal", |line| line.contains(REFUSED))
        .await;
    assert!(refused.contains("file change"), "{refused}");
    assert_eq!(team_id(&shim).await, 7, "the running config stays");
    assert!(
        shim.metrics_text()
            .await
            .contains(&last_reload_successful(0))
    );

    // A valid file with an invalid value is refused whole, naming the key.
    volume.swap(&[(
        "config.toml",
        "[legacy]\nteam_id = 9\n[rate_limit]\nper_minute = 0\n",
    )]);
    shim.wait_for_metric(&reloads("failure", 2), "the second refusal was not counted")
        .await;
    // The counter moves before the line is logged: the line is waited for.
    shim.wait_for_line("the refusal did not name the key", |line| {
        line.contains(REFUSED) && line.contains("rate_limit.per_minute")
    })
    .await;
    assert_eq!(team_id(&shim).await, 7);

    // The same refused bytes again: no reload, so nothing is counted and the gauge stays 0.
    let unchanged = shim
        .lines_so_far()
        .iter()
        .filter(|line| line.contains(UNCHANGED))
        .count();
    volume.swap(&[(
        "config.toml",
        "[legacy]\nteam_id = 9\n[rate_limit]\nper_minute = 0\n",
    )]);
    until(
        RELOADED_WITHIN,
        "the same bytes were not looked at",
        || async {
            (shim
                .lines_so_far()
                .iter()
                .filter(|line| line.contains(UNCHANGED))
                .count()
                > unchanged)
                .then_some(())
        },
    )
    .await;
    let text = shim.metrics_text().await;
    assert!(text.contains(&reloads("failure", 2)), "{text}");
    assert!(text.contains(&last_reload_successful(0)), "{text}");

    volume.swap(&[("config.toml", "[legacy]\nteam_id = 9\n")]);
    wait_for_team_id(&shim, 9).await;
    shim.wait_for_metric(&reloads("success", 1), "the good swap was not counted")
        .await;
    shim.wait_for_metric(
        &last_reload_successful(1),
        "the good swap set the gauge back",
    )
    .await;
}

#[tokio::test]
async fn a_secret_swap_rotates_the_admin_token() {
    let upstream = team_only_upstream().await;
    let old = "old-token-0123456789abcdef0123456789";
    let new = "new-token-0123456789abcdef0123456789";
    let mut secret = KubeletVolume::new(&[("token", &format!("{old}\n"))]);
    let config = TempConfig::new(&format!(
        "admin_token_file = \"{}\"\n",
        secret.path("token")
    ));
    let shim = watched_shim(&upstream, &["--config", config.path()]).await;
    let usage = |token: &str| {
        let bearer = format!("Bearer {token}");
        let url = shim.admin_url("/usage");
        async move {
            send("GET", &url, &[("authorization", &bearer)], "")
                .await
                .status
        }
    };
    assert_eq!(usage(old).await, 200);

    secret.swap(&[("token", &format!("{new}\n"))]);
    // Waited for in the log, not by asking with the token: each refused credential counts
    // toward the admin port's throttle.
    shim.wait_for_line("the token was not reloaded", |line| {
        line.contains(RELOADED) && line.contains("file change")
    })
    .await;
    assert_eq!(usage(old).await, 401, "the old token is refused");
    assert_eq!(usage(new).await, 200, "the new token is taken");
    for line in shim.logs() {
        assert!(
            !line.contains(old) && !line.contains(new),
            "a token in the log: {line}"
        );
    }
}

#[tokio::test]
async fn an_edit_in_place_of_a_plain_file_in_a_busy_directory_reloads() {
    let upstream = team_only_upstream().await;
    // In the shared temporary directory, where other tests write files all the time.
    let config = TempConfig::new("[legacy]\nteam_id = 7\n");
    let shim = watched_shim(&upstream, &["--config", config.path()]).await;
    std::fs::write(&config.0, "[legacy]\nteam_id = 8\n").unwrap();
    wait_for_team_id(&shim, 8).await;
    shim.wait_for_metric(&reloads("success", 1), "the edit was not counted")
        .await;

    // A file moved over it (an editor's save, `mv`) too.
    let replacement = TempConfig::new("[legacy]\nteam_id = 9\n");
    std::fs::rename(&replacement.0, &config.0).unwrap();
    wait_for_team_id(&shim, 9).await;
    shim.wait_for_metric(&reloads("success", 2), "the replacement was not counted")
        .await;
}

#[tokio::test]
async fn rewriting_the_same_bytes_reloads_nothing_and_sighup_still_reloads() {
    let upstream = team_only_upstream().await;
    let config = TempConfig::new("[legacy]\nteam_id = 7\n");
    let shim = watched_shim(&upstream, &["--config", config.path()]).await;

    let skipped = |shim: &Shim| {
        shim.lines_so_far()
            .iter()
            .filter(|line| line.contains(UNCHANGED))
            .count()
    };
    // The file changes and SIGHUP comes at once: one reload, SIGHUP's; the watch's event that
    // follows finds the bytes that reload read, and skips. On a loaded machine the `kill`
    // process can come after the watch's quiet time (0.5 s) instead: then the watch reloads
    // first and SIGHUP, which always reloads, again. Either way the watch reloads the new
    // bytes at most once.
    std::fs::write(&config.0, "[legacy]\nteam_id = 8\n").unwrap();
    shim.signal("HUP");
    let reloaded = until(RELOADED_WITHIN, "the change was not settled", || async {
        let by_signal = lines_of(&shim, RELOADED, "SIGHUP");
        let by_watch = lines_of(&shim, RELOADED, "file change");
        match (by_signal, by_watch, skipped(&shim)) {
            (1, 0, 1) | (1, 1, 0) => Some(by_signal + by_watch),
            _ => None,
        }
    })
    .await;
    assert_eq!(team_id(&shim).await, 8);
    let successes = u32::try_from(reloaded).unwrap();
    assert!(
        shim.metrics_text()
            .await
            .contains(&reloads("success", successes))
    );

    // A rewrite of the same bytes (a `touch`, a save with no change) reloads nothing either.
    let before = skipped(&shim);
    std::fs::write(&config.0, "[legacy]\nteam_id = 8\n").unwrap();
    until(RELOADED_WITHIN, "the rewrite was not looked at", || async {
        (skipped(&shim) > before).then_some(())
    })
    .await;
    assert!(
        shim.metrics_text()
            .await
            .contains(&reloads("success", successes))
    );

    // SIGHUP reloads even when nothing changed.
    shim.signal("HUP");
    shim.wait_for_metric(&reloads("success", successes + 1), "SIGHUP did not reload")
        .await;
}

/// A deploy's layout: `releases/N/config.toml` with `team_id` set, and links to them.
struct Releases {
    root: PathBuf,
}

impl Releases {
    fn new(releases: &[(&str, i64)]) -> Self {
        let releases_dir = Self {
            root: temp_path("releases"),
        };
        for (release, team) in releases {
            releases_dir.write(release, *team);
        }
        releases_dir
    }

    /// Writes `releases/<release>/config.toml`, making the directory if need be.
    fn write(&self, release: &str, team: i64) {
        let dir = self.root.join("releases").join(release);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!("[legacy]\nteam_id = {team}\n"),
        )
        .unwrap();
    }

    /// Points the link `name` at `target`, as deploy tools do: a new link renamed over it.
    fn link(&self, name: &str, target: &str) {
        let next = self.root.join(format!("{name}.next"));
        std::os::unix::fs::symlink(target, &next).unwrap();
        std::fs::rename(&next, self.root.join(name)).unwrap();
    }

    fn path(&self, relative: &str) -> String {
        self.root.join(relative).to_str().unwrap().to_owned()
    }
}

impl Drop for Releases {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A deploy that swaps a `current -> releases/N` link higher up the path: the swap is seen,
/// and so are later edits in the new release (the watch moved with the link).
#[tokio::test]
async fn a_release_link_swapped_higher_up_the_path_is_followed() {
    let upstream = team_only_upstream().await;
    let releases = Releases::new(&[("1", 7), ("2", 8)]);
    releases.link("current", "releases/1");
    let config = releases.path("current/config.toml");
    let shim = watched_shim(&upstream, &["--config", &config]).await;
    assert_eq!(team_id(&shim).await, 7);

    releases.link("current", "releases/2");
    wait_for_team_id(&shim, 8).await;
    // An edit in place in the new release is seen: the old release's directory is not the
    // one watched any more.
    releases.write("2", 9);
    wait_for_team_id(&shim, 9).await;
}

/// The release a link leads to, removed and made again under the same name (a tool that
/// unpacks into a fixed directory), or another directory moved into its place: the new
/// directory is watched, not the old one.
#[tokio::test]
async fn a_release_directory_made_again_under_the_link_is_watched() {
    let upstream = team_only_upstream().await;
    let releases = Releases::new(&[("1", 7)]);
    releases.link("current", "releases/1");
    let config = releases.path("current/config.toml");
    let shim = watched_shim(&upstream, &["--config", &config]).await;

    std::fs::remove_dir_all(releases.root.join("releases/1")).unwrap();
    releases.write("1", 8);
    wait_for_team_id(&shim, 8).await;
    releases.write("1", 9);
    wait_for_team_id(&shim, 9).await;

    releases.write("staging", 10);
    std::fs::rename(
        releases.root.join("releases/1"),
        releases.root.join("releases/1.old"),
    )
    .unwrap();
    std::fs::rename(
        releases.root.join("releases/staging"),
        releases.root.join("releases/1"),
    )
    .unwrap();
    wait_for_team_id(&shim, 10).await;
    releases.write("1", 11);
    wait_for_team_id(&shim, 11).await;
}

/// A link whose target steps back with `..` from a linked directory
/// (`current/config.toml -> ../shared/config.toml`, `current -> releases/1`): the kernel opens
/// `releases/shared/config.toml`, and that is what is watched.
#[tokio::test]
async fn a_dot_dot_in_a_link_is_read_as_the_kernel_reads_it() {
    let upstream = team_only_upstream().await;
    let releases = Releases::new(&[("1", 7), ("shared", 8)]);
    // A decoy where a reading of the names alone would look.
    std::fs::create_dir(releases.root.join("shared")).unwrap();
    std::fs::write(
        releases.root.join("shared/config.toml"),
        "[legacy]\nteam_id = 1\n",
    )
    .unwrap();
    std::fs::remove_file(releases.root.join("releases/1/config.toml")).unwrap();
    std::os::unix::fs::symlink(
        "../shared/config.toml",
        releases.root.join("releases/1/config.toml"),
    )
    .unwrap();
    releases.link("current", "releases/1");
    let config = releases.path("current/config.toml");
    let shim = watched_shim(&upstream, &["--config", &config]).await;
    assert_eq!(team_id(&shim).await, 8);

    releases.write("shared", 9);
    wait_for_team_id(&shim, 9).await;
    // The decoy is not watched: an edit there reloads nothing.
    std::fs::write(
        releases.root.join("shared/config.toml"),
        "[legacy]\nteam_id = 2\n",
    )
    .unwrap();
    quiet_for(PAST_THE_QUIET_TIME).await;
    assert_eq!(lines_of(&shim, RELOADED, "file change"), 1);
}

/// A configured path with a `..` after a plain directory (`plain/../shared/config.toml`):
/// when that directory is replaced by a link, the path leads elsewhere, and that is seen.
#[tokio::test]
async fn a_plain_directory_before_a_dot_dot_replaced_by_a_link_is_seen() {
    let upstream = team_only_upstream().await;
    let releases = Releases::new(&[]);
    for (dir, team) in [("shared", 7), ("c/shared", 8)] {
        let dir = releases.root.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.toml"),
            format!("[legacy]\nteam_id = {team}\n"),
        )
        .unwrap();
    }
    std::fs::create_dir_all(releases.root.join("plain")).unwrap();
    std::fs::create_dir_all(releases.root.join("c/r3")).unwrap();
    let config = releases.path("plain/../shared/config.toml");
    let shim = watched_shim(&upstream, &["--config", &config]).await;
    assert_eq!(team_id(&shim).await, 7);

    // `plain/..` is now `c`: the kernel reads `c/shared/config.toml`.
    std::fs::remove_dir(releases.root.join("plain")).unwrap();
    releases.link("plain", "c/r3");
    wait_for_team_id(&shim, 8).await;
}

/// A chain of directory links (`current -> stage`, `stage -> releases/N`): a swap of the link
/// further along is seen, and so are edits in the release it leads to.
#[tokio::test]
async fn a_chain_of_directory_links_is_followed() {
    let upstream = team_only_upstream().await;
    let releases = Releases::new(&[("1", 7), ("2", 8)]);
    releases.link("stage", "releases/1");
    releases.link("current", "stage");
    let config = releases.path("current/config.toml");
    let shim = watched_shim(&upstream, &["--config", &config]).await;

    releases.link("stage", "releases/2");
    wait_for_team_id(&shim, 8).await;
    releases.write("2", 9);
    wait_for_team_id(&shim, 9).await;
}

#[tokio::test]
async fn with_the_watch_off_a_swap_waits_for_sighup() {
    let upstream = team_only_upstream().await;
    let mut volume = KubeletVolume::new(&[("config.toml", "[legacy]\nteam_id = 7\n")]);
    let shim = Shim::start(
        &upstream.url(),
        &[
            "--config",
            &volume.path("config.toml"),
            "--watch-files",
            "false",
        ],
    );
    volume.swap(&[("config.toml", "[legacy]\nteam_id = 8\n")]);
    quiet_for(PAST_THE_QUIET_TIME).await;
    assert_eq!(team_id(&shim).await, 7, "no reload without the watch");
    assert!(
        !shim
            .metrics_text()
            .await
            .contains("explo_shim_config_reloads_total{result=\"success\"} 1")
    );
    assert!(!shim.lines_so_far().iter().any(|line| line.contains(ARMED)));

    shim.signal("HUP");
    wait_for_team_id(&shim, 8).await;
}

#[tokio::test]
async fn a_reload_that_names_another_token_file_watches_that_one() {
    let upstream = team_only_upstream().await;
    let first = TempConfig::new("first-token-0123456789abcdef0123456789\n");
    let mut second = KubeletVolume::new(&[("token", "second-token-0123456789abcdef012345\n")]);
    let config = TempConfig::new(&format!("admin_token_file = \"{}\"\n", first.path()));
    let shim = watched_shim(&upstream, &["--config", config.path()]).await;

    std::fs::write(
        &config.0,
        format!("admin_token_file = \"{}\"\n", second.path("token")),
    )
    .unwrap();
    shim.wait_for_line("the new token file was not taken", |line| {
        line.contains(RELOADED) && line.contains("file change")
    })
    .await;
    assert_eq!(
        admin_status(&shim, "second-token-0123456789abcdef012345").await,
        200
    );

    // The Secret's directory is watched now, and its first look found the token the reload
    // read: no second reload.
    until(RELOADED_WITHIN, "the new watch never looked", || async {
        let lines = shim.lines_so_far();
        let reloaded = lines.iter().position(|line| line.contains(RELOADED))?;
        lines[reloaded..]
            .iter()
            .any(|line| line.contains(ARMED_AND_CHECKED))
            .then_some(())
    })
    .await;
    assert_eq!(lines_of(&shim, RELOADED, "file change"), 1);
    second.swap(&[("token", "third-token-0123456789abcdef0123456\n")]);
    until_watch_reloads(&shim, 2, "the new directory is not watched").await;
    assert_eq!(
        admin_status(&shim, "third-token-0123456789abcdef0123456").await,
        200
    );
}

#[tokio::test]
async fn a_fifo_in_a_watched_files_place_is_not_read_and_the_file_back_is_taken() {
    // A FIFO nobody writes to would hold a reload's read for its whole clock, and then keep
    // that path on the list of blocked readers: every later reload refused until a restart.
    let upstream = team_only_upstream().await;
    let dir = temp_path("d");
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "first-token-0123456789abcdef0123456789\n").unwrap();
    let config = TempConfig::new(&format!("admin_token_file = \"{}\"\n", token.display()));
    let shim = watched_shim(&upstream, &["--config", config.path()]).await;

    std::fs::remove_file(&token).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&token)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    shim.wait_for_line("the FIFO was not reported", |line| {
        line.contains("not a regular file")
    })
    .await;
    // Not read, so not refused (`/metrics` wants the token: the log says it).
    assert_eq!(lines_of(&shim, REFUSED, "file change"), 0);
    assert_eq!(
        admin_status(&shim, "first-token-0123456789abcdef0123456789").await,
        200
    );

    // The file back, moved over the FIFO as a Secret tool or an editor would.
    let fresh = dir.join("token.new");
    std::fs::write(&fresh, "second-token-0123456789abcdef012345\n").unwrap();
    std::fs::rename(&fresh, &token).unwrap();
    shim.wait_for_line("the file back was not taken", |line| {
        line.contains(RELOADED) && line.contains("file change")
    })
    .await;
    assert_eq!(
        admin_status(&shim, "second-token-0123456789abcdef012345").await,
        200
    );
    // And nothing was left blocked: SIGHUP reads the path again.
    shim.signal("HUP");
    shim.wait_for_line("SIGHUP was refused after the FIFO", |line| {
        line.contains(RELOADED) && line.contains("\"trigger\":\"SIGHUP\"")
    })
    .await;
    assert_eq!(lines_of(&shim, REFUSED, "SIGHUP"), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_watched_directory_that_goes_away_is_logged_and_sighup_watches_it_again() {
    let upstream = team_only_upstream().await;
    let mut volume = KubeletVolume::new(&[("token", "first-token-0123456789abcdef0123456789\n")]);
    let config = TempConfig::new(&format!(
        "admin_token_file = \"{}\"\n",
        volume.path("token")
    ));
    let shim = watched_shim(&upstream, &["--config", config.path()]).await;

    let kept = temp_path("kept");
    std::fs::rename(&volume.root, &kept).unwrap();
    let gone = shim
        .wait_for_line("the directory's removal was not logged", |line| {
            line.contains("a watched directory was removed or renamed")
        })
        .await;
    assert!(gone.contains(volume.root.to_str().unwrap()), "{gone}");
    std::fs::rename(&kept, &volume.root).unwrap();

    // The shim serves on; SIGHUP reloads (the token is readable again) and watches it again.
    shim.signal("HUP");
    until(
        RELOADED_WITHIN,
        "the watch was not set up again",
        || async {
            let armed = shim
                .lines_so_far()
                .iter()
                .filter(|line| line.contains(ARMED))
                .count();
            (armed == 2).then_some(())
        },
    )
    .await;
    volume.swap(&[("token", "second-token-0123456789abcdef012345\n")]);
    until_watch_reloads(&shim, 1, "the swap after the return was not seen").await;
}

/// With no signal at all: a watched directory that comes back is watched again on the watch's
/// own clock (30 s), and a change made there while it was not watched is then taken.
#[tokio::test]
async fn a_watched_directory_that_comes_back_is_watched_again_on_its_own() {
    let upstream = team_only_upstream().await;
    let mut volume = KubeletVolume::new(&[("token", "first-token-0123456789abcdef0123456789\n")]);
    // The config in a directory of its own: nothing watched sees the volume come back.
    let config_dir = temp_path("conf");
    std::fs::create_dir(&config_dir).unwrap();
    let config = config_dir.join("config.toml");
    std::fs::write(
        &config,
        format!("admin_token_file = \"{}\"\n", volume.path("token")),
    )
    .unwrap();
    let shim = watched_shim(&upstream, &["--config", config.to_str().unwrap()]).await;

    let kept = temp_path("kept");
    std::fs::rename(&volume.root, &kept).unwrap();
    // The removal's own reload finds no token, and is refused; only then does it come back.
    shim.wait_for_line("the token's removal was not refused", |line| {
        line.contains(REFUSED) && line.contains("admin_token_file")
    })
    .await;
    std::fs::rename(&kept, &volume.root).unwrap();
    // Rotated while nothing watches the directory: no event reaches the shim.
    volume.swap(&[("token", "second-token-0123456789abcdef012345\n")]);
    until(
        Duration::from_secs(60),
        "the returned directory was not watched again",
        || async {
            shim.lines_so_far()
                .iter()
                .any(|line| line.contains("the file watch is set up now"))
                .then_some(())
        },
    )
    .await;
    // Its first look finds the rotated token. (Asked once: failed bearer tokens are throttled.)
    until_watch_reloads(&shim, 1, "the rotated token was not reloaded").await;
    assert_eq!(
        admin_status(&shim, "second-token-0123456789abcdef012345").await,
        200
    );
    std::fs::remove_dir_all(&config_dir).unwrap();
}

/// Context switches so far (each is a wake-up): of every thread but the allocator's, of the
/// coordinating thread (the first, where the watch's task runs) and of the watcher's thread,
/// if there is one. The allocator's background threads return freed pages for some seconds
/// after any work (start-up's, the watch's one look at the files once armed): they wake
/// because of what came before the idle time, not because of it.
fn wake_ups(pid: u32) -> WakeUps {
    let mut total = 0;
    let mut coordinating = 0;
    let mut watcher = None;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue;
        };
        let switches: u64 = status
            .lines()
            .filter(|line| line.contains("ctxt_switches:"))
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if !name.starts_with("jemalloc_bg_thd") {
            total += switches;
        }
        if task.file_name() == Some(std::ffi::OsStr::new(&pid.to_string())) {
            coordinating = switches;
        }
        if name.starts_with("notify-rs") {
            watcher = Some(switches);
        }
    }
    WakeUps {
        total,
        coordinating,
        watcher,
    }
}

#[derive(Debug, Clone, Copy)]
struct WakeUps {
    total: u64,
    coordinating: u64,
    watcher: Option<u64>,
}

impl WakeUps {
    /// What happened between `self` and `later`.
    fn until(self, later: WakeUps) -> WakeUps {
        WakeUps {
            total: later.total - self.total,
            coordinating: later.coordinating - self.coordinating,
            watcher: self
                .watcher
                .zip(later.watcher)
                .map(|(then, now)| now - then),
        }
    }
}

#[tokio::test]
async fn an_idle_shim_is_not_woken_by_the_watch() {
    let upstream = team_only_upstream().await;
    let volume = KubeletVolume::new(&[("config.toml", "[legacy]\nteam_id = 7\n")]);
    let config = volume.path("config.toml");
    // At trace level the shim's own logging wakes it, watch or not, which would hide what the
    // watch adds: the watch's line is debug.
    let quiet_logs = [("RUST_LOG", "info,explo_shim::server::file_watch=debug")];
    let watching = Shim::start_with_env(&upstream.url(), &["--config", &config], &quiet_logs);
    // Its one look at the files after arming is start-up's work too.
    watching
        .wait_for_line("the watch never checked the files", |line| {
            line.contains(ARMED_AND_CHECKED)
        })
        .await;
    let not_watching = Shim::start_with_env(
        &upstream.url(),
        &["--config", &config, "--watch-files", "false"],
        &quiet_logs,
    );
    // Both have settled: start-up's work is done.
    assert_eq!(team_id(&watching).await, 7);
    assert_eq!(team_id(&not_watching).await, 7);
    // Measured over the same period, side by side.
    let before = (wake_ups(watching.pid()), wake_ups(not_watching.pid()));
    // An idle shim has nothing to do: there is no event to wait for, only time to let pass.
    quiet_for(Duration::from_millis(2500)).await;
    let after = (wake_ups(watching.pid()), wake_ups(not_watching.pid()));
    let on = before.0.until(after.0);
    let off = before.1.until(after.1);
    assert_eq!(off.watcher, None, "no watcher thread with the watch off");
    assert_eq!(
        on.watcher,
        Some(0),
        "the watcher's thread woke up while idle: {on:?}"
    );
    // The watch's task runs on the coordinating thread, which an idle shim never wakes.
    assert!(
        on.coordinating <= off.coordinating,
        "the coordinating thread woke up: {on:?} with the watch, {off:?} without"
    );
    // Whatever else wakes an idle shim (the allocator's housekeeping) wakes both alike.
    assert!(
        on.total <= off.total + 3,
        "idle wake-ups: {on:?} with the watch, {off:?} without"
    );
}

#[test]
fn the_kubelet_layout_is_the_one_kubelet_makes() {
    let mut volume = KubeletVolume::new(&[("config.toml", "a = 1\n")]);
    let root = volume.root.clone();
    let link = |name: &str| std::fs::read_link(root.join(name)).unwrap();
    assert_eq!(link("config.toml"), Path::new("..data/config.toml"));
    volume.swap(&[("config.toml", "a = 2\n")]);
    assert!(link("..data").to_str().unwrap().starts_with("..2026_"));
    assert_eq!(
        std::fs::read_to_string(volume.path("config.toml")).unwrap(),
        "a = 2\n"
    );
    let entries = std::fs::read_dir(&volume.root).unwrap().count();
    assert_eq!(entries, 3, "the old generation and ..data_tmp are gone");
}
