//! The device layer under the `gpio` tool: a small trait, the Linux GPIO character device
//! (uAPI v2, `gpiocdev`) and the Raspberry Pi's GPIO (`rppal`). Every method blocks: the tool
//! calls them on the blocking pool.
//!
//! A line set by `write` (or `pulse`) stays requested as an output, so it keeps its level after
//! the call; a line only read (as it is: its direction unchanged) or watched (as an input) is
//! released when the call ends.

use super::SLICE;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Which edges a wait reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edge {
    Rising,
    Falling,
    Both,
}

impl Edge {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Edge::Rising => "rising",
            Edge::Falling => "falling",
            Edge::Both => "rising or falling",
        }
    }

    pub(crate) fn accepts(self, rising: bool) -> bool {
        match self {
            Edge::Rising => rising,
            Edge::Falling => !rising,
            Edge::Both => true,
        }
    }
}

/// An edge a wait saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EdgeSeen {
    pub(crate) rising: bool,
    /// The kernel's timestamp of the edge (monotonic clock, nanoseconds since boot).
    pub(crate) timestamp_ns: u64,
}

/// One chip's lines. Pins reaching here are on the allow-list already.
pub(crate) trait Backend: Send + Sync {
    /// The level of `pin` (true is high). An output reads back the level it drives.
    fn read(&self, pin: u32) -> Result<bool, String>;
    /// Drives `pin` to `high`, and keeps driving it after the call.
    fn write(&self, pin: u32, high: bool) -> Result<(), String>;
    /// Waits up to `timeout` for an `edge` on `pin` (an input); `None` on timeout. Gives up
    /// within [`SLICE`] once `abandoned` is set.
    fn wait_for_edge(
        &self,
        pin: u32,
        edge: Edge,
        timeout: Duration,
        abandoned: &AtomicBool,
    ) -> Result<Option<EdgeSeen>, String>;
}

/// The refusal to watch a line this process drives.
pub(crate) fn driven(pin: u32) -> String {
    format!(
        "pin {pin} is driven as an output (by an earlier write or pulse); waiting for an edge on \
         it would release it. Wire it to another allowed pin and wait on that one."
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Linux GPIO character device, `/dev/gpiochipN`.
pub(crate) struct Cdev {
    chip: PathBuf,
    /// Lines requested as outputs, kept so they keep their level.
    outputs: Mutex<HashMap<u32, gpiocdev::Request>>,
}

impl std::fmt::Debug for Cdev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cdev")
            .field("chip", &self.chip)
            .field("outputs", &lock(&self.outputs).keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Cdev {
    pub(crate) fn new(chip: PathBuf) -> Self {
        Self {
            chip,
            outputs: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the chip can be opened, with what to do when it cannot.
    fn check_chip(&self) -> Result<(), String> {
        let chip = self.chip.display();
        match std::fs::File::open(&self.chip) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "there is no {chip} on this machine. List the chips with `ls /dev/gpiochip*` (or \
                 `gpiodetect`) and set tools.gpio.chip."
            )),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(format!(
                "no permission to open {chip}: give the user running picoclaw access (the \
                 `gpio` group or a udev rule; see docs/hardware.md)"
            )),
            Err(e) => Err(format!("cannot open {chip}: {e}")),
        }
    }

    fn request(
        &self,
        pin: u32,
        setup: impl FnOnce(&mut gpiocdev::request::Builder),
    ) -> Result<gpiocdev::Request, String> {
        self.check_chip()?;
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(&self.chip)
            .with_consumer("picoclaw")
            .with_line(pin);
        setup(&mut builder);
        builder.request().map_err(|e| {
            format!(
                "cannot use line {pin} of {}: {e} (is it on this chip, and free? `gpioinfo` \
                 shows the lines and who uses them)",
                self.chip.display()
            )
        })
    }
}

fn value(high: bool) -> gpiocdev::line::Value {
    if high {
        gpiocdev::line::Value::Active
    } else {
        gpiocdev::line::Value::Inactive
    }
}

impl Backend for Cdev {
    fn read(&self, pin: u32) -> Result<bool, String> {
        let outputs = lock(&self.outputs);
        let got = match outputs.get(&pin) {
            Some(req) => req.value(pin),
            None => {
                drop(outputs);
                // As it is: reading does not turn an output some firmware set into an input.
                let req = self.request(pin, |b| {
                    b.as_is();
                })?;
                req.value(pin)
            }
        };
        got.map(|v| v == gpiocdev::line::Value::Active)
            .map_err(|e| format!("cannot read line {pin}: {e}"))
    }

    fn write(&self, pin: u32, high: bool) -> Result<(), String> {
        let mut outputs = lock(&self.outputs);
        if let Some(req) = outputs.get(&pin) {
            return req
                .set_value(pin, value(high))
                .map_err(|e| format!("cannot set line {pin}: {e}"));
        }
        let req = self.request(pin, |b| {
            b.as_output(value(high));
        })?;
        outputs.insert(pin, req);
        Ok(())
    }

    fn wait_for_edge(
        &self,
        pin: u32,
        edge: Edge,
        timeout: Duration,
        abandoned: &AtomicBool,
    ) -> Result<Option<EdgeSeen>, String> {
        if lock(&self.outputs).contains_key(&pin) {
            return Err(driven(pin));
        }
        let detection = match edge {
            Edge::Rising => gpiocdev::line::EdgeDetection::RisingEdge,
            Edge::Falling => gpiocdev::line::EdgeDetection::FallingEdge,
            Edge::Both => gpiocdev::line::EdgeDetection::BothEdges,
        };
        let req = self.request(pin, |b| {
            b.as_input().with_edge_detection(detection);
        })?;
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            if abandoned.load(Ordering::Relaxed) {
                return Err("the wait was abandoned".into());
            }
            let ready = req
                .wait_edge_event(left.min(SLICE))
                .map_err(|e| format!("cannot watch line {pin}: {e}"))?;
            if ready {
                let event = req
                    .read_edge_event()
                    .map_err(|e| format!("cannot read the edge on line {pin}: {e}"))?;
                let rising = event.kind == gpiocdev::line::EdgeKind::Rising;
                if edge.accepts(rising) {
                    return Ok(Some(EdgeSeen {
                        rising,
                        timestamp_ns: event.timestamp_ns,
                    }));
                }
            }
        }
    }
}

/// The Raspberry Pi's GPIO through rppal (BCM pin numbers).
#[derive(Default)]
pub(crate) struct Rpi {
    outputs: Mutex<HashMap<u8, rppal::gpio::OutputPin>>,
}

impl std::fmt::Debug for Rpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rpi")
            .field("outputs", &lock(&self.outputs).keys().collect::<Vec<_>>())
            .finish()
    }
}

fn bcm(pin: u32) -> Result<u8, String> {
    u8::try_from(pin).map_err(|_| format!("{pin} is not a Raspberry Pi BCM pin number"))
}

fn rpi_pin(pin: u8) -> Result<rppal::gpio::Pin, String> {
    let gpio = rppal::gpio::Gpio::new().map_err(|e| {
        format!(
            "cannot open the Raspberry Pi's GPIO: {e} (elsewhere use tools.gpio.backend \"cdev\")"
        )
    })?;
    gpio.get(pin)
        .map_err(|e| format!("cannot use GPIO {pin}: {e}"))
}

impl Backend for Rpi {
    fn read(&self, pin: u32) -> Result<bool, String> {
        let pin = bcm(pin)?;
        if let Some(out) = lock(&self.outputs).get(&pin) {
            return Ok(out.is_set_high());
        }
        // The pin as it is: reading does not change its mode.
        Ok(rpi_pin(pin)?.read() == rppal::gpio::Level::High)
    }

    fn write(&self, pin: u32, high: bool) -> Result<(), String> {
        let pin = bcm(pin)?;
        let mut outputs = lock(&self.outputs);
        if let Some(out) = outputs.get_mut(&pin) {
            out.write(high.into());
            return Ok(());
        }
        let p = rpi_pin(pin)?;
        let out = if high {
            p.into_output_high()
        } else {
            p.into_output_low()
        };
        outputs.insert(pin, out);
        Ok(())
    }

    fn wait_for_edge(
        &self,
        pin: u32,
        edge: Edge,
        timeout: Duration,
        abandoned: &AtomicBool,
    ) -> Result<Option<EdgeSeen>, String> {
        use rppal::gpio::Trigger;
        let bcm_pin = bcm(pin)?;
        if lock(&self.outputs).contains_key(&bcm_pin) {
            return Err(driven(pin));
        }
        let mut input = rpi_pin(bcm_pin)?.into_input();
        let trigger = match edge {
            Edge::Rising => Trigger::RisingEdge,
            Edge::Falling => Trigger::FallingEdge,
            Edge::Both => Trigger::Both,
        };
        input
            .set_interrupt(trigger, None)
            .map_err(|e| format!("cannot watch GPIO {pin}: {e}"))?;
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            if abandoned.load(Ordering::Relaxed) {
                return Err("the wait was abandoned".into());
            }
            let event = input
                .poll_interrupt(false, Some(left.min(SLICE)))
                .map_err(|e| format!("cannot watch GPIO {pin}: {e}"))?;
            if let Some(event) = event {
                let rising = matches!(event.trigger, Trigger::RisingEdge);
                if edge.accepts(rising) {
                    return Ok(Some(EdgeSeen {
                        rising,
                        timestamp_ns: u64::try_from(event.timestamp.as_nanos()).unwrap_or(u64::MAX),
                    }));
                }
            }
        }
    }
}
