//! The browser portal: the built front end (`web/dist`, or `WEB_DIR`) served as static files,
//! with every other path that is not the API answered by the app's `index.html`, so client-side
//! routes work on reload. Only the public form may be framed by other sites.

use std::path::PathBuf;

use axum::http::{HeaderValue, Request};
use axum::response::IntoResponse;
use axum::routing::{get_service, MethodRouter};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use super::problem::ApiError;
use crate::config::Settings;

/// API prefixes: an unknown path under these is a 404 problem, not the app.
const API_PREFIXES: [&str; 10] = [
    "/auth/",
    "/leads",
    "/partners/",
    "/dashboard/",
    "/audit/",
    "/webhooks/",
    "/invite",
    "/dev/",
    "/ws",
    "/public/",
];

/// Paths that are never the app, even for a browser asking for HTML.
const NEVER_APP: [&str; 7] =
    ["/dev/", "/openapi.json", "/metrics", "/healthz", "/readyz", "/ws", "/webhooks/"];

/// A browser navigating (GET, asking for HTML) to a path the app routes on the client, such as
/// `/leads`, gets the app, even where the API has a route of the same name for `fetch`. Since one
/// URL then has two answers, each says how it may be cached (see `caching`).
pub async fn navigation(
    axum::extract::State(dir): axum::extract::State<PathBuf>,
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let wants_html = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.starts_with("text/html"));
    let path = request.uri().path().to_string();
    let may_be_app = !NEVER_APP.iter().any(|p| path.starts_with(p));
    let mut response = if request.method() == axum::http::Method::GET
        && wants_html
        && may_be_app
        && dir.join("index.html").exists()
    {
        serve_files(dir, request).await
    } else {
        next.run(request).await
    };
    caching(&path, may_be_app, &mut response);
    response
}

/// Marks an answer that is a file of the built app (not an API answer).
#[derive(Clone, Copy)]
struct AppFile;

/// API answers are never stored (a browser that kept `/leads` as JSON would show it for the
/// page, or the page for the data: the reload bug); a path that is both varies by `Accept`.
/// Vite's hashed assets never change; the app's `index.html` is checked each time.
fn caching(path: &str, may_be_app: bool, response: &mut axum::response::Response) {
    use axum::http::header::{CACHE_CONTROL, VARY};
    let app_file = response.extensions().get::<AppFile>().is_some();
    let headers = response.headers_mut();
    if may_be_app {
        headers.append(VARY, HeaderValue::from_static("accept"));
    }
    let policy = if !app_file {
        "no-store"
    } else if path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(policy));
}

pub fn app(settings: &Settings) -> MethodRouter {
    let dir = settings.web_dir.clone();
    get_service(tower::service_fn(move |request: Request<axum::body::Body>| {
        let dir = dir.clone();
        async move { Ok::<_, std::convert::Infallible>(serve(dir, request).await) }
    }))
}

async fn serve(dir: PathBuf, request: Request<axum::body::Body>) -> axum::response::Response {
    let path = request.uri().path().to_string();
    if API_PREFIXES.iter().any(|p| path.starts_with(p)) || !dir.join("index.html").exists() {
        return ApiError::NotFound.into_response();
    }
    serve_files(dir, request).await
}

/// What the app's pages may load: only the portal's own scripts, styles, images and API (and
/// its WebSocket, which `'self'` covers), nothing inline but style attributes (charts set them);
/// no plugins, no `<base>` or forms pointing elsewhere. A stored value that slipped past its
/// escaping still could not run as script.
const APP_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'";

async fn serve_files(dir: PathBuf, request: Request<axum::body::Body>) -> axum::response::Response {
    let path = request.uri().path().to_string();
    let index = dir.join("index.html");
    // `web/scripts/compress.mjs` writes a `.br` and a `.gz` beside each built file.
    let files = ServeDir::new(&dir)
        .precompressed_br()
        .precompressed_gzip()
        .fallback(ServeFile::new(&index).precompressed_br().precompressed_gzip());
    let mut response = match files.oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    };
    let frame =
        if path == "/public-form" || path.starts_with("/public-form/") { "*" } else { "'self'" };
    response.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_str(&format!("{APP_POLICY}; frame-ancestors {frame}"))
            .unwrap_or(HeaderValue::from_static("default-src 'none'")),
    );
    if frame != "*" {
        response.headers_mut().insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
    }
    response.extensions_mut().insert(AppFile);
    response
}
