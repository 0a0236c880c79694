//! The Loki HTTP surface. Push is served: `POST /loki/api/v1/push` and its older name
//! `/api/prom/push` ([`push`], wire types in [`model`]). The query API (`query`,
//! `query_range`, labels, series, tail) is added beside it.

pub mod model;
pub mod push;

use axum::Router;
use axum::routing::post;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/loki/api/v1/push", post(push::push)).route("/api/prom/push", post(push::push))
}
