//! Account pages: `/admin/accounts` (administrators list, create, change the role of, reset the
//! password of and delete accounts) and `/account` (anyone signed in with an account changes
//! their own password). New passwords made here are shown once, on the page that answers the
//! form, and never again: only their Argon2id hash is stored.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::ui::{CsrfForm, PageError, Session, private_page, username_key};
use crate::AppState;
use crate::accounts::{self, Role};
use crate::db::{AccountRow, timestamp};
use crate::error::ApiError;
use crate::ratelimit;
use crate::tokens;

/// An account as the accounts page lists it.
struct AccountView {
    id: String,
    username: String,
    role: &'static str,
    created: String,
    last_sign_in: String,
    /// The signed-in administrator's own account (its role and existence are not changed here).
    is_self: bool,
}

fn minute(at: time::OffsetDateTime) -> String {
    format!("{} UTC", timestamp(at).get(..16).unwrap_or("").replace('T', " "))
}

/// A password shown once.
struct NewPassword {
    username: String,
    password: String,
}

#[derive(Template)]
#[template(path = "accounts.html")]
struct AccountsPage {
    signed_in_as: String,
    is_admin: bool,
    csrf: String,
    accounts: Vec<AccountView>,
    error: Option<String>,
    new_password: Option<NewPassword>,
    /// What the create form held, to fill it again after an error.
    typed_username: String,
    insecure: bool,
}

/// The accounts page with a message or a new password, answered with `status`.
async fn accounts_page(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<String>,
    new_password: Option<NewPassword>,
    typed_username: String,
) -> Result<Response, PageError> {
    let own = session.account_id();
    let accounts = state
        .db
        .accounts()
        .await?
        .into_iter()
        .map(|account: AccountRow| AccountView {
            is_self: own == Some(account.id.as_str()),
            role: account.role.as_str(),
            created: minute(account.created_at),
            last_sign_in: account.last_sign_in_at.map(minute).unwrap_or_else(|| "never".to_owned()),
            id: account.id,
            username: account.username,
        })
        .collect();
    let mut page = private_page(&AccountsPage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.csrf_token().to_owned(),
        accounts,
        error,
        new_password,
        typed_username,
        insecure: super::base_url(state, headers).starts_with("http://"),
    })?;
    *page.status_mut() = status;
    Ok(page)
}

/// `GET /admin/accounts`.
pub async fn accounts_list(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    session.require_admin()?;
    accounts_page(&state, &session, &headers, StatusCode::OK, None, None, String::new()).await
}

/// The create form.
#[derive(Deserialize)]
pub struct CreateAccountForm {
    csrf: String,
    username: String,
    role: String,
    /// Empty: one is generated and shown once.
    #[serde(default)]
    password: String,
}

/// `POST /admin/accounts`: creates an account; shows its password once when it was generated.
pub async fn create_account(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CreateAccountForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let refuse = |status: StatusCode, message: String| {
        accounts_page(&state, &session, &headers, status, Some(message), None, form.username.trim().to_owned())
    };
    let username = match accounts::check_username(&form.username) {
        Ok(username) => username,
        Err(refused) => return refuse(StatusCode::BAD_REQUEST, refused.0).await,
    };
    let Some(role) = Role::parse(&form.role) else {
        return refuse(StatusCode::BAD_REQUEST, "Choose the role admin or uploader.".to_owned()).await;
    };
    let generated = form.password.is_empty();
    let password = if generated { accounts::generate_password() } else { form.password.clone() };
    if let Err(refused) = accounts::check_password(&password) {
        return refuse(StatusCode::BAD_REQUEST, refused.0).await;
    }
    let hash = accounts::hash_password(password.clone()).await.map_err(ApiError::internal)?;
    if !state.db.insert_account(&tokens::random_hex(8), &username, &hash, role).await? {
        return refuse(StatusCode::CONFLICT, format!("There is already an account named {username} (in any case)."))
            .await;
    }
    tracing::info!(%username, %role, by = session.signed_in_as(), "account created");
    if generated {
        let shown = NewPassword { username, password };
        accounts_page(&state, &session, &headers, StatusCode::CREATED, None, Some(shown), String::new()).await
    } else {
        Ok(Redirect::to("/admin/accounts").into_response())
    }
}

/// The role form.
#[derive(Deserialize)]
pub struct RoleForm {
    csrf: String,
    role: String,
}

/// The account `id` names, or a 404 page.
async fn account_named(state: &AppState, id: &str) -> Result<AccountRow, PageError> {
    match state.db.account(id).await? {
        Some((account, _)) => Ok(account),
        None => Err(ApiError::not_found("The account").into()),
    }
}

/// Refuses to take away the signed-in administrator's own account or role from this page: one
/// click would lock them out.
fn not_yourself(session: &Session, account: &AccountRow, what: &str) -> Result<(), PageError> {
    if session.account_id() == Some(account.id.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "own-account",
            format!(
                "You cannot {what} your own account here; ask another administrator, or use `otaship account` on \
                 the server."
            ),
        )
        .into());
    }
    Ok(())
}

/// `POST /admin/accounts/{id}/role`.
pub async fn set_role(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<RoleForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let Some(role) = Role::parse(&form.role) else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-role", "Choose the role admin or uploader.").into());
    };
    let account = account_named(&state, &id).await?;
    if account.role != role {
        not_yourself(&session, &account, "change the role of")?;
        state.db.set_account_role(&account.id, role).await?;
        tracing::info!(username = %account.username, %role, by = session.signed_in_as(), "account role changed");
    }
    Ok(Redirect::to("/admin/accounts").into_response())
}

/// `POST /admin/accounts/{id}/password`: a new generated password, shown once; the account's
/// sessions end.
pub async fn reset_password(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let account = account_named(&state, &id).await?;
    let password = accounts::generate_password();
    let hash = accounts::hash_password(password.clone()).await.map_err(ApiError::internal)?;
    if !state.db.set_account_password(&account.id, &hash, Some(session.id_hash())).await? {
        return Err(ApiError::not_found("The account").into());
    }
    ratelimit::clear(&state.db, &username_key(&account.username)).await?;
    tracing::info!(username = %account.username, by = session.signed_in_as(), "account password reset");
    let shown = NewPassword { username: account.username, password };
    accounts_page(&state, &session, &headers, StatusCode::OK, None, Some(shown), String::new()).await
}

/// `POST /admin/accounts/{id}/delete`: the account and its sessions.
pub async fn delete_account(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.require_admin()?;
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let account = account_named(&state, &id).await?;
    not_yourself(&session, &account, "delete")?;
    if !state.db.delete_account(&account.id).await? {
        return Err(ApiError::not_found("The account").into());
    }
    tracing::info!(username = %account.username, by = session.signed_in_as(), "account deleted");
    Ok(Redirect::to("/admin/accounts").into_response())
}

#[derive(Template)]
#[template(path = "account.html")]
struct OwnAccountPage {
    signed_in_as: String,
    is_admin: bool,
    csrf: String,
    /// None when signed in with a token (no password to change).
    username: Option<String>,
    role: &'static str,
    error: Option<String>,
    changed: bool,
    insecure: bool,
}

/// The own-account page with a message, answered with `status`.
fn own_account_page(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<String>,
    changed: bool,
) -> Result<Response, PageError> {
    let mut page = private_page(&OwnAccountPage {
        signed_in_as: session.signed_in_as().to_owned(),
        is_admin: session.is_admin(),
        csrf: session.csrf_token().to_owned(),
        username: session.account_id().map(|_| session.signed_in_as().to_owned()),
        role: session.role().as_str(),
        error,
        changed,
        insecure: super::base_url(state, headers).starts_with("http://"),
    })?;
    *page.status_mut() = status;
    Ok(page)
}

/// `GET /account`.
pub async fn own_account(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    own_account_page(&state, &session, &headers, StatusCode::OK, None, false)
}

/// The change-password form.
#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: String,
    current: String,
    new: String,
    repeat: String,
}

/// `POST /account/password`: the current password, then the new one twice. The account's other
/// sessions end; this one goes on.
pub async fn change_password(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    session.check_request(&state, &headers, Some(&form.csrf))?;
    let refuse = |status: StatusCode, message: &str| {
        own_account_page(&state, &session, &headers, status, Some(message.to_owned()), false)
    };
    let Some(account_id) = session.account_id() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "You signed in with an API token, which has no password. Passwords belong to accounts.",
        );
    };
    // Guessing the current password through this form counts as guessing it at sign-in.
    let by_username = username_key(session.signed_in_as());
    let _turn = ratelimit::one_at_a_time().await;
    if let Err(limited) = ratelimit::check(&state.db, &by_username, super::ui::SIGNIN_PER_USERNAME).await {
        return Err(limited.into());
    }
    let Some((_, stored)) = state.db.account(account_id).await? else {
        return Err(ApiError::not_found("Your account").into());
    };
    let current_ok = form.current.len() <= accounts::MAX_PASSWORD_BYTES
        && accounts::verify_password(form.current, Some(stored)).await.map_err(ApiError::internal)?;
    if !current_ok {
        ratelimit::record_failure(&state.db, &by_username).await?;
        return refuse(StatusCode::FORBIDDEN, "Your current password is not the one you typed; try again.");
    }
    if let Err(refused) = accounts::check_password(&form.new) {
        return refuse(StatusCode::BAD_REQUEST, &refused.0);
    }
    if form.new != form.repeat {
        return refuse(StatusCode::BAD_REQUEST, "The new password and its repetition differ; type them again.");
    }
    let hash = accounts::hash_password(form.new).await.map_err(ApiError::internal)?;
    if !state.db.set_account_password(account_id, &hash, Some(session.id_hash())).await? {
        return Err(ApiError::not_found("Your account").into());
    }
    tracing::info!(username = session.signed_in_as(), "password changed");
    own_account_page(&state, &session, &headers, StatusCode::OK, None, true)
}
