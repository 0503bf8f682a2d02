//! The Usage page.

use super::{Ctx, Page, Web, layout};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use maud::html;

pub(super) fn routes() -> axum::Router<Web> {
    axum::Router::new().route(Page::Usage.path(), get(show))
}

async fn show(State(_web): State<Web>, axum::Extension(ctx): axum::Extension<Ctx>) -> Response {
    layout(&ctx, Page::Usage, html! { h1 { (Page::Usage.title()) } })
}
