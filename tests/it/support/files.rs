//! Files a test reads or writes: the API reference's examples under `tests/fixtures/`, and
//! config files of one test's own.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// One of the API reference's examples, as JSON.
pub fn doc_fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Writes a config file for one test; removed on drop.
pub struct TempConfig(pub std::path::PathBuf);

impl TempConfig {
    pub fn new(text: &str) -> Self {
        let path = temp_path("toml");
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A path in the temporary directory that no other test of this run (they share one process)
/// or of another run (another process id) uses.
pub fn temp_path(extension: &str) -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "explo-shim-test-{}-{}.{extension}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}
