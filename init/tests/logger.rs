//! The logger is process-global, so its end-to-end behaviour is tested in its own
//! test binary where no other test can log into the fixture consoles.

use std::path::Path;
use ze_init::logger::{self, RING};

fn fixture() -> (tempfile::TempDir, tempfile::TempDir) {
    let sys = tempfile::tempdir().unwrap();
    let dev = tempfile::tempdir().unwrap();
    let p = sys.path().join("class/tty/console");
    std::fs::create_dir_all(&p).unwrap();
    // ttyGONE is listed but has no device node: it must be skipped, not fatal.
    std::fs::write(p.join("active"), "ttyS1 ttyGONE").unwrap();
    std::fs::write(dev.path().join("ttyS0"), "").unwrap();
    std::fs::write(dev.path().join("ttyS1"), "").unwrap();
    (sys, dev)
}

fn read(dev: &Path, tty: &str) -> String {
    std::fs::read_to_string(dev.join(tty)).unwrap()
}

#[test]
fn every_console_gets_every_line_and_the_ring_keeps_the_tail() {
    let (sys, dev) = fixture();
    logger::init(
        logger::Target::Consoles {
            sys_root: sys.path(),
            dev_root: dev.path(),
            // ttyS0 is not active (one console per driver) but named on the cmdline.
            cmdline: "console=ttyS1,115200 console=ttyS0",
        },
        log::LevelFilter::Info,
    );
    assert_eq!(logger::console_names(), vec!["ttyS1", "ttyS0"]);
    log::debug!("hidden at info level");
    for i in 0..(RING + 5) {
        log::info!("line {i}");
    }
    log::warn!("careful");
    logger::fatal(
        "config",
        &"ze.port: \"99999\" is not a port number (1-65535)",
    );
    for tty in ["ttyS0", "ttyS1"] {
        let text = read(dev.path(), tty);
        assert!(!text.contains("hidden"), "{text}");
        assert!(text.contains("s] line 0\n"), "{text}");
        assert!(text.contains("s] warning: careful\n"), "{text}");
        assert!(text.starts_with("[ze-install] [+"), "{text}");
        assert!(text.ends_with(
            "[ze-install] FATAL: config: ze.port: \"99999\" is not a port number (1-65535)\n"
        ));
        assert_eq!(text.lines().count(), RING + 7);
    }
    let ring = logger::recent();
    assert_eq!(ring.len(), RING);
    assert!(ring[0].ends_with("line 7"), "{:?}", ring[0]);
    assert!(ring[RING - 1].contains("FATAL: config"));

    // Raising the level hides info lines from then on.
    logger::set_level(log::LevelFilter::Error);
    log::info!("after level change");
    assert!(!read(dev.path(), "ttyS0").contains("after level change"));
}
