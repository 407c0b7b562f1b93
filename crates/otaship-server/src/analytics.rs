//! Install analytics: which device and iOS version a request came from, and recording what
//! happened (page views, manifest fetches, downloads started and completed) without ever
//! failing, or holding up, the request that triggered it.
//!
//! Events are handed to a [`Recorder`], whose task writes them in batches: a page view used to
//! wait for its own `INSERT` and commit, which capped the install page and the manifest at
//! about 4,000 requests/s on SQLite (a third of what they served before analytics). Whatever
//! queued while one batch was written goes into the next, so under load a commit carries many
//! events, and when idle each is written at once. Readers of the counts flush first
//! ([`Recorder::flush`]), so this instance's own events are always counted; a crash loses at
//! most the batch being written.
//!
//! The iOS installer identifies itself as
//! `com.apple.appstored/1.0 iOS/18.2 model/iPhone15,2 hwp/t8120 build/22C152 (6; dt:283) AMS/1`
//! (older releases: `itunesstored/1.0 iOS/12.4 model/iPhone8,1 ...`): the exact model and iOS
//! version. Safari, on the install page, gives only iPhone or iPad and the iOS version (frozen
//! at 18.x from iOS 26 on, which is still the best there is).

use axum::http::{HeaderMap, header};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::AppState;
use crate::db::{Db, Event, EventKind};

/// The device a request came from, as far as its user agent tells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// Model identifier (`iPhone15,2`) or kind (`iPhone`, `iPad`).
    pub device_model: Option<String>,
    /// iOS version (`18.2`).
    pub os_version: Option<String>,
}

/// Longest user agent looked at; anything longer is not a device's.
const MAX_USER_AGENT: usize = 512;

impl Client {
    /// What the request's `User-Agent` tells.
    pub fn of(headers: &HeaderMap) -> Client {
        headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .filter(|agent| agent.len() <= MAX_USER_AGENT)
            .map(Client::from_user_agent)
            .unwrap_or_default()
    }

    /// Parses the installer's user agent, else a browser's on iOS.
    pub fn from_user_agent(agent: &str) -> Client {
        let field = |name: &str| {
            agent
                .split_ascii_whitespace()
                .find_map(|word| word.strip_prefix(name))
                .filter(|value| is_plain(value, b"-_,."))
                .map(str::to_owned)
        };
        let installer = Client { device_model: field("model/"), os_version: field("iOS/") };
        if installer.device_model.is_some() || installer.os_version.is_some() {
            return installer;
        }
        let kind = ["iPad", "iPhone", "iPod"].into_iter().find(|kind| agent.contains(&format!("({kind};")));
        let version = kind.and_then(|_| {
            let after = agent.split(" OS ").nth(1)?;
            let version = after.split_ascii_whitespace().next()?.replace('_', ".");
            is_plain(&version, b".").then_some(version)
        });
        Client { device_model: kind.map(str::to_owned), os_version: version }
    }
}

/// Short, and only letters, digits and the given punctuation: what model names and versions
/// are made of (anything else is not recorded).
fn is_plain(text: &str, punctuation: &[u8]) -> bool {
    !text.is_empty()
        && text.len() <= 32
        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || punctuation.contains(&byte))
}

/// Records an event from a request's user agent. Never fails and never waits: counting must
/// not stop a tester from installing.
pub async fn record(state: &AppState, headers: &HeaderMap, build_id: &str, link_id: Option<&str>, kind: EventKind) {
    let client = Client::of(headers);
    record_for(state, build_id, link_id, kind, client).await;
}

/// Records an event for a known client.
pub async fn record_for(state: &AppState, build_id: &str, link_id: Option<&str>, kind: EventKind, client: Client) {
    state.analytics.record(Event {
        build_id: build_id.to_owned(),
        link_id: link_id.map(str::to_owned),
        kind,
        device_model: client.device_model,
        os_version: client.os_version,
    });
}

/// Events waiting to be written, at most: a burst beyond this (far beyond what one instance
/// serves while a batch is written) is dropped with a warning rather than held in memory.
const QUEUE: usize = 16_384;

/// Events written in one transaction, at most.
const MAX_BATCH: usize = 1_024;

enum Message {
    Event(Event, OffsetDateTime),
    /// Answered once every event queued before it is written (or failed).
    Flush(oneshot::Sender<()>),
}

/// Writes install events off the request path, in batches.
#[derive(Debug)]
pub struct Recorder {
    queue: mpsc::Sender<Message>,
}

impl Recorder {
    /// Starts the writing task; it ends when the last `Recorder` handle is dropped and the
    /// queue is written.
    pub fn start(db: Db) -> Recorder {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(db, waiting));
        Recorder { queue }
    }

    /// Queues an event, stamped now.
    pub fn record(&self, event: Event) {
        let build_id = event.build_id.clone();
        if let Err(error) = self.queue.try_send(Message::Event(event, OffsetDateTime::now_utc())) {
            tracing::warn!(build.id = %build_id, %error, "dropped an install event: the queue is full");
        }
    }

    /// Waits until every event queued before this call is written, so that counts read next
    /// include them.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

async fn write_batches(db: Db, mut waiting: mpsc::Receiver<Message>) {
    let mut events = Vec::new();
    let mut flushes = Vec::new();
    while let Some(first) = waiting.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(event, at) => events.push((event, at)),
                Message::Flush(done) => flushes.push(done),
            }
            if events.len() < MAX_BATCH {
                next = waiting.try_recv().ok();
            }
        }
        if !events.is_empty() {
            if let Err(error) = db.record_events(&events).await {
                tracing::warn!(count = events.len(), %error, "could not record install events");
            }
            events.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Client;

    fn client(model: Option<&str>, os: Option<&str>) -> Client {
        Client { device_model: model.map(str::to_owned), os_version: os.map(str::to_owned) }
    }

    #[test]
    fn the_installer_names_the_model_and_ios_version() {
        assert_eq!(
            Client::from_user_agent(
                "com.apple.appstored/1.0 iOS/18.2 model/iPhone15,2 hwp/t8120 build/22C152 (6; dt:283) AMS/1"
            ),
            client(Some("iPhone15,2"), Some("18.2"))
        );
        assert_eq!(
            Client::from_user_agent("itunesstored/1.0 iOS/12.4.1 model/iPad7,5 hwp/t8010 build/16G102 (5; dt:152)"),
            client(Some("iPad7,5"), Some("12.4.1"))
        );
    }

    #[test]
    fn safari_names_the_kind_of_device_and_ios_version() {
        assert_eq!(
            Client::from_user_agent(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) \
                 Version/18.1 Mobile/15E148 Safari/604.1"
            ),
            client(Some("iPhone"), Some("18.1"))
        );
        assert_eq!(
            Client::from_user_agent("Mozilla/5.0 (iPad; CPU OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15"),
            client(Some("iPad"), Some("17.4.1"))
        );
    }

    #[test]
    fn anything_else_tells_nothing() {
        for agent in [
            "",
            "curl/8.5.0",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36",
            "evil model/<script>alert(1)</script> iOS/1\"",
            "model/ iOS/",
        ] {
            assert_eq!(Client::from_user_agent(agent), Client::default(), "{agent}");
        }
    }
}
