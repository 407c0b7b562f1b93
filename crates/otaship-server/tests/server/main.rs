//! The server's tests, in one binary sharing one harness (`support`): end to end over HTTP
//! (`e2e`), HTTPS in every mode (`https`), the uploaders' web UI (`ui`), pages in headless
//! Chromium (`browser`), and resumable uploads, channels and metadata, and the API description
//! (`uploads`), device enrollment and eligibility (`devices`), and webhooks (`webhooks`).
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

mod backends;
mod browser;
mod devices;
mod e2e;
mod https;
mod scale;
mod support;
mod ui;
mod uploads;
mod webhooks;
