//! `Secret<T>`: a value (API key, token) whose `Debug` and `Display` never show it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Wraps a secret so that formatting it (logs, errors, `status` output) shows `[redacted]`.
/// Read the value on purpose with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The wrapped value. Call this only where the secret is sent to whoever it belongs to.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value (the same care as [`Secret::expose`] applies).
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl Secret<String> {
    /// A masked form for humans: the first 4 and last 4 characters of a long key (`sk-a…9xYz`),
    /// `****` for short ones, and `(not set)` for an empty one.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }

    /// Whether the wrapped string is empty (the secret is not set).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Masks a secret string for display (see [`Secret::masked`]).
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    match chars.len() {
        0 => "(not set)".to_owned(),
        n if n < 12 => "****".to_owned(),
        n => {
            let head: String = chars[..4].iter().collect();
            let tail: String = chars[n - 4..].iter().collect();
            format!("{head}…{tail}")
        }
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T: Serialize> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("sk-live-very-secret".to_owned());
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{s:?}").contains("secret-"));
        assert_eq!(s.expose(), "sk-live-very-secret");
    }

    #[test]
    fn masking() {
        assert_eq!(mask(""), "(not set)");
        assert_eq!(mask("short"), "****");
        assert_eq!(mask("sk-abcdefghijklmnop"), "sk-a…mnop");
    }
}
