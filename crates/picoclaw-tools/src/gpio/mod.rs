//! `gpio(action, pin, value, duration_ms, edge, timeout_ms, confirm)`: read, drive, pulse and
//! watch GPIO lines on a Linux board, through the GPIO character device (`/dev/gpiochipN`, uAPI
//! v2, with `gpiocdev`) or, on a Raspberry Pi, `rppal` (feature `hardware`; `tools.gpio`).
//!
//! The model is assumed hostile: only the line offsets listed in `tools.gpio.pins` can be used,
//! every argument is checked before the chip is opened, writes and pulses need `confirm: true`,
//! a pulse lasts at most [`MAX_PULSE_MS`] and a wait at most [`MAX_WAIT_MS`]. The device work
//! runs on the blocking pool; when the tool loop gives up on a call (its timeout), a wait stops
//! within [`SLICE`] and a pulse drives the line back at once.

mod backend;
#[cfg(test)]
mod tests;

use crate::args::parse;
use crate::{GpioSection, Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use backend::{Backend, Edge};
use picoclaw_api::ToolSpec;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The longest pulse, in milliseconds.
pub const MAX_PULSE_MS: u64 = 10_000;
/// The longest wait for an edge, in milliseconds.
pub const MAX_WAIT_MS: u64 = 60_000;
/// The wait for an edge when `timeout_ms` is not given, in milliseconds.
const DEFAULT_WAIT_MS: u64 = 10_000;
/// How often a pulse or a wait looks whether its call was abandoned.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

const ACTIONS: &str = "read, write, pulse, wait_for_edge";

/// The `gpio` tool over one chip and its allowed lines.
#[derive(Clone)]
pub struct GpioTool {
    pins: Vec<u32>,
    device: String,
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for GpioTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpioTool")
            .field("device", &self.device)
            .field("pins", &self.pins)
            .finish_non_exhaustive()
    }
}

impl GpioTool {
    /// The tool for `tools.gpio`: the chip is opened at the first call, so a gateway starts on a
    /// machine without it (and the call says how to get one). Refuses an unknown `backend` and
    /// an empty `chip`.
    pub fn from_section(section: &GpioSection) -> Result<Self, String> {
        let backend_name = section.backend.as_deref().map(str::trim).unwrap_or("cdev");
        let (device, backend): (String, Arc<dyn Backend>) = match backend_name {
            "cdev" | "" => {
                let chip = section.chip.trim();
                if chip.is_empty() {
                    return Err(
                        "tools.gpio.chip is empty: name the GPIO character device, such as \
                         \"/dev/gpiochip0\""
                            .into(),
                    );
                }
                (chip.to_owned(), Arc::new(backend::Cdev::new(chip.into())))
            }
            "rppal" => {
                if let Some(p) = section.pins.iter().find(|p| **p > u32::from(u8::MAX)) {
                    return Err(format!(
                        "tools.gpio.pins: {p} is not a Raspberry Pi BCM pin number (0-255)"
                    ));
                }
                (
                    "Raspberry Pi GPIO (rppal)".to_owned(),
                    Arc::new(backend::Rpi::default()),
                )
            }
            other => {
                return Err(format!(
                    "tools.gpio.backend \"{other}\" is not one of \"cdev\", \"rppal\""
                ));
            }
        };
        Ok(Self::with_backend(section.pins.clone(), device, backend))
    }

    pub(crate) fn with_backend(
        mut pins: Vec<u32>,
        device: String,
        backend: Arc<dyn Backend>,
    ) -> Self {
        pins.sort_unstable();
        pins.dedup();
        Self {
            pins,
            device,
            backend,
        }
    }

    /// The line offsets the model may use, sorted.
    pub fn pins(&self) -> &[u32] {
        &self.pins
    }
}

#[derive(Deserialize)]
struct GpioArgs {
    action: String,
    #[serde(default)]
    pin: Option<Value>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    duration_ms: Option<Value>,
    #[serde(default)]
    edge: Option<String>,
    #[serde(default)]
    timeout_ms: Option<Value>,
    #[serde(default)]
    confirm: Option<Value>,
}

#[async_trait]
impl Tool for GpioTool {
    fn spec(&self) -> ToolSpec {
        let allowed = if self.pins.is_empty() {
            "none are allowed yet (tools.gpio.pins)".to_owned()
        } else {
            join(&self.pins)
        };
        ToolSpec::new(
            "gpio",
            format!(
                "GPIO lines of {}: read a pin (0/1), set it, pulse it, or wait for an edge. \
                 Allowed pins: {allowed}. Linux only.",
                self.device
            ),
            json!({"type": "object", "properties": {
                "action": {"type": "string", "enum": ["read", "write", "pulse", "wait_for_edge"]},
                "pin": {"type": "integer", "description": "Line offset on the chip; one of the allowed pins"},
                "value": {"type": "integer", "enum": [0, 1], "description": "Level to drive (write, pulse)"},
                "duration_ms": {"type": "integer", "description": "Pulse length, 1-10000 ms; the pin is then driven to the other level"},
                "edge": {"type": "string", "enum": ["rising", "falling", "both"], "description": "wait_for_edge: which edge (default both)"},
                "timeout_ms": {"type": "integer", "description": "wait_for_edge: 1-60000 ms (default 10000)"},
                "confirm": {"type": "boolean", "description": "Must be true to write or pulse"}
            }, "required": ["action", "pin"]}),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: GpioArgs = match parse("gpio", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        match self.run(args).await {
            Ok(text) => ToolOutput::ok(text),
            Err(e) => ToolOutput::error(format!("gpio: {e}")),
        }
    }
}

/// What one checked call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Read,
    Write(bool),
    Pulse(bool, Duration),
    Wait(Edge, Duration),
}

impl GpioTool {
    /// Checks everything the model sent, device untouched.
    fn check(&self, args: &GpioArgs) -> Result<(u32, Action), String> {
        let action = args.action.trim();
        if !matches!(action, "read" | "write" | "pulse" | "wait_for_edge") {
            return Err(format!(
                "unknown action '{}' ({ACTIONS})",
                shorten(&args.action)
            ));
        }
        let pin = match integer("pin", args.pin.as_ref())? {
            Some(p) => p,
            None => return Err("pin is required: the line offset, such as 17".into()),
        };
        if self.pins.is_empty() {
            return Err(
                "no pins are allowed: the owner lists the line offsets the agent may use in \
                 tools.gpio.pins"
                    .into(),
            );
        }
        let pin = u32::try_from(pin)
            .ok()
            .filter(|p| self.pins.contains(p))
            .ok_or_else(|| {
                format!(
                    "pin {pin} is not allowed; allowed pins: {} (tools.gpio.pins)",
                    join(&self.pins)
                )
            })?;
        let action = match action {
            "read" => Action::Read,
            "write" => Action::Write(level(args.value.as_ref())?),
            "pulse" => {
                let value = level(args.value.as_ref())?;
                let ms = match integer("duration_ms", args.duration_ms.as_ref())? {
                    Some(ms) => ms,
                    None => return Err("duration_ms is required (1-10000)".into()),
                };
                if !(1..=MAX_PULSE_MS as i128).contains(&ms) {
                    return Err(format!("duration_ms must be 1 to {MAX_PULSE_MS}, not {ms}"));
                }
                Action::Pulse(value, Duration::from_millis(ms as u64))
            }
            _ => {
                let edge = match args.edge.as_deref().map(str::trim) {
                    None | Some("both") => Edge::Both,
                    Some("rising") => Edge::Rising,
                    Some("falling") => Edge::Falling,
                    Some(other) => {
                        return Err(format!(
                            "edge must be rising, falling or both, not '{}'",
                            shorten(other)
                        ));
                    }
                };
                let ms = integer("timeout_ms", args.timeout_ms.as_ref())?
                    .unwrap_or(DEFAULT_WAIT_MS as i128);
                if !(1..=MAX_WAIT_MS as i128).contains(&ms) {
                    return Err(format!("timeout_ms must be 1 to {MAX_WAIT_MS}, not {ms}"));
                }
                Action::Wait(edge, Duration::from_millis(ms as u64))
            }
        };
        if matches!(action, Action::Write(_) | Action::Pulse(..))
            && args.confirm != Some(Value::Bool(true))
        {
            return Err(format!(
                "driving pin {pin} changes what is wired to it: call again with confirm: true"
            ));
        }
        Ok((pin, action))
    }

    async fn run(&self, args: GpioArgs) -> Result<String, String> {
        let (pin, action) = self.check(&args)?;
        let backend = Arc::clone(&self.backend);
        // Set when this call is dropped (the tool loop's timeout): the blocking work then stops.
        let abandoned = Arc::new(AtomicBool::new(false));
        let _guard = SetOnDrop(Arc::clone(&abandoned));
        let work = move || -> Result<String, String> {
            match action {
                Action::Read => {
                    let high = backend.read(pin)?;
                    Ok(format!("pin {pin}: {}", u8::from(high)))
                }
                Action::Write(high) => {
                    backend.write(pin, high)?;
                    Ok(format!("pin {pin} set to {}.", u8::from(high)))
                }
                Action::Pulse(high, length) => {
                    backend.write(pin, high)?;
                    let started = Instant::now();
                    let cut = sleep_unless(&abandoned, length);
                    let held = started.elapsed();
                    backend.write(pin, !high)?;
                    let ms = held.as_millis();
                    Ok(if cut {
                        format!(
                            "pulse on pin {pin} cut short after {ms} ms (the call was abandoned); \
                             it is now {}.",
                            u8::from(!high)
                        )
                    } else {
                        format!(
                            "pin {pin} pulsed to {} for {} ms; it is now {}.",
                            u8::from(high),
                            length.as_millis(),
                            u8::from(!high)
                        )
                    })
                }
                Action::Wait(edge, timeout) => {
                    let started = Instant::now();
                    match backend.wait_for_edge(pin, edge, timeout, &abandoned)? {
                        Some(seen) => Ok(format!(
                            "pin {pin}: {} edge after {} ms (kernel timestamp {} ns, {})",
                            if seen.rising { "rising" } else { "falling" },
                            started.elapsed().as_millis(),
                            seen.timestamp_ns,
                            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                        )),
                        None => Ok(format!(
                            "pin {pin}: timeout: no {} edge within {} ms",
                            edge.name(),
                            timeout.as_millis()
                        )),
                    }
                }
            }
        };
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| format!("the GPIO call failed: {e}"))?
    }
}

/// Sleeps `length` in slices; true when `abandoned` cut it short.
fn sleep_unless(abandoned: &AtomicBool, length: Duration) -> bool {
    let until = Instant::now() + length;
    loop {
        if abandoned.load(Ordering::Relaxed) {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(left.min(SLICE));
    }
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A whole number from the model: a JSON integer or a string of digits (`"17"`). Anything else
/// (fractions, booleans, lists, text) is refused by name. i128 so that any JSON integer fits
/// and range checks see the number as sent.
fn integer(name: &str, value: Option<&Value>) -> Result<Option<i128>, String> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(other) => {
            return Err(format!(
                "{name} must be a whole number, not {}",
                shorten(&other.to_string())
            ));
        }
    };
    let digits = text.strip_prefix('-').unwrap_or(&text);
    if digits.is_empty() || digits.len() > 30 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "{name} must be a whole number, not {}",
            shorten(&text)
        ));
    }
    text.parse::<i128>()
        .map(Some)
        .map_err(|_| format!("{name} {} is out of range", shorten(&text)))
}

/// `value`: 0/1 (also `true`/`false`, `"high"`/`"low"`).
fn level(value: Option<&Value>) -> Result<bool, String> {
    match value {
        None | Some(Value::Null) => Err("value is required: 0 (low) or 1 (high)".into()),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("high") => Ok(true),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("low") => Ok(false),
        other => match integer("value", other) {
            Ok(Some(0)) => Ok(false),
            Ok(Some(1)) => Ok(true),
            Ok(Some(n)) => Err(format!("value must be 0 or 1, not {n}")),
            _ => Err(format!(
                "value must be 0 or 1, not {}",
                shorten(&other.map(Value::to_string).unwrap_or_default())
            )),
        },
    }
}

fn join(pins: &[u32]) -> String {
    pins.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// At most 40 characters of what the model sent, for messages.
fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(40).collect();
    if text.chars().count() > 40 {
        out.push('…');
    }
    out
}
