//! The Markdown renderers, one per platform dialect (the model's answer is outside input too):
//! the first byte picks the dialect, the rest is the Markdown. Also the message splitter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picoclaw_channels::format;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let markdown = String::from_utf8_lossy(rest);
    match which % 6 {
        0 => {
            let html = format::markdown_to_telegram_html(&markdown);
            // Telegram refuses a message whose tags do not balance.
            assert_balanced(&html);
        }
        1 => {
            let _ = format::markdown_to_slack_mrkdwn(&markdown);
        }
        2 => {
            let _ = format::markdown_to_whatsapp(&markdown);
        }
        3 => {
            let _ = format::markdown_to_plain(&markdown);
        }
        4 => {
            let escaped = format::escape_html(&markdown);
            assert!(!escaped.contains('<') && !escaped.contains('>'));
        }
        _ => {
            // Split at a limit the input chooses: every part within it, nothing lost but
            // the whitespace at the cuts.
            let max = usize::from(rest.first().copied().unwrap_or(0));
            let parts = picoclaw_channels::split_message(&markdown, max);
            let max = max.max(16); // the smallest limit split_message keeps to
            for part in &parts {
                assert!(
                    part.chars().count() <= max,
                    "a part over the limit: {part:?}"
                );
            }
        }
    }
});

/// Every opened tag is closed, in order.
fn assert_balanced(html: &str) {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else {
            panic!("an unclosed '<' in {html:?}");
        };
        let tag = &after[..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name), "tags out of order in {html:?}");
        } else {
            let name = tag.split_whitespace().next().unwrap_or_default();
            open.push(name);
        }
        rest = &after[end + 1..];
    }
    assert!(open.is_empty(), "tags left open in {html:?}");
}
