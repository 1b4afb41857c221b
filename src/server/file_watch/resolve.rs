//! Paths as the kernel reads them, for the watch's plan. Pure: the caller's `read_link` says
//! where a link points, so the rules are tested without a file system.
//!
//! A path keeps the names it is written with, so that each link on the way can be watched
//! from its parent under its own name (`current -> releases/7`, swapped to deploy). Except
//! before a `..`: the kernel steps back from where the links before it lead, not from their
//! names (`current/../shared` is `releases/shared`), so there the path so far is followed
//! link by link first, and each link so followed is told to the caller, to be watched too.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Links followed for one path at most, as the kernel (Linux's `MAXSYMLINKS`): past it the
/// kernel gives up with `ELOOP`, and so does the plan (and says so).
pub const MOST_LINKS: usize = 40;

/// The links a resolution followed, and whether it gave up at [`MOST_LINKS`].
#[derive(Debug, Default)]
pub struct Followed {
    /// Each link followed, with its target as written.
    pub links: Vec<(PathBuf, PathBuf)>,
    /// Each directory a `..` stepped back from (as the path leads there, links followed).
    pub stepped_back_from: Vec<PathBuf>,
    pub gave_up: bool,
}

impl Followed {
    /// One more link may be followed: the count is not spent.
    fn may_follow(&mut self) -> bool {
        self.gave_up |= self.links.len() >= MOST_LINKS;
        !self.gave_up
    }
}

/// One part of a path, owned: a link's target is spliced in where its name was.
enum Part {
    Root,
    Up,
    Name(OsString),
}

fn parts_of(path: &Path) -> impl Iterator<Item = Part> + '_ {
    path.components().filter_map(|part| match part {
        Component::RootDir | Component::Prefix(_) => Some(Part::Root),
        Component::CurDir => None,
        Component::ParentDir => Some(Part::Up),
        Component::Normal(name) => Some(Part::Name(name.to_owned())),
    })
}

/// `path` with `.` dropped, and each `..` taken off where the path before it really leads.
pub fn resolve(
    path: &Path,
    read_link: &impl Fn(&Path) -> Option<PathBuf>,
    followed: &mut Followed,
) -> PathBuf {
    let mut resolved = PathBuf::new();
    for part in parts_of(path) {
        match part {
            Part::Root => resolved = PathBuf::from("/"),
            Part::Name(name) => resolved.push(name),
            Part::Up => {
                resolved = real_path(&resolved, read_link, followed);
                followed.stepped_back_from.push(resolved.clone());
                resolved.pop();
            }
        }
    }
    resolved
}

/// Where `path` leads: every link on it followed, as the kernel does for a path it opens.
fn real_path(
    path: &Path,
    read_link: &impl Fn(&Path) -> Option<PathBuf>,
    followed: &mut Followed,
) -> PathBuf {
    let mut real = PathBuf::new();
    let mut parts: VecDeque<Part> = parts_of(path).collect();
    while let Some(part) = parts.pop_front() {
        match part {
            Part::Root => real = PathBuf::from("/"),
            Part::Up => {
                followed.stepped_back_from.push(real.clone());
                real.pop();
            }
            Part::Name(name) => {
                let next = real.join(&name);
                match read_link(&next).filter(|_| followed.may_follow()) {
                    // The target takes the name's place: absolute from the root, relative
                    // from the directory the link is in.
                    Some(target) => {
                        for part in parts_of(&target).collect::<Vec<_>>().into_iter().rev() {
                            parts.push_front(part);
                        }
                        followed.links.push((next, target));
                    }
                    None => real = next,
                }
            }
        }
    }
    real
}

/// A file system of links alone, for the watch's tests: `pairs` of link and target.
#[cfg(test)]
pub fn fake_links(pairs: &[(&str, &str)]) -> impl Fn(&Path) -> Option<PathBuf> + use<> {
    let pairs: Vec<(PathBuf, PathBuf)> = pairs
        .iter()
        .map(|(link, target)| (PathBuf::from(link), PathBuf::from(target)))
        .collect();
    move |path| {
        // As the kernel: with a trailing `/` the link is followed, and is no link.
        if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
            return None;
        }
        pairs
            .iter()
            .find(|(link, _)| link == path)
            .map(|(_, target)| target.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::fake_links as links;
    use super::*;

    fn resolved(path: &str, pairs: &[(&str, &str)]) -> (PathBuf, Followed) {
        let mut followed = Followed::default();
        let path = resolve(Path::new(path), &links(pairs), &mut followed);
        (path, followed)
    }

    #[test]
    fn a_path_with_no_dots_keeps_its_names() {
        let (path, followed) = resolved(
            "/srv/shim/./current/config.toml",
            &[("/srv/shim/current", "releases/7")],
        );
        assert_eq!(path, Path::new("/srv/shim/current/config.toml"));
        assert!(followed.links.is_empty());
    }

    #[test]
    fn dots_step_back_from_where_the_links_lead() {
        let (path, followed) = resolved(
            "/r/current/../shared/config.toml",
            &[("/r/current", "releases/7")],
        );
        assert_eq!(path, Path::new("/r/releases/shared/config.toml"));
        assert_eq!(
            followed.links,
            [(PathBuf::from("/r/current"), PathBuf::from("releases/7"))]
        );
        // With no link, as written.
        let (path, _) = resolved("/r/plain/../shared/config.toml", &[]);
        assert_eq!(path, Path::new("/r/shared/config.toml"));
    }

    #[test]
    fn absolute_targets_and_links_within_targets_are_followed() {
        let (path, followed) = resolved(
            "/opt/app/../etc/config.toml",
            &[("/opt/app", "/srv/app-2"), ("/srv/app-2", "versions/2.1")],
        );
        // `/srv/app-2` leads to `/srv/versions/2.1`, whose parent is `/srv/versions`.
        assert_eq!(path, Path::new("/srv/versions/etc/config.toml"));
        assert_eq!(followed.links.len(), 2);
    }

    #[test]
    fn a_loop_gives_up_after_as_many_links_as_the_kernel() {
        let (_, followed) = resolved("/r/a/../x", &[("/r/a", "b"), ("/r/b", "a")]);
        assert!(followed.gave_up);
        assert_eq!(followed.links.len(), MOST_LINKS);
    }
}
