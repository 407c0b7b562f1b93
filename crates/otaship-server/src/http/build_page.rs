//! The uploaders' pages about one build and one app's channels: a build's details (CI metadata,
//! release notes, install analytics, share links with the form to make one) and an app's
//! channels (their stable install pages and channel links).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::base_url;
use super::links::{LinkSettings, LinkTarget, create_link};
use super::pages::BuildView;
use super::share::{channel_page_token, channel_page_url, link_url};
use super::ui::{PageError, Session, private_page};
use crate::AppState;
use crate::db::{DbError, EventCounts, LinkFilter, LinkRow};
use crate::error::ApiError;
use crate::sharing::LinkState;

/// One metadata entry as the page shows it.
struct MetadataRow {
    label: String,
    value: String,
    /// The value as a link, when it is a web address.
    url: Option<String>,
}

/// What CI tools send, in words; other keys are shown as they are.
fn metadata_label(key: &str) -> String {
    match key {
        "git_branch" | "branch" => "Branch".to_owned(),
        "git_commit" | "commit" => "Commit".to_owned(),
        "git_tag" | "tag" => "Tag".to_owned(),
        "ci_url" | "ci_run_url" | "build_url" | "run_url" => "CI run".to_owned(),
        "ci_job" | "job" => "CI job".to_owned(),
        other => other.to_owned(),
    }
}

fn metadata_rows(metadata: &std::collections::BTreeMap<String, String>) -> Vec<MetadataRow> {
    metadata
        .iter()
        .map(|(key, value)| {
            let lower = value.trim().to_ascii_lowercase();
            // Only web addresses become links; `javascript:` and the like stay text.
            let url = (lower.starts_with("https://") || lower.starts_with("http://")).then(|| value.trim().to_owned());
            MetadataRow { label: metadata_label(key), value: value.clone(), url }
        })
        .collect()
}

/// A share link as the pages show it.
pub(crate) struct LinkView {
    id: String,
    url: String,
    label: String,
    protected: bool,
    expires: Option<String>,
    installs: u64,
    max_installs: Option<u64>,
    state: &'static str,
    stats: EventCounts,
    /// What it shares, in words (for channel links: the channel).
    target: String,
}

impl LinkView {
    async fn new(state: &AppState, link: &LinkRow, base: &str) -> Result<LinkView, ApiError> {
        state.analytics.flush().await;
        Ok(LinkView {
            id: link.id.clone(),
            url: link_url(base, link),
            label: link.label.clone().unwrap_or_default(),
            protected: link.password_hash.is_some(),
            expires: link.expires_at.map(minute),
            installs: link.installs,
            max_installs: link.max_installs,
            state: LinkState::of(link, OffsetDateTime::now_utc()).word(),
            stats: state.db.link_event_counts(&link.id).await?,
            target: match &link.channel {
                Some(channel) => format!("newest build of {channel}"),
                None => "this build".to_owned(),
            },
        })
    }
}

fn minute(at: OffsetDateTime) -> String {
    format!("{} UTC", crate::db::timestamp(at).get(..16).unwrap_or("").replace('T', " "))
}

/// Install attempts from one kind of device.
struct DeviceInstalls {
    model: String,
    os: String,
    installs: u64,
}

#[derive(Template)]
#[template(path = "build.html")]
struct BuildPage {
    signed_in_as: String,
    is_admin: bool,
    csrf: String,
    insecure: bool,
    b: BuildView,
    channel: String,
    channel_page: String,
    metadata: Vec<MetadataRow>,
    total: EventCounts,
    devices: Vec<DeviceInstalls>,
    links: Vec<LinkView>,
    created: Option<String>,
}

/// `?created=` after a link was made: the page points it out.
#[derive(Deserialize)]
pub struct CreatedQuery {
    created: Option<String>,
}

/// `GET /builds/{id}`: one build, for uploaders.
pub async fn build_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<CreatedQuery>,
) -> Result<Response, PageError> {
    let build = match state.db.build_by_id(&id).await {
        Ok(build) => build,
        Err(DbError::NotFound) => return Err(ApiError::not_found("The build").into()),
        Err(other) => return Err(other.into()),
    };
    let base = base_url(&state, &headers);
    state.analytics.flush().await;
    let total = state.db.build_event_counts(&build.id).await?;
    let devices = state
        .db
        .build_install_devices(&build.id)
        .await?
        .into_iter()
        .map(|row| DeviceInstalls {
            model: match row.device_model.as_deref() {
                Some(model) => match crate::devices::models::marketing_name(model) {
                    Some(name) => format!("{name} ({model})"),
                    None => model.to_owned(),
                },
                None => "Unknown device".to_owned(),
            },
            os: row.os_version.map(|os| format!("iOS {os}")).unwrap_or_else(|| "—".to_owned()),
            installs: row.count,
        })
        .collect();
    let mut links = Vec::new();
    for link in state.db.links(&LinkFilter { build_id: Some(build.id.clone()), bundle_id: None }).await? {
        links.push(LinkView::new(&state, &link, &base).await?);
    }
    let token = channel_page_token(&state, &build.bundle_id, &build.channel).await?;
    private_page(&BuildPage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.csrf_token().to_owned(),
        insecure: base.starts_with("http://"),
        channel: build.channel.clone(),
        channel_page: channel_page_url(&base, &token),
        metadata: metadata_rows(&build.metadata),
        total,
        devices,
        links,
        created: query.created,
        b: BuildView::new(&build, &base)?,
    })
}

/// The form that makes a share link.
#[derive(Deserialize)]
pub struct NewLinkForm {
    csrf: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    password: String,
    /// Days until it expires; empty for never.
    #[serde(default)]
    expires_in_days: String,
    /// Empty for no limit.
    #[serde(default)]
    max_installs: String,
}

impl NewLinkForm {
    fn settings(self) -> Result<LinkSettings, ApiError> {
        let number = |text: &str, what: &str| -> Result<Option<u64>, ApiError> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse::<u64>().map(Some).map_err(|_| {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "bad-link",
                    format!("{what} must be a whole number, or empty."),
                )
            })
        };
        let days = number(&self.expires_in_days, "Expires after (days)")?;
        if days.is_some_and(|days| days == 0 || days > 3650) {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "bad-link",
                "Expires after (days) must be between 1 and 3650, or empty for never.",
            ));
        }
        let expires_at =
            days.map(|days| OffsetDateTime::now_utc() + time::Duration::days(i64::try_from(days).unwrap_or(3650)));
        let password = Some(self.password).filter(|password| !password.is_empty());
        LinkSettings::new(password, expires_at, number(&self.max_installs, "Max installs")?, Some(self.label))
    }
}

/// `POST /builds/{id}/links`: share a build from its page.
pub async fn create_build_link_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<NewLinkForm>,
) -> Result<Response, PageError> {
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let build = match state.db.build_by_id(&id).await {
        Ok(build) => build,
        Err(DbError::NotFound) => return Err(ApiError::not_found("The build").into()),
        Err(other) => return Err(other.into()),
    };
    let link = create_link(&state, LinkTarget::Build(&build), form.settings()?).await?;
    Ok(Redirect::to(&format!("/builds/{}?created={}#links", build.id, link.id)).into_response())
}

/// `POST /apps/{bundle_id}/channels/{channel}/links`: share a channel from the channels page.
pub async fn create_channel_link_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path((bundle_id, channel)): Path<(String, String)>,
    Form(form): Form<NewLinkForm>,
) -> Result<Response, PageError> {
    session.check_request(&state, &headers, Some(&form.csrf))?;
    if state.db.latest_in_channel(&bundle_id, &channel).await?.is_none() {
        return Err(ApiError::not_found(&format!("A build of {bundle_id} in the channel {channel}")).into());
    }
    let target = LinkTarget::Channel { bundle_id: &bundle_id, channel: &channel };
    let link = create_link(&state, target, form.settings()?).await?;
    let path = percent_encoding::utf8_percent_encode(&bundle_id, percent_encoding::NON_ALPHANUMERIC);
    Ok(Redirect::to(&format!("/apps/{path}/channels?created={}#links", link.id)).into_response())
}

/// `POST /links/{id}/revoke`.
pub async fn revoke_link_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<super::ui::CsrfForm>,
) -> Result<Response, PageError> {
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let link = state.db.link_by_id(&id).await?.ok_or_else(|| ApiError::not_found("The link"))?;
    state.db.revoke_link(&link.id).await?;
    let back = match &link.build_id {
        Some(build_id) => format!("/builds/{build_id}#links"),
        None => format!(
            "/apps/{}/channels#links",
            percent_encoding::utf8_percent_encode(&link.bundle_id, percent_encoding::NON_ALPHANUMERIC)
        ),
    };
    Ok(Redirect::to(&back).into_response())
}

/// One channel on the channels page.
struct ChannelView {
    name: String,
    build_count: u64,
    page_url: String,
    latest: BuildView,
}

#[derive(Template)]
#[template(path = "channels.html")]
struct ChannelsPage {
    signed_in_as: String,
    is_admin: bool,
    csrf: String,
    insecure: bool,
    name: String,
    bundle_id: String,
    channels: Vec<ChannelView>,
    links: Vec<LinkView>,
    created: Option<String>,
}

/// `GET /apps/{bundle_id}/channels`: an app's channels, their stable pages, and channel links.
pub async fn channels_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(bundle_id): Path<String>,
    Query(query): Query<CreatedQuery>,
) -> Result<Response, PageError> {
    let rows = state.db.channels(&bundle_id).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(&format!("The app {bundle_id}")).into());
    }
    let base = base_url(&state, &headers);
    let mut channels = Vec::with_capacity(rows.len());
    for row in rows {
        let token = channel_page_token(&state, &bundle_id, &row.name).await?;
        channels.push(ChannelView {
            page_url: channel_page_url(&base, &token),
            latest: BuildView::new(&row.latest, &base)?,
            name: row.name,
            build_count: row.build_count,
        });
    }
    let mut links = Vec::new();
    let filter = LinkFilter { build_id: None, bundle_id: Some(bundle_id.clone()) };
    for link in state.db.links(&filter).await?.iter().filter(|link| link.channel.is_some()) {
        links.push(LinkView::new(&state, link, &base).await?);
    }
    private_page(&ChannelsPage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.csrf_token().to_owned(),
        insecure: base.starts_with("http://"),
        name: channels.first().map(|channel| channel.latest.name.clone()).unwrap_or_else(|| bundle_id.clone()),
        bundle_id,
        channels,
        links,
        created: query.created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_addresses_in_metadata_become_links() {
        let metadata = [
            ("ci_run_url", "https://ci.example.com/run/42"),
            ("git_branch", "main"),
            ("evil", "javascript:alert(1)"),
            ("custom", "HTTP://EXAMPLE.COM"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        let rows = metadata_rows(&metadata);
        let find = |label: &str| rows.iter().find(|row| row.label == label).expect(label);
        assert_eq!(find("CI run").url.as_deref(), Some("https://ci.example.com/run/42"));
        assert_eq!(find("Branch").url, None);
        assert_eq!(find("evil").url, None);
        assert_eq!(find("custom").url.as_deref(), Some("HTTP://EXAMPLE.COM"));
    }
}
