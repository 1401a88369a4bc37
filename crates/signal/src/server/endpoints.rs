//! The HTTP endpoints beside the WebSocket: `/v1/ice-servers`, `/v1/check-servers` (fresh TURN
//! credentials for a valid token) and `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use natkit_daemon::unix_now;
use natkit_proto::{ErrorCode, HttpError, IceServer, IceServers};
use natkit_stun_turn::credentials;

use super::{bearer, peer_id, token_key, AppState, IceConfig, TokenQuery};

pub(super) async fn ice_servers(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    issue_ice_servers(&st, peer.ip(), q, &headers, IceConfig::mint)
}

/// `/v1/check-servers`: what the network check page (`/check`) gathers against.
pub(super) async fn check_servers(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    issue_ice_servers(&st, peer.ip(), q, &headers, IceConfig::mint_for_check)
}

/// Answers with fresh ICE servers from `mint` (401 without a valid token when tokens are on).
fn issue_ice_servers(
    st: &AppState,
    ip: IpAddr,
    q: TokenQuery,
    headers: &HeaderMap,
    mint: fn(&IceConfig, &str, u64) -> Vec<IceServer>,
) -> Response {
    let token = q.token.or_else(|| bearer(headers));
    if let Some(secret) = &st.settings.token {
        let ok = token
            .as_deref()
            .map(|t| secret.verify(t, unix_now()).is_ok())
            .unwrap_or(false);
        if !ok {
            st.metrics
                .rejected
                .with_label_values(&["unauthorized"])
                .inc();
            return (
                StatusCode::UNAUTHORIZED,
                Json(HttpError {
                    error: ErrorCode::Unauthorized,
                    message: "a valid token is required (?token= or Authorization: Bearer)".into(),
                }),
            )
                .into_response();
        }
    }
    if st.revoked(None, token.as_deref()) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(HttpError {
                error: ErrorCode::Unauthorized,
                message: "this token has been revoked".into(),
            }),
        )
            .into_response();
    }
    if !st.may_mint(ip, token.as_deref().map(token_key)) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(HttpError {
                error: ErrorCode::RateLimited,
                message:
                    "too many TURN credentials for this address or token; try again in a minute"
                        .into(),
            }),
        )
            .into_response();
    }
    st.metrics.credentials_issued.inc();
    // Every credential fetched with one token counts in that token's quota group on the relay:
    // one token is worth one `user_quota` of allocations, not one per fetch.
    let user = format!("http-{}", peer_id());
    let user = match (&st.settings.token, &token) {
        (Some(_), Some(t)) => credentials::grouped(&user, &credentials::grant_group(t)),
        _ => user,
    };
    Json(IceServers {
        ice_servers: mint(&st.ice, &user, unix_now()),
        ttl: st.ice.ttl,
    })
    .into_response()
}

pub(super) async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let mut buf = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &st.registry.gather(),
        &mut buf,
    )
    .expect("encode");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response()
}
