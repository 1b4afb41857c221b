//! The files a reload reads, and a digest of each, so that an event which changed nothing
//! (kubelet's extra events, a `touch`, an editor that saves the same bytes) reloads nothing.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::config::read::{Digest, digest, read_bounded};

/// The files a reload of `config` reads again and the watch follows: the config file, the
/// admin token and the TLS certificate and key. (`upstream.ca_file` is read at start-up only.)
pub fn watched_files(config_file: Option<&Path>, config: &Config) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = config_file.map(Path::to_path_buf).into_iter().collect();
    files.extend(config.admin_token_file.clone());
    if let Some(tls) = &config.tls {
        files.push(tls.cert_file.clone());
        files.push(tls.key_file.clone());
    }
    files
}

/// What the watch found at a file: its bytes' SHA-256, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    Digest(Digest),
    /// Missing or unreadable: a reload would refuse it, and says why.
    Unreadable,
    /// A FIFO, a device or a directory where a file should be. It is not opened: a FIFO
    /// nobody writes to would hold the read for its whole clock and then stay on the list of
    /// blocked readers, refusing every later reload of that path until a restart.
    NotAFile,
}

/// Each file with the SHA-256 of its bytes, or why it has none. Only the digest is kept: the
/// token's bytes stay in the policy, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<(PathBuf, Found)>);

impl Fingerprint {
    /// Reads every regular file, each with the clock and cap of [`crate::config::read`]:
    /// blocks, so run it on a blocking thread.
    pub fn read(files: &[PathBuf]) -> Self {
        Self::known_or_read(files, &[])
    }

    /// The fingerprint of the bytes start-up read (`read_at_start`, from
    /// [`crate::config::read::record_reads`]): what the running config was built from, even
    /// if a file has changed since. A file start-up did not read is read now; one that is
    /// not a regular file now is not opened, as in [`Self::read`].
    pub fn known_or_read(files: &[PathBuf], read_at_start: &[(PathBuf, Digest)]) -> Self {
        Self(
            files
                .iter()
                .map(|file| {
                    let known = read_at_start
                        .iter()
                        .rev()
                        .find(|(path, _)| path == file)
                        .map(|(_, digest)| *digest);
                    let found = match (std::fs::metadata(file), known) {
                        (Ok(metadata), _) if !metadata.is_file() => Found::NotAFile,
                        (_, Some(known)) => Found::Digest(known),
                        _ => read_bounded(file)
                            .map_or(Found::Unreadable, |bytes| Found::Digest(digest(&bytes))),
                    };
                    (file.clone(), found)
                })
                .collect(),
        )
    }

    /// The files that are not regular files; a file change does not reload while there are
    /// any (SIGHUP still does, with its clock).
    pub fn not_files(&self) -> Vec<&Path> {
        self.0
            .iter()
            .filter(|(_, found)| *found == Found::NotAFile)
            .map(|(path, _)| path.as_path())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bytes_make_the_same_fingerprint_and_other_bytes_another() {
        let dir = std::env::temp_dir().join(format!("explo-shim-fp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.toml");
        std::fs::write(&file, "a = 1\n").unwrap();
        let files = [file.clone(), dir.join("missing")];
        let first = Fingerprint::read(&files);
        assert_eq!(first, Fingerprint::read(&files));
        assert_eq!(
            first.0[1].1,
            Found::Unreadable,
            "a missing file has no digest"
        );
        assert!(first.not_files().is_empty());
        std::fs::write(&file, "a = 2\n").unwrap();
        assert_ne!(first, Fingerprint::read(&files));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn start_ups_digest_stands_for_a_file_changed_since_and_others_are_read() {
        let dir = std::env::temp_dir().join(format!("explo-shim-fp-start-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (config, token) = (dir.join("config.toml"), dir.join("token"));
        std::fs::write(&config, "a = 2\n").unwrap();
        std::fs::write(&token, "t\n").unwrap();
        let files = [config.clone(), token];
        // Start-up read `a = 1`; the file has changed since.
        let at_start = Fingerprint::known_or_read(&files, &[(config, digest(b"a = 1\n"))]);
        let now = Fingerprint::read(&files);
        assert_ne!(at_start, now, "the change is seen, not taken for the start");
        assert_eq!(at_start.0[1], now.0[1], "the token, not recorded, is read");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_where_a_file_should_be_is_not_opened() {
        let dir = std::env::temp_dir().join(format!("explo-shim-fp-dir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("token")).unwrap();
        let fingerprint = Fingerprint::read(&[dir.join("token")]);
        assert_eq!(fingerprint.not_files(), [dir.join("token").as_path()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_watched_files_are_the_ones_a_reload_reads() {
        let mut config = Config::resolve(&crate::config::Overrides::default()).unwrap();
        assert!(watched_files(None, &config).is_empty());
        config.admin_token_file = Some(PathBuf::from("/run/token"));
        config.tls = Some(crate::config::TlsFiles {
            cert_file: PathBuf::from("/run/tls.crt"),
            key_file: PathBuf::from("/run/tls.key"),
        });
        assert_eq!(
            watched_files(Some(Path::new("/etc/shim.toml")), &config),
            [
                "/etc/shim.toml",
                "/run/token",
                "/run/tls.crt",
                "/run/tls.key"
            ]
            .map(PathBuf::from)
        );
    }
}
