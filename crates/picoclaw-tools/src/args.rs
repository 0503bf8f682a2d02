//! Typed tool arguments: each tool deserializes the model's JSON object into its own struct and
//! turns a mismatch into a message the model can act on.

use crate::ToolOutput;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Parses `args` for `tool`, or explains what is wrong with them.
pub(crate) fn parse<T: DeserializeOwned>(tool: &str, args: Value) -> Result<T, ToolOutput> {
    serde_json::from_value(args).map_err(|e| {
        ToolOutput::error(format!(
            "{tool}: invalid arguments: {e}. Check the tool's parameters."
        ))
    })
}

/// A JSON schema object with the given properties (name, type, description) and required names.
pub(crate) fn schema(props: &[(&str, &str, &str)], required: &[&str]) -> Value {
    let mut properties = serde_json::Map::new();
    for (name, ty, description) in props {
        properties.insert(
            (*name).to_owned(),
            serde_json::json!({"type": ty, "description": description}),
        );
    }
    serde_json::json!({"type": "object", "properties": properties, "required": required})
}
