//! Writing the config: atomically (temp file, fsync, rename; 0600 since it holds keys), merged
//! over the user's file so every key picoclaw does not understand is kept, and in the order the
//! user's file has its keys (new keys after them).

use crate::ConfigError;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// What `picoclaw onboard` writes: the original's layout with empty keys.
pub fn default_config_json() -> Value {
    json!({
        "agents": {
            "defaults": {
                "workspace": crate::model::DEFAULT_WORKSPACE,
                "restrict_to_workspace": true,
                "provider": "",
                "model": "openai/gpt-4o-mini",
                "max_tokens": 8192,
                "context_window": 128000,
                "temperature": 0.7,
                "max_tool_iterations": 20
            }
        },
        "providers": {
            "openai": {"api_key": "", "api_base": ""},
            "openrouter": {"api_key": "", "api_base": ""},
            "deepseek": {"api_key": "", "api_base": ""},
            "groq": {"api_key": "", "api_base": ""},
            "zhipu": {"api_key": "", "api_base": ""},
            "moonshot": {"api_key": "", "api_base": ""},
            "gemini": {"api_key": "", "api_base": ""},
            "vllm": {"api_key": "", "api_base": "http://localhost:8000/v1"},
            "ollama": {"api_key": "", "api_base": "http://localhost:11434/v1"}
        },
        // Switched off until filled in (docs/channels/<name>.md); the original's keys.
        "channels": {
            "telegram": {"enabled": false, "token": "", "allow_from": []},
            "discord": {"enabled": false, "token": "", "allow_from": []},
            "slack": {"enabled": false, "bot_token": "", "app_token": "", "allow_from": []}
        },
        "tools": {"exec": {"enabled": true}},
        "heartbeat": {"enabled": true, "interval": 30},
        "gateway": {"host": "127.0.0.1", "port": 18790}
    })
}

/// `existing` with every key of `ours` it lacks added (recursively). The user's values win and
/// keys picoclaw does not know are kept.
pub fn merge_preserving(existing: Value, ours: Value) -> Value {
    match (existing, ours) {
        (Value::Object(mut mine), Value::Object(theirs)) => {
            for (k, v) in theirs {
                let merged = match mine.remove(&k) {
                    Some(old) => merge_preserving(old, v),
                    None => v,
                };
                mine.insert(k, merged);
            }
            Value::Object(mine)
        }
        (existing, _) => existing,
    }
}

/// The order of a JSON document's keys as written (serde_json's maps sort them).
#[derive(Debug, Default)]
enum Order {
    #[default]
    Leaf,
    Object(Vec<(String, Order)>),
    Array(Vec<Order>),
}

impl<'de> Deserialize<'de> for Order {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OrderVisitor)
    }
}

struct OrderVisitor;

impl<'de> Visitor<'de> for OrderVisitor {
    type Value = Order;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Order, E> {
        Ok(Order::Leaf)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Order, E> {
        Ok(Order::Leaf)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Order, E> {
        Ok(Order::Leaf)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Order, E> {
        Ok(Order::Leaf)
    }
    fn visit_str<E>(self, _: &str) -> Result<Order, E> {
        Ok(Order::Leaf)
    }
    fn visit_unit<E>(self) -> Result<Order, E> {
        Ok(Order::Leaf)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Order, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Order>()? {
            items.push(item);
        }
        Ok(Order::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Order, A::Error> {
        let mut keys = Vec::new();
        while let Some((key, order)) = map.next_entry::<String, Order>()? {
            keys.push((key, order));
        }
        Ok(Order::Object(keys))
    }
}

/// `value`, serialised with each object's keys in `order`'s order (keys `order` lacks after
/// them, in `value`'s order).
struct Ordered<'a> {
    value: &'a Value,
    order: Option<&'a Order>,
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.value, self.order) {
            (Value::Object(map), Some(Order::Object(keys))) => {
                let mut out = s.serialize_map(Some(map.len()))?;
                let mut done = std::collections::HashSet::new();
                for (key, order) in keys {
                    if let Some(v) = map.get(key)
                        && done.insert(key.as_str())
                    {
                        out.serialize_entry(
                            key,
                            &Ordered {
                                value: v,
                                order: Some(order),
                            },
                        )?;
                    }
                }
                for (key, v) in map {
                    if !done.contains(key.as_str()) {
                        out.serialize_entry(key, v)?;
                    }
                }
                out.end()
            }
            (Value::Array(items), Some(Order::Array(orders))) => {
                let mut out = s.serialize_seq(Some(items.len()))?;
                for (i, v) in items.iter().enumerate() {
                    out.serialize_element(&Ordered {
                        value: v,
                        order: orders.get(i),
                    })?;
                }
                out.end()
            }
            (value, _) => value.serialize(s),
        }
    }
}

/// `value` as pretty JSON with the keys in the order `previous` (the file's text before) has
/// them; when `previous` is not JSON, in serde_json's order.
fn pretty_keeping_order(value: &Value, previous: Option<&str>) -> serde_json::Result<String> {
    let order = previous
        .map(|t| t.strip_prefix('\u{feff}').unwrap_or(t))
        .and_then(|t| serde_json::from_str::<Order>(t).ok());
    serde_json::to_string_pretty(&Ordered {
        value,
        order: order.as_ref(),
    })
}

/// Writes `value` as pretty JSON to `path` through a temporary file and a rename, with
/// owner-only permissions. Keys keep the order the file had them in; new keys follow.
pub fn write_config_atomically(path: &Path, value: &Value) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let previous = std::fs::read_to_string(path).ok();
    let mut text = pretty_keeping_order(value, previous.as_deref()).map_err(|e| err(e.into()))?;
    text.push('\n');
    // A name of its own per write: two writes at once never share a temporary file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".config.json.{}.{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn a_rewrite_keeps_the_files_key_order_and_adds_new_keys_after() {
        let before = r#"{
  "gateway": {"port": 18790, "host": "127.0.0.1"},
  "x_custom": {"zeta": 1, "alpha": [{"b": 1, "a": 2}]},
  "agents": {"defaults": {"model": "openai/old", "workspace": "~/w"}}
}"#;
        let mut value: Value = serde_json::from_str(before).unwrap();
        value["agents"]["defaults"]["model"] = json!("openai/new");
        value["agents"]["defaults"]["added"] = json!(true);
        value["heartbeat"] = json!({"interval": 30, "enabled": false});
        let text = pretty_keeping_order(&value, Some(before)).unwrap();
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text}"))
        };
        assert!(at("\"gateway\"") < at("\"x_custom\"") && at("\"x_custom\"") < at("\"agents\""));
        assert!(at("\"port\"") < at("\"host\""));
        assert!(at("\"zeta\"") < at("\"alpha\"") && at("\"b\"") < at("\"a\""));
        assert!(at("\"model\"") < at("\"workspace\"") && at("\"workspace\"") < at("\"added\""));
        assert!(at("\"agents\"") < at("\"heartbeat\""), "a new key follows");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value, "the same values");
        // A file that is not JSON gives no order; the value is written all the same.
        let plain = pretty_keeping_order(&value, Some("not json")).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&plain).unwrap(), value);
    }
}
