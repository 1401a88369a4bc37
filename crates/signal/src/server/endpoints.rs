//! The HTTP endpoints beside the WebSocket: `/v1/ice-servers`, `/v1/check-servers` (fresh TURN
//! credentials for a valid token) and `/metrics`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use natkit_proto::{ErrorCode, HttpError, IceServer, IceServers};

use super::{bearer, peer_id, AppState, IceConfig, Rejection, TokenQuery};
use crate::admission::Refusal;

pub(super) async fn ice_servers(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    issue_ice_servers(&st, peer.ip(), q, &headers, IceConfig::mint)
}

#[derive(serde::Deserialize)]
pub(super) struct CheckQuery {
    token: Option<String>,
    /// `false`: the STUN URLs alone, no TURN credential minted (natkit.js's probe asks so, and
    /// asks again with TURN only when no mapping came back).
    turn: Option<bool>,
}

/// `/v1/check-servers`: what the network check page (`/check`) and natkit.js's probe gather
/// against.
pub(super) async fn check_servers(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<CheckQuery>,
    headers: HeaderMap,
) -> Response {
    if q.turn == Some(false) {
        let token = q.token.or_else(|| bearer(&headers));
        if let Err(r) = st.admit(|a, gate| a.stun_servers(gate, token.as_deref())) {
            return refused(&st, r);
        }
        return Json(IceServers {
            // A fresh name, as for credentials: probes spread over a fleet's relays.
            ice_servers: st
                .ice
                .stun_for_check(&format!("http-{}", peer_id()), st.clock.unix()),
            ttl: st.ice.ttl,
        })
        .into_response();
    }
    let q = TokenQuery { token: q.token };
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
    let fresh = format!("http-{}", peer_id());
    let user = match st.admit(|a, gate| a.ice_servers(gate, ip, token.as_deref(), &fresh)) {
        Ok(user) => user,
        Err(r) => return refused(st, r),
    };
    st.metrics.credentials_issued.inc();
    Json(IceServers {
        ice_servers: mint(&st.ice, &user, st.clock.unix()),
        ttl: st.ice.ttl,
    })
    .into_response()
}

/// Admission refuses HTTP requests for a rate limit or an unauthorized token.
fn refused(st: &AppState, r: Refusal) -> Response {
    st.count_refusal(&r);
    let status = match r.code {
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNAUTHORIZED,
    };
    if r.code == ErrorCode::Unauthorized {
        st.metrics
            .reject(Rejection::Refused(ErrorCode::Unauthorized));
    }
    let body = HttpError {
        error: r.code,
        message: r.message.into(),
    };
    (status, Json(body)).into_response()
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
