//! Who may talk to a channel, and how fast: the configured `allow_from`, users paired with a
//! one-time code (when the list is empty, the code is printed in the gateway log; sending
//! `/pair CODE` to the bot adds the sender, kept in a file outside the workspace), and a
//! per-user rate limit.

use crate::lock;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

/// Wrong codes (from everyone together) that close the pairing: 20 guesses of a 6-digit code
/// succeed with a chance of 2 in 100 000.
pub const MAX_WRONG_CODES: u32 = 20;

/// Refused `/pair` messages one sender gets an answer to; after that their `/pair` messages are
/// ignored like any stranger's, so one stranger can neither close the pairing for everyone nor
/// make the bot answer them without end (each answer costs a platform send).
pub const MAX_REFUSALS_PER_SENDER: u32 = 3;

/// Senders whose refusals are counted; past this many, a new sender's `/pair` is ignored.
const COUNTED_SENDERS: usize = 4096;

/// What a `/pair` message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pairing {
    /// The sender is now allowed.
    Paired,
    /// Wrong code, or no pairing is open.
    Refused,
}

/// The answer to a `/pair` message with the right code.
pub const PAIRED_TEXT: &str = "Paired: you can talk to me now.";
/// The answer to a `/pair` message with a wrong or used code.
pub const REFUSED_TEXT: &str = "That code is wrong or was already used.";
/// The answer to the first message over the rate limit.
pub const SLOW_DOWN_TEXT: &str =
    "You are sending messages faster than I can take them; slow down a little.";

/// What the access rules say about one message ([`Access::admit`]).
#[derive(Debug)]
pub enum Admission<C> {
    /// Hand it to the inbox, and keep the claim once the inbox took it.
    Deliver(C),
    /// Answer the sender with this text (a pairing result, the first refusal over the rate
    /// limit) and take the message no further.
    Answer(&'static str),
    /// Drop it without a word: a stranger, a redelivery, a sender still over the limit.
    Ignore,
}

/// A channel's access rules.
#[derive(Debug)]
pub struct Access {
    channel: String,
    allow_from: Vec<String>,
    /// The pairing (code, paired users), shared with [`PairingControl`].
    pairing: Arc<PairingState>,
    per_minute: u32,
    /// user → (tokens left, last refill, warned since it ran out)
    buckets: Mutex<HashMap<String, (f64, Instant, bool)>>,
}

/// What pairing keeps: the open code, the wrong codes, the paired users and their file.
#[derive(Debug)]
struct PairingState {
    channel: String,
    paired: Mutex<BTreeSet<String>>,
    code: Mutex<Option<String>>,
    /// Wrong codes so far; pairing closes after `MAX_WRONG_CODES` (no guessing a 6-digit code).
    wrong: Mutex<u32>,
    /// Refused `/pair` messages per sender.
    refusals: Mutex<HashMap<String, u32>>,
    file: Option<PathBuf>,
}

impl PairingState {
    /// Writes the paired users to the file (when there is one).
    fn save(&self, paired: &BTreeSet<String>) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text = serde_json::to_string(paired).map_err(std::io::Error::other)?;
        // Complete or not at all: a crash mid-write must not lose every pairing.
        let tmp = file.with_extension(format!("json.{}.tmp", std::process::id()));
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, file)
    }
}

/// The pairings of the channels running in this process, by the file that keeps their paired
/// users (which names the channel and picoclaw's home): how the dashboard reaches the pairing
/// of a channel it did not build.
static LIVE: Mutex<BTreeMap<PathBuf, Weak<PairingState>>> = Mutex::new(BTreeMap::new());

/// The pairing of a running channel, for an operator: its code, a new code, the paired users.
#[derive(Clone, Debug)]
pub struct PairingControl(Arc<PairingState>);

impl PairingControl {
    /// The pairing of the running channel whose paired users `paired_file` keeps (see
    /// `ChannelSetup::paired_file`); `None` when no such channel has made its access rules (not
    /// running, not started yet, or without pairing).
    pub fn of_file(paired_file: &Path) -> Option<Self> {
        lock(&LIVE)
            .get(paired_file)
            .and_then(Weak::upgrade)
            .map(Self)
    }

    /// The one-time code a user sends (`/pair CODE`), while pairing is open.
    pub fn code(&self) -> Option<String> {
        lock(&self.0.code).clone()
    }

    /// Whether pairing was closed after [`MAX_WRONG_CODES`] wrong codes.
    pub fn closed(&self) -> bool {
        *lock(&self.0.wrong) >= MAX_WRONG_CODES
    }

    /// Opens pairing with a new one-time code (the old one stops working, the wrong-code count
    /// starts again). `None` when the system has no randomness to make one.
    pub fn renew(&self) -> Option<String> {
        let code = Some(one_time_code()).filter(|c| !c.is_empty())?;
        *lock(&self.0.code) = Some(code.clone());
        *lock(&self.0.wrong) = 0;
        lock(&self.0.refusals).clear();
        tracing::warn!(channel = %self.0.channel, "a new pairing code was made (the old one no longer works)");
        tracing::trace!(target: "audit", kind = "pairing", channel = %self.0.channel, outcome = "renewed", "pairing");
        Some(code)
    }

    /// The users paired with a code.
    pub fn paired(&self) -> Vec<String> {
        lock(&self.0.paired).iter().cloned().collect()
    }

    /// Forgets a paired user (they must pair again, or be in `allow_from`): `Ok(false)` when
    /// they were not paired. The file is written before this returns.
    pub fn forget(&self, user_id: &str) -> std::io::Result<bool> {
        let mut paired = lock(&self.0.paired);
        if !paired.remove(user_id) {
            return Ok(false);
        }
        if let Err(e) = self.0.save(&paired) {
            paired.insert(user_id.to_owned());
            return Err(e);
        }
        tracing::warn!(channel = %self.0.channel, user = user_id, "a paired user was removed");
        tracing::trace!(target: "audit", kind = "pairing", channel = %self.0.channel, user = user_id, outcome = "removed", "pairing");
        Ok(true)
    }
}

/// The users a pairing file keeps (for a channel that is not running); empty when there is none.
pub fn paired_in_file(paired_file: &Path) -> Vec<String> {
    read_paired(Some(paired_file)).into_iter().collect()
}

fn read_paired(file: Option<&Path>) -> BTreeSet<String> {
    file.and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Six random digits.
fn one_time_code() -> String {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        // No system randomness: no pairing rather than a guessable code.
        return String::new();
    }
    format!("{:06}", u32::from_le_bytes(bytes) % 1_000_000)
}

impl Access {
    /// `paired_file` keeps the paired user ids (JSON list); it must live outside the workspace,
    /// or the agent could write itself a friend. `per_minute` 0 turns the rate limit off.
    pub fn new(
        channel: &str,
        allow_from: Vec<String>,
        paired_file: Option<PathBuf>,
        per_minute: u32,
    ) -> Self {
        let paired = read_paired(paired_file.as_deref());
        let code = (allow_from.is_empty() && paired.is_empty())
            .then(one_time_code)
            .filter(|c| !c.is_empty());
        if let Some(code) = &code {
            // Slack takes every message that starts with `/` for a command of its own.
            let how = if channel == "slack" {
                format!(
                    "`/picoclaw pair {code}` (or ` /pair {code}` with a leading space, in a DM)"
                )
            } else {
                format!("`/pair {code}`")
            };
            tracing::warn!(
                "{channel}: nobody may talk to the bot yet. Send {how} to it from your account \
                 (once), or put your user id in channels.{channel}.allow_from"
            );
        }
        let pairing = Arc::new(PairingState {
            channel: channel.to_owned(),
            paired: Mutex::new(paired),
            code: Mutex::new(code),
            wrong: Mutex::new(0),
            refusals: Mutex::new(HashMap::new()),
            file: paired_file,
        });
        if let Some(file) = &pairing.file {
            let mut live = lock(&LIVE);
            live.retain(|_, state| state.strong_count() > 0);
            live.insert(file.clone(), Arc::downgrade(&pairing));
        }
        Self {
            channel: channel.to_owned(),
            allow_from,
            pairing,
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The one-time pairing code, while pairing is open (for tests and `status`).
    pub fn pairing_code(&self) -> Option<String> {
        lock(&self.pairing.code).clone()
    }

    /// The pairing, for an operator (the dashboard).
    pub fn pairing(&self) -> PairingControl {
        PairingControl(Arc::clone(&self.pairing))
    }

    /// `allow_from` as configured.
    pub fn allow_from(&self) -> &[String] {
        &self.allow_from
    }

    /// Whether the user (by id, or username without `@`, case-insensitive) may talk to the bot.
    pub fn allowed(&self, user_id: &str, username: Option<&str>) -> bool {
        let listed = self.allow_from.iter().any(|a| {
            let a = a.trim_start_matches('@');
            a == user_id || username.is_some_and(|u| u.eq_ignore_ascii_case(a))
        });
        listed || lock(&self.pairing.paired).contains(user_id)
    }

    /// Handles `/pair CODE` from `user_id`; `None` when `text` is not a pairing message, or
    /// when the sender was refused [`MAX_REFUSALS_PER_SENDER`] times already (the message is
    /// then the stranger's like any other: ignored).
    pub fn try_pair(&self, user_id: &str, text: &str) -> Option<Pairing> {
        let given = text.trim().strip_prefix("/pair")?.trim();
        let given = given.split_whitespace().next().unwrap_or_default();
        {
            let mut refusals = lock(&self.pairing.refusals);
            let counted = refusals.len() < COUNTED_SENDERS || refusals.contains_key(user_id);
            let n = refusals.entry(user_id.to_owned()).or_insert(0);
            if !counted || *n >= MAX_REFUSALS_PER_SENDER {
                if counted {
                    tracing::debug!(channel = %self.channel, user = user_id, "pairing: sender refused too often; ignored");
                } else {
                    refusals.remove(user_id);
                }
                return None;
            }
        }
        let outcome = self.pair(user_id, given);
        if outcome == Pairing::Refused {
            let mut refusals = lock(&self.pairing.refusals);
            let n = refusals.entry(user_id.to_owned()).or_insert(0);
            *n += 1;
            if *n == MAX_REFUSALS_PER_SENDER {
                tracing::warn!(
                    channel = %self.channel,
                    user = user_id,
                    "pairing: {MAX_REFUSALS_PER_SENDER} refused attempts; this sender's /pair \
                     messages are ignored until the gateway restarts (or add the id to \
                     channels.{}.allow_from)",
                    self.channel
                );
            }
        }
        Some(outcome)
    }

    fn pair(&self, user_id: &str, given: &str) -> Pairing {
        let mut code = lock(&self.pairing.code);
        match code.as_deref() {
            Some(c) if !given.is_empty() && c == given => {
                *code = None;
                let mut paired = lock(&self.pairing.paired);
                paired.insert(user_id.to_owned());
                if let Err(e) = self.pairing.save(&paired) {
                    let file = self.pairing.file.as_deref().unwrap_or(Path::new(""));
                    tracing::warn!(file = %file.display(), error = %e, "cannot keep the pairing; it lasts until the restart");
                }
                tracing::warn!(channel = %self.channel, user = user_id, "paired with the one-time code");
                tracing::trace!(target: "audit", kind = "pairing", channel = %self.channel, user = user_id, outcome = "paired", "pairing");
                Pairing::Paired
            }
            Some(_) => {
                let mut wrong = lock(&self.pairing.wrong);
                *wrong += 1;
                tracing::warn!(channel = %self.channel, user = user_id, attempt = *wrong, "a wrong pairing code");
                tracing::trace!(target: "audit", kind = "pairing", channel = %self.channel, user = user_id, outcome = "wrong_code", attempt = *wrong, "pairing");
                if *wrong >= MAX_WRONG_CODES {
                    *code = None;
                    tracing::warn!(
                        "{}: pairing closed after {MAX_WRONG_CODES} wrong codes; make a new code on \
                         the dashboard's Channels page (or restart the gateway), or use \
                         allow_from",
                        self.channel
                    );
                }
                Pairing::Refused
            }
            None => Pairing::Refused,
        }
    }

    /// The rules for one message, in their order: in a direct chat a `/pair CODE` message
    /// pairs (answered); a sender none of whose `ids` is allowed is ignored; `claim` takes the
    /// message's platform id(s) — only now, so that a stranger's flood cannot push out the ids
    /// already taken — and `None` from it (a redelivery) is ignored; then the rate limit, counted
    /// on the first id.
    pub fn admit<C>(
        &self,
        ids: &[&str],
        direct: bool,
        text: &str,
        claim: impl FnOnce() -> Option<C>,
    ) -> Admission<C> {
        let sender = ids.first().copied().unwrap_or_default();
        if direct && let Some(result) = self.try_pair(sender, text) {
            return Admission::Answer(match result {
                Pairing::Paired => PAIRED_TEXT,
                Pairing::Refused => REFUSED_TEXT,
            });
        }
        if !ids.iter().any(|id| self.allowed(id, None)) {
            tracing::info!(channel = %self.channel, sender, "not on allow_from; ignored");
            return Admission::Ignore;
        }
        let Some(claimed) = claim() else {
            tracing::debug!(channel = %self.channel, sender, "redelivered message dropped");
            return Admission::Ignore;
        };
        match self.take(sender) {
            Ok(()) => Admission::Deliver(claimed),
            Err(true) => Admission::Answer(SLOW_DOWN_TEXT),
            Err(false) => Admission::Ignore,
        }
    }

    /// Takes one message from the user's allowance: `Ok(())`, or `Err(first)` when over the
    /// limit (`first`: this is the first refusal since the allowance ran out, worth a reply).
    pub fn take(&self, user_id: &str) -> Result<(), bool> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let cap = f64::from(self.per_minute);
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        let entry = buckets
            .entry(user_id.to_owned())
            .or_insert((cap, now, false));
        let refill = now.duration_since(entry.1).as_secs_f64() * cap / 60.0;
        entry.0 = (entry.0 + refill).min(cap);
        entry.1 = now;
        if entry.0 >= 1.0 {
            entry.0 -= 1.0;
            entry.2 = false;
            Ok(())
        } else {
            let first = !entry.2;
            entry.2 = true;
            Err(first)
        }
    }

    /// The limit, for messages to users.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_empty_list_opens_a_one_time_pairing_kept_in_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("paired.json");
        let access = Access::new("telegram", vec![], Some(file.clone()), 0);
        let code = access.pairing_code().unwrap();
        assert_eq!(code.len(), 6);
        assert!(!access.allowed("42", None));
        assert_eq!(
            access.try_pair("99", "/pair 000000x"),
            Some(Pairing::Refused)
        );
        assert_eq!(access.try_pair("42", "hello"), None);
        assert_eq!(
            access.try_pair("42", &format!("/pair {code}")),
            Some(Pairing::Paired)
        );
        assert!(access.allowed("42", None));
        // One time only.
        assert_eq!(
            access.try_pair("43", &format!("/pair {code}")),
            Some(Pairing::Refused)
        );
        assert!(!access.allowed("43", None));
        // One guesser is answered a few times, then ignored, and cannot close it alone.
        let guessed = Access::new("telegram", vec![], None, 0);
        let code = guessed.pairing_code().unwrap();
        for _ in 0..MAX_REFUSALS_PER_SENDER {
            assert_eq!(guessed.try_pair("66", "/pair 1"), Some(Pairing::Refused));
        }
        assert_eq!(guessed.try_pair("66", "/pair 1"), None);
        assert_eq!(guessed.try_pair("66", &format!("/pair {code}")), None);
        assert!(guessed.pairing_code().is_some());
        // Many guessers together close it.
        let mut sender = 100;
        while guessed.pairing_code().is_some() {
            assert_eq!(
                guessed.try_pair(&sender.to_string(), "/pair 1"),
                Some(Pairing::Refused)
            );
            sender += 1;
        }
        assert_eq!(sender - 100 + MAX_REFUSALS_PER_SENDER, MAX_WRONG_CODES);
        assert_eq!(
            guessed.try_pair("7", &format!("/pair {code}")),
            Some(Pairing::Refused)
        );
        // Kept across restarts, and no new code is opened then.
        let again = Access::new("telegram", vec![], Some(file), 0);
        assert!(again.allowed("42", None));
        assert!(again.pairing_code().is_none());
    }

    #[test]
    fn an_operator_renews_the_code_and_forgets_a_paired_user() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("channels/x-paired.json");
        let access = Access::new("x", vec![], Some(file.clone()), 0);
        let control = PairingControl::of_file(&file).unwrap();
        let old = control.code().unwrap();
        assert_eq!(access.pairing_code(), Some(old.clone()));
        // Closed after too many wrong codes; a new code opens it again.
        for n in 0..MAX_WRONG_CODES {
            access.try_pair(&format!("g{n}"), "/pair 1");
        }
        assert!(control.closed() && control.code().is_none());
        let new = control.renew().unwrap();
        assert!(!control.closed());
        assert_eq!(access.pairing_code(), Some(new.clone()));
        if old != new {
            assert_eq!(
                access.try_pair("1", &format!("/pair {old}")),
                Some(Pairing::Refused)
            );
        }
        assert_eq!(
            access.try_pair("2", &format!("/pair {new}")),
            Some(Pairing::Paired)
        );
        assert_eq!(control.paired(), ["2"]);
        assert_eq!(paired_in_file(&file), ["2"]);
        // Forgotten: no longer allowed, and gone from the file.
        assert!(control.forget("2").unwrap());
        assert!(!control.forget("2").unwrap());
        assert!(!access.allowed("2", None));
        assert!(paired_in_file(&file).is_empty());
        // Gone with the channel (once the operator's handle is dropped too).
        drop((control, access));
        assert!(PairingControl::of_file(&file).is_none());
    }

    #[test]
    fn admission_pairs_then_allows_then_claims_then_limits() {
        let access = Access::new("line", vec![], None, 1);
        let code = access.pairing_code().unwrap();
        let pair = format!("/pair {code}");
        let never = || -> Option<()> { panic!("claimed for a stranger") };
        assert!(matches!(
            access.admit(&["U9"], true, "hi", never),
            Admission::Ignore
        ));
        // In a group, a pairing message is a stranger's message like any other.
        assert!(matches!(
            access.admit(&["U1"], false, &pair, never),
            Admission::Ignore
        ));
        assert!(matches!(
            access.admit(&["U1"], true, &pair, never),
            Admission::Answer(PAIRED_TEXT)
        ));
        assert!(matches!(
            access.admit(&["U1"], true, "hi", || Some(7)),
            Admission::Deliver(7)
        ));
        assert!(matches!(
            access.admit(&["U1"], true, "again", || None::<()>),
            Admission::Ignore
        ));
        assert!(matches!(
            access.admit(&["U1"], true, "fast", || Some(())),
            Admission::Answer(SLOW_DOWN_TEXT)
        ));
        assert!(matches!(
            access.admit(&["U1"], true, "faster", || Some(())),
            Admission::Ignore
        ));
        // Any of a sender's ids may be the allowed one.
        let listed = Access::new("feishu", vec!["on_1".into()], None, 0);
        assert!(matches!(
            listed.admit(&["ou_1", "on_1"], false, "hi", || Some(())),
            Admission::Deliver(())
        ));
    }

    #[test]
    fn a_configured_list_needs_no_pairing() {
        let access = Access::new("telegram", vec!["@Ada".into(), "7".into()], None, 0);
        assert!(access.pairing_code().is_none());
        assert!(access.allowed("1", Some("ada")));
        assert!(access.allowed("7", None));
        assert!(!access.allowed("8", Some("eve")));
        assert_eq!(access.try_pair("8", "/pair 123456"), Some(Pairing::Refused));
    }

    #[test]
    fn the_rate_limit_refuses_bursts_and_says_so_once() {
        let access = Access::new("telegram", vec!["1".into()], None, 3);
        assert_eq!(access.take("1"), Ok(()));
        assert_eq!(access.take("1"), Ok(()));
        assert_eq!(access.take("1"), Ok(()));
        assert_eq!(access.take("1"), Err(true));
        assert_eq!(access.take("1"), Err(false));
        // Another user has their own allowance.
        assert_eq!(access.take("2"), Ok(()));
    }
}
