//! The agent writes Markdown; platforms want their own formats. Telegram takes a small HTML
//! subset (`<b> <i> <u> <s> <code> <pre> <a href> <blockquote>`), so Markdown is parsed with
//! `pulldown-cmark` and rendered into that subset, with everything else escaped. Headings become
//! bold lines, list items bullets or numbers, images their links, tables plain rows. Slack's
//! mrkdwn comes from the same walk with its own marks.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

/// Escapes text for Telegram HTML (only `&`, `<`, `>` are special there).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn escape_attr(text: &str) -> String {
    escape_html(text).replace('"', "&quot;")
}

/// How a platform marks up what Markdown expresses.
trait Dialect {
    fn escape(&self, text: &str) -> String;
    /// Opening and closing marks of bold, italic and struck-through text.
    fn bold(&self) -> (&'static str, &'static str);
    fn italic(&self) -> (&'static str, &'static str);
    fn strike(&self) -> (&'static str, &'static str);
    fn inline_code(&self, code: &str) -> String;
    fn code_block_open(&self, lang: Option<&str>) -> String;
    fn code_block_close(&self) -> &'static str;
    fn link_open(&self, url: &str) -> String;
    fn link_close(&self) -> &'static str;
    /// What ends a link to `url` whose text was rendered as `text` (the link's closing mark, or
    /// for formats without links, the URL after its text).
    fn link_end(&self, url: &str, text: &str) -> String {
        let _ = (url, text);
        self.link_close().to_owned()
    }
    /// Wraps a rendered block quote.
    fn quote(&self, inner: &str) -> String;
}

struct TelegramHtml;

impl Dialect for TelegramHtml {
    fn escape(&self, text: &str) -> String {
        escape_html(text)
    }
    fn bold(&self) -> (&'static str, &'static str) {
        ("<b>", "</b>")
    }
    fn italic(&self) -> (&'static str, &'static str) {
        ("<i>", "</i>")
    }
    fn strike(&self) -> (&'static str, &'static str) {
        ("<s>", "</s>")
    }
    fn inline_code(&self, code: &str) -> String {
        format!("<code>{}</code>", escape_html(code))
    }
    fn code_block_open(&self, lang: Option<&str>) -> String {
        match lang {
            Some(lang) => format!("<pre><code class=\"language-{}\">", escape_attr(lang)),
            None => "<pre><code>".to_owned(),
        }
    }
    fn code_block_close(&self) -> &'static str {
        "</code></pre>"
    }
    fn link_open(&self, url: &str) -> String {
        format!("<a href=\"{}\">", escape_attr(url))
    }
    fn link_close(&self) -> &'static str {
        "</a>"
    }
    fn quote(&self, inner: &str) -> String {
        format!("<blockquote>{inner}</blockquote>")
    }
}

/// Slack's mrkdwn: `*bold*`, `_italic_`, `~struck~`, `` `code` ``, fenced blocks, `<url|text>`
/// links, `>` quotes; `&`, `<` and `>` escaped as entities (Slack's rule).
struct SlackMrkdwn;

impl Dialect for SlackMrkdwn {
    fn escape(&self, text: &str) -> String {
        escape_html(text)
    }
    fn bold(&self) -> (&'static str, &'static str) {
        ("*", "*")
    }
    fn italic(&self) -> (&'static str, &'static str) {
        ("_", "_")
    }
    fn strike(&self) -> (&'static str, &'static str) {
        ("~", "~")
    }
    fn inline_code(&self, code: &str) -> String {
        format!("`{}`", escape_html(&code.replace('`', "'")))
    }
    fn code_block_open(&self, _lang: Option<&str>) -> String {
        "```\n".to_owned()
    }
    fn code_block_close(&self) -> &'static str {
        "\n```"
    }
    fn link_open(&self, url: &str) -> String {
        // `|` and `>` end the URL part of a Slack link.
        format!("<{}|", escape_html(url).replace('|', "%7C"))
    }
    fn link_close(&self) -> &'static str {
        ">"
    }
    fn quote(&self, inner: &str) -> String {
        inner
            .lines()
            .map(|l| format!("> {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Plain text for platforms without markup (LINE, QQ, OneBot, WeCom's text messages): the marks
/// go, lists keep bullets and numbers, code keeps its lines, a link becomes `text (url)`.
struct Plain;

impl Dialect for Plain {
    fn escape(&self, text: &str) -> String {
        text.to_owned()
    }
    fn bold(&self) -> (&'static str, &'static str) {
        ("", "")
    }
    fn italic(&self) -> (&'static str, &'static str) {
        ("", "")
    }
    fn strike(&self) -> (&'static str, &'static str) {
        ("", "")
    }
    fn inline_code(&self, code: &str) -> String {
        code.to_owned()
    }
    fn code_block_open(&self, _lang: Option<&str>) -> String {
        String::new()
    }
    fn code_block_close(&self) -> &'static str {
        ""
    }
    fn link_open(&self, _url: &str) -> String {
        String::new()
    }
    fn link_close(&self) -> &'static str {
        ""
    }
    fn link_end(&self, url: &str, text: &str) -> String {
        if text.trim() == url || url.is_empty() {
            String::new()
        } else {
            format!(" ({url})")
        }
    }
    fn quote(&self, inner: &str) -> String {
        inner
            .lines()
            .map(|l| format!("> {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// WhatsApp's formatting: `*bold*`, `_italic_`, `~struck~`, `` `code` ``, ```` ``` ```` blocks,
/// `>` quotes; links as `text (url)` (WhatsApp links bare URLs itself).
struct WhatsApp;

impl Dialect for WhatsApp {
    fn escape(&self, text: &str) -> String {
        text.to_owned()
    }
    fn bold(&self) -> (&'static str, &'static str) {
        ("*", "*")
    }
    fn italic(&self) -> (&'static str, &'static str) {
        ("_", "_")
    }
    fn strike(&self) -> (&'static str, &'static str) {
        ("~", "~")
    }
    fn inline_code(&self, code: &str) -> String {
        format!("`{}`", code.replace('`', "'"))
    }
    fn code_block_open(&self, _lang: Option<&str>) -> String {
        "```\n".to_owned()
    }
    fn code_block_close(&self) -> &'static str {
        "\n```"
    }
    fn link_open(&self, _url: &str) -> String {
        String::new()
    }
    fn link_close(&self) -> &'static str {
        ""
    }
    fn link_end(&self, url: &str, text: &str) -> String {
        Plain.link_end(url, text)
    }
    fn quote(&self, inner: &str) -> String {
        Plain.quote(inner)
    }
}

/// Markdown → plain text (LINE, QQ, OneBot, WeCom text messages): no marks, links as
/// `text (url)`.
pub fn markdown_to_plain(markdown: &str) -> String {
    render(markdown, &Plain)
}

/// Markdown → WhatsApp's own formatting (`*bold*`, `_italic_`, `~struck~`, code blocks).
pub fn markdown_to_whatsapp(markdown: &str) -> String {
    render(markdown, &WhatsApp)
}

/// Markdown → Telegram HTML (`parse_mode: HTML`).
pub fn markdown_to_telegram_html(markdown: &str) -> String {
    render(markdown, &TelegramHtml)
}

/// Markdown → Slack mrkdwn (the `text` of `chat.postMessage` and of `mrkdwn` text objects).
pub fn markdown_to_slack_mrkdwn(markdown: &str) -> String {
    render(markdown, &SlackMrkdwn)
}

fn render(markdown: &str, d: &dyn Dialect) -> String {
    let options =
        Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS;
    let mut out = String::with_capacity(markdown.len() + 32);
    // Nested lists: the number of the next item in each open list (None: bullets).
    let mut lists: Vec<Option<u64>> = Vec::new();
    // Where each open block quote starts in `out`.
    let mut quotes: Vec<usize> = Vec::new();
    let mut in_code_block = false;
    // Open links: their URL and where their text starts in `out`.
    let mut links: Vec<(String, usize)> = Vec::new();
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph => {}
                Tag::Heading { .. } | Tag::Strong => out.push_str(d.bold().0),
                Tag::BlockQuote(_) => quotes.push(out.len()),
                Tag::CodeBlock(kind) => {
                    in_code_block = true;
                    let lang = match &kind {
                        CodeBlockKind::Fenced(lang) => lang.split_whitespace().next(),
                        CodeBlockKind::Indented => None,
                    };
                    out.push_str(&d.code_block_open(lang));
                }
                Tag::List(start) => {
                    // A list inside an item starts on its own line.
                    if !lists.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    lists.push(start);
                }
                Tag::Item => {
                    let depth = lists.len().saturating_sub(1);
                    out.push_str(&"  ".repeat(depth));
                    match lists.last_mut() {
                        Some(Some(n)) => {
                            out.push_str(&format!("{n}. "));
                            *n += 1;
                        }
                        _ => out.push_str("• "),
                    }
                }
                Tag::Emphasis => out.push_str(d.italic().0),
                Tag::Strikethrough => out.push_str(d.strike().0),
                Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                    out.push_str(&d.link_open(&dest_url));
                    links.push((dest_url.to_string(), out.len()));
                }
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph => out.push_str("\n\n"),
                TagEnd::Heading(_) => {
                    out.push_str(d.bold().1);
                    out.push_str("\n\n");
                }
                TagEnd::BlockQuote(_) => {
                    let start = quotes.pop().unwrap_or(0).min(out.len());
                    trim_end_newlines(&mut out, start);
                    let quoted = d.quote(&out[start..]);
                    out.truncate(start);
                    out.push_str(&quoted);
                    out.push_str("\n\n");
                }
                TagEnd::CodeBlock => {
                    in_code_block = false;
                    trim_end_newlines(&mut out, quoted_from(&quotes));
                    out.push_str(d.code_block_close());
                    out.push_str("\n\n");
                }
                TagEnd::List(_) => {
                    lists.pop();
                    if lists.is_empty() {
                        trim_end_newlines(&mut out, quoted_from(&quotes));
                        out.push_str("\n\n");
                    }
                }
                TagEnd::Item => {
                    trim_end_newlines(&mut out, quoted_from(&quotes));
                    out.push('\n');
                }
                TagEnd::Emphasis => out.push_str(d.italic().1),
                TagEnd::Strong => out.push_str(d.bold().1),
                TagEnd::Strikethrough => out.push_str(d.strike().1),
                TagEnd::Link | TagEnd::Image => {
                    let (url, start) = links.pop().unwrap_or_default();
                    let end = d.link_end(&url, out.get(start.min(out.len())..).unwrap_or(""));
                    out.push_str(&end);
                }
                TagEnd::TableCell => out.push_str(" | "),
                TagEnd::TableRow | TagEnd::TableHead => {
                    let trimmed = out.trim_end_matches(" | ").len();
                    out.truncate(trimmed.max(quoted_from(&quotes)));
                    out.push('\n');
                }
                TagEnd::Table => out.push('\n'),
                _ => {}
            },
            Event::Text(text) => out.push_str(&d.escape(&text)),
            Event::Code(code) => out.push_str(&d.inline_code(&code)),
            Event::SoftBreak => out.push(if in_code_block { '\n' } else { ' ' }),
            Event::HardBreak => out.push('\n'),
            Event::Rule => out.push_str("———\n\n"),
            Event::TaskListMarker(done) => out.push_str(if done { "☑ " } else { "☐ " }),
            // Raw HTML from the model is shown, not interpreted.
            Event::Html(html) | Event::InlineHtml(html) => out.push_str(&d.escape(&html)),
            Event::FootnoteReference(r) => out.push_str(&format!("[{}]", d.escape(&r))),
            _ => {}
        }
    }
    trim_end_newlines(&mut out, 0);
    out
}

/// Where the innermost open block quote starts in the output (0 outside quotes): trimming the
/// end never goes below it, or the quote's start would point into text written after it.
fn quoted_from(quotes: &[usize]) -> usize {
    quotes.last().copied().unwrap_or(0)
}

/// Removes the newlines at the end of `out`, but none before byte `floor`.
fn trim_end_newlines(out: &mut String, floor: usize) {
    let trimmed = out.trim_end_matches('\n').len();
    out.truncate(trimmed.max(floor.min(out.len())));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `markdown` fuzz target (docs/fuzzing.md): an empty quote nested in another
    /// trimmed the newline before them, so the outer quote's start pointed into the inner
    /// quote's tag and cut it in two (`<b<blockquote>lockquote>`): Telegram refuses such HTML.
    #[test]
    fn nested_empty_quotes_keep_their_tags_whole() {
        let crash = "*e.om\u{1}> a\n> >\nb\n\n**e.om/b>>";
        let html = markdown_to_telegram_html(crash);
        assert!(!html.contains("<b<"), "{html}");
        assert_eq!(
            html.matches("<blockquote>").count(),
            html.matches("</blockquote>").count(),
            "{html}"
        );
        assert_eq!(
            markdown_to_telegram_html("a\n> >\nb"),
            "a\n\n<blockquote><blockquote></blockquote></blockquote>\n\nb"
        );
    }

    #[test]
    fn common_markdown_becomes_telegram_html() {
        let md = "# Title\n\nSome **bold**, *italic*, ~~gone~~ and `x < y`.\n\n\
                  - one\n- two\n\n1. first\n2. second\n\n\
                  ```rust\nfn main() { if a < b {} }\n```\n\n\
                  > quoted & kept\n\n[link](https://example.com/?a=1&b=2)";
        let html = markdown_to_telegram_html(md);
        assert_eq!(
            html,
            "<b>Title</b>\n\n\
             Some <b>bold</b>, <i>italic</i>, <s>gone</s> and <code>x &lt; y</code>.\n\n\
             • one\n• two\n\n\
             1. first\n2. second\n\n\
             <pre><code class=\"language-rust\">fn main() { if a &lt; b {} }</code></pre>\n\n\
             <blockquote>quoted &amp; kept</blockquote>\n\n\
             <a href=\"https://example.com/?a=1&amp;b=2\">link</a>"
        );
    }

    #[test]
    fn raw_html_and_odd_input_stay_harmless() {
        let html = markdown_to_telegram_html("<script>alert(1)</script> and <b>fake</b>");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert_eq!(markdown_to_telegram_html("plain text"), "plain text");
        assert_eq!(markdown_to_telegram_html(""), "");
        let nested = markdown_to_telegram_html("- a\n  - b\n- c");
        assert_eq!(nested, "• a\n  • b\n• c");
        let tasks = markdown_to_telegram_html("- [x] done\n- [ ] todo");
        assert_eq!(tasks, "• ☑ done\n• ☐ todo");
    }

    #[test]
    fn common_markdown_becomes_plain_text_and_whatsapp_marks() {
        let md = "# Title\n\nSome **bold**, *italic*, ~~gone~~ and `x < y`.\n\n\
                  - one\n- two\n\n```rust\nfn main() {}\n```\n\n\
                  > quoted\n\n[link](https://example.com/a) and <https://example.com/b>";
        assert_eq!(
            markdown_to_plain(md),
            "Title\n\nSome bold, italic, gone and x < y.\n\n• one\n• two\n\n\
             fn main() {}\n\n> quoted\n\n\
             link (https://example.com/a) and https://example.com/b"
        );
        assert_eq!(
            markdown_to_whatsapp(md),
            "*Title*\n\nSome *bold*, _italic_, ~gone~ and `x < y`.\n\n• one\n• two\n\n\
             ```\nfn main() {}\n```\n\n> quoted\n\n\
             link (https://example.com/a) and https://example.com/b"
        );
        assert_eq!(markdown_to_plain("<b>raw</b>"), "<b>raw</b>");
    }

    #[test]
    fn common_markdown_becomes_slack_mrkdwn() {
        let md = "# Title\n\nSome **bold**, *italic*, ~~gone~~ and `x < y`.\n\n\
                  - one\n- two\n\n\
                  ```rust\nfn main() { if a < b {} }\n```\n\n\
                  > quoted & kept\n> twice\n\n[link](https://example.com/?a=1&b=2|x)";
        assert_eq!(
            markdown_to_slack_mrkdwn(md),
            "*Title*\n\n\
             Some *bold*, _italic_, ~gone~ and `x &lt; y`.\n\n\
             • one\n• two\n\n\
             ```\nfn main() { if a &lt; b {} }\n```\n\n\
             > quoted &amp; kept twice\n\n\
             <https://example.com/?a=1&amp;b=2%7Cx|link>"
        );
        // Slack's own markup typed by the model is shown, not obeyed.
        assert_eq!(
            markdown_to_slack_mrkdwn("ping <!channel> and <@U1>"),
            "ping &lt;!channel&gt; and &lt;@U1&gt;"
        );
        let quote = markdown_to_slack_mrkdwn("> a\n>\n> b");
        assert_eq!(quote, "> a\n> \n> b");
    }
}
