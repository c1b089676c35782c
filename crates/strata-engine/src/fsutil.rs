//! Small file-system helpers with the durability steps spelled out.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Syncs a directory, so that file creations, renames and deletions in it survive a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `contents` atomically: write `path.tmp`, sync it, rename it over
/// `path`, sync the directory. After a crash the file holds either the old or the new contents.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}
