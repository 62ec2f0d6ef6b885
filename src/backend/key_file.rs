//! The backend key file, read at start and on SIGHUP.

use std::path::Path;

use log::warn;

use super::signing::KeyRing;

/// Reads and parses a backend key file (at start and on SIGHUP), warning
/// about admin key ids it lacks. The error names the file.
pub fn read_keys(path: &Path, admin_keys: &[String]) -> Result<KeyRing, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let ring = KeyRing::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for admin in admin_keys {
        if !ring.key_ids().any(|id| id == admin) {
            warn!("backend: admin key id {admin} is not in the key file: it can never verify");
        }
    }
    Ok(ring)
}
