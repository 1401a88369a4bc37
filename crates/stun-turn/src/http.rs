//! The relay's HTTP endpoint: `GET /metrics` (Prometheus text) and `GET /healthz`.

use std::future::Future;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::metrics::RelayMetrics;

/// The routes, for servers that mount them next to their own.
pub fn router(metrics: RelayMetrics) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        m.render(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
}

/// Serves [`router`] on an already-bound listener until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: RelayMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
}
