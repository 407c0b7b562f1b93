//! The API's description: an OpenAPI 3.1 document generated from the handlers' annotations
//! (`GET /api/openapi.json`), and a readable page made from the same document (`GET /api`).

use std::sync::OnceLock;

use askama::Template;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{api, devices, links, retention, uploads, webhooks};
use crate::error::{ApiError, ErrorDetail, ErrorJson};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "otaship API",
        description = "Upload iOS builds and get install links. Every route takes an API token as \
            `Authorization: Bearer TOKEN` (create one with `otaship token create`). Errors are \
            `{\"error\": {\"code\", \"message\"}}` with a stable `code` and a sentence that says what to do. \
            Any route may answer `503` while the server cannot reach its database (code \
            `database-unavailable`) or, for routes that store or serve files, its object storage (code \
            `storage-unavailable`): try again after the `Retry-After` delay, or in a moment.\n\n\
            Tokens have a scope. An `admin` token (`otaship token create --scope admin`, the default) may use \
            every route. An `upload` token (`otaship token create --scope upload`), meant for CI, may only \
            upload: `POST /api/v1/builds` and the `/api/v1/uploads` routes; any other route answers `403` with \
            the code `insufficient-scope`. A missing, wrong or revoked token is `401`.\n\n\
            Small builds go in one request (`POST /api/v1/builds`). Large ones over unreliable links use \
            resumable uploads: create an upload, `PUT` its parts (any order, in parallel, each with its \
            SHA-256), then complete it. `otaship push` does all of this."
    ),
    paths(
        api::upload_build,
        api::get_build,
        api::delete_build,
        api::list_apps,
        api::list_builds,
        uploads::create_upload,
        uploads::get_upload,
        uploads::put_part,
        uploads::complete_upload,
        uploads::delete_upload,
        devices::list_devices,
        devices::patch_device,
        devices::delete_device,
        devices::export_api,
        devices::build_devices,
        links::create_build_link,
        links::create_channel_link,
        links::list_links,
        links::get_link,
        links::revoke_link,
        links::list_channels,
        links::build_analytics,
        retention::list_rules,
        retention::put_rule,
        retention::delete_rule,
        retention::run_api,
        webhooks::list_webhooks,
        webhooks::create_webhook,
        webhooks::patch_webhook,
        webhooks::delete_webhook,
        webhooks::list_deliveries,
        webhooks::ping_webhook,
        webhooks::check_expiry,
    ),
    components(schemas(ErrorJson, ErrorDetail)),
    modifiers(&BearerToken),
    tags(
        (name = "builds", description = "Upload, read and delete builds."),
        (name = "apps", description = "Apps and their builds."),
        (name = "uploads", description = "Resumable uploads for large builds."),
        (name = "sharing", description = "Share links (password, expiry, install limit), channels and their stable pages, install analytics."),
        (name = "devices", description = "Devices enrolled through /devices/enroll, exports, and which devices can install a build."),
        (name = "retention", description = "Rules that remove old builds per app and channel (never a channel's newest), and running them."),
        (name = "webhooks", description = "Signed POSTs when a build is uploaded or a profile is about to expire, with retries and a delivery log."),
    )
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token from `otaship token create`: `--scope admin` for every route, `--scope upload` \
                         for uploading builds only.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document as pretty JSON (built once).
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi().to_pretty_json().unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"))
    })
}

/// `GET /api/openapi.json`.
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

/// One operation, as the page shows it.
struct Operation {
    method: String,
    path: String,
    anchor: String,
    summary: String,
    description: String,
    parameters: Vec<Field>,
    body: Option<String>,
    responses: Vec<Field>,
}

/// A named thing with a type and a description (parameter, property, response).
struct Field {
    name: String,
    kind: String,
    /// The schema the type refers to (itself, or its items'), to link to.
    link: Option<String>,
    required: bool,
    description: String,
}

/// A schema, as the page shows it.
struct Schema {
    name: String,
    description: String,
    properties: Vec<Field>,
}

#[derive(Template)]
#[template(path = "api.html")]
struct ApiPage {
    insecure: bool,
    title: String,
    version: String,
    description: String,
    operations: Vec<Operation>,
    schemas: Vec<Schema>,
}

/// `GET /api`: the API reference as a page, from the same document.
pub async fn api_page() -> Result<Html<String>, ApiError> {
    let page = page_from(&serde_json::from_str(document()).map_err(ApiError::internal)?);
    page.render().map(Html).map_err(ApiError::internal)
}

fn text(value: &Value, key: &str) -> String {
    value.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// A short type for a schema: `BuildJson`, `string`, `array of integer`, `string or null`.
/// The named schema a type is, or is an array of.
fn referenced_schema(schema: &Value) -> Option<String> {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => reference.rsplit('/').next().map(str::to_owned),
        None => schema.get("items").and_then(referenced_schema),
    }
}

fn kind(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema.get(combinator).and_then(Value::as_array) {
            return options.iter().map(kind).collect::<Vec<_>>().join(" or ");
        }
    }
    let types: Vec<String> = match schema.get("type") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let mut names: Vec<String> = types
        .iter()
        .map(|name| match (name.as_str(), schema.get("items")) {
            ("array", Some(items)) => format!("array of {}", kind(items)),
            ("object", _) if schema.get("additionalProperties").is_some() => "object (string values)".to_owned(),
            _ => name.clone(),
        })
        .collect();
    if names.is_empty() {
        names.push("any".to_owned());
    }
    names.join(" or ")
}

fn page_from(document: &Value) -> ApiPage {
    let info = &document["info"];
    let mut operations = Vec::new();
    if let Some(paths) = document["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                let Some(operation) = item.get(method) else { continue };
                let parameters = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|parameter| Field {
                        name: format!("{} ({})", text(parameter, "name"), text(parameter, "in")),
                        kind: kind(&parameter["schema"]),
                        link: None,
                        required: parameter["required"].as_bool().unwrap_or(false),
                        description: text(parameter, "description"),
                    })
                    .collect();
                let body = operation["requestBody"]["content"].as_object().map(|content| {
                    content
                        .iter()
                        .map(|(media, body)| format!("{media}: {}", kind(&body["schema"])))
                        .collect::<Vec<_>>()
                        .join("; ")
                });
                let responses = operation["responses"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(status, response)| Field {
                        name: status.clone(),
                        kind: response["content"]
                            .as_object()
                            .and_then(|content| content.values().next())
                            .map(|body| kind(&body["schema"]))
                            .unwrap_or_default(),
                        link: response["content"]
                            .as_object()
                            .and_then(|content| content.values().next())
                            .and_then(|body| referenced_schema(&body["schema"])),
                        required: false,
                        description: text(response, "description"),
                    })
                    .collect();
                operations.push(Operation {
                    method: method.to_uppercase(),
                    anchor: format!("{method}-{}", path.replace(['/', '{', '}'], "-")),
                    path: path.clone(),
                    summary: text(operation, "summary"),
                    description: text(operation, "description"),
                    parameters,
                    body,
                    responses,
                });
            }
        }
    }
    let mut schemas = Vec::new();
    if let Some(found) = document["components"]["schemas"].as_object() {
        for (name, schema) in found {
            // A schema that extends another (`allOf`, from `#[serde(flatten)]`) lists the other's
            // fields by reference, then its own.
            let parts = match schema.get("allOf").and_then(Value::as_array) {
                Some(parts) => parts.iter().collect(),
                None => vec![schema],
            };
            let mut properties = Vec::new();
            for part in parts {
                if let Some(base) = referenced_schema(part) {
                    properties.push(Field {
                        name: "…".to_owned(),
                        description: format!("every field of {base}"),
                        kind: base.clone(),
                        link: Some(base),
                        required: true,
                    });
                    continue;
                }
                let required: Vec<&str> =
                    part["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                properties.extend(part["properties"].as_object().into_iter().flatten().map(|(property, value)| {
                    Field {
                        name: property.clone(),
                        kind: kind(value),
                        link: None,
                        required: required.contains(&property.as_str()),
                        description: text(value, "description"),
                    }
                }));
            }
            schemas.push(Schema { name: name.clone(), description: text(schema, "description"), properties });
        }
    }
    ApiPage {
        insecure: false,
        title: text(info, "title"),
        version: text(info, "version"),
        description: text(info, "description"),
        operations,
        schemas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_api_route() {
        let document: Value = serde_json::from_str(document()).unwrap_or(Value::Null);
        assert!(document["openapi"].as_str().is_some_and(|version| version.starts_with("3.1")));
        for path in [
            "/api/v1/builds",
            "/api/v1/uploads/{id}/parts/{number}",
            "/api/v1/apps/{app}/builds",
            "/api/v1/devices",
            "/api/v1/devices/export",
            "/api/v1/builds/{id}/devices",
            "/api/v1/retention",
            "/api/v1/retention/run",
            "/api/v1/apps/{app}/retention",
            "/api/v1/webhooks",
            "/api/v1/webhooks/{id}/deliveries",
            "/api/v1/webhooks/check-expiry",
            "/api/v1/builds/{id}/links",
            "/api/v1/apps/{app}/channels/{channel}/links",
            "/api/v1/links/{id}",
            "/api/v1/builds/{id}/analytics",
        ] {
            assert!(document["paths"].get(path).is_some(), "{path} is missing");
        }
        let page = page_from(&document);
        assert_eq!(page.operations.len(), 33);
        assert!(page.schemas.iter().any(|schema| schema.name == "BuildJson" && !schema.properties.is_empty()));
        // A flattened schema shows its own fields and the one it extends.
        let created = page.schemas.iter().find(|schema| schema.name == "CreatedWebhookJson").expect("schema");
        let names: Vec<&str> = created.properties.iter().map(|field| field.name.as_str()).collect();
        assert_eq!(names, ["…", "secret"]);
        assert_eq!(created.properties[0].link.as_deref(), Some("WebhookJson"));
    }

    #[test]
    fn types_read_like_words() {
        assert_eq!(kind(&serde_json::json!({"$ref": "#/components/schemas/BuildJson"})), "BuildJson");
        assert_eq!(kind(&serde_json::json!({"type": ["string", "null"]})), "string or null");
        assert_eq!(kind(&serde_json::json!({"type": "array", "items": {"type": "integer"}})), "array of integer");
    }
}
