//! The Settings page.

use super::{Ctx, Page, Web, layout};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use maud::html;

pub(super) fn routes() -> axum::Router<Web> {
    axum::Router::new().route(Page::Settings.path(), get(show))
}

async fn show(State(_web): State<Web>, axum::Extension(ctx): axum::Extension<Ctx>) -> Response {
    layout(
        &ctx,
        Page::Settings,
        html! { h1 { (Page::Settings.title()) } },
    )
}
