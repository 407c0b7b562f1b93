//! The server's tests, in one binary: end to end over HTTP (`e2e`), the uploaders' web UI
//! (`ui`), sharing one harness (`support`).
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

mod e2e;
mod support;
mod ui;
