//! The Extensions page.

use super::{Ctx, Page, Web, layout};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use maud::html;

pub(super) fn routes() -> axum::Router<Web> {
    axum::Router::new().route(Page::Extensions.path(), get(show))
}

async fn show(State(_web): State<Web>, axum::Extension(ctx): axum::Extension<Ctx>) -> Response {
    layout(
        &ctx,
        Page::Extensions,
        html! { h1 { (Page::Extensions.title()) } },
    )
}
