//! The real `kernel-configs/`, checked without a kernel tree (plain `cargo test`):
//! every fragment option has its why-comment, every required symbol is asked for as
//! `=y` by the profile's own fragments (a required symbol left to a default would be a
//! surprise), and the profiles build on each other as documented.

use qemu_harness::kbuild::{PROFILES, Profile};
use qemu_harness::workspace_root;

fn load(name: &str) -> Profile {
    Profile::load(&workspace_root().join("kernel-configs"), name)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn every_profile_loads_and_asks_for_each_required_symbol() {
    for (name, _) in PROFILES {
        let p = load(name);
        let requested = p.requested();
        let not_asked: Vec<String> = p
            .required
            .iter()
            .filter(|r| requested.get(&r.symbol).map(|s| s.value.as_str()) != Some("y"))
            .map(|r| format!("{} ({})", r.symbol, r.origin))
            .collect();
        assert!(
            not_asked.is_empty(),
            "{name}: required but not set =y by its fragments: {not_asked:?}"
        );
    }
}

#[test]
fn hardware_is_a_superset_of_qemu() {
    let q = load("qemu");
    let h = load("hardware");
    for r in &q.required {
        assert!(
            h.required.iter().any(|x| x.symbol == r.symbol),
            "{} is required by qemu but not by hardware",
            r.symbol
        );
    }
}

#[test]
fn each_profile_names_itself_in_the_release() {
    for (name, _) in PROFILES {
        let p = load(name);
        assert_eq!(
            p.requested()["CONFIG_LOCALVERSION"].value,
            format!("\"-ze-{name}\"")
        );
    }
}

#[test]
fn kernel_ip_autoconfiguration_stays_off() {
    // ze-init runs DHCP itself (kernel-configs/README.md explains why).
    for (name, _) in PROFILES {
        let v = load(name).requested()["CONFIG_IP_PNP"].value.clone();
        assert_eq!(v, "n", "{name}");
    }
}
