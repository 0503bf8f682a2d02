//! What chat platforms send: each webhook channel's signature check and event parsing, through
//! its real `Channel::webhook` (picoclaw-channels' `fuzzing::Webhooks`: LINE, WhatsApp Cloud
//! (notifications and the subscription check), Slack's Events API (events, slash commands,
//! interactions), Telegram, QQ (Ed25519), Feishu (signed, AES-encrypted events), WeCom
//! (signed, AES-encrypted XML callbacks and the URL check)), and OneBot's CQ-code strings. The
//! first byte picks the channel (`% 11`; 10 is OneBot), the second holds flags (bit 0 set: not signed
//! as the platform signs; bit 1: a variant, Slack's forms or QQ without signature headers); the rest is the body (the plaintext event for Feishu and
//! WeCom, which the harness encrypts; the query for WhatsApp's subscription check). Property:
//! an unsigned request never brings a message into the inbox.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picoclaw_channels::fuzzing::{Webhooks, onebot_cq};
use std::sync::OnceLock;

struct World {
    _dir: tempfile::TempDir,
    hooks: Webhooks,
    rt: tokio::runtime::Runtime,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temp folder: {e}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("a runtime: {e}"));
        // Some channels build their HTTP clients inside a runtime.
        let hooks = rt
            .block_on(async { Webhooks::new(dir.path()) })
            .unwrap_or_else(|e| panic!("the channels: {e}"));
        World {
            _dir: dir,
            hooks,
            rt,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let [which, flags, body @ ..] = data else {
        return;
    };
    if which % 11 == 10 {
        let _ = onebot_cq(&String::from_utf8_lossy(body));
        return;
    }
    let w = world();
    let signed = flags & 1 == 0;
    let query = String::from_utf8_lossy(body).into_owned();
    let before = w.hooks.delivered();
    let status =
        w.rt.block_on(w.hooks.webhook(*which, *flags, &query, body.to_vec()));
    assert!((200..600).contains(&status), "status {status}");
    // A request the platform did not sign never brings a message in.
    if !signed {
        assert_eq!(
            w.hooks.delivered(),
            before,
            "an unsigned request (channel {which}) delivered a message, answered {status}"
        );
    }
});
