//! Chat messages, content parts, tool calls, tool specs and token usage.

use serde::{Deserialize, Deserializer, Serialize};

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The person talking to the agent.
    User,
    /// The model's answers.
    Assistant,
    /// A tool's result.
    Tool,
}

impl Role {
    /// The lower-case name, as in the JSON (`system`, `user`, `assistant`, `tool`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One piece of a message's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text itself.
        text: String,
    },
    /// An image for vision models: an `https://` URL or a `data:image/...;base64,` URL.
    Image {
        /// The image: an `https://` URL or a `data:` URL.
        url: String,
        /// OpenAI's detail level (`low`, `high`, `auto`); `None` leaves it to the vendor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }

    /// An image part with no detail level.
    pub fn image(url: impl Into<String>) -> Self {
        ContentPart::Image {
            url: url.into(),
            detail: None,
        }
    }
}

/// A tool invocation requested by the model.
///
/// `arguments` is kept as the raw JSON text the model produced: it may be invalid, and the tool
/// loop reports that back to the model rather than failing the turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolCall {
    /// The id the model gave the call; the tool result answering it carries the same id.
    pub id: String,
    /// The name of the tool to run.
    pub name: String,
    /// The arguments as the raw JSON text the model produced (possibly invalid).
    pub arguments: String,
}

impl ToolCall {
    /// A call with the given id, tool name and raw JSON arguments.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

/// What a tool looks like to the model: its name, what it does, and a JSON schema of its
/// parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolSpec {
    /// The name the model calls the tool by.
    pub name: String,
    /// What the tool does and when to use it, for the model.
    pub description: String,
    /// The JSON schema of the parameters (an object schema).
    pub parameters: serde_json::Value,
}

impl ToolSpec {
    /// A spec from a name, a description and a JSON schema of the parameters.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: serde_json::Value,
    ) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters,
        }
    }
}

/// Tokens counted by the provider for one model call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Usage {
    /// Tokens of the request (the prompt).
    pub prompt_tokens: u64,
    /// Tokens the model produced.
    pub completion_tokens: u64,
    /// All tokens the vendor counted for the call; usually prompt plus completion.
    pub total_tokens: u64,
    /// Prompt tokens served from the provider's cache, when it reports them.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Completion tokens the model spent reasoning (OpenAI's o-series and gpt-5 family), when
    /// the vendor reports them; they are part of `completion_tokens`.
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    /// `prompt` tokens in and `completion` tokens out; the total is their sum.
    pub fn new(prompt: u64, completion: u64) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            cached_tokens: 0,
            reasoning_tokens: 0,
        }
    }

    /// The total as the vendor counted it (some count tokens beyond prompt and completion).
    pub fn with_total(mut self, total: u64) -> Self {
        self.total_tokens = total;
        self
    }

    /// Prompt tokens served from the vendor's cache.
    pub fn with_cached(mut self, cached: u64) -> Self {
        self.cached_tokens = cached;
        self
    }

    /// Completion tokens the model spent reasoning.
    pub fn with_reasoning(mut self, reasoning: u64) -> Self {
        self.reasoning_tokens = reasoning;
        self
    }

    /// Adds another call's usage to this one.
    pub fn add(&mut self, other: &Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
        self.cached_tokens += other.cached_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
    }
}

/// Why the model stopped producing output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// The model stopped to have tools run (the message's `tool_calls`).
    ToolCalls,
    /// The answer hit `max_tokens`.
    Length,
    /// The vendor's content filter cut the answer off.
    ContentFilter,
    /// A reason picoclaw does not know, as the vendor named it.
    Other(String),
}

impl FinishReason {
    /// Maps an OpenAI-style `finish_reason` string.
    pub fn from_openai(reason: &str) -> Self {
        match reason {
            "stop" => FinishReason::Stop,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "length" => FinishReason::Length,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_owned()),
        }
    }
}

/// One message of a conversation.
///
/// - `system` / `user`: `content` holds text (and for users, images).
/// - `assistant`: `content` holds the answer text, `tool_calls` what the model asked to run.
/// - `tool`: `content` holds a tool's result, `tool_call_id` the call it answers and `name` the
///   tool's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// The parts: text, and for user messages images. Empty for an assistant message that only
    /// calls tools.
    #[serde(default, deserialize_with = "content_from_string_or_parts")]
    pub content: Vec<ContentPart>,
    /// The calls an assistant message asks for; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a tool result: the id of the [`ToolCall`] it answers; `None` for other roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For a tool result: the tool's name; `None` for other roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    fn with_text(role: Role, text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            role,
            content: if text.is_empty() {
                Vec::new()
            } else {
                vec![ContentPart::Text { text }]
            },
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// A system message with `text`.
    pub fn system(text: impl Into<String>) -> Self {
        Self::with_text(Role::System, text)
    }

    /// A user message with `text`.
    pub fn user(text: impl Into<String>) -> Self {
        Self::with_text(Role::User, text)
    }

    /// A user message made of several parts (text and images).
    pub fn user_parts(parts: Vec<ContentPart>) -> Self {
        Self {
            role: Role::User,
            content: parts,
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// An assistant message with `text` and no tool calls.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::with_text(Role::Assistant, text)
    }

    /// An assistant message that asks for tool calls (with optional accompanying text).
    pub fn assistant_with_tools(text: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        let mut msg = Self::with_text(Role::Assistant, text);
        msg.tool_calls = tool_calls;
        msg
    }

    /// A tool result answering the call `tool_call_id`.
    pub fn tool_result(
        tool_call_id: impl Into<String>,
        name: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        let mut msg = Self::with_text(Role::Tool, text);
        msg.tool_call_id = Some(tool_call_id.into());
        msg.name = Some(name.into());
        msg
    }

    /// All text parts joined (images are left out).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let ContentPart::Text { text } = part {
                out.push_str(text);
            }
        }
        out
    }

    /// Whether any part is an image.
    pub fn has_images(&self) -> bool {
        self.content
            .iter()
            .any(|p| matches!(p, ContentPart::Image { .. }))
    }
}

/// Accepts `"content": "text"`, `"content": null` and `"content": [parts]`, so stored sessions and
/// hand-written JSON both load.
fn content_from_string_or_parts<'de, D>(deserializer: D) -> Result<Vec<ContentPart>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Parts(Vec<ContentPart>),
    }
    Ok(match Option::<Repr>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(Repr::Text(text)) if text.is_empty() => Vec::new(),
        Some(Repr::Text(text)) => vec![ContentPart::Text { text }],
        Some(Repr::Parts(parts)) => parts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_json() {
        let msgs = vec![
            ChatMessage::system("be brief"),
            ChatMessage::user_parts(vec![
                ContentPart::text("what is this?"),
                ContentPart::image("data:image/png;base64,AAAA"),
            ]),
            ChatMessage::assistant_with_tools(
                "",
                vec![ToolCall::new("call_1", "read_file", r#"{"path":"a.txt"}"#)],
            ),
            ChatMessage::tool_result("call_1", "read_file", "hello"),
            ChatMessage::assistant("done"),
        ];
        let text = serde_json::to_string(&msgs).unwrap();
        let back: Vec<ChatMessage> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, msgs);
    }

    #[test]
    fn content_accepts_plain_string_and_null() {
        let m: ChatMessage = serde_json::from_value(json!({"role":"user","content":"hi"})).unwrap();
        assert_eq!(m.text(), "hi");
        let m: ChatMessage =
            serde_json::from_value(json!({"role":"assistant","content":null})).unwrap();
        assert!(m.content.is_empty());
        let m: ChatMessage = serde_json::from_value(json!({"role":"assistant"})).unwrap();
        assert!(m.content.is_empty());
    }

    #[test]
    fn serialized_shape_is_stable() {
        let m = ChatMessage::tool_result("c1", "exec", "ok");
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"role":"tool","content":[{"type":"text","text":"ok"}],
                   "tool_call_id":"c1","name":"exec"})
        );
    }

    #[test]
    fn finish_reason_mapping() {
        assert_eq!(
            FinishReason::from_openai("tool_calls"),
            FinishReason::ToolCalls
        );
        assert_eq!(FinishReason::from_openai("length"), FinishReason::Length);
        assert_eq!(
            FinishReason::from_openai("weird"),
            FinishReason::Other("weird".into())
        );
    }
}
