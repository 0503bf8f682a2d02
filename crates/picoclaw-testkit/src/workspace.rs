//! `TempWorkspace`: a temporary folder deleted on drop, with small file helpers.

use std::path::Path;

/// A temporary workspace folder (deleted on drop).
#[derive(Debug)]
pub struct TempWorkspace {
    dir: tempfile::TempDir,
}

impl Default for TempWorkspace {
    fn default() -> Self {
        Self::new()
    }
}

impl TempWorkspace {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("picoclaw-ws-")
            .tempdir()
            .expect("create a temporary workspace");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `content` to `rel`, creating parent folders.
    pub fn write(&self, rel: &str, content: &str) {
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent folders");
        }
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {rel}: {e}"));
    }

    /// Reads `rel` as UTF-8 text; panics with the path when it is missing.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel))
            .unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.dir.path().join(rel).exists()
    }
}
