//! Speech to text: [`Transcriber`] sends an audio file to an OpenAI-compatible
//! `POST {api_base}/audio/transcriptions` (Groq, OpenAI Whisper, a local whisper server) and
//! returns the text, so channels can turn voice notes into messages; `transcribe(path)` is the
//! same for the agent, on an audio file in the workspace.
//!
//! Config: the original PicoClaw's `stt` section, `stt.{api_key, api_base, model}` (defaults: Groq's
//! endpoint and `whisper-large-v3-turbo`). `GROQ_API_KEY` is used when `stt.api_key` is empty.

use crate::args::{parse, schema};
use crate::{Access, Sandbox, Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_api::ToolSpec;
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Largest audio file sent (the common limit of hosted Whisper APIs).
pub const MAX_AUDIO_BYTES: u64 = 25 * 1024 * 1024;

/// Where and how to transcribe.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SttConfig {
    pub api_key: String,
    pub api_base: String,
    pub model: String,
}

impl SttConfig {
    /// Reads `stt` from JSON ([`crate::SttSection`]'s keys); `None` when no key is set
    /// anywhere (speech to text is then off). A section that does not decode counts as absent.
    pub fn from_json(stt: Option<&Value>, env_key: Option<String>) -> Option<Self> {
        let section: crate::SttSection = stt
            .filter(|v| !v.is_null())
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        Self::from_section(Some(&section), env_key)
    }

    /// Builds from the typed `stt` section, or only the environment's key without one; `None`
    /// when no key is set anywhere (speech to text is then off).
    pub fn from_section(stt: Option<&crate::SttSection>, env_key: Option<String>) -> Option<Self> {
        use crate::settings::trimmed;
        let get = |f: fn(&crate::SttSection) -> Option<&String>| stt.and_then(|s| trimmed(f(s)));
        let api_key = get(|s| s.api_key.as_ref()).or(env_key.filter(|k| !k.trim().is_empty()))?;
        Some(Self {
            api_key,
            api_base: get(|s| s.api_base.as_ref())
                .unwrap_or_else(|| "https://api.groq.com/openai/v1".into()),
            model: get(|s| s.model.as_ref()).unwrap_or_else(|| "whisper-large-v3-turbo".into()),
        })
    }
}

/// Transcribes audio files.
#[derive(Clone, Debug)]
pub struct Transcriber {
    config: SttConfig,
    /// Built at the first transcription.
    client: crate::lazy_client::LazyClient,
}

fn mime_of(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("ogg" | "oga" | "opus") => "audio/ogg",
        Some("mp3" | "mpga" | "mpeg") => "audio/mpeg",
        Some("m4a" | "mp4") => "audio/mp4",
        Some("wav") => "audio/wav",
        Some("webm") => "audio/webm",
        Some("flac") => "audio/flac",
        _ => "application/octet-stream",
    }
}

impl Transcriber {
    pub fn new(config: SttConfig) -> Self {
        Self {
            config,
            client: crate::lazy_client::LazyClient::new(
                Duration::from_secs(120),
                concat!("picoclaw/", env!("CARGO_PKG_VERSION")),
            ),
        }
    }

    /// The text spoken in a recording (`name` gives its format by extension). The caller reads
    /// the file, beneath the folder it belongs to.
    pub async fn transcribe(&self, name: &str, bytes: Vec<u8>) -> Result<String, String> {
        if bytes.len() as u64 > MAX_AUDIO_BYTES {
            return Err(format!(
                "{name} is {} bytes; speech to text takes files up to {MAX_AUDIO_BYTES}",
                bytes.len()
            ));
        }
        let mime = mime_of(Path::new(name));
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str(mime)
            .map_err(|e| e.to_string())?;
        let form = reqwest::multipart::Form::new()
            .text("model", self.config.model.clone())
            .text("response_format", "json")
            .part("file", part);
        let url = format!(
            "{}/audio/transcriptions",
            self.config.api_base.trim_end_matches('/')
        );
        let response = self
            .client
            .get()?
            .post(url)
            .bearer_auth(&self.config.api_key)
            .multipart(form)
            .send()
            .await
            .map_err(|e| format!("the speech-to-text service did not answer: {e}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err("the speech-to-text service refused the key (stt.api_key)".into());
        }
        if !status.is_success() {
            let why = body["error"]["message"].as_str().unwrap_or("no details");
            return Err(format!(
                "the speech-to-text service answered {status}: {why}"
            ));
        }
        body["text"]
            .as_str()
            .map(|t| t.trim().to_owned())
            .ok_or_else(|| "the speech-to-text answer has no text".into())
    }
}

/// `transcribe(path)`: the text of an audio file in the workspace.
#[derive(Debug, Clone)]
pub struct TranscribeTool {
    transcriber: Transcriber,
    sandbox: Arc<Sandbox>,
}

impl TranscribeTool {
    pub fn new(transcriber: Transcriber, sandbox: Arc<Sandbox>) -> Self {
        Self {
            transcriber,
            sandbox,
        }
    }
}

#[derive(Deserialize)]
struct Args {
    path: String,
}

#[async_trait]
impl Tool for TranscribeTool {
    // Reads only.
    fn parallel_safe(&self) -> bool {
        true
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "transcribe",
            "Turn speech in an audio file of the workspace into text.",
            schema(
                &[("path", "string", "Audio file (ogg, mp3, m4a, wav...)")],
                &["path"],
            ),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: Args = match parse("transcribe", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let at = match self.sandbox.locate(&args.path, Access::Read) {
            Ok(p) => p,
            Err(e) => return ToolOutput::error(format!("transcribe: {}", e.for_model())),
        };
        let name = at
            .full()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("audio")
            .to_owned();
        let bytes = match Sandbox::io(move || at.dir.read(&at.path, MAX_AUDIO_BYTES)).await {
            Ok(bytes) => bytes,
            Err(e) => return ToolOutput::error(format!("transcribe: {}", e.for_model())),
        };
        match self.transcriber.transcribe(&name, bytes).await {
            Ok(text) if text.is_empty() => ToolOutput::ok("(no speech found)"),
            Ok(text) => ToolOutput::ok(text),
            Err(e) => ToolOutput::error(format!("transcribe: {e}")),
        }
    }
}
