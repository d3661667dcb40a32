//! The u-blox u-connectXpress AT command interface (NORA-W36 3.4.0 generation) for gattling.
//!
//! - [`engine`]: sans-IO line engine: bytes in, command lines and echo out; S3/S4/S5 registers,
//!   a bounded line buffer, resynchronisation at the next terminator after garbage.
//! - [`params`]: the manual's parameter types (integer, enumerator, quoted string with escapes,
//!   byte_array hex, bd_addr with `p`/`r`) with the manual's error code for each mistake.
//! - [`format`](mod@format): response, final result and URC lines, byte-exact.
//! - [`codes`]: the error codes of `error_codes.yaml` 3.4.0.
//! - `exec` (feature `runtime`): the command executor on gattling's tokio runtime.
//!
//! Without the `runtime` feature the crate is `no_std` + `alloc`, so the engine can run on a
//! microcontroller's UART.

#![cfg_attr(not(feature = "runtime"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod codes;
pub mod engine;
pub mod format;
pub mod params;

#[cfg(feature = "runtime")]
pub mod exec;

pub use codes::AtError;
