//! The static files (the demo page, the check page, `/natkit.js` with a validator) and the CORS
//! headers of `/natkit.js` and the HTTP API, from [`crate::origin`]'s verdict.

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::origin::{judge, Verdict};

/// natkit's browser client (`js/natkit.js`), served as it is in the repository.
pub static NATKIT_JS: &str = include_str!("../../../../js/natkit.js");

/// A strong validator: the module's SHA-256, so a changed module is never taken from a cache.
static NATKIT_JS_ETAG: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(NATKIT_JS.as_bytes());
    format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18])
    )
});

/// `GET /natkit.js`: the module, revalidated on every use (`no-cache`), 304 when unchanged.
pub(super) async fn natkit_js(headers: HeaderMap) -> Response {
    let etag = NATKIT_JS_ETAG.as_str();
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| matches!(t.trim(), "*") || t.trim() == etag)
        });
    let common = [(header::ETAG, etag), (header::CACHE_CONTROL, "no-cache")];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        NATKIT_JS,
    )
        .into_response()
}

fn verdict(st: &AppState, headers: &HeaderMap) -> Verdict {
    let text = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    judge(
        &st.settings.allowed_origins,
        text(header::ORIGIN),
        text(header::HOST),
    )
}

/// Whether a WebSocket upgrade with these headers may go on.
pub(super) fn websocket_allowed(st: &AppState, headers: &HeaderMap) -> bool {
    verdict(st, headers).websocket
}

/// CORS for `/natkit.js`, `/v1/ice-servers` and `/v1/check-servers`: the allowed origin is told
/// so (preflights answered), every other answer is left as it is (`Vary: Origin` either way).
pub(super) async fn cors(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let v = verdict(&st, req.headers());
    let preflight = req.method() == Method::OPTIONS;
    let mut res = if preflight {
        let status = if v.allow_origin.is_some() {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::FORBIDDEN
        };
        Response::builder()
            .status(status)
            .body(Body::empty())
            .expect("static response")
    } else {
        next.run(req).await
    };
    let h = res.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = v.allow_origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if preflight {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
    }
    res
}
