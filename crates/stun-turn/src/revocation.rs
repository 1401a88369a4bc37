//! The revocation file as the shells watch it: re-read when its modification time changes
//! (checked every second). What it means ([`Revocations`]) is decided in natkit-turn-core.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use natkit_turn_core::revocation::{RevocationError, Revocations};

/// A revocation file and the modification time it was last read at.
#[derive(Debug)]
pub struct RevocationFile {
    path: PathBuf,
    seen: Option<SystemTime>,
}

impl RevocationFile {
    pub fn new(path: &Path) -> Self {
        RevocationFile {
            path: path.to_owned(),
            seen: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's entries if it changed since the last call (a missing file revokes nothing);
    /// `Ok(None)` when unchanged. A malformed file is an error and changes nothing.
    pub fn reload(&mut self) -> Result<Option<Revocations>, RevocationError> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime == self.seen && self.seen.is_some() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let r = Revocations::parse(&text)?;
        self.seen = mtime;
        Ok(Some(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_reread_only_when_it_changes() {
        let dir = std::env::temp_dir().join(format!("natkit-revoke-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("revoked");
        let mut f = RevocationFile::new(&path);
        assert_eq!(
            f.reload().unwrap(),
            Some(Revocations::default()),
            "missing: nothing"
        );
        std::fs::write(&path, "user a\n").unwrap();
        let r = f.reload().unwrap().expect("changed");
        assert!(r.is_user_revoked("a"));
        assert_eq!(f.reload().unwrap(), None, "unchanged");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
