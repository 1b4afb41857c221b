//! Which directories to watch for a set of files, and which of their events concern one of
//! them. Pure: the links are read by the caller ([`WatchPlan::new`] takes a `read_link`), so
//! the rules are tested without a file system.
//!
//! A directory is watched, not the file: kubelet never writes a mounted file; it renames a new
//! `..data` link over the old one, and an editor's save or an `mv` replaces the file's inode,
//! which a watch on the file itself would lose. In a busy directory (`/tmp`, `/etc`) only the
//! names that lead to a watched file count: the file's own name, `..data`, and each link on the
//! way to the file.
//!
//! A directory on the way that is itself a link (`/srv/shim/current -> releases/7`, swapped to
//! deploy) is watched from its parent too, under its own name: inotify watches what a path
//! leads to when the watch is set up, so the swap is seen there, and the plan keeps each such
//! link's target, so that the plan made after the swap differs and the watch moves with it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use notify::EventKind;
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};

use super::resolve::{Followed, MOST_LINKS, resolve};

/// The link kubelet renames over on every ConfigMap or Secret update.
pub const KUBELET_DATA_LINK: &str = "..data";

/// The directories to watch, each with the names in it that lead to a watched file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchPlan {
    dirs: BTreeMap<PathBuf, BTreeSet<OsString>>,
    /// The links among the watched directories and their ancestors, with their targets.
    dir_links: BTreeMap<PathBuf, PathBuf>,
    /// The files whose chain of links is longer than the kernel follows: watched as far as
    /// [`MOST_LINKS`] links, and named in a warning.
    pub gave_up: BTreeSet<PathBuf>,
}

/// What one event means for the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A watched file may have changed.
    Change,
    /// A watched directory itself was removed or renamed away: its watch is over.
    DirGone(PathBuf),
    /// Nothing that concerns a watched file.
    Unrelated,
}

impl WatchPlan {
    /// The plan for `files` (absolute paths). `read_link` says where a symbolic link points
    /// (`None`: not a link, or unreadable).
    pub fn new(files: &[PathBuf], read_link: impl Fn(&Path) -> Option<PathBuf>) -> Self {
        let mut plan = Self::default();
        for file in files {
            let mut followed = Followed::default();
            let mut at = resolve(file, &read_link, &mut followed);
            // A chain of n links has n + 1 names: each is watched, the last one included.
            let mut links_left = MOST_LINKS;
            while let (Some(dir), Some(name)) = (at.parent(), at.file_name()) {
                let names = plan.dirs.entry(dir.to_path_buf()).or_default();
                names.insert(name.to_owned());
                names.insert(OsString::from(KUBELET_DATA_LINK));
                let Some(target) = read_link(&at) else {
                    break;
                };
                if links_left == 0 {
                    followed.gave_up = true;
                    break;
                }
                links_left -= 1;
                // `config.toml -> ..data/config.toml`: the link that changes is `..data`, a
                // name in the same directory; what lies beyond it is replaced whole. Only when
                // that first part is itself a link: `config.toml -> conf/config.toml` into a
                // plain directory is followed there, where the file is edited.
                let mut parts = target.components();
                if let (Some(Component::Normal(first)), Some(_)) = (parts.next(), parts.next())
                    && read_link(&dir.join(first)).is_some()
                {
                    names.insert(first.to_owned());
                    break;
                }
                // A sibling (`config.toml -> v2.toml`) or another directory: follow it there.
                at = resolve(&dir.join(target), &read_link, &mut followed);
            }
            plan.watch_followed(followed, file);
        }
        plan.follow_directory_links(&read_link);
        plan
    }

    /// Each directory on the way to a watched one that is a link, and each link its target
    /// goes through in turn (`current -> stage`, `stage -> releases/7`), is watched from its
    /// parent under its name, and its target kept.
    fn follow_directory_links(&mut self, read_link: &impl Fn(&Path) -> Option<PathBuf>) {
        let mut pending: Vec<PathBuf> = self.dirs.keys().cloned().collect();
        // A loop of links (`a -> b`, `b -> a`) ends here, as it does in the kernel.
        let mut hops_left = MOST_LINKS * self.dirs.len().max(1);
        while let Some(path) = pending.pop() {
            for at in path.ancestors() {
                let Some(parent) = at.parent() else {
                    continue;
                };
                if self.dir_links.contains_key(at) {
                    continue;
                }
                let Some(target) = read_link(at) else {
                    continue;
                };
                let mut followed = Followed::default();
                // Rebuilt part by part: a trailing `/` (`join("")`) would make the kernel
                // follow the link that `read_link` is asked about, and say it is none.
                let mut resolved = resolve(&parent.join(&target), read_link, &mut followed);
                resolved.extend(path.strip_prefix(at).unwrap_or(Path::new("")).components());
                self.watch_link(at, target);
                self.watch_followed(followed, at);
                if hops_left > 0 {
                    hops_left -= 1;
                    pending.push(resolved);
                }
            }
        }
    }

    /// What a resolution of `path` went through is on the way too: the links a `..` made it
    /// follow, and the names a `..` stepped back from (one of them made a link, or another
    /// directory, changes where the path leads). A chain it gave up on is named in a warning.
    fn watch_followed(&mut self, followed: Followed, path: &Path) {
        for (link, target) in followed.links {
            self.watch_link(&link, target);
        }
        for stepped in followed.stepped_back_from {
            if let (Some(parent), Some(name)) = (stepped.parent(), stepped.file_name()) {
                self.dirs
                    .entry(parent.to_path_buf())
                    .or_default()
                    .insert(name.to_owned());
            }
        }
        if followed.gave_up {
            self.gave_up.insert(path.to_path_buf());
        }
    }

    /// Watches the link at `link` from its parent, under its name, and keeps its target.
    fn watch_link(&mut self, link: &Path, target: PathBuf) {
        if let (Some(parent), Some(name)) = (link.parent(), link.file_name()) {
            self.dirs
                .entry(parent.to_path_buf())
                .or_default()
                .insert(name.to_owned());
            self.dir_links.insert(link.to_path_buf(), target);
        }
    }

    /// The directories to watch (not recursively).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.keys().map(PathBuf::as_path)
    }

    /// What an event of `kind` on `paths` means. Reads (opening, reading, closing a file
    /// without writing) are never a change: the reload's own reads would start the next one.
    pub fn classify(&self, kind: &EventKind, paths: &[PathBuf]) -> Seen {
        let closed_after_writing = matches!(
            kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        if matches!(kind, EventKind::Access(_)) && !closed_after_writing {
            return Seen::Unrelated;
        }
        let watched_dir = paths.iter().find(|path| self.dirs.contains_key(*path));
        // A watched directory removed or moved away (its own watch's last events, or its
        // name's in a watched parent): its watch is over, even when a link by that name is
        // swapped or the directory made again at once, so it is set up again.
        let ended = matches!(
            kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From))
        );
        if let Some(dir) = watched_dir
            && ended
        {
            return Seen::DirGone(dir.clone());
        }
        let concerns = |path: &PathBuf| {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                return false;
            };
            self.dirs
                .get(dir)
                .is_some_and(|names| names.contains(OsStr::new(name)))
        };
        // A link to a watched directory swapped in its parent: a change, and the plan made
        // after the reload follows the link.
        if paths.iter().any(concerns) {
            return Seen::Change;
        }
        match watched_dir {
            Some(dir) if matches!(kind, EventKind::Modify(ModifyKind::Name(_))) => {
                Seen::DirGone(dir.clone())
            }
            _ => Seen::Unrelated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};

    use crate::server::file_watch::resolve::fake_links as links;

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    fn names(plan: &WatchPlan, dir: &str) -> Vec<String> {
        plan.dirs[Path::new(dir)]
            .iter()
            .map(|name| name.to_string_lossy().into_owned())
            .collect()
    }

    const WRITE: EventKind = EventKind::Modify(ModifyKind::Data(DataChange::Any));

    #[test]
    fn each_distinct_directory_is_watched_once() {
        let plan = WatchPlan::new(
            &paths(&[
                "/etc/shim/config.toml",
                "/run/secrets/token",
                "/run/secrets/tls.crt",
                "/run/secrets/tls.key",
            ]),
            links(&[]),
        );
        let dirs: Vec<&Path> = plan.dirs().collect();
        assert_eq!(dirs, [Path::new("/etc/shim"), Path::new("/run/secrets")]);
        assert_eq!(
            names(&plan, "/run/secrets"),
            ["..data", "tls.crt", "tls.key", "token"]
        );
    }

    #[test]
    fn a_kubelet_mount_watches_the_data_link_and_ignores_the_timestamped_dirs() {
        let plan = WatchPlan::new(
            &paths(&["/etc/shim/config.toml"]),
            links(&[
                ("/etc/shim/config.toml", "..data/config.toml"),
                ("/etc/shim/..data", "..2026_12_07_12_00_00.1"),
            ]),
        );
        assert_eq!(names(&plan, "/etc/shim"), ["..data", "config.toml"]);
        assert_eq!(plan.dirs().count(), 1, "the timestamped dir is not watched");
        let data = paths(&["/etc/shim/..data"]);
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert_eq!(plan.classify(&renamed, &data), Seen::Change);
        let both = paths(&["/etc/shim/..data_tmp", "/etc/shim/..data"]);
        let pair = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(plan.classify(&pair, &both), Seen::Change);
        // The new timestamped dir, the temporary link and the old dir's removal are not.
        let created = EventKind::Create(CreateKind::Folder);
        for other in ["..2026_12_07_12_00_00.1", "..data_tmp"] {
            let path = paths(&[&format!("/etc/shim/{other}")]);
            assert_eq!(plan.classify(&created, &path), Seen::Unrelated, "{other}");
        }
        let removed = EventKind::Remove(RemoveKind::Folder);
        let old = paths(&["/etc/shim/..2026_12_07_11_00_00.9"]);
        assert_eq!(plan.classify(&removed, &old), Seen::Unrelated);
    }

    #[test]
    fn links_to_a_sibling_or_another_directory_are_followed() {
        let plan = WatchPlan::new(
            &paths(&["/etc/shim/config.toml"]),
            links(&[
                ("/etc/shim/config.toml", "current.toml"),
                ("/etc/shim/current.toml", "../../srv/conf/v2.toml"),
                ("/srv/conf/v2.toml", "/etc/shim/config.toml"),
            ]),
        );
        assert_eq!(
            names(&plan, "/etc/shim"),
            ["..data", "config.toml", "current.toml"]
        );
        assert_eq!(names(&plan, "/srv/conf"), ["..data", "v2.toml"]);
        // The `../..` steps back from `/etc/shim` and `/etc`: their names are watched too.
        assert_eq!(names(&plan, "/etc"), ["shim"]);
        assert_eq!(names(&plan, "/"), ["etc"]);
        // The loop back to the start ends within the limit, and is named.
        assert_eq!(plan.dirs().count(), 4);
        assert_eq!(
            plan.gave_up,
            BTreeSet::from([PathBuf::from("/etc/shim/config.toml")])
        );
    }

    #[test]
    fn a_link_into_a_plain_directory_is_followed_there() {
        // `config.toml -> conf/config.toml` where `conf` is a directory, not a link: the file
        // is edited in `conf`, so that is where to watch.
        let plan = WatchPlan::new(
            &paths(&["/etc/shim/config.toml"]),
            links(&[("/etc/shim/config.toml", "conf/config.toml")]),
        );
        assert_eq!(names(&plan, "/etc/shim"), ["..data", "config.toml"]);
        assert_eq!(names(&plan, "/etc/shim/conf"), ["..data", "config.toml"]);
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let edited = paths(&["/etc/shim/conf/config.toml"]);
        assert_eq!(plan.classify(&closed, &edited), Seen::Change);
    }

    #[test]
    fn writes_renames_and_removals_of_a_watched_name_are_changes() {
        let plan = WatchPlan::new(&paths(&["/tmp/config.toml"]), links(&[]));
        let file = paths(&["/tmp/config.toml"]);
        for kind in [
            WRITE,
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Create(CreateKind::File),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert_eq!(plan.classify(&kind, &file), Seen::Change, "{kind:?}");
        }
    }

    #[test]
    fn reads_and_other_files_in_a_busy_directory_are_not() {
        let plan = WatchPlan::new(&paths(&["/tmp/config.toml"]), links(&[]));
        let file = paths(&["/tmp/config.toml"]);
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert_eq!(plan.classify(&kind, &file), Seen::Unrelated, "{kind:?}");
        }
        for other in [
            "/tmp/config.toml.swp",
            "/tmp/other.toml",
            "/tmp/sub/config.toml",
        ] {
            assert_eq!(
                plan.classify(&WRITE, &paths(&[other])),
                Seen::Unrelated,
                "{other}"
            );
        }
    }

    #[test]
    fn the_watched_directory_going_away_is_told_apart() {
        let plan = WatchPlan::new(&paths(&["/etc/shim/config.toml"]), links(&[]));
        let dir = paths(&["/etc/shim"]);
        let removed = EventKind::Remove(RemoveKind::Folder);
        assert_eq!(
            plan.classify(&removed, &dir),
            Seen::DirGone(PathBuf::from("/etc/shim"))
        );
        // A write to the directory itself (its metadata) is neither.
        let meta = EventKind::Modify(ModifyKind::Metadata(notify::event::MetadataKind::Any));
        assert_eq!(plan.classify(&meta, &dir), Seen::Unrelated);
    }

    #[test]
    fn a_linked_directory_on_the_way_is_watched_from_its_parent_and_its_target_kept() {
        let files = paths(&["/srv/shim/current/config.toml"]);
        let before = WatchPlan::new(&files, links(&[("/srv/shim/current", "releases/7")]));
        assert_eq!(
            names(&before, "/srv/shim/current"),
            ["..data", "config.toml"]
        );
        assert_eq!(names(&before, "/srv/shim"), ["current"]);
        // The deploy renames a new link over `current`: a change, not a directory gone.
        let swapped = paths(&["/srv/shim/current"]);
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert_eq!(before.classify(&renamed, &swapped), Seen::Change);
        // What the link led to, removed or moved away (and perhaps made again at once): the
        // watch on it is over, and is set up again.
        let removed = EventKind::Remove(RemoveKind::Folder);
        let moved_away = EventKind::Modify(ModifyKind::Name(RenameMode::From));
        for ended in [removed, moved_away] {
            assert_eq!(
                before.classify(&ended, &swapped),
                Seen::DirGone(PathBuf::from("/srv/shim/current")),
                "{ended:?}"
            );
        }
        // A link renamed over it in one step is a change.
        let pair = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let both = paths(&["/srv/shim/current.next", "/srv/shim/current"]);
        assert_eq!(before.classify(&pair, &both), Seen::Change);
        // Other names beside the link are not.
        let other = paths(&["/srv/shim/releases"]);
        assert_eq!(before.classify(&renamed, &other), Seen::Unrelated);
        // The plan after the swap differs, so the watch is set up again on the new target.
        let after = WatchPlan::new(&files, links(&[("/srv/shim/current", "releases/8")]));
        assert_ne!(before, after);
        assert_eq!(
            before.dirs().collect::<Vec<_>>(),
            after.dirs().collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_chain_of_directory_links_is_followed_link_by_link() {
        let files = paths(&["/srv/shim/current/config.toml"]);
        let chain = [
            ("/srv/shim/current", "stage"),
            ("/srv/shim/stage", "/etc/alternatives/shim"),
            ("/etc/alternatives/shim", "/srv/shim/releases/7"),
        ];
        let plan = WatchPlan::new(&files, links(&chain));
        assert_eq!(names(&plan, "/srv/shim"), ["current", "stage"]);
        assert_eq!(names(&plan, "/etc/alternatives"), ["shim"]);
        // A swap anywhere along the chain makes another plan.
        let mut swapped = chain;
        swapped[2].1 = "/srv/shim/releases/8";
        assert_ne!(plan, WatchPlan::new(&files, links(&swapped)));
        // A loop of links ends.
        let looped = [
            ("/srv/shim/current", "stage"),
            ("/srv/shim/stage", "current"),
        ];
        let plan = WatchPlan::new(&files, links(&looped));
        assert_eq!(names(&plan, "/srv/shim"), ["current", "stage"]);
    }

    #[test]
    fn a_dot_dot_after_a_link_steps_back_from_where_it_leads() {
        let layout = [
            ("/r/current", "releases/7"),
            ("/r/current/config.toml", "../shared/config.toml"),
        ];
        let plan = WatchPlan::new(&paths(&["/r/current/config.toml"]), links(&layout));
        // The file the kernel opens is `/r/releases/shared/config.toml`.
        assert_eq!(
            names(&plan, "/r/releases/shared"),
            ["..data", "config.toml"]
        );
        assert_eq!(names(&plan, "/r"), ["current"]);
        assert!(!plan.dirs.contains_key(Path::new("/r/shared")));
        // Written so in the configuration, too; the link before the `..` is still watched.
        let plan = WatchPlan::new(
            &paths(&["/r/current/../shared/config.toml"]),
            links(&layout[..1]),
        );
        assert_eq!(
            names(&plan, "/r/releases/shared"),
            ["..data", "config.toml"]
        );
        assert_eq!(names(&plan, "/r"), ["current"]);
        assert!(plan.gave_up.is_empty());
    }

    #[test]
    fn a_chain_of_forty_file_links_is_watched_to_its_end_and_a_longer_one_is_named() {
        let chain = |length: usize| -> Vec<(String, String)> {
            (0..length)
                .map(|at| (format!("/c/d{at}/f"), format!("../d{}/f", at + 1)))
                .collect()
        };
        let plan_of = |chain: &[(String, String)]| {
            let pairs: Vec<(&str, &str)> = chain
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            WatchPlan::new(&paths(&["/c/d0/f"]), links(&pairs))
        };
        let forty = plan_of(&chain(MOST_LINKS));
        assert_eq!(names(&forty, &format!("/c/d{MOST_LINKS}")), ["..data", "f"]);
        assert!(forty.gave_up.is_empty());
        let longer = plan_of(&chain(MOST_LINKS + 1));
        assert_eq!(longer.gave_up, BTreeSet::from([PathBuf::from("/c/d0/f")]));
    }

    #[test]
    fn a_plain_directory_a_dot_dot_steps_back_from_is_watched_from_its_parent() {
        // `plain` made a link later changes where the path leads: its name is watched.
        let plan = WatchPlan::new(&paths(&["/b/plain/../shared/config.toml"]), links(&[]));
        assert_eq!(names(&plan, "/b/shared"), ["..data", "config.toml"]);
        assert_eq!(names(&plan, "/b"), ["plain"]);
    }

    #[test]
    fn links_higher_up_are_found_too_and_a_plain_path_adds_nothing() {
        let files = paths(&["/opt/app/etc/shim/config.toml"]);
        let plan = WatchPlan::new(&files, links(&[("/opt/app", "/opt/app-2.1")]));
        assert_eq!(names(&plan, "/opt"), ["app"]);
        assert_eq!(plan.dirs().count(), 2);
        let plain = WatchPlan::new(&files, links(&[]));
        assert_eq!(plain.dirs().count(), 1);
    }

    #[test]
    fn dots_in_paths_are_resolved_before_comparing() {
        let plan = WatchPlan::new(&paths(&["/etc/./shim/../shim/config.toml"]), links(&[]));
        assert_eq!(names(&plan, "/etc/shim"), ["..data", "config.toml"]);
    }
}
