//! The server's tests, in one binary sharing one harness (`support`): end to end over HTTP
//! (`e2e`), HTTPS in every mode (`https`), the uploaders' web UI (`ui`), pages in headless
//! Chromium (`browser`), and resumable uploads, channels and metadata, and the API description
//! (`uploads`), a full disk (`faults`), device enrollment and eligibility (`devices`), token
//! scopes, accounts, roles
//! and sign-in limits (`accounts`), the database and object storage stopped under a running
//! server (`outages`), retention rules and the Storage page (`retention`), share links,
//! channels and install analytics (`sharing`), webhooks (`webhooks`), and the security checks
//! over every route (`security`).
#![expect(clippy::expect_used, reason = "test helpers cannot go on without their input")]

mod accounts;
mod backends;
mod browser;
mod devices;
mod e2e;
mod faults;
mod https;
mod outages;
mod retention;
mod scale;
mod security;
mod sharing;
mod support;
mod ui;
mod uploads;
mod webhooks;
