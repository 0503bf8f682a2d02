//! Decoding a JSON value into a typed section while noticing the keys no struct field takes:
//! each comes back with its full dotted path (`channels.telegram.tokn`) and, when a field of the
//! same struct is spelt closely, that field ("did you mean"). The config file, the channel
//! sections and the tool sections all go through this one decoder.
//!
//! How: a deserializer over `&Value` that remembers, for each object a struct is read from, the
//! struct's field names (serde hands them to `deserialize_struct`, aliases included), and that
//! records a key whose value is skipped (serde's derive skips an unknown field's value with
//! `deserialize_ignored_any`). Maps (`BTreeMap<String, _>`) and `Value` fields take any key.

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;

/// A key no field took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UnknownKey {
    /// `channels.telegram.tokn`; array items as their index (`model_list.0.foo`).
    pub path: String,
    /// The closest field of the same struct, as a full path.
    pub suggestion: Option<String>,
}

/// A value of the wrong type (or shape): where, and what serde said.
#[derive(Debug)]
pub(crate) struct DecodeError {
    pub path: String,
    pub message: String,
}

#[derive(Default)]
struct Log {
    /// The field names of the struct read at each path.
    fields: HashMap<String, &'static [&'static str]>,
    ignored: Vec<String>,
}

/// Decodes `value` as `T`, returning the keys that were not taken.
pub(crate) fn decode<T: DeserializeOwned>(
    value: &Value,
) -> Result<(T, Vec<UnknownKey>), DecodeError> {
    let log = RefCell::new(Log::default());
    let probe = Probe {
        value,
        path: String::new(),
        log: &log,
    };
    let decoded: T = serde_path_to_error::deserialize(probe).map_err(|e| DecodeError {
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })?;
    let log = log.into_inner();
    let unknown = log
        .ignored
        .into_iter()
        .map(|path| {
            let (parent, last) = match path.rsplit_once('.') {
                Some((p, l)) => (p, l),
                None => ("", path.as_str()),
            };
            let suggestion = log
                .fields
                .get(parent)
                .and_then(|fields| closest(fields, last))
                .map(|s| join(parent, s));
            UnknownKey { path, suggestion }
        })
        .collect();
    Ok((decoded, unknown))
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The candidate closest to `key`, if it is close enough to be a likely misspelling.
pub fn closest<'a>(candidates: &[&'a str], key: &str) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(c, key), *c))
        .filter(|(d, c)| *d > 0 && *d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| c)
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A deserializer over one JSON value at one path.
struct Probe<'a> {
    value: &'a Value,
    path: String,
    log: &'a RefCell<Log>,
}

impl<'a> Probe<'a> {
    fn child(&self, value: &'a Value, key: &str) -> Self {
        Probe {
            value,
            path: join(&self.path, key),
            log: self.log,
        }
    }
}

impl<'de> de::Deserializer<'de> for Probe<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let len = items.len();
                let mut seq = Seq {
                    items: items.iter().enumerate(),
                    parent: &self,
                };
                let out = visitor.visit_seq(&mut seq)?;
                if seq.items.next().is_some() {
                    return Err(de::Error::invalid_length(len, &"fewer elements"));
                }
                Ok(out)
            }
            Value::Object(map) => visitor.visit_map(Entries {
                iter: map.iter(),
                pending: None,
                parent: &self,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.log
            .borrow_mut()
            .fields
            .insert(self.path.clone(), fields);
        self.deserialize_any(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.log.borrow_mut().ignored.push(self.path);
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // Enums in the config are plain strings; serde_json reads them.
        de::Deserializer::deserialize_enum(self.value, name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier
    }
}

struct Seq<'p, 'a, I> {
    items: I,
    parent: &'p Probe<'a>,
}

impl<'de, I> de::SeqAccess<'de> for Seq<'_, 'de, I>
where
    I: Iterator<Item = (usize, &'de Value)>,
{
    type Error = serde_json::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        match self.items.next() {
            Some((i, item)) => seed
                .deserialize(self.parent.child(item, &i.to_string()))
                .map(Some),
            None => Ok(None),
        }
    }
}

struct Entries<'p, 'a> {
    iter: serde_json::map::Iter<'a>,
    pending: Option<(&'a String, &'a Value)>,
    parent: &'p Probe<'a>,
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.pending = Some((k, v));
                seed.deserialize(de::value::BorrowedStrDeserializer::new(k))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let (k, v) = self
            .pending
            .take()
            .ok_or_else(|| de::Error::custom("a value was read before its key"))?;
        seed.deserialize(self.parent.child(v, k))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Inner {
        token: Option<String>,
        #[serde(alias = "allowFrom")]
        allow_from: Vec<u64>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Outer {
        inner: Option<Inner>,
        list: Vec<Inner>,
        free: BTreeMap<String, Value>,
        raw: Option<Value>,
    }

    #[test]
    fn unknown_keys_come_back_with_their_path_and_the_closest_field() {
        let v = serde_json::json!({
            "inner": {"tokn": "x", "allowFrom": [1]},
            "list": [{}, {"tooken": 1}],
            "free": {"anything": 1},
            "raw": {"whatever": {"deep": true}},
            "lisst": []
        });
        let (out, unknown): (Outer, _) = decode(&v).unwrap();
        assert_eq!(out.inner.unwrap().allow_from, [1]);
        let mut found: Vec<(String, Option<String>)> = unknown
            .into_iter()
            .map(|u| (u.path, u.suggestion))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("inner.tokn".into(), Some("inner.token".into())),
                ("lisst".into(), Some("list".into())),
                ("list.1.tooken".into(), Some("list.1.token".into())),
            ]
        );
    }

    #[test]
    fn a_wrong_type_names_its_path() {
        let v = serde_json::json!({"list": [{"allow_from": ["x"]}]});
        let err = decode::<Outer>(&v).unwrap_err();
        assert_eq!(err.path, "list[0].allow_from[0]");
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("modle", "model"), 2);
        assert_eq!(edit_distance("max_token", "max_tokens"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
