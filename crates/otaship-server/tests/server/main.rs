//! The server's tests, in one binary sharing one harness (`support`): end to end over HTTP
//! (`e2e`), HTTPS in every mode (`https`), the uploaders' web UI (`ui`), and pages in headless
//! Chromium (`browser`).
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

mod browser;
mod e2e;
mod https;
mod support;
mod ui;
