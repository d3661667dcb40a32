//! The host state machine.
