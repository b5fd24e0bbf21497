//! Arbitrary bytes as packets received by the DHCP client: through IPv4/UDP parsing and
//! into the state machine in every state that reads replies. The body lives in
//! `ze_init::net::dhcp::fuzz` so `cargo test` replays the corpus without a fuzzer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ze_init::net::dhcp::fuzz::run(data);
});
