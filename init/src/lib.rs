//! ze-init: the installer that runs as PID 1 in the initrd, and the same code as a
//! host command for tests and operators. `main.rs` only chooses between the two.
#![deny(unsafe_code)]

pub mod boot;
pub mod cli;
pub mod config;
pub mod disk;
pub mod fault;
pub mod install;
pub mod logger;
pub mod modules;
pub mod net;
pub mod pid1;
pub mod rescue;
pub mod source;
pub mod status;
pub mod sys;
pub mod write;
