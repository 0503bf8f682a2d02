//! The `gpio` tool end to end over [`Loopback`], an in-memory chip whose lines can be wired
//! together (an output's level reaches the wired input, with an edge), and the `cdev` backend's
//! no-hardware paths.

use super::backend::{Backend, Edge, EdgeSeen, driven};
use super::*;
use picoclaw_api::SessionKey;
use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex};

#[derive(Debug, Default)]
struct Sim {
    levels: HashMap<u32, bool>,
    outputs: HashSet<u32>,
    /// Pairs of lines wired together.
    wires: Vec<(u32, u32)>,
    /// Every edge: line, rising, time.
    edges: Vec<(u32, bool, u64)>,
    /// What reached the device, in order.
    log: Vec<String>,
    /// Waits in progress.
    waiting: usize,
}

/// An in-memory chip.
#[derive(Debug)]
struct Loopback {
    sim: Mutex<Sim>,
    changed: Condvar,
    born: Instant,
}

impl Loopback {
    fn new(wires: &[(u32, u32)]) -> Arc<Self> {
        Arc::new(Self {
            sim: Mutex::new(Sim {
                wires: wires.to_vec(),
                ..Sim::default()
            }),
            changed: Condvar::new(),
            born: Instant::now(),
        })
    }

    fn sim(&self) -> std::sync::MutexGuard<'_, Sim> {
        self.sim.lock().unwrap()
    }

    fn set(&self, sim: &mut Sim, pin: u32, high: bool) {
        let partners: Vec<u32> = sim
            .wires
            .iter()
            .filter_map(|&(a, b)| {
                if a == pin {
                    Some(b)
                } else if b == pin {
                    Some(a)
                } else {
                    None
                }
            })
            .collect();
        let now = self.born.elapsed().as_nanos() as u64;
        for line in std::iter::once(pin).chain(partners) {
            let was = sim.levels.insert(line, high).unwrap_or(false);
            if was != high {
                sim.edges.push((line, high, now));
            }
        }
        self.changed.notify_all();
    }

    /// The outside world drives an input.
    fn drive(&self, pin: u32, high: bool) {
        let mut sim = self.sim();
        self.set(&mut sim, pin, high);
    }

    fn level(&self, pin: u32) -> bool {
        self.sim().levels.get(&pin).copied().unwrap_or(false)
    }

    fn log(&self) -> Vec<String> {
        self.sim().log.clone()
    }

    fn waiting(&self) -> usize {
        self.sim().waiting
    }

    /// Waits until a wait is in progress (so an edge made now is seen).
    async fn until_waiting(&self) {
        for _ in 0..400 {
            if self.waiting() > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no wait started");
    }
}

impl Backend for Loopback {
    fn read(&self, pin: u32) -> Result<bool, String> {
        let mut sim = self.sim();
        sim.log.push(format!("read {pin}"));
        Ok(sim.levels.get(&pin).copied().unwrap_or(false))
    }

    fn write(&self, pin: u32, high: bool) -> Result<(), String> {
        let mut sim = self.sim();
        sim.log.push(format!("write {pin} {}", u8::from(high)));
        sim.outputs.insert(pin);
        self.set(&mut sim, pin, high);
        Ok(())
    }

    fn wait_for_edge(
        &self,
        pin: u32,
        edge: Edge,
        timeout: Duration,
        abandoned: &AtomicBool,
    ) -> Result<Option<EdgeSeen>, String> {
        let until = Instant::now() + timeout;
        let mut sim = self.sim();
        sim.log.push(format!("wait {pin} {}", edge.name()));
        if sim.outputs.contains(&pin) {
            return Err(driven(pin));
        }
        let from = sim.edges.len();
        sim.waiting += 1;
        let result = loop {
            if let Some(&(_, rising, t)) = sim.edges[from..]
                .iter()
                .find(|(line, rising, _)| *line == pin && edge.accepts(*rising))
            {
                break Ok(Some(EdgeSeen {
                    rising,
                    timestamp_ns: t,
                }));
            }
            if abandoned.load(Ordering::Relaxed) {
                break Err("the wait was abandoned".into());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ok(None);
            }
            sim = self.changed.wait_timeout(sim, left.min(SLICE)).unwrap().0;
        };
        sim.waiting -= 1;
        result
    }
}

fn ctx() -> ToolContext {
    ToolContext::new(SessionKey::new("t"))
}

/// Pins 17, 22 and 27 allowed; 17 wired to 27.
fn board() -> (GpioTool, Arc<Loopback>) {
    let chip = Loopback::new(&[(17, 27)]);
    let tool = GpioTool::with_backend(vec![27, 17, 22, 17], "/dev/gpiochip0".into(), chip.clone());
    (tool, chip)
}

async fn ok(tool: &GpioTool, args: Value) -> String {
    let out = tool.call(&ctx(), args.clone()).await;
    assert!(!out.is_error, "{args}: {out:?}");
    out.content
}

async fn refused(tool: &GpioTool, args: Value, want: &str) {
    let out = tool.call(&ctx(), args.clone()).await;
    assert!(
        out.is_error && out.content.contains(want),
        "{args}: wanted an error with {want:?}, got {out:?}"
    );
}

#[tokio::test]
async fn read_write_and_pulse_reach_the_chip() {
    let (tool, chip) = board();
    assert_eq!(tool.pins(), &[17, 22, 27]);
    assert_eq!(
        ok(&tool, json!({"action": "read", "pin": 22})).await,
        "pin 22: 0"
    );
    chip.drive(22, true);
    assert_eq!(
        ok(&tool, json!({"action": "read", "pin": "22"})).await,
        "pin 22: 1"
    );

    let said = ok(
        &tool,
        json!({"action": "write", "pin": 17, "value": 1, "confirm": true}),
    )
    .await;
    assert_eq!(said, "pin 17 set to 1.");
    assert!(
        chip.level(17) && chip.level(27),
        "the wire carries the level"
    );
    assert_eq!(
        ok(&tool, json!({"action": "read", "pin": 27})).await,
        "pin 27: 1"
    );
    ok(
        &tool,
        json!({"action": "write", "pin": 17, "value": "low", "confirm": true}),
    )
    .await;
    assert!(!chip.level(27));

    let started = Instant::now();
    let said = ok(
        &tool,
        json!({"action": "pulse", "pin": 17, "value": 1, "duration_ms": 120, "confirm": true}),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(120), "{said}");
    assert_eq!(said, "pin 17 pulsed to 1 for 120 ms; it is now 0.");
    assert!(!chip.level(17));
    assert_eq!(
        chip.log(),
        [
            "read 22",
            "read 22",
            "write 17 1",
            "read 27",
            "write 17 0",
            "write 17 1",
            "write 17 0"
        ]
    );
    // The pulse made two edges on the wired input.
    let edges: Vec<bool> = chip
        .sim()
        .edges
        .iter()
        .filter(|e| e.0 == 27)
        .map(|e| e.1)
        .collect();
    assert_eq!(edges, [true, false, true, false]);
}

#[tokio::test]
async fn wait_for_edge_sees_a_pulse_on_a_wired_pin() {
    let (tool, chip) = board();
    let c = ctx();
    let wait = tool.call(
        &c,
        json!({"action": "wait_for_edge", "pin": 27, "edge": "falling", "timeout_ms": 5000}),
    );
    let pulse = async {
        chip.until_waiting().await;
        ok(
            &tool,
            json!({"action": "pulse", "pin": 17, "value": true, "duration_ms": 30, "confirm": true}),
        )
        .await
    };
    let (waited, pulsed) = tokio::join!(wait, pulse);
    assert!(pulsed.contains("pulsed to 1 for 30 ms"), "{pulsed}");
    // The rising edge came first; only the falling one answers this wait.
    assert!(
        !waited.is_error
            && waited.content.starts_with("pin 27: falling edge after ")
            && waited.content.contains("kernel timestamp "),
        "{waited:?}"
    );

    // Both edges (the default): the first one answers.
    let wait = tool.call(&c, json!({"action": "wait_for_edge", "pin": 22}));
    let outside = async {
        chip.until_waiting().await;
        chip.drive(22, true);
    };
    let (waited, ()) = tokio::join!(wait, outside);
    assert!(
        waited.content.starts_with("pin 22: rising edge after "),
        "{waited:?}"
    );
    assert_eq!(chip.waiting(), 0);
}

#[tokio::test]
async fn wait_for_edge_times_out() {
    let (tool, chip) = board();
    let c = ctx();
    let started = Instant::now();
    let said = ok(
        &tool,
        json!({"action": "wait_for_edge", "pin": 22, "edge": "rising", "timeout_ms": 80}),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(80));
    assert_eq!(said, "pin 22: timeout: no rising edge within 80 ms");
    // An edge the wait does not ask for does not end it.
    let wait = tool.call(
        &c,
        json!({"action": "wait_for_edge", "pin": 22, "edge": "falling", "timeout_ms": 150}),
    );
    let outside = async {
        chip.until_waiting().await;
        chip.drive(22, true);
    };
    let (waited, ()) = tokio::join!(wait, outside);
    assert_eq!(
        waited.content,
        "pin 22: timeout: no falling edge within 150 ms"
    );
}

#[tokio::test]
async fn a_driven_pin_is_not_watched() {
    let (tool, chip) = board();
    ok(
        &tool,
        json!({"action": "write", "pin": 17, "value": 0, "confirm": true}),
    )
    .await;
    refused(
        &tool,
        json!({"action": "wait_for_edge", "pin": 17, "timeout_ms": 10}),
        "driven as an output",
    )
    .await;
    assert!(!chip.level(17));
}

#[tokio::test]
async fn unlisted_pins_are_refused_naming_the_allowed_list() {
    let (tool, chip) = board();
    for args in [
        json!({"action": "read", "pin": 4}),
        json!({"action": "write", "pin": 4, "value": 1, "confirm": true}),
        json!({"action": "pulse", "pin": 18, "value": 1, "duration_ms": 5, "confirm": true}),
        json!({"action": "wait_for_edge", "pin": 23}),
    ] {
        refused(&tool, args, "is not allowed; allowed pins: 17, 22, 27").await;
    }
    let none = GpioTool::with_backend(Vec::new(), "/dev/gpiochip0".into(), chip.clone());
    refused(
        &none,
        json!({"action": "read", "pin": 17}),
        "no pins are allowed",
    )
    .await;
    assert!(none.spec().description.contains("none are allowed yet"));
    assert!(chip.log().is_empty(), "{:?}", chip.log());
}

#[tokio::test]
async fn writes_and_pulses_need_confirm() {
    let (tool, chip) = board();
    for confirm in [
        None,
        Some(json!(false)),
        Some(json!("true")),
        Some(json!(1)),
    ] {
        for mut args in [
            json!({"action": "write", "pin": 17, "value": 1}),
            json!({"action": "pulse", "pin": 17, "value": 1, "duration_ms": 10}),
        ] {
            if let Some(c) = &confirm {
                args["confirm"] = c.clone();
            }
            refused(&tool, args, "call again with confirm: true").await;
        }
    }
    assert!(chip.log().is_empty(), "{:?}", chip.log());
    assert!(!chip.level(17));
}

#[tokio::test]
async fn hostile_arguments_are_refused_before_the_chip() {
    let (tool, chip) = board();
    let w = |extra: Value| {
        let mut args = json!({"action": "pulse", "pin": 17, "value": 1, "duration_ms": 10,
                              "confirm": true});
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        args
    };
    for (args, want) in [
        (
            json!({"action": "blink", "pin": 17}),
            "unknown action 'blink'",
        ),
        (json!({"action": "", "pin": 17}), "unknown action"),
        (json!({"pin": 17}), "invalid arguments"),
        (json!({"action": "read"}), "pin is required"),
        (
            json!({"action": "read", "pin": -1}),
            "pin -1 is not allowed",
        ),
        (
            json!({"action": "read", "pin": 4_294_967_313u64}),
            "pin 4294967313 is not allowed",
        ),
        (
            json!({"action": "read", "pin": u64::MAX}),
            "is not allowed; allowed pins",
        ),
        (
            json!({"action": "read", "pin": -9_223_372_036_854_775_808i64}),
            "is not allowed",
        ),
        (json!({"action": "read", "pin": 17.0}), "whole number"),
        (json!({"action": "read", "pin": 1e300}), "whole number"),
        (
            json!({"action": "read", "pin": "17; rm -rf /"}),
            "whole number",
        ),
        (json!({"action": "read", "pin": "../17"}), "whole number"),
        (json!({"action": "read", "pin": true}), "whole number"),
        (json!({"action": "read", "pin": [17]}), "whole number"),
        (
            json!({"action": "read", "pin": "9".repeat(400)}),
            "whole number",
        ),
        (w(json!({"duration_ms": 10_001})), "1 to 10000"),
        (w(json!({"duration_ms": 0})), "1 to 10000"),
        (w(json!({"duration_ms": -5})), "1 to 10000"),
        (w(json!({"duration_ms": u64::MAX})), "1 to 10000"),
        (w(json!({"duration_ms": 1e18})), "whole number"),
        (w(json!({"duration_ms": null})), "duration_ms is required"),
        (w(json!({"value": 2})), "0 or 1"),
        (w(json!({"value": -1})), "0 or 1"),
        (w(json!({"value": "on"})), "0 or 1"),
        (w(json!({"value": null})), "value is required"),
        (
            json!({"action": "write", "pin": 17, "confirm": true}),
            "value is required",
        ),
        (
            json!({"action": "wait_for_edge", "pin": 22, "timeout_ms": 60_001}),
            "1 to 60000",
        ),
        (
            json!({"action": "wait_for_edge", "pin": 22, "timeout_ms": 0}),
            "1 to 60000",
        ),
        (
            json!({"action": "wait_for_edge", "pin": 22, "timeout_ms": i64::MIN}),
            "1 to 60000",
        ),
        (
            json!({"action": "wait_for_edge", "pin": 22, "edge": "sideways"}),
            "rising, falling or both",
        ),
        (
            json!({"action": "wait_for_edge", "pin": 22, "edge": 1}),
            "invalid arguments",
        ),
        (json!("read 17"), "invalid arguments"),
    ] {
        refused(&tool, args, want).await;
    }
    assert!(chip.log().is_empty(), "{:?}", chip.log());
}

#[tokio::test]
async fn an_abandoned_wait_or_pulse_stops_and_the_pulse_drives_back() {
    let (tool, chip) = board();
    let c = ctx();
    // The tool loop's timeout drops the call: the blocking wait ends soon after.
    let call = tool.call(
        &c,
        json!({"action": "wait_for_edge", "pin": 22, "timeout_ms": 60000}),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(100), call)
            .await
            .is_err()
    );
    let started = Instant::now();
    while chip.waiting() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the wait went on"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let call = tool.call(
        &c,
        json!({"action": "pulse", "pin": 17, "value": 1, "duration_ms": 10000, "confirm": true}),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(100), call)
            .await
            .is_err()
    );
    let started = Instant::now();
    while chip.log().len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the pulse went on: {:?}",
            chip.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(chip.log()[1..], ["write 17 1", "write 17 0"]);
    assert!(!chip.level(17), "driven back after the cut");
}

#[test]
fn the_section_builds_the_tool() {
    let section: GpioSection = serde_json::from_value(json!({"enabled": true})).unwrap();
    assert_eq!(section.chip, "/dev/gpiochip0");
    assert!(section.pins.is_empty());
    let tool = GpioTool::from_section(&section).unwrap();
    assert!(tool.pins().is_empty());
    assert!(tool.spec().description.contains("/dev/gpiochip0"));

    let section: GpioSection =
        serde_json::from_value(json!({"chip": "/dev/gpiochip4", "pins": [27, 17]})).unwrap();
    let tool = GpioTool::from_section(&section).unwrap();
    assert_eq!(tool.pins(), &[17, 27]);
    assert!(tool.spec().description.contains("Allowed pins: 17, 27"));

    for (section, want) in [
        (json!({"backend": "sysfs"}), "not one of"),
        (json!({"chip": " "}), "chip is empty"),
        (
            json!({"backend": "rppal", "pins": [300]}),
            "not a Raspberry Pi BCM pin",
        ),
    ] {
        let section: GpioSection = serde_json::from_value(section).unwrap();
        let err = GpioTool::from_section(&section).unwrap_err();
        assert!(err.contains(want), "{err}");
    }
    assert!(serde_json::from_value::<GpioSection>(json!({"pins": [-1]})).is_err());
}

#[tokio::test]
async fn the_character_device_says_how_to_get_a_chip() {
    // No chip at this path (none on these machines; a board has its own numbering).
    let section: GpioSection = serde_json::from_value(
        json!({"enabled": true, "chip": "/dev/gpiochip-picoclaw-absent", "pins": [5]}),
    )
    .unwrap();
    let tool = GpioTool::from_section(&section).unwrap();
    for args in [
        json!({"action": "read", "pin": 5}),
        json!({"action": "write", "pin": 5, "value": 1, "confirm": true}),
        json!({"action": "wait_for_edge", "pin": 5, "timeout_ms": 10}),
    ] {
        refused(
            &tool,
            args,
            "there is no /dev/gpiochip-picoclaw-absent on this machine",
        )
        .await;
    }
    // A file that is no GPIO chip: the request fails with the line named.
    let file = tempfile::NamedTempFile::new().unwrap();
    let section: GpioSection =
        serde_json::from_value(json!({"chip": file.path().to_str().unwrap(), "pins": [5]}))
            .unwrap();
    let tool = GpioTool::from_section(&section).unwrap();
    refused(
        &tool,
        json!({"action": "read", "pin": 5}),
        "cannot use line 5 of",
    )
    .await;
}
