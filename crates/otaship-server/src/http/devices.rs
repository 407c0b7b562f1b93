//! Device routes: enrollment through Apple's Profile Service (public: a tester's iPhone must be
//! able to enroll without an account), the devices page and API for the people who upload
//! (names, exports in Apple's format and CSV, which devices can install a build), and the
//! device panel of install pages.

use askama::Template;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use otaship_ipa::device::{Eligibility, Listing, OsCheck};
use otaship_ipa::{IpaError, Limits};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::api::AdminToken;
use super::ui::{CsrfForm, PageError, Session, cookie, private_page};
use super::{ClientIp, base_url, request_host};
use crate::db::{BuildRow, DeviceRow, Enrolled, timestamp};
use crate::devices::{self, CHALLENGE_LIFETIME, DEVICE_COOKIE, DEVICE_COOKIE_LIFETIME, verify};
use crate::error::ApiError;
use crate::ratelimit::{self, Limit};
use crate::{AppState, tokens};

/// Where an enrollment started: the install page to lead back to.
#[derive(Debug, Deserialize)]
pub struct ReturnQuery {
    #[serde(rename = "return")]
    return_to: Option<String>,
}

impl ReturnQuery {
    /// The install token, when it looks like one (never used unchecked in a URL).
    fn token(&self) -> Option<&str> {
        self.return_to.as_deref().filter(|token| token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

#[derive(Template)]
#[template(path = "enroll.html")]
struct EnrollPage {
    profile_url: String,
    page_url: String,
    qr_svg: std::sync::Arc<str>,
    return_url: Option<String>,
    insecure: bool,
}

/// `GET /devices/enroll`: what registering does, and the profile to download.
pub async fn enroll_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ReturnQuery>,
) -> Result<Response, PageError> {
    let base = base_url(&state, &headers);
    let suffix = query.token().map(|token| format!("?return={token}")).unwrap_or_default();
    let page_url = format!("{base}/devices/enroll{suffix}");
    let page = EnrollPage {
        profile_url: format!("/devices/enroll.mobileconfig{suffix}"),
        qr_svg: super::pages::qr_svg(&page_url)?,
        page_url,
        return_url: query.token().map(|token| format!("/i/{token}")),
        insecure: base.starts_with("http://"),
    };
    let html = page.render().map_err(ApiError::internal)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

/// Enrollment profiles one client address (an IPv6 client's /64) may download per window. Each
/// is signed and its challenge remembered for an hour, so an unbounded stream of downloads would
/// cost CPU and database rows; a whole office behind one address still registers its devices.
pub(crate) const PROFILES_PER_ADDRESS: Limit = Limit { failures: 60, window: std::time::Duration::from_secs(60 * 60) };
/// Device replies that do not check out (unreadable, badly signed, unknown challenge) allowed
/// from one client address per window; a device's own reply fails only when something is wrong.
pub(crate) const BAD_REPLIES_PER_ADDRESS: Limit =
    Limit { failures: 20, window: std::time::Duration::from_secs(15 * 60) };

/// `GET /devices/enroll.mobileconfig`: a signed Profile Service profile with a fresh one-time
/// challenge.
pub async fn enrollment_profile(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(query): Query<ReturnQuery>,
) -> Result<Response, ApiError> {
    ratelimit::count_use(&state.db, &ratelimit::client_key("enroll-profile", ip), PROFILES_PER_ADDRESS).await?;
    let challenge = tokens::random_hex(32);
    let expires_at = OffsetDateTime::now_utc() + CHALLENGE_LIFETIME;
    state.db.insert_enrollment(&tokens::hash(&challenge), expires_at, query.token()).await?;
    let base = base_url(&state, &headers);
    let host = request_host(&state, &headers);
    let plist = devices::enrollment_profile(&format!("{base}/devices/enroll/callback"), &challenge, &host)
        .map_err(ApiError::internal)?;
    let identity = state.devices.signing_identity(state.tls.as_deref());
    let signed =
        devices::cms_sign::sign_attached(&plist, &identity, OffsetDateTime::now_utc()).map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-apple-aspen-config"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"otaship-enroll.mobileconfig\""),
            (header::CACHE_CONTROL, "no-store"),
        ],
        signed,
    )
        .into_response())
}

/// `POST /devices/enroll/callback`: the device's signed reply. Answers `301` to the result page,
/// which Safari then opens. Replies that fail are counted per client address.
pub async fn enrollment_callback(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = ratelimit::client_key("enroll-reply", ip);
    let _turn = ratelimit::one_at_a_time().await;
    ratelimit::check(&state.db, &key, BAD_REPLIES_PER_ADDRESS).await?;
    let answer = record_reply(&state, &headers, &body).await;
    if answer.as_ref().is_err_and(|error| error.status.is_client_error()) {
        ratelimit::record_failure(&state.db, &key).await?;
    }
    answer
}

/// Checks a device's reply and records the device; the answer to send it.
async fn record_reply(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let reply = otaship_ipa::device::read_device_reply(body, &Limits::default()).map_err(reply_error)?;
    let verified = verify::verify_reply(&reply.signed, &state.devices.trust).map_err(|rejected| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "device-reply-signature",
            format!("{rejected}; install the enrollment profile again."),
        )
    })?;
    let challenge = reply.attributes.challenge.as_deref().ok_or_else(enrollment_expired)?;
    let result_token = tokens::random_hex(16);
    let enrolled = state
        .db
        .record_enrollment(
            &tokens::hash(challenge),
            &reply.attributes,
            verified,
            &tokens::random_hex(8),
            &tokens::hash(&result_token),
        )
        .await?;
    match enrolled {
        Enrolled::Recorded(device) => {
            tracing::info!(device = %device.id, verified, "device enrolled");
            let location = format!("{}/devices/enrolled/{result_token}", base_url(state, headers));
            let location = HeaderValue::from_str(&location).map_err(ApiError::internal)?;
            Ok((StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response())
        }
        Enrolled::UnknownChallenge => Err(enrollment_expired()),
    }
}

fn reply_error(error: IpaError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, error.code(), error.to_string())
}

fn enrollment_expired() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "enrollment-expired",
        "This enrollment was already used, has expired, or was never handed out; open /devices/enroll and download \
         the profile again.",
    )
}

/// A device as pages show it.
pub struct DeviceView {
    /// API id.
    pub id: String,
    /// Name to show.
    pub name: String,
    /// The name an uploader gave it, for the rename form.
    pub given_name: String,
    /// Model in words.
    pub model: String,
    /// Model identifier.
    pub product: String,
    /// `17.4`, `about 18.0`, or a dash.
    pub ios: String,
    /// OS build or a dash.
    pub os_build: String,
    /// Canonical UDID.
    pub udid: String,
    /// Signed by Apple's device CA.
    pub verified: bool,
    /// Last seen, to the minute.
    pub last_seen: String,
}

impl DeviceView {
    fn new(device: &DeviceRow) -> Self {
        let (version, exact) = devices::os_version(device);
        DeviceView {
            id: device.id.clone(),
            name: devices::display_name(device),
            given_name: device.name.clone().unwrap_or_default(),
            model: devices::model_name(device),
            product: device.product.clone().unwrap_or_else(|| "—".to_owned()),
            ios: match version {
                Some(version) if exact => version,
                Some(version) => format!("about {version}"),
                None => "—".to_owned(),
            },
            os_build: device.os_build.clone().unwrap_or_else(|| "—".to_owned()),
            udid: device.udid.clone(),
            verified: device.verified,
            last_seen: minute(device.last_seen_at),
        }
    }
}

fn minute(at: OffsetDateTime) -> String {
    format!("{} UTC", timestamp(at).get(..16).unwrap_or("").replace('T', " "))
}

/// A build a device can install, as the result page lists it.
struct InstallableBuild {
    name: String,
    version: String,
    install_url: String,
}

#[derive(Template)]
#[template(path = "enrolled.html")]
struct EnrolledPage {
    device: DeviceView,
    builds: Vec<InstallableBuild>,
    /// Builds are listed only for a device Apple certified, or to a signed-in uploader.
    builds_listed: bool,
    return_url: Option<String>,
    insecure: bool,
}

/// `GET /devices/enrolled/{token}`: the device's UDID, model and version, the builds it can
/// install; sets the cookie by which install pages recognise it.
pub async fn enrolled_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, PageError> {
    let found = match token.len() == 32 && token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        true => state.db.enrolled_device(&tokens::hash(&token)).await?,
        false => None,
    };
    let Some((mut device, return_token)) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "This registration page has expired. Open /devices/enroll on the device to register it again.",
        )
        .into());
    };
    if let Some(version) = user_agent(&headers).and_then(|agent| devices::safari_os_version(agent, &device)) {
        record_visit(&state, &device, Some(&version)).await;
        device.os_version = Some(version);
    }
    let signed_in = Session::from_headers(&state, &headers).await?.is_some();
    let builds_listed = device.verified || signed_in;
    let mut builds = Vec::new();
    if builds_listed {
        let base = base_url(&state, &headers);
        for app in state.db.list_apps().await? {
            let build = app.latest;
            let Ok(verdict) = devices::assess(&build, &device) else { continue };
            if verdict.can_install() && verdict.listing == Listing::Listed {
                builds.push(InstallableBuild {
                    name: build.name.clone().unwrap_or_else(|| build.bundle_id.clone()),
                    version: build.version.clone().unwrap_or_default(),
                    install_url: format!("{base}/i/{}", build.install_token),
                });
            }
        }
    }
    let secure = base_url(&state, &headers).starts_with("https://");
    let page = EnrolledPage {
        device: DeviceView::new(&device),
        builds,
        builds_listed,
        return_url: return_token.map(|token| format!("/i/{token}")),
        insecure: !secure,
    };
    let mut response = private_page(&page)?;
    response.headers_mut().insert(header::SET_COOKIE, device_cookie(&state.devices.cookie_value(&device.id), secure)?);
    Ok(response)
}

fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::USER_AGENT).and_then(|value| value.to_str().ok())
}

/// The cookie naming the browser's device. `SameSite=Lax` (not `Strict`): install links arrive
/// from chat and mail, and the page must recognise the device on that first, cross-site visit.
fn device_cookie(value: &str, secure: bool) -> Result<HeaderValue, ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{DEVICE_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        DEVICE_COOKIE_LIFETIME.whole_seconds()
    ))
    .map_err(ApiError::internal)
}

/// What an install page says about the visitor's own device.
pub struct DevicePanel {
    /// The device.
    pub device: DeviceView,
    /// Whether nothing known stops the install.
    pub ok: bool,
    /// Sentences, most important first.
    pub lines: Vec<String>,
    /// Whether the UDID is missing from a profile (the page then offers to copy it).
    pub not_listed: bool,
}

/// The device the request's cookie names, if the cookie is genuine and the device still known;
/// records the visit.
pub async fn visiting_device(state: &AppState, headers: &HeaderMap) -> Result<Option<DeviceRow>, ApiError> {
    let Some(id) = cookie(headers, DEVICE_COOKIE).and_then(|value| state.devices.device_id_from_cookie(value)) else {
        return Ok(None);
    };
    let Some(mut device) = state.db.device(id).await? else { return Ok(None) };
    let version = user_agent(headers).and_then(|agent| devices::safari_os_version(agent, &device));
    record_visit(state, &device, version.as_deref()).await;
    if version.is_some() {
        device.os_version = version;
    }
    Ok(Some(device))
}

/// Records a device's visit. A failure is logged, never returned: the page works without it
/// (a full disk must not stop a tester from installing).
async fn record_visit(state: &AppState, device: &DeviceRow, os_version: Option<&str>) {
    if let Err(error) = state.db.device_seen(device, os_version).await {
        tracing::warn!(device = %device.id, %error, "could not record a device's visit");
    }
}

/// The install page's panel for `device` and `build`.
pub fn device_panel(build: &BuildRow, device: &DeviceRow) -> Result<Option<DevicePanel>, ApiError> {
    let verdict = devices::assess(build, device).map_err(ApiError::internal)?;
    let view = DeviceView::new(device);
    let mut lines = Vec::new();
    let who = format!("Your {} ({})", view.model, view.udid);
    match &verdict.listing {
        Listing::Listed => lines.push(format!("{who} is in this build's provisioning profile.")),
        Listing::NotListed { missing_from } => {
            let which = if missing_from.iter().all(|bundle| bundle == "the app") {
                String::new()
            } else {
                format!(" (missing from: {})", missing_from.join(", "))
            };
            lines.push(format!(
                "{who} is not in this build's provisioning profile{which}, so iOS will refuse to install it. Send this \
                 UDID to the developer: once the device is added to the profile and a new build is uploaded, it will install."
            ));
        }
        Listing::AnyDevice => lines
            .push("This build installs on any device (enterprise distribution): no device check is needed.".to_owned()),
        Listing::NotDistributable => return Ok(None),
    }
    if let OsCheck::TooOld { required, running } = &verdict.os {
        lines.push(format!(
            "This build needs iOS {required} or later; your {} runs iOS {running}. Update it in Settings > General > \
             Software Update.",
            view.model
        ));
    }
    if verdict.ipad_only_on_phone {
        lines.push("This build runs only on iPad; it cannot be installed on this iPhone.".to_owned());
    }
    Ok(Some(DevicePanel {
        ok: verdict.can_install(),
        not_listed: matches!(verdict.listing, Listing::NotListed { .. }),
        device: view,
        lines,
    }))
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    signed_in_as: String,
    is_admin: bool,
    csrf: String,
    devices: Vec<DeviceView>,
    enroll_url: String,
    insecure: bool,
}

/// `GET /devices`: every enrolled device, with names to edit and exports.
pub async fn devices_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let base = base_url(&state, &headers);
    let devices = state.db.devices().await?.iter().map(DeviceView::new).collect();
    private_page(&DevicesPage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.csrf_token().to_owned(),
        devices,
        enroll_url: format!("{base}/devices/enroll"),
        insecure: base.starts_with("http://"),
    })
}

/// The rename form.
#[derive(Deserialize)]
pub struct RenameForm {
    csrf: String,
    name: String,
}

/// Longest device name kept (Apple's portal allows 50 characters; a little slack for notes).
const MAX_DEVICE_NAME_CHARS: usize = 100;

fn clean_name(name: &str) -> Option<String> {
    let name: String = name.chars().filter(|c| !c.is_control()).take(MAX_DEVICE_NAME_CHARS).collect();
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// `POST /devices/{id}/rename`.
pub async fn rename_device_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<RenameForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    if !state.db.rename_device(&id, clean_name(&form.name).as_deref()).await? {
        return Err(ApiError::not_found("The device").into());
    }
    Ok(Redirect::to("/devices").into_response())
}

/// `POST /devices/{id}/delete`.
pub async fn delete_device_form(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    if !state.db.delete_device(&id).await? {
        return Err(ApiError::not_found("The device").into());
    }
    Ok(Redirect::to("/devices").into_response())
}

/// Export formats.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ExportQuery {
    /// `apple` (the tab-separated file Apple's portal imports) or `csv`.
    format: Option<String>,
}

/// `GET /devices/export`: the web UI's export.
pub async fn export_form(
    State(state): State<AppState>,
    _session: Session,
    Query(query): Query<ExportQuery>,
) -> Result<Response, PageError> {
    Ok(export(&state, query.format.as_deref()).await?)
}

/// `GET /api/v1/devices/export`.
#[utoipa::path(get, path = "/api/v1/devices/export", tag = "devices", params(ExportQuery),
    responses((status = 200, description = "The file", content_type = "text/plain"), (status = 400, body = crate::error::ErrorJson),
        (status = 401, body = crate::error::ErrorJson), (status = 403, body = crate::error::ErrorJson)),
    security(("token" = [])))]
pub async fn export_api(
    State(state): State<AppState>,
    _token: AdminToken,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    export(&state, query.format.as_deref()).await
}

async fn export(state: &AppState, format: Option<&str>) -> Result<Response, ApiError> {
    let devices = state.db.devices().await?;
    let (body, content_type, file_name) = match format.unwrap_or("apple") {
        "apple" => (apple_device_file(&devices), "text/plain; charset=utf-8", "devices.txt"),
        "csv" => (csv_file(&devices), "text/csv; charset=utf-8", "devices.csv"),
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown-format",
                format!("There is no export format {other:?}; use format=apple or format=csv."),
            ));
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}\"")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// Apple's "Register Multiple Devices" file: a header line, then one tab-separated line per
/// device. Names lose tabs and line breaks and are cut to the portal's 50 characters.
pub fn apple_device_file(known: &[DeviceRow]) -> String {
    let mut out = String::from("Device ID\tDevice Name\tDevice Platform\n");
    for device in known {
        let name: String =
            devices::display_name(device).chars().map(|c| if c.is_control() { ' ' } else { c }).take(50).collect();
        out.push_str(&format!("{}\t{}\tios\n", device.udid, name.trim()));
    }
    out
}

/// CSV with a header; every field quoted, and text that a spreadsheet would run as a formula
/// defused with a leading apostrophe.
pub fn csv_file(known: &[DeviceRow]) -> String {
    fn field(text: &str) -> String {
        let defused =
            if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
        format!("\"{}\"", defused.replace('"', "\"\""))
    }
    let mut out = String::from("udid,name,model,product,ios_version,os_build,serial,verified,first_seen,last_seen\n");
    for device in known {
        let (version, _) = devices::os_version(device);
        let row = [
            device.udid.clone(),
            devices::display_name(device),
            devices::model_name(device),
            device.product.clone().unwrap_or_default(),
            version.unwrap_or_default(),
            device.os_build.clone().unwrap_or_default(),
            device.serial.clone().unwrap_or_default(),
            device.verified.to_string(),
            timestamp(device.first_seen_at),
            timestamp(device.last_seen_at),
        ];
        out.push_str(&row.iter().map(|value| field(value)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// A device as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceJson {
    /// Id in the API.
    id: String,
    /// UDID, canonical (40 lower-case hex digits, or the 8-16 form in upper case).
    #[schema(example = "00008030-001544522E60802E")]
    udid: String,
    /// The name to show: the one given here, else the one the device reported.
    name: String,
    /// The name given through the API or the devices page.
    given_name: Option<String>,
    /// The name the device reported.
    device_name: Option<String>,
    /// Model identifier.
    #[schema(example = "iPhone15,2")]
    product: Option<String>,
    /// Model in words.
    #[schema(example = "iPhone 14 Pro")]
    model: String,
    /// iOS version (exact when Safari on the device reported it, else estimated from the build).
    ios_version: Option<String>,
    /// Whether `ios_version`'s minor part is exact.
    ios_version_exact: bool,
    /// OS build.
    #[schema(example = "22A3354")]
    os_build: Option<String>,
    /// Serial number.
    serial: Option<String>,
    /// Whether the device's reply was signed by a certificate of Apple's device CA.
    verified: bool,
    /// RFC 3339.
    first_seen_at: String,
    /// RFC 3339.
    last_seen_at: String,
}

impl DeviceJson {
    fn new(device: &DeviceRow) -> Self {
        let (ios_version, ios_version_exact) = devices::os_version(device);
        DeviceJson {
            id: device.id.clone(),
            udid: device.udid.clone(),
            name: devices::display_name(device),
            given_name: device.name.clone(),
            device_name: device.device_name.clone(),
            product: device.product.clone(),
            model: devices::model_name(device),
            ios_version,
            ios_version_exact,
            os_build: device.os_build.clone(),
            serial: device.serial.clone(),
            verified: device.verified,
            first_seen_at: timestamp(device.first_seen_at),
            last_seen_at: timestamp(device.last_seen_at),
        }
    }
}

/// `GET /api/v1/devices`.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    responses((status = 200, body = [DeviceJson]), (status = 401, body = crate::error::ErrorJson), (status = 403, body = crate::error::ErrorJson)),
    security(("token" = [])))]
pub async fn list_devices(
    State(state): State<AppState>,
    _token: AdminToken,
) -> Result<Json<Vec<DeviceJson>>, ApiError> {
    Ok(Json(state.db.devices().await?.iter().map(DeviceJson::new).collect()))
}

/// A change to a device.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DevicePatch {
    /// A new name; `null` or empty goes back to the name the device reported.
    name: Option<String>,
}

/// `PATCH /api/v1/devices/{id}`.
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", request_body = DevicePatch,
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = DeviceJson), (status = 401, body = crate::error::ErrorJson), (status = 403, body = crate::error::ErrorJson), (status = 404, body = crate::error::ErrorJson)),
    security(("token" = [])))]
pub async fn patch_device(
    State(state): State<AppState>,
    _token: AdminToken,
    Path(id): Path<String>,
    Json(patch): Json<DevicePatch>,
) -> Result<Json<DeviceJson>, ApiError> {
    let name = patch.name.as_deref().and_then(clean_name);
    if !state.db.rename_device(&id, name.as_deref()).await? {
        return Err(ApiError::not_found("The device"));
    }
    let device = state.db.device(&id).await?.ok_or_else(|| ApiError::not_found("The device"))?;
    Ok(Json(DeviceJson::new(&device)))
}

/// `DELETE /api/v1/devices/{id}`.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = crate::error::ErrorJson), (status = 403, body = crate::error::ErrorJson), (status = 404, body = crate::error::ErrorJson)),
    security(("token" = [])))]
pub async fn delete_device(
    State(state): State<AppState>,
    _token: AdminToken,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.db.delete_device(&id).await? { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::not_found("The device")) }
}

/// A known device and whether it can install a build.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceEligibilityJson {
    /// The device.
    device: DeviceJson,
    /// Whether nothing known stops the install.
    can_install: bool,
    /// The details: `listing` (`listed`, `not-listed` with `missing_from`, `any-device`,
    /// `not-distributable`), `os` (`supported`, `too-old`, `unknown`), `ipad_only_on_phone`,
    /// `needs_developer_mode`.
    #[schema(value_type = Object)]
    eligibility: Eligibility,
}

/// Which known devices can install a build.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuildDevicesJson {
    /// Devices that can install it.
    can_install: Vec<DeviceEligibilityJson>,
    /// Devices that cannot, with why.
    cannot_install: Vec<DeviceEligibilityJson>,
}

/// Every known device with its verdict on `build`.
fn judge_all(build: &BuildRow, known: Vec<DeviceRow>) -> Result<Vec<(DeviceRow, Eligibility)>, ApiError> {
    known
        .into_iter()
        .map(|device| {
            let verdict = devices::assess(build, &device).map_err(ApiError::internal)?;
            Ok((device, verdict))
        })
        .collect()
}

/// `GET /api/v1/builds/{id}/devices`.
#[utoipa::path(get, path = "/api/v1/builds/{id}/devices", tag = "devices",
    params(("id" = String, Path, description = "Build id")),
    responses((status = 200, body = BuildDevicesJson), (status = 401, body = crate::error::ErrorJson), (status = 403, body = crate::error::ErrorJson), (status = 404, body = crate::error::ErrorJson)),
    security(("token" = [])))]
pub async fn build_devices(
    State(state): State<AppState>,
    _token: AdminToken,
    Path(id): Path<String>,
) -> Result<Json<BuildDevicesJson>, ApiError> {
    let build = state.db.build_by_id(&id).await?;
    let mut result = BuildDevicesJson { can_install: Vec::new(), cannot_install: Vec::new() };
    for (device, eligibility) in judge_all(&build, state.db.devices().await?)? {
        let can_install = eligibility.can_install();
        let entry = DeviceEligibilityJson { device: DeviceJson::new(&device), can_install, eligibility };
        if can_install { result.can_install.push(entry) } else { result.cannot_install.push(entry) }
    }
    Ok(Json(result))
}

/// One row of the build's devices page.
struct JudgedDevice {
    device: DeviceView,
    reasons: Vec<String>,
}

#[derive(Template)]
#[template(path = "build_devices.html")]
struct BuildDevicesPage {
    signed_in_as: String,
    is_admin: bool,
    csrf: String,
    build: super::pages::BuildView,
    can_install: Vec<JudgedDevice>,
    cannot_install: Vec<JudgedDevice>,
    insecure: bool,
}

/// `GET /builds/{id}/devices`: the same as the API, as a page.
pub async fn build_devices_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let build = state.db.build_by_id(&id).await?;
    let base = base_url(&state, &headers);
    let mut can_install = Vec::new();
    let mut cannot_install = Vec::new();
    for (device, verdict) in judge_all(&build, state.db.devices().await?)? {
        let judged = JudgedDevice { device: DeviceView::new(&device), reasons: reasons(&verdict) };
        if verdict.can_install() { can_install.push(judged) } else { cannot_install.push(judged) }
    }
    private_page(&BuildDevicesPage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.csrf_token().to_owned(),
        build: super::pages::BuildView::new(&build, &base)?,
        can_install,
        cannot_install,
        insecure: base.starts_with("http://"),
    })
}

/// Why a device cannot install, in short sentences (empty when it can).
fn reasons(verdict: &Eligibility) -> Vec<String> {
    let mut out = Vec::new();
    match &verdict.listing {
        Listing::NotListed { missing_from } => out.push(format!("not in the profile of {}", missing_from.join(", "))),
        Listing::NotDistributable => out.push("the build does not install over the air".to_owned()),
        Listing::Listed | Listing::AnyDevice => {}
    }
    if let OsCheck::TooOld { required, running } = &verdict.os {
        out.push(format!("needs iOS {required}, runs {running}"));
    }
    if verdict.ipad_only_on_phone {
        out.push("iPad-only build".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str) -> DeviceRow {
        let now = OffsetDateTime::now_utc();
        DeviceRow {
            id: "d1".into(),
            udid: "00008030-001544522E60802E".into(),
            name: Some(name.into()),
            device_name: Some("Reported".into()),
            product: Some("iPhone15,2".into()),
            os_build: Some("22A3354".into()),
            os_version: None,
            serial: Some("F2LX".into()),
            verified: false,
            first_seen_at: now,
            last_seen_at: now,
        }
    }

    #[test]
    fn apples_file_is_tab_separated_with_clean_names() {
        let text = apple_device_file(&[device(
            "Alice's\tiPhone\nwith a name far longer than the fifty characters Apple allows",
        )]);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("Device ID\tDevice Name\tDevice Platform"));
        let fields: Vec<&str> = lines.next().expect("row").split('\t').collect();
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0], "00008030-001544522E60802E");
        assert!(fields[1].starts_with("Alice's iPhone with") && fields[1].chars().count() <= 50, "{}", fields[1]);
        assert_eq!(fields[2], "ios");
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let text = csv_file(&[device("=HYPERLINK(\"http://evil\")")]);
        let row = text.lines().nth(1).expect("row");
        assert!(
            row.starts_with("\"00008030-001544522E60802E\",\"'=HYPERLINK(\"\"http://evil\"\")\",\"iPhone 14 Pro\""),
            "{row}"
        );
        assert!(row.contains("\"about 18.0\"") || row.contains("\"18.0\""), "{row}");
    }
}
