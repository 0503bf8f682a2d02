#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.
//! The `gpio` tool on a real GPIO character device: a chip made with the kernel's gpio-sim
//! (configfs), whose lines' pulls stand for the outside world and whose sysfs shows what the
//! tool drives. Needs root, configfs and the gpio-sim module. Where they are missing the test
//! prints why and returns; with `PICOCLAW_TEST_GPIO_SIM=1` a missing gpio-sim fails it instead
//! (for a runner known to have it).
#![cfg(all(feature = "hardware", target_os = "linux"))]

use picoclaw_api::SessionKey;
use picoclaw_tools::{GpioSection, GpioTool, Tool, ToolContext};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CONFIGFS: &str = "/sys/kernel/config/gpio-sim";

/// A simulated chip of 8 lines, removed on drop.
struct SimChip {
    dir: PathBuf,
    /// `/dev/gpiochipN`.
    dev: PathBuf,
    /// `/sys/devices/platform/gpio-sim.N/gpiochipN`.
    sysfs: PathBuf,
}

impl SimChip {
    fn make() -> Result<Self, String> {
        use std::os::unix::fs::MetadataExt;
        // /proc/self belongs to the process's effective user.
        if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
            return Err("not running as root (gpio-sim chips are made through configfs)".into());
        }
        if !Path::new(CONFIGFS).is_dir() {
            // Load the module and mount configfs where that is possible; errors show below.
            let _ = std::process::Command::new("modprobe")
                .arg("gpio-sim")
                .status();
            if !Path::new("/sys/kernel/config").is_dir()
                || std::fs::read_dir("/sys/kernel/config")
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(true)
            {
                let _ = std::process::Command::new("mount")
                    .args(["-t", "configfs", "none", "/sys/kernel/config"])
                    .status();
            }
        }
        if !Path::new(CONFIGFS).is_dir() {
            return Err(format!(
                "no {CONFIGFS}: this kernel has no gpio-sim (CONFIG_GPIO_SIM) loaded or configfs \
                 is not mounted (`modprobe gpio-sim; mount -t configfs none /sys/kernel/config`)"
            ));
        }
        let dir = PathBuf::from(CONFIGFS).join(format!("picoclaw-{}", std::process::id()));
        let fail = |what: &str, e: std::io::Error| format!("gpio-sim: {what}: {e}");
        std::fs::create_dir(&dir).map_err(|e| fail("making the device", e))?;
        let mut chip = Self {
            dir: dir.clone(),
            dev: PathBuf::new(),
            sysfs: PathBuf::new(),
        };
        let bank = dir.join("bank0");
        std::fs::create_dir(&bank).map_err(|e| fail("making the bank", e))?;
        std::fs::write(bank.join("num_lines"), "8").map_err(|e| fail("num_lines", e))?;
        std::fs::write(dir.join("live"), "1").map_err(|e| fail("going live", e))?;
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p)
                .map(|s| s.trim().to_owned())
                .map_err(|e| format!("gpio-sim: reading {}: {e}", p.display()))
        };
        let dev_name = read(dir.join("dev_name"))?;
        let chip_name = read(bank.join("chip_name"))?;
        chip.dev = PathBuf::from("/dev").join(&chip_name);
        chip.sysfs = PathBuf::from("/sys/devices/platform")
            .join(dev_name)
            .join(chip_name);
        Ok(chip)
    }

    fn line(&self, offset: u32) -> PathBuf {
        self.sysfs.join(format!("sim_gpio{offset}"))
    }

    /// The outside world pulls a line up or down.
    fn pull(&self, offset: u32, up: bool) {
        let pull = if up { "pull-up" } else { "pull-down" };
        std::fs::write(self.line(offset).join("pull"), pull).unwrap();
    }

    /// The level on a line (what the tool drives, when it drives it).
    fn value(&self, offset: u32) -> String {
        std::fs::read_to_string(self.line(offset).join("value"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Whether some program has requested the line.
    fn in_use(&self, offset: u32) -> bool {
        gpiocdev::Chip::from_path(&self.dev)
            .and_then(|c| c.line_info(offset))
            .map(|i| i.used)
            .unwrap_or(false)
    }
}

impl Drop for SimChip {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("live"), "0");
        let _ = std::fs::remove_dir(self.dir.join("bank0"));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

async fn call(tool: &GpioTool, args: Value) -> (bool, String) {
    let out = tool
        .call(&ToolContext::new(SessionKey::new("sim")), args)
        .await;
    (out.is_error, out.content)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gpio_tool_drives_and_reads_a_gpio_sim_chip() {
    let chip = match SimChip::make() {
        Ok(chip) => chip,
        Err(reason) => {
            if std::env::var("PICOCLAW_TEST_GPIO_SIM").as_deref() == Ok("1") {
                panic!("PICOCLAW_TEST_GPIO_SIM=1 but gpio-sim is unavailable: {reason}");
            }
            println!("SKIPPED (gpio-sim unavailable): {reason}");
            eprintln!("SKIPPED (gpio-sim unavailable): {reason}");
            return;
        }
    };
    let section: GpioSection = serde_json::from_value(json!({
        "enabled": true, "chip": chip.dev.display().to_string(), "pins": [0, 1, 2]
    }))
    .unwrap();
    let tool = GpioTool::from_section(&section).unwrap();

    // read: the pull is what an input sees.
    chip.pull(0, false);
    assert_eq!(
        call(&tool, json!({"action": "read", "pin": 0})).await,
        (false, "pin 0: 0".to_owned())
    );
    chip.pull(0, true);
    assert_eq!(
        call(&tool, json!({"action": "read", "pin": 0})).await,
        (false, "pin 0: 1".to_owned())
    );

    // write: refused without confirm, then driven (and kept after the call).
    let (err, said) = call(&tool, json!({"action": "write", "pin": 1, "value": 1})).await;
    assert!(err && said.contains("confirm: true"), "{said}");
    let (err, said) = call(
        &tool,
        json!({"action": "write", "pin": 1, "value": 1, "confirm": true}),
    )
    .await;
    assert!(!err, "{said}");
    assert_eq!(chip.value(1), "1");
    assert_eq!(
        call(&tool, json!({"action": "read", "pin": 1})).await,
        (false, "pin 1: 1".to_owned())
    );

    // pulse: low for 50 ms, then high again.
    let (err, said) = call(
        &tool,
        json!({"action": "pulse", "pin": 1, "value": 0, "duration_ms": 50, "confirm": true}),
    )
    .await;
    assert!(!err, "{said}");
    assert_eq!(chip.value(1), "1");

    // wait_for_edge: the outside world pulls line 2 up once the tool watches it.
    chip.pull(2, false);
    let wait = call(
        &tool,
        json!({"action": "wait_for_edge", "pin": 2, "edge": "rising", "timeout_ms": 5000}),
    );
    let outside = async {
        let started = Instant::now();
        while !chip.in_use(2) {
            assert!(started.elapsed() < Duration::from_secs(5), "no wait began");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        chip.pull(2, true);
    };
    let ((err, said), ()) = tokio::join!(wait, outside);
    assert!(
        !err && said.starts_with("pin 2: rising edge after "),
        "{said}"
    );
    let (err, said) = call(
        &tool,
        json!({"action": "wait_for_edge", "pin": 2, "timeout_ms": 100}),
    )
    .await;
    assert!(!err && said.contains("timeout"), "{said}");

    // A line of the chip that is not on the list.
    let (err, said) = call(&tool, json!({"action": "read", "pin": 3})).await;
    assert!(err && said.contains("allowed pins: 0, 1, 2"), "{said}");
}
