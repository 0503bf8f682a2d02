//! Issue 17, attack 8: a command plants a link where the next download will be saved (or in
//! place of the media folder); the owner's next photo must not overwrite the link's target.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_channels::settings::{ChannelSettings, Common, save_download};
use std::os::unix::fs::symlink;

struct Settings(Common);

impl ChannelSettings for Settings {
    fn common_mut(&mut self) -> &mut Common {
        &mut self.0
    }
}

fn common(ws: &std::path::Path) -> Common {
    Settings(Common::default())
        .with_media_dir(ws.join("media/telegram"))
        .with_media_base(ws)
        .0
}

#[tokio::test]
async fn a_link_at_the_next_file_name_is_never_written_through() {
    let ws = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("bashrc");
    std::fs::write(&target, "original").unwrap();
    std::fs::create_dir_all(ws.path().join("media/telegram/42")).unwrap();
    symlink(&target, ws.path().join("media/telegram/42/7-photo.jpg")).unwrap();
    let saved = save_download(&common(ws.path()), "42", "7-photo.jpg", b"JPEG".to_vec())
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "original");
    assert_eq!(saved.file_name().unwrap(), "7-photo-1.jpg");
    assert_eq!(std::fs::read(&saved).unwrap(), b"JPEG");
    assert!(saved.starts_with(ws.path().canonicalize().unwrap()));
}

#[tokio::test]
async fn a_media_folder_replaced_by_a_link_out_is_refused() {
    let ws = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), ws.path().join("media")).unwrap();
    let err = save_download(&common(ws.path()), "42", "photo.jpg", b"JPEG".to_vec())
        .await
        .unwrap_err();
    assert!(err.contains("outside"), "{err}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn hostile_names_stay_in_the_chat_folder() {
    let ws = tempfile::tempdir().unwrap();
    let saved = save_download(&common(ws.path()), "../..", "../../x.txt", b"x".to_vec())
        .await
        .unwrap();
    assert!(
        saved.starts_with(ws.path().canonicalize().unwrap().join("media/telegram")),
        "{}",
        saved.display()
    );
}
