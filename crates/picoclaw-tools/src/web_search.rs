//! `web_search(query, count)`: results from the search backend the config chooses —
//! Brave Search API, Tavily, a self-hosted SearXNG, or DuckDuckGo's key-less HTML page — as a
//! numbered list of title, URL and snippet.
//!
//! Config (the original PicoClaw's `tools.web` keys, plus `tavily`, `searxng` and `api_base`):
//! `tools.web.brave.{enabled, api_key, max_results}`, `tools.web.tavily.{enabled, api_key,
//! max_results}`, `tools.web.searxng.{enabled, url, max_results}`,
//! `tools.web.duckduckgo.{enabled, max_results}`; the first enabled of brave, tavily, searxng,
//! duckduckgo is used. `api_base` on any of them points at a proxy (or a test's fake).
//!
//! Proxies: requests go only to the backend the operator configured (the model supplies the
//! query, never a host), so this client keeps the environment's `HTTP(S)_PROXY`/`ALL_PROXY`, as a
//! machine that reaches the internet only through a proxy needs. `web_fetch`, which fetches the
//! URLs the model names, ignores them.

use crate::args::{parse, schema};
use crate::{Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_api::ToolSpec;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Which search service answers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SearchBackend {
    Brave { api_key: String, api_base: String },
    Tavily { api_key: String, api_base: String },
    Searxng { url: String },
    DuckDuckGo { api_base: String },
}

/// The search settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebSearchConfig {
    pub backend: SearchBackend,
    pub max_results: usize,
}

impl WebSearchConfig {
    /// Reads `tools.web` from JSON ([`crate::WebSection`]'s keys); `None` when no backend is
    /// enabled, an error when the enabled one lacks what it needs or a key has the wrong type.
    pub fn from_json(web: &Value) -> Option<Result<Self, String>> {
        match serde_json::from_value::<crate::WebSection>(web.clone()) {
            Ok(section) => Self::from_section(&section),
            Err(e) => Some(Err(format!("tools.web: {e}"))),
        }
    }

    /// Builds from the typed `tools.web`; `None` when no backend is enabled, an error when the
    /// enabled one lacks what it needs.
    pub fn from_section(web: &crate::WebSection) -> Option<Result<Self, String>> {
        use crate::settings::{SearchBackendSection, trimmed};
        let enabled = |b: &Option<SearchBackendSection>| b.clone().filter(|b| b.enabled);
        let max = |b: &SearchBackendSection| b.max_results.map_or(5, |n| n.clamp(1, 20) as usize);
        let key = |b: &SearchBackendSection| {
            trimmed(b.api_key.as_ref()).or_else(|| b.api_keys.iter().find_map(|k| trimmed(Some(k))))
        };
        let base = |b: &SearchBackendSection, default: &str| {
            trimmed(b.api_base.as_ref())
                .or_else(|| trimmed(b.base_url.as_ref()))
                .unwrap_or_else(|| default.to_owned())
        };
        if let Some(b) = enabled(&web.brave) {
            let Some(api_key) = key(&b) else {
                return Some(Err(
                    "tools.web.brave is enabled but has no api_key (get one at \
                     https://api-dashboard.search.brave.com), or enable tools.web.duckduckgo, \
                     which needs none"
                        .into(),
                ));
            };
            return Some(Ok(Self {
                backend: SearchBackend::Brave {
                    api_key,
                    api_base: base(&b, "https://api.search.brave.com"),
                },
                max_results: max(&b),
            }));
        }
        if let Some(b) = enabled(&web.tavily) {
            let Some(api_key) = key(&b) else {
                return Some(Err("tools.web.tavily is enabled but has no api_key".into()));
            };
            return Some(Ok(Self {
                backend: SearchBackend::Tavily {
                    api_key,
                    api_base: base(&b, "https://api.tavily.com"),
                },
                max_results: max(&b),
            }));
        }
        if let Some(b) = enabled(&web.searxng) {
            let url = trimmed(b.url.as_ref())
                .or_else(|| trimmed(b.api_base.as_ref()))
                .or_else(|| trimmed(b.base_url.as_ref()));
            let Some(url) = url else {
                return Some(Err(
                    "tools.web.searxng is enabled but has no url (your SearXNG instance)".into(),
                ));
            };
            return Some(Ok(Self {
                backend: SearchBackend::Searxng { url },
                max_results: max(&b),
            }));
        }
        if let Some(b) = enabled(&web.duckduckgo) {
            return Some(Ok(Self {
                backend: SearchBackend::DuckDuckGo {
                    api_base: base(&b, "https://html.duckduckgo.com"),
                },
                max_results: max(&b),
            }));
        }
        None
    }
}

/// One result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchResult {
    pub title: String,
    pub url: String,
    pub snippet: String,
}

/// Web search for the agent.
#[derive(Clone, Debug)]
pub struct WebSearchTool {
    config: WebSearchConfig,
    /// Built at the first search.
    client: crate::lazy_client::LazyClient,
}

impl WebSearchTool {
    pub fn new(config: WebSearchConfig) -> Self {
        Self {
            config,
            client: crate::lazy_client::LazyClient::new(
                Duration::from_secs(20),
                concat!(
                    "Mozilla/5.0 (compatible; picoclaw/",
                    env!("CARGO_PKG_VERSION"),
                    ")"
                ),
            ),
        }
    }

    fn client(&self) -> Result<&reqwest::Client, String> {
        self.client.get()
    }

    /// Runs a search.
    pub async fn search(&self, query: &str, count: usize) -> Result<Vec<SearchResult>, String> {
        let trim = |s: &str| s.trim_end_matches('/').to_owned();
        let results = match &self.config.backend {
            SearchBackend::Brave { api_key, api_base } => {
                let body = self
                    .get_json(
                        self.client()?
                            .get(with_params(
                                &format!("{}/res/v1/web/search", trim(api_base)),
                                &[("q", query), ("count", &count.to_string())],
                            )?)
                            .header("X-Subscription-Token", api_key)
                            .header("Accept", "application/json"),
                        "Brave",
                    )
                    .await?;
                items(&body["web"]["results"], "title", "url", "description")
            }
            SearchBackend::Tavily { api_key, api_base } => {
                let body = self
                    .get_json(
                        self.client()?
                            .post(format!("{}/search", trim(api_base)))
                            .bearer_auth(api_key)
                            .json(&serde_json::json!({"query": query, "max_results": count})),
                        "Tavily",
                    )
                    .await?;
                items(&body["results"], "title", "url", "content")
            }
            SearchBackend::Searxng { url } => {
                let body = self
                    .get_json(
                        self.client()?.get(with_params(
                            &format!("{}/search", trim(url)),
                            &[("q", query), ("format", "json")],
                        )?),
                        "SearXNG",
                    )
                    .await?;
                items(&body["results"], "title", "url", "content")
            }
            SearchBackend::DuckDuckGo { api_base } => {
                let form: String = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("q", query)
                    .finish();
                let response = self
                    .client()?
                    .post(format!("{}/html/", trim(api_base)))
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form)
                    .send()
                    .await
                    .map_err(|e| format!("DuckDuckGo did not answer: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("DuckDuckGo answered {}", response.status()));
                }
                let html = response
                    .text()
                    .await
                    .map_err(|e| format!("DuckDuckGo: {e}"))?;
                parse_duckduckgo(&html)
            }
        };
        Ok(results.into_iter().take(count).collect())
    }

    async fn get_json(
        &self,
        request: reqwest::RequestBuilder,
        name: &str,
    ) -> Result<Value, String> {
        let response = request
            .send()
            .await
            .map_err(|e| format!("{name} did not answer: {e}"))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(format!(
                "{name} refused the API key ({status}); check tools.web"
            ));
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(format!(
                "{name} rate limit reached ({status}); try again later"
            ));
        }
        if !status.is_success() {
            return Err(format!("{name} answered {status}"));
        }
        response
            .json()
            .await
            .map_err(|e| format!("{name} sent an answer that is not search results: {e}"))
    }
}

fn with_params(base: &str, params: &[(&str, &str)]) -> Result<url::Url, String> {
    url::Url::parse_with_params(base, params).map_err(|e| format!("bad search URL {base}: {e}"))
}

fn items(list: &Value, title: &str, url: &str, snippet: &str) -> Vec<SearchResult> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(SearchResult {
                title: r[title].as_str()?.trim().to_owned(),
                url: r[url].as_str()?.trim().to_owned(),
                snippet: r[snippet].as_str().unwrap_or_default().trim().to_owned(),
            })
        })
        .collect()
}

/// Results of DuckDuckGo's HTML page: `a.result__a` (title and a redirect link carrying the
/// target in `uddg`) and the following `.result__snippet`. Parsed with html5ever.
pub fn parse_duckduckgo(html: &str) -> Vec<SearchResult> {
    use html5ever::tendril::TendrilSink;
    use markup5ever_rcdom::{Handle, NodeData, RcDom};
    let dom = html5ever::parse_document(RcDom::default(), Default::default())
        .from_utf8()
        .read_from(&mut html.as_bytes())
        .unwrap_or_default();

    fn attr(node: &Handle, name: &str) -> Option<String> {
        if let NodeData::Element { attrs, .. } = &node.data {
            attrs
                .borrow()
                .iter()
                .find(|a| &*a.name.local == name)
                .map(|a| a.value.to_string())
        } else {
            None
        }
    }
    fn text_of(node: &Handle, out: &mut String) {
        if let NodeData::Text { contents } = &node.data {
            out.push_str(&contents.borrow());
        }
        for child in node.children.borrow().iter() {
            text_of(child, out);
        }
    }
    fn walk(node: &Handle, results: &mut Vec<SearchResult>) {
        let class = attr(node, "class").unwrap_or_default();
        let classes: Vec<&str> = class.split_whitespace().collect();
        if classes.contains(&"result__a") {
            let mut title = String::new();
            text_of(node, &mut title);
            let href = attr(node, "href").unwrap_or_default();
            results.push(SearchResult {
                title: title.split_whitespace().collect::<Vec<_>>().join(" "),
                url: real_url(&href),
                snippet: String::new(),
            });
        } else if classes.contains(&"result__snippet") {
            let mut snippet = String::new();
            text_of(node, &mut snippet);
            if let Some(last) = results.last_mut().filter(|r| r.snippet.is_empty()) {
                last.snippet = snippet.split_whitespace().collect::<Vec<_>>().join(" ");
            }
            return;
        }
        for child in node.children.borrow().iter() {
            walk(child, results);
        }
    }
    let mut results = Vec::new();
    walk(&dom.document, &mut results);
    results.retain(|r| !r.url.is_empty() && !r.title.is_empty());
    results
}

/// DuckDuckGo links go through `/l/?uddg=<target>`; the target is what the user wants.
fn real_url(href: &str) -> String {
    let absolute = if href.starts_with("//") {
        format!("https:{href}")
    } else {
        href.to_owned()
    };
    match url::Url::parse(&absolute) {
        Ok(u) => u
            .query_pairs()
            .find(|(k, _)| k == "uddg")
            .map(|(_, v)| v.into_owned())
            .unwrap_or(absolute),
        Err(_) => href.to_owned(),
    }
}

#[derive(Deserialize)]
struct Args {
    query: String,
    #[serde(default)]
    count: Option<usize>,
}

#[async_trait]
impl Tool for WebSearchTool {
    // Reads only.
    fn parallel_safe(&self) -> bool {
        true
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "web_search",
            "Search the web: titles, URLs, snippets.",
            schema(
                &[
                    ("query", "string", "What to search for"),
                    (
                        "count",
                        "integer",
                        "How many results (default from the config, at most 20)",
                    ),
                ],
                &["query"],
            ),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: Args = match parse("web_search", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let query = args.query.trim();
        if query.is_empty() {
            return ToolOutput::error("web_search: the query is empty");
        }
        let count = args.count.unwrap_or(self.config.max_results).clamp(1, 20);
        match self.search(query, count).await {
            Ok(results) if results.is_empty() => {
                ToolOutput::ok(format!("No results for \"{query}\"."))
            }
            Ok(results) => {
                let mut out = format!("Results for \"{query}\":\n");
                for (i, r) in results.iter().enumerate() {
                    out.push_str(&format!("{}. {}\n   {}\n", i + 1, r.title, r.url));
                    if !r.snippet.is_empty() {
                        out.push_str(&format!("   {}\n", r.snippet));
                    }
                }
                ToolOutput::ok(out)
            }
            Err(e) => ToolOutput::error(format!("web_search: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_enabled_backend_wins_and_missing_keys_are_explained() {
        let c = WebSearchConfig::from_json(&json!({
            "brave": {"enabled": false, "api_key": "x"},
            "duckduckgo": {"enabled": true, "max_results": 3}
        }))
        .unwrap()
        .unwrap();
        assert_eq!(c.max_results, 3);
        assert!(matches!(c.backend, SearchBackend::DuckDuckGo { .. }));
        let err = WebSearchConfig::from_json(&json!({"brave": {"enabled": true, "api_key": ""}}))
            .unwrap()
            .unwrap_err();
        assert!(
            err.contains("no api_key") && err.contains("duckduckgo"),
            "{err}"
        );
        assert!(WebSearchConfig::from_json(&json!({})).is_none());
        let err = WebSearchConfig::from_json(&json!({"searxng": {"enabled": true}}))
            .unwrap()
            .unwrap_err();
        assert!(err.contains("url"));
    }

    #[test]
    fn duckduckgo_html_is_read_with_a_parser() {
        let html = r#"<html><body><div class="results">
          <div class="result results_links web-result"><h2 class="result__title">
            <a rel="nofollow" class="result__a" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Fexample.com%2Fpico%3Fa%3D1&amp;rut=abc">Pico <b>claw</b></a></h2>
            <a class="result__snippet" href="x">The <b>tiny</b> agent.</a></div>
          <div class="result"><h2><a class="result__a" href="https://direct.example/">Direct</a></h2>
            <div class="result__snippet">No redirect here</div></div>
        </div></body></html>"#;
        let r = parse_duckduckgo(html);
        assert_eq!(
            r,
            [
                SearchResult {
                    title: "Pico claw".into(),
                    url: "https://example.com/pico?a=1".into(),
                    snippet: "The tiny agent.".into()
                },
                SearchResult {
                    title: "Direct".into(),
                    url: "https://direct.example/".into(),
                    snippet: "No redirect here".into()
                },
            ]
        );
        assert!(parse_duckduckgo("<html>nothing</html>").is_empty());
    }
}
