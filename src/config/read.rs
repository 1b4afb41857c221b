//! Reading the files the configuration names (the config file, `admin_token_file`, the TLS
//! certificate and key, `upstream.ca_file`), at start-up and on every reload, with a clock and
//! a size cap.
//!
//! A path can name something that never answers: a FIFO with no writer, a file on a hung
//! network mount. `open` and `read` on those block in the kernel, and no timer can interrupt
//! them, so the read runs on a short-lived thread of its own and the caller waits at most
//! [`FILE_READ_TIMEOUT`] for it. A reader that is still blocked when its clock runs out is left
//! behind (it ends when the file finally answers, or with the process); at most
//! [`MAX_BLOCKED_READERS`] are left behind at once, after which reads fail at once instead of
//! adding threads. A path can also name something endless (`/dev/zero`, a log someone pointed
//! at by mistake): at most [`MAX_FILE_BYTES`] are read.

use std::cell::RefCell;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// How long one file may take to read. Real config, token and certificate files answer in
/// microseconds; this only bounds the ones that never do.
pub const FILE_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// The most a configured file may hold, in bytes: a config file, a token and a certificate
/// chain are a few KiB each.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Readers still blocked past their clock, kept at most: each one is a parked thread.
pub const MAX_BLOCKED_READERS: usize = 4;

/// The paths of the readers whose clock ran out and that have not returned yet.
static BLOCKED_READERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn blocked_readers() -> MutexGuard<'static, Vec<PathBuf>> {
    // A poisoned lock only means a panic elsewhere; the list is still the list.
    BLOCKED_READERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Why a configured file could not be read; its `Display` is the reason, without the path
/// (the caller names the key and the path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The file could not be opened or read.
    Io(String),
    /// The file held more than [`MAX_FILE_BYTES`].
    TooLarge,
    /// Nothing came back within [`FILE_READ_TIMEOUT`].
    TimedOut,
    /// An earlier read of the same path is still blocked: it is not read again.
    StillBlocked,
    /// Too many earlier reads are still blocked.
    TooManyBlocked,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(error) => formatter.write_str(error),
            Self::TooLarge => write!(
                formatter,
                "larger than {} KiB; is this the right file?",
                MAX_FILE_BYTES / 1024
            ),
            Self::TimedOut => write!(
                formatter,
                "no answer within {}s (a FIFO with no writer, or a hung mount?)",
                FILE_READ_TIMEOUT.as_secs()
            ),
            Self::StillBlocked => formatter.write_str(
                "not read: an earlier read of it is still blocked (a FIFO with no writer, or a \
                 hung mount?); name another file, or restart to clear it",
            ),
            Self::TooManyBlocked => write!(
                formatter,
                "not read: {MAX_BLOCKED_READERS} earlier reads of configured files are still \
                 blocked (a FIFO with no writer, or a hung mount?); restart to clear them"
            ),
        }
    }
}

/// The SHA-256 of a file's bytes.
pub type Digest = [u8; 32];

/// The SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

thread_local! {
    /// What this thread has read since it called [`record_reads`]: each path with the digest
    /// of the bytes that read returned.
    static RECORDED: RefCell<Option<Vec<(PathBuf, Digest)>>> = const { RefCell::new(None) };
}

/// From now on, each successful read on this thread keeps its path and the digest of its
/// bytes, until [`recorded_reads`] takes them. Start-up reads its files on one thread; the
/// file watch then knows exactly which bytes the running configuration was built from, not
/// what the files hold a moment later.
pub fn record_reads() {
    RECORDED.with_borrow_mut(|recorded| *recorded = Some(Vec::new()));
}

/// The reads recorded since [`record_reads`] (none if it was not called); recording stops.
pub fn recorded_reads() -> Vec<(PathBuf, Digest)> {
    RECORDED.with_borrow_mut(|recorded| recorded.take().unwrap_or_default())
}

/// `work`, and the reads it made on this thread ([`record_reads`]); the recording stops
/// even if `work` panics, so a pooled thread does not go on recording.
pub fn recording<T>(work: impl FnOnce() -> T) -> (T, Vec<(PathBuf, Digest)>) {
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            RECORDED.with_borrow_mut(Option::take);
        }
    }
    record_reads();
    let _stop = Stop;
    let done = work();
    (done, recorded_reads())
}

/// Reads the whole file at `path`, within [`FILE_READ_TIMEOUT`] and [`MAX_FILE_BYTES`].
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, ReadError> {
    let bytes = read_with(path, FILE_READ_TIMEOUT, MAX_FILE_BYTES)?;
    RECORDED.with_borrow_mut(|recorded| {
        if let Some(recorded) = recorded {
            recorded.push((path.to_owned(), digest(&bytes)));
        }
    });
    Ok(bytes)
}

/// [`read_bounded`], as text.
pub fn read_bounded_text(path: &Path) -> Result<String, ReadError> {
    String::from_utf8(read_bounded(path)?)
        .map_err(|_| ReadError::Io("stream did not contain valid UTF-8".to_owned()))
}

fn read_with(path: &Path, timeout: Duration, cap: u64) -> Result<Vec<u8>, ReadError> {
    {
        let blocked = blocked_readers();
        if blocked.iter().any(|blocked| blocked == path) {
            return Err(ReadError::StillBlocked);
        }
        if blocked.len() >= MAX_BLOCKED_READERS {
            return Err(ReadError::TooManyBlocked);
        }
    }
    // A rendezvous channel: a reader that answers after the caller gave up finds no one to
    // hand its bytes to, and knows it (its send fails), so the count below stays exact.
    let (sender, receiver) = std::sync::mpsc::sync_channel(0);
    let owned: PathBuf = path.to_owned();
    let reader = std::thread::Builder::new()
        .name("explo-shim-file".to_owned())
        .spawn(move || {
            let read = read_capped(&owned, cap);
            // The caller gave up waiting: this reader is no longer blocked.
            if sender.send(read).is_err() {
                let mut blocked = blocked_readers();
                if let Some(index) = blocked.iter().position(|blocked| *blocked == owned) {
                    blocked.swap_remove(index);
                }
            }
        })
        .map_err(|error| ReadError::Io(format!("cannot start a reader thread: {error}")))?;
    match receiver.recv_timeout(timeout) {
        Ok(read) => {
            let _ = reader.join();
            read
        }
        Err(_) => {
            // Listed before the receiver is dropped, so the reader's removal (when its send
            // fails) cannot come first.
            blocked_readers().push(path.to_owned());
            drop(receiver);
            Err(ReadError::TimedOut)
        }
    }
}

fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path).map_err(|error| ReadError::Io(error.to_string()))?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| ReadError::Io(error.to_string()))?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "explo-shim-read-{}-{name}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ))
    }

    #[test]
    fn a_file_is_read_whole() {
        let path = temp_path("whole");
        std::fs::write(&path, "listen = \"127.0.0.1:0\"\n").unwrap();
        assert_eq!(
            read_bounded_text(&path).unwrap(),
            "listen = \"127.0.0.1:0\"\n"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn reads_are_recorded_only_while_asked_and_only_on_this_thread() {
        let path = temp_path("recorded");
        std::fs::write(&path, "a = 1\n").unwrap();
        read_bounded(&path).unwrap();
        assert!(recorded_reads().is_empty(), "not asked");
        record_reads();
        read_bounded(&path).unwrap();
        let _ = read_bounded(Path::new("/nonexistent/explo-shim.toml"));
        std::thread::scope(|scope| {
            scope.spawn(|| read_bounded(&path).unwrap());
        });
        assert_eq!(recorded_reads(), [(path.clone(), digest(b"a = 1\n"))]);
        read_bounded(&path).unwrap();
        assert!(
            recorded_reads().is_empty(),
            "taking them stops the recording"
        );
        let (length, recorded) = recording(|| read_bounded(&path).unwrap().len());
        assert_eq!((length, recorded.len()), (6, 1));
        let panicked = std::panic::catch_unwind(|| recording(|| panic!("a reload panics")));
        assert!(panicked.is_err());
        read_bounded(&path).unwrap();
        assert!(
            recorded_reads().is_empty(),
            "a panic stops the recording too"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_missing_file_says_why() {
        let error = read_bounded(Path::new("/nonexistent/explo-shim.toml")).unwrap_err();
        assert!(error.to_string().contains("No such file"), "{error}");
    }

    #[test]
    fn an_endless_file_stops_at_the_cap() {
        let error = read_with(Path::new("/dev/zero"), FILE_READ_TIMEOUT, 4096).unwrap_err();
        assert_eq!(error, ReadError::TooLarge);
        assert!(error.to_string().contains("larger than"), "{error}");
    }

    #[test]
    fn a_file_at_the_cap_is_read() {
        let path = temp_path("at-cap");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        assert_eq!(
            read_with(&path, FILE_READ_TIMEOUT, 4096).unwrap().len(),
            4096
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_with_no_writer_times_out_and_its_reader_ends_when_it_answers() {
        let path = temp_path("fifo");
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if !made.is_ok_and(|status| status.success()) {
            eprintln!("mkfifo is not available; skipping");
            return;
        }
        let started = std::time::Instant::now();
        let error = read_with(&path, Duration::from_millis(200), MAX_FILE_BYTES).unwrap_err();
        assert_eq!(error, ReadError::TimedOut);
        assert!(started.elapsed() < FILE_READ_TIMEOUT);
        assert!(error.to_string().contains("FIFO"), "{error}");
        // The same path is not read again while its reader is blocked.
        assert_eq!(
            read_with(&path, Duration::from_millis(200), MAX_FILE_BYTES).unwrap_err(),
            ReadError::StillBlocked
        );
        assert!(blocked_readers().contains(&path));
        // A writer releases the blocked reader, which then stops counting as blocked.
        std::fs::write(&path, "token").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while blocked_readers().contains(&path) && std::time::Instant::now() < deadline {
            // Waiting for the left-behind thread, which has no handle to join.
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!blocked_readers().contains(&path));
        std::fs::remove_file(&path).unwrap();
    }
}
