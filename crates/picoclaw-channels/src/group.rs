//! When a bot answers in a group, and which platform message ids it has already taken.
//!
//! Groups are answered when the bot is mentioned, or, where the config names prefixes
//! (`group_trigger.prefixes`, or the original's older `group_trigger_prefix`), when a message
//! starts with one of them; `group_trigger.mention_only: true` turns the prefixes off. Direct
//! messages are always answered (subject to `allow_from`).

use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// A channel's group rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupTrigger {
    /// Only mentions start a turn, whatever the prefixes.
    pub mention_only: bool,
    /// Messages starting with one of these start a turn (the prefix is taken off).
    pub prefixes: Vec<String>,
}

impl GroupTrigger {
    /// The rule in a channel's settings: `group_trigger.{mention_only, prefixes}` and the
    /// older `group_trigger_prefix` list (both layouts of the original load; their prefixes are
    /// joined).
    pub fn from_settings(settings: &Value) -> Self {
        let trigger = settings.get("group_trigger");
        let mention_only = trigger
            .and_then(|t| t.get("mention_only"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut prefixes: Vec<String> = Vec::new();
        for list in [
            trigger.and_then(|t| t.get("prefixes")),
            settings.get("group_trigger_prefix"),
        ]
        .into_iter()
        .flatten()
        {
            let items: Vec<&Value> = match list {
                Value::Array(items) => items.iter().collect(),
                single @ Value::String(_) => vec![single],
                _ => Vec::new(),
            };
            for p in items.into_iter().filter_map(Value::as_str) {
                let p = p.trim();
                if !p.is_empty() && !prefixes.iter().any(|have| have == p) {
                    prefixes.push(p.to_owned());
                }
            }
        }
        Self {
            mention_only,
            prefixes,
        }
    }

    /// What to do with a group message whose text (mention markup already removed) is `text`:
    /// `Some(text to hand the agent)` when the bot should answer, `None` when not.
    pub fn admit(&self, text: &str, mentioned: bool) -> Option<String> {
        let trimmed = text.trim();
        if mentioned {
            return Some(trimmed.to_owned());
        }
        if self.mention_only {
            return None;
        }
        self.prefixes.iter().find_map(|p| {
            let rest = trimmed.strip_prefix(p.as_str())?;
            // `/ai` must not take "/aircon is broken": a prefix ending in a letter or digit
            // needs something else after it. Prefixes in scripts written without spaces
            // ("小助手你好") match as they are.
            let glued = p.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
                && rest
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric());
            (!glued).then(|| rest.trim_start().to_owned())
        })
    }
}

/// The last `cap` message ids a channel took, to drop a platform's redelivery before it reaches
/// the inbox (the gateway's journal drops those that come after a restart).
#[derive(Debug)]
pub struct Seen {
    cap: usize,
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Seen {
    /// Remembers up to `cap` ids (at least 16).
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(16),
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// Whether `id` is new; it is remembered from now on.
    pub fn first(&self, id: &str) -> bool {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (set, order) = &mut *guard;
        if set.contains(id) {
            return false;
        }
        set.insert(id.to_owned());
        order.push_back(id.to_owned());
        while order.len() > self.cap {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }

    /// Takes `id` for one delivery attempt: `None` when it was taken before (a redelivery).
    /// Call it after the sender passed the access checks (a stranger's flood must not push the
    /// ids of allowed users out). The claim forgets the id again when it is dropped without
    /// [`Claim::keep`], so a handler that ends early — the inbox refused the message, or the
    /// future was dropped because the platform gave up on the webhook or the channel stopped —
    /// lets the platform's redelivery through.
    pub fn claim(&self, id: &str) -> Option<Claim<'_>> {
        self.first(id).then(|| Claim {
            seen: self,
            id: id.to_owned(),
            kept: false,
        })
    }

    /// Forgets `id` (the inbox refused the message: the platform's redelivery must get
    /// through).
    pub fn forget(&self, id: &str) {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (set, order) = &mut *guard;
        if set.remove(id) {
            order.retain(|x| x != id);
        }
    }
}

/// An id taken by [`Seen::claim`]: forgotten on drop unless kept.
#[derive(Debug)]
#[must_use = "a claim dropped at once forgets the id again"]
pub struct Claim<'a> {
    seen: &'a Seen,
    id: String,
    kept: bool,
}

impl Claim<'_> {
    /// The message was delivered: the id stays taken.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.seen.forget(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn both_layouts_of_the_original_load_and_mentions_always_count() {
        let old = GroupTrigger::from_settings(&json!({"group_trigger_prefix": ["/ai", " "]}));
        assert_eq!(old.prefixes, ["/ai"]);
        assert_eq!(
            old.admit("/ai what time", false).as_deref(),
            Some("what time")
        );
        assert_eq!(old.admit("chatter", false), None);
        assert_eq!(old.admit("/aircon is broken", false), None);
        assert_eq!(old.admit("/ai, hi", false).as_deref(), Some(", hi"));
        let cjk = GroupTrigger::from_settings(&json!({"group_trigger_prefix": ["小助手"]}));
        assert_eq!(cjk.admit("小助手你好", false).as_deref(), Some("你好"));
        assert_eq!(old.admit("chatter", true).as_deref(), Some("chatter"));

        let later = GroupTrigger::from_settings(
            &json!({"group_trigger": {"mention_only": true, "prefixes": ["!bot"]}}),
        );
        assert!(later.mention_only);
        assert_eq!(later.admit("!bot hi", false), None);

        let both = GroupTrigger::from_settings(
            &json!({"group_trigger": {"prefixes": ["!bot"]}, "group_trigger_prefix": "/ai"}),
        );
        assert_eq!(both.prefixes, ["!bot", "/ai"]);
        assert_eq!(
            GroupTrigger::from_settings(&json!({})).admit("hi", false),
            None
        );
    }

    #[test]
    fn seen_ids_are_dropped_until_forgotten_or_pushed_out() {
        let seen = Seen::new(16);
        assert!(seen.first("a"));
        assert!(!seen.first("a"));
        seen.forget("a");
        assert!(seen.first("a"));
        for i in 0..16 {
            assert!(seen.first(&i.to_string()));
        }
        assert!(seen.first("a"), "the oldest id is pushed out");
    }

    #[test]
    fn a_claim_dropped_unkept_lets_the_redelivery_through() {
        let seen = Seen::new(16);
        let claim = seen.claim("m1").unwrap();
        assert!(
            seen.claim("m1").is_none(),
            "taken while the first attempt runs"
        );
        drop(claim);
        let again = seen.claim("m1").unwrap();
        again.keep();
        assert!(seen.claim("m1").is_none());
    }
}
