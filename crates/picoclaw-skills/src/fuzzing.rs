//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, not part of the API): the
//! parsers an installed skill's files and a downloaded archive reach, without the download.

use std::path::Path;

/// SKILL.md's front matter, as `Skill::load` reads it: whether it parsed.
pub fn front_matter(text: &str) -> bool {
    crate::skill::split_front_matter(text).is_some()
        && crate::skill::parse_front_matter(text).is_ok()
}

/// Unpacks a downloaded archive (`.zip` when `zip`, else `.tar.gz`) into the empty folder
/// `into`, as the installer does.
pub fn extract(bytes: &[u8], zip: bool, into: &Path) -> Result<(), String> {
    if zip {
        crate::install::extract_zip(bytes, into)
    } else {
        crate::install::extract_tar_gz(bytes, into)
    }
}
