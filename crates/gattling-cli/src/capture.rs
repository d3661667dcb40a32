//! `--btsnoop`: the capture file (or, for `gattling controller`, directory) opened before
//! anything starts.

use gattling::btsnoop::Btsnoop;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Creates the btsnoop file at `path`; a path that cannot be written is bad input.
pub fn open_file(path: &Path) -> Result<Arc<Btsnoop>, gattling::Error> {
    if path.is_dir() {
        return Err(gattling::Error::InvalidArgument(format!(
            "--btsnoop {}: is a directory; give a file name (only `gattling controller` takes a directory)",
            path.display()
        )));
    }
    Btsnoop::create(path).map_err(|e| {
        gattling::Error::InvalidArgument(format!("--btsnoop {}: cannot write the capture: {e}", path.display()))
    })
}

/// Checks that `dir` is (or can be made) a writable directory for per-host captures.
pub fn check_dir(dir: &Path) -> Result<PathBuf, gattling::Error> {
    let bad = |e: std::io::Error| {
        gattling::Error::InvalidArgument(format!("--btsnoop {}: cannot write captures there: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(bad)?;
    let probe = dir.join(format!(".gattling-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(bad)?;
    let _ = std::fs::remove_file(&probe);
    Ok(dir.to_path_buf())
}
