//! `i2c(action, bus, address, register, data, length, confirm)` and
//! `spi(action, device, speed, mode, bits, data, length, confirm)` with the original PicoClaw's
//! names: talk to sensors and peripherals on a Linux board (Raspberry Pi, Sipeed LicheeRV...)
//! through `/dev/i2c-N` and `/dev/spidevB.C`, with `rppal` (feature `hardware`).
//!
//! Every argument is checked before any device is opened: bus numbers, 7-bit addresses
//! (0x03–0x77), register and data bytes (0–255), lengths (1–256), SPI speed and mode. Writes and
//! SPI transfers need `confirm: true`. A machine without the bus says so and how to enable it.

use crate::args::parse;
use crate::{Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_api::ToolSpec;
use serde::Deserialize;
use serde_json::{Value, json};

/// Most bytes one read or transfer moves.
pub(crate) const MAX_LEN: usize = 256;

fn bus_number(bus: &Option<Value>) -> Result<u8, String> {
    let text = match bus {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("bus is required (e.g. \"1\" for /dev/i2c-1)".into()),
    };
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "bus must be a number such as \"1\", not \"{text}\""
        ));
    }
    text.parse::<u8>()
        .map_err(|_| format!("bus {text} is out of range (0-255)"))
}

fn bytes(data: &Option<Vec<i64>>) -> Result<Vec<u8>, String> {
    let Some(data) = data else {
        return Err("data is required: a list of bytes (0-255)".into());
    };
    if data.is_empty() || data.len() > MAX_LEN {
        return Err(format!("data must hold 1 to {MAX_LEN} bytes"));
    }
    data.iter()
        .map(|b| u8::try_from(*b).map_err(|_| format!("{b} is not a byte (0-255)")))
        .collect()
}

fn length(len: Option<i64>) -> Result<usize, String> {
    let n = len.unwrap_or(1);
    if !(1..=MAX_LEN as i64).contains(&n) {
        return Err(format!("length must be 1 to {MAX_LEN}, not {n}"));
    }
    Ok(n as usize)
}

fn hex(data: &[u8]) -> String {
    data.iter()
        .map(|b| format!("0x{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The I2C buses this machine has.
pub fn i2c_buses() -> Vec<u8> {
    let mut buses: Vec<u8> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("i2c-")?.parse().ok())
        .collect();
    buses.sort_unstable();
    buses
}

const NO_I2C: &str = "Enable I2C (Raspberry Pi: `sudo raspi-config` → Interface Options → I2C; \
elsewhere `sudo modprobe i2c-dev` and the board's device tree), then check `ls /dev/i2c-*`.";

#[derive(Deserialize)]
struct I2cArgs {
    action: String,
    #[serde(default)]
    bus: Option<Value>,
    #[serde(default)]
    address: Option<i64>,
    #[serde(default)]
    register: Option<i64>,
    #[serde(default)]
    data: Option<Vec<i64>>,
    #[serde(default)]
    length: Option<i64>,
    #[serde(default)]
    confirm: Option<bool>,
}

/// The `i2c` tool.
#[derive(Debug, Clone, Default)]
pub struct I2cTool;

#[async_trait]
impl Tool for I2cTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "i2c",
            "I2C devices (sensors): detect buses, scan a bus, read or write bytes. Linux only.",
            json!({"type": "object", "properties": {
                "action": {"type": "string", "enum": ["detect", "scan", "read", "write"]},
                "bus": {"type": "string", "description": "\"1\" for /dev/i2c-1"},
                "address": {"type": "integer", "description": "7-bit, 0x03-0x77"},
                "register": {"type": "integer", "description": "Sent before read/write"},
                "data": {"type": "array", "items": {"type": "integer"}, "description": "Bytes to write"},
                "length": {"type": "integer", "description": "Bytes to read, 1-256"},
                "confirm": {"type": "boolean", "description": "Must be true to write"}
            }, "required": ["action"]}),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: I2cArgs = match parse("i2c", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        match run_i2c(args).await {
            Ok(text) => ToolOutput::ok(text),
            Err(e) => ToolOutput::error(format!("i2c: {e}")),
        }
    }
}

async fn run_i2c(args: I2cArgs) -> Result<String, String> {
    match args.action.as_str() {
        "detect" => {
            let buses = i2c_buses();
            if buses.is_empty() {
                return Ok(format!("No I2C buses on this machine. {NO_I2C}"));
            }
            Ok(format!(
                "I2C buses: {}",
                buses
                    .iter()
                    .map(|b| format!("{b} (/dev/i2c-{b})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        "scan" => {
            let bus = bus_number(&args.bus)?;
            let found = tokio::task::spawn_blocking(move || device::scan(bus))
                .await
                .map_err(|e| e.to_string())??;
            Ok(if found.is_empty() {
                format!("No devices answered on bus {bus}.")
            } else {
                format!("Devices on bus {bus}: {}", hex(&found))
            })
        }
        action @ ("read" | "write") => {
            let bus = bus_number(&args.bus)?;
            let address = match args.address {
                Some(a) if (0x03..=0x77).contains(&a) => a as u16,
                Some(a) => {
                    return Err(format!(
                        "address 0x{a:02x} is outside the 7-bit range 0x03-0x77"
                    ));
                }
                None => return Err("address is required (e.g. 0x38 for an AHT20)".into()),
            };
            let register = match args.register {
                Some(r) => Some(
                    u8::try_from(r).map_err(|_| format!("register {r} is not a byte (0-255)"))?,
                ),
                None => None,
            };
            if action == "read" {
                let len = length(args.length)?;
                let data =
                    tokio::task::spawn_blocking(move || device::read(bus, address, register, len))
                        .await
                        .map_err(|e| e.to_string())??;
                Ok(format!(
                    "Read {} byte(s) from 0x{address:02x}: {}",
                    data.len(),
                    hex(&data)
                ))
            } else {
                let data = bytes(&args.data)?;
                if args.confirm != Some(true) {
                    return Err("writing changes the device: call again with confirm: true".into());
                }
                let n = data.len();
                tokio::task::spawn_blocking(move || device::write(bus, address, register, &data))
                    .await
                    .map_err(|e| e.to_string())??;
                Ok(format!("Wrote {n} byte(s) to 0x{address:02x}."))
            }
        }
        other => Err(format!(
            "unknown action '{other}' (detect, scan, read, write)"
        )),
    }
}

#[derive(Deserialize)]
struct SpiArgs {
    action: String,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    speed: Option<i64>,
    #[serde(default)]
    mode: Option<i64>,
    #[serde(default)]
    bits: Option<i64>,
    #[serde(default)]
    data: Option<Vec<i64>>,
    #[serde(default)]
    length: Option<i64>,
    #[serde(default)]
    confirm: Option<bool>,
}

/// The `spi` tool.
#[derive(Debug, Clone, Default)]
pub struct SpiTool;

/// `"0.1"` → bus 0, chip select 1.
fn spi_device(device: &Option<String>) -> Result<(u8, u8), String> {
    let d = device.as_deref().map(str::trim).unwrap_or_default();
    let (b, c) = d.split_once('.').ok_or_else(|| {
        format!("device must be BUS.CS such as \"0.0\" (/dev/spidev0.0), not \"{d}\"")
    })?;
    let num = |s: &str| s.parse::<u8>().ok().filter(|n| *n <= 6);
    match (num(b), num(c)) {
        (Some(b), Some(c)) => Ok((b, c)),
        _ => Err(format!(
            "device \"{d}\": bus and chip select are small numbers (0-6)"
        )),
    }
}

#[async_trait]
impl Tool for SpiTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "spi",
            "SPI devices: list them, or transfer bytes (full duplex). Linux only.",
            json!({"type": "object", "properties": {
                "action": {"type": "string", "enum": ["list", "transfer", "read"]},
                "device": {"type": "string", "description": "\"0.0\" for /dev/spidev0.0"},
                "speed": {"type": "integer", "description": "Hz, default 1000000"},
                "mode": {"type": "integer", "description": "0-3, default 0"},
                "bits": {"type": "integer", "description": "Bits per word, 8"},
                "data": {"type": "array", "items": {"type": "integer"}, "description": "Bytes to send"},
                "length": {"type": "integer", "description": "Bytes to read, 1-256"},
                "confirm": {"type": "boolean", "description": "Must be true to transfer"}
            }, "required": ["action"]}),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: SpiArgs = match parse("spi", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        match run_spi(args).await {
            Ok(text) => ToolOutput::ok(text),
            Err(e) => ToolOutput::error(format!("spi: {e}")),
        }
    }
}

async fn run_spi(args: SpiArgs) -> Result<String, String> {
    if args.action == "list" {
        let mut devices: Vec<String> = std::fs::read_dir("/dev")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("spidev")
                    .map(str::to_owned)
            })
            .collect();
        devices.sort();
        return Ok(if devices.is_empty() {
            "No SPI devices on this machine. Enable SPI (Raspberry Pi: `sudo raspi-config` → \
             Interface Options → SPI), then check `ls /dev/spidev*`."
                .to_owned()
        } else {
            format!("SPI devices: {}", devices.join(", "))
        });
    }
    let (bus, cs) = spi_device(&args.device)?;
    let speed = args.speed.unwrap_or(1_000_000);
    if !(1_000..=125_000_000).contains(&speed) {
        return Err(format!("speed {speed} Hz is outside 1 kHz - 125 MHz"));
    }
    let mode = args.mode.unwrap_or(0);
    if !(0..=3).contains(&mode) {
        return Err(format!("mode must be 0-3, not {mode}"));
    }
    if args.bits.unwrap_or(8) != 8 {
        return Err("only 8 bits per word are supported".into());
    }
    let out = match args.action.as_str() {
        "transfer" => bytes(&args.data)?,
        "read" => vec![0u8; length(args.length)?],
        other => return Err(format!("unknown action '{other}' (list, transfer, read)")),
    };
    if args.confirm != Some(true) {
        return Err("a transfer drives the device: call again with confirm: true".into());
    }
    let data =
        tokio::task::spawn_blocking(move || device::spi(bus, cs, speed as u32, mode as u8, &out))
            .await
            .map_err(|e| e.to_string())??;
    Ok(format!(
        "Received {} byte(s) from spidev{bus}.{cs}: {}",
        data.len(),
        hex(&data)
    ))
}

/// The device access itself (rppal on Linux).
mod device {
    use super::NO_I2C;

    fn open_i2c(bus: u8) -> Result<rppal::i2c::I2c, String> {
        if !std::path::Path::new(&format!("/dev/i2c-{bus}")).exists() {
            return Err(format!(
                "there is no /dev/i2c-{bus} on this machine. {NO_I2C}"
            ));
        }
        rppal::i2c::I2c::with_bus(bus).map_err(|e| format!("cannot open /dev/i2c-{bus}: {e}"))
    }

    pub(super) fn scan(bus: u8) -> Result<Vec<u8>, String> {
        let mut i2c = open_i2c(bus)?;
        let mut found = Vec::new();
        for addr in 0x03u16..=0x77 {
            if i2c.set_slave_address(addr).is_ok() && i2c.smbus_receive_byte().is_ok() {
                found.push(addr as u8);
            }
        }
        Ok(found)
    }

    pub(super) fn read(
        bus: u8,
        addr: u16,
        register: Option<u8>,
        len: usize,
    ) -> Result<Vec<u8>, String> {
        let mut i2c = open_i2c(bus)?;
        i2c.set_slave_address(addr).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; len];
        match register {
            Some(r) => i2c.write_read(&[r], &mut buf).map_err(|e| e.to_string())?,
            None => {
                i2c.read(&mut buf).map_err(|e| e.to_string())?;
            }
        }
        Ok(buf)
    }

    pub(super) fn write(
        bus: u8,
        addr: u16,
        register: Option<u8>,
        data: &[u8],
    ) -> Result<(), String> {
        let mut i2c = open_i2c(bus)?;
        i2c.set_slave_address(addr).map_err(|e| e.to_string())?;
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.extend(register);
        frame.extend_from_slice(data);
        i2c.write(&frame).map_err(|e| e.to_string())?;
        Ok(())
    }

    pub(super) fn spi(
        bus: u8,
        cs: u8,
        speed: u32,
        mode: u8,
        out: &[u8],
    ) -> Result<Vec<u8>, String> {
        use rppal::spi::{Bus, Mode, SlaveSelect, Spi};
        let path = format!("/dev/spidev{bus}.{cs}");
        if !std::path::Path::new(&path).exists() {
            return Err(format!(
                "there is no {path} on this machine; enable SPI and check `ls /dev/spidev*`"
            ));
        }
        let bus = match bus {
            0 => Bus::Spi0,
            1 => Bus::Spi1,
            2 => Bus::Spi2,
            3 => Bus::Spi3,
            4 => Bus::Spi4,
            5 => Bus::Spi5,
            _ => Bus::Spi6,
        };
        let ss = match cs {
            0 => SlaveSelect::Ss0,
            1 => SlaveSelect::Ss1,
            _ => SlaveSelect::Ss2,
        };
        let mode = match mode {
            0 => Mode::Mode0,
            1 => Mode::Mode1,
            2 => Mode::Mode2,
            _ => Mode::Mode3,
        };
        let spi = Spi::new(bus, ss, speed, mode).map_err(|e| format!("cannot open {path}: {e}"))?;
        let mut input = vec![0u8; out.len()];
        spi.transfer(&mut input, out).map_err(|e| e.to_string())?;
        Ok(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoclaw_api::SessionKey;

    fn ctx() -> ToolContext {
        ToolContext::new(SessionKey::new("t"))
    }

    #[tokio::test]
    async fn i2c_arguments_are_checked_before_any_device() {
        let t = I2cTool;
        for (args, want) in [
            (
                json!({"action": "read", "bus": "1; rm -rf /", "address": 56}),
                "must be a number",
            ),
            (
                json!({"action": "read", "bus": "../1", "address": 56}),
                "must be a number",
            ),
            (
                json!({"action": "read", "bus": "999", "address": 56}),
                "out of range",
            ),
            (json!({"action": "read", "address": 56}), "bus is required"),
            (
                json!({"action": "read", "bus": "1", "address": 2}),
                "0x03-0x77",
            ),
            (
                json!({"action": "read", "bus": "1", "address": 120}),
                "0x03-0x77",
            ),
            (json!({"action": "read", "bus": "1"}), "address is required"),
            (
                json!({"action": "read", "bus": "1", "address": 56, "length": 0}),
                "1 to 256",
            ),
            (
                json!({"action": "read", "bus": "1", "address": 56, "length": 1000}),
                "1 to 256",
            ),
            (
                json!({"action": "read", "bus": "1", "address": 56, "register": 300}),
                "not a byte",
            ),
            (
                json!({"action": "write", "bus": "1", "address": 56, "data": [1, 256]}),
                "not a byte",
            ),
            (
                json!({"action": "write", "bus": "1", "address": 56, "data": []}),
                "1 to 256",
            ),
            (
                json!({"action": "write", "bus": "1", "address": 56, "data": [1]}),
                "confirm: true",
            ),
            (json!({"action": "blink"}), "unknown action"),
        ] {
            let out = t.call(&ctx(), args.clone()).await;
            assert!(
                out.is_error && out.content.contains(want),
                "{args}: {out:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_machine_without_the_bus_says_how_to_get_one() {
        // These machines have no I2C or SPI: the error paths are what runs here.
        let buses = i2c_buses();
        if !buses.is_empty() {
            // A board: detect lists what it has.
            let out = I2cTool.call(&ctx(), json!({"action": "detect"})).await;
            assert!(out.content.starts_with("I2C buses: "), "{out:?}");
            return;
        }
        let out = I2cTool.call(&ctx(), json!({"action": "detect"})).await;
        assert!(
            !out.is_error
                && out.content.contains("No I2C buses")
                && out.content.contains("raspi-config"),
            "{out:?}"
        );
        let out = I2cTool
            .call(&ctx(), json!({"action": "read", "bus": "1", "address": 56}))
            .await;
        assert!(
            out.is_error && out.content.contains("no /dev/i2c-1"),
            "{out:?}"
        );
        let out = I2cTool
            .call(&ctx(), json!({"action": "scan", "bus": 1}))
            .await;
        assert!(
            out.is_error && out.content.contains("modprobe i2c-dev"),
            "{out:?}"
        );
        let out = SpiTool.call(&ctx(), json!({"action": "list"})).await;
        assert!(out.content.contains("No SPI devices"), "{out:?}");
        let out = SpiTool
            .call(
                &ctx(),
                json!({"action": "transfer", "device": "0.0", "data": [159], "confirm": true}),
            )
            .await;
        assert!(
            out.is_error && out.content.contains("no /dev/spidev0.0"),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn spi_arguments_are_checked() {
        let t = SpiTool;
        for (args, want) in [
            (
                json!({"action": "transfer", "device": "0", "data": [1]}),
                "BUS.CS",
            ),
            (
                json!({"action": "transfer", "device": "0.9", "data": [1]}),
                "small numbers",
            ),
            (
                json!({"action": "transfer", "device": "0.0", "data": [1], "speed": 10}),
                "1 kHz",
            ),
            (
                json!({"action": "transfer", "device": "0.0", "data": [1], "mode": 4}),
                "0-3",
            ),
            (
                json!({"action": "transfer", "device": "0.0", "data": [1], "bits": 16}),
                "8 bits",
            ),
            (
                json!({"action": "transfer", "device": "0.0", "data": [300]}),
                "not a byte",
            ),
            (
                json!({"action": "transfer", "device": "0.0", "data": [1]}),
                "confirm: true",
            ),
            (
                json!({"action": "read", "device": "0.0", "length": 999, "confirm": true}),
                "1 to 256",
            ),
        ] {
            let out = t.call(&ctx(), args.clone()).await;
            assert!(
                out.is_error && out.content.contains(want),
                "{args}: {out:?}"
            );
        }
    }
}
