//! Documented exit codes.

/// Everything succeeded.
pub const SUCCESS: i32 = 0;
/// A node failed while running the plan.
pub const NODE_FAILED: i32 = 1;
/// The manifest or the command line is wrong; a diagnostic is on stderr.
pub const USAGE: i32 = 2;
/// Interrupted (Ctrl-C / SIGTERM).
pub const INTERRUPTED: i32 = 130;
