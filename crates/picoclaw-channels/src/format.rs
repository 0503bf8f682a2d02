//! The agent writes Markdown; platforms want their own formats. Telegram takes a small HTML
//! subset (`<b> <i> <u> <s> <code> <pre> <a href> <blockquote>`), so Markdown is parsed with
//! `pulldown-cmark` and rendered into that subset, with everything else escaped. Headings become
//! bold lines, list items bullets or numbers, images their links, tables plain rows.

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

/// Markdown → Telegram HTML (`parse_mode: HTML`).
pub fn markdown_to_telegram_html(markdown: &str) -> String {
    let options =
        Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES | Options::ENABLE_TASKLISTS;
    let mut out = String::with_capacity(markdown.len() + 32);
    // Nested lists: the number of the next item in each open list (None: bullets).
    let mut lists: Vec<Option<u64>> = Vec::new();
    let mut in_code_block = false;
    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph => {}
                Tag::Heading { .. } => out.push_str("<b>"),
                Tag::BlockQuote(_) => out.push_str("<blockquote>"),
                Tag::CodeBlock(kind) => {
                    in_code_block = true;
                    match kind {
                        CodeBlockKind::Fenced(lang) if !lang.trim().is_empty() => {
                            let lang = lang.split_whitespace().next().unwrap_or_default();
                            out.push_str(&format!(
                                "<pre><code class=\"language-{}\">",
                                escape_attr(lang)
                            ));
                        }
                        _ => out.push_str("<pre><code>"),
                    }
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
                Tag::Emphasis => out.push_str("<i>"),
                Tag::Strong => out.push_str("<b>"),
                Tag::Strikethrough => out.push_str("<s>"),
                Tag::Link { dest_url, .. } => {
                    out.push_str(&format!("<a href=\"{}\">", escape_attr(&dest_url)));
                }
                Tag::Image { dest_url, .. } => {
                    out.push_str(&format!("<a href=\"{}\">", escape_attr(&dest_url)));
                }
                Tag::TableCell => {}
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph => out.push_str("\n\n"),
                TagEnd::Heading(_) => out.push_str("</b>\n\n"),
                TagEnd::BlockQuote(_) => {
                    trim_end_newlines(&mut out);
                    out.push_str("</blockquote>\n\n");
                }
                TagEnd::CodeBlock => {
                    in_code_block = false;
                    trim_end_newlines(&mut out);
                    out.push_str("</code></pre>\n\n");
                }
                TagEnd::List(_) => {
                    lists.pop();
                    if lists.is_empty() {
                        trim_end_newlines(&mut out);
                        out.push_str("\n\n");
                    }
                }
                TagEnd::Item => {
                    trim_end_newlines(&mut out);
                    out.push('\n');
                }
                TagEnd::Emphasis => out.push_str("</i>"),
                TagEnd::Strong => out.push_str("</b>"),
                TagEnd::Strikethrough => out.push_str("</s>"),
                TagEnd::Link | TagEnd::Image => out.push_str("</a>"),
                TagEnd::TableCell => out.push_str(" | "),
                TagEnd::TableRow | TagEnd::TableHead => {
                    let trimmed = out.trim_end_matches(" | ").len();
                    out.truncate(trimmed);
                    out.push('\n');
                }
                TagEnd::Table => out.push('\n'),
                _ => {}
            },
            Event::Text(text) => out.push_str(&escape_html(&text)),
            Event::Code(code) => {
                out.push_str("<code>");
                out.push_str(&escape_html(&code));
                out.push_str("</code>");
            }
            Event::SoftBreak => out.push(if in_code_block { '\n' } else { ' ' }),
            Event::HardBreak => out.push('\n'),
            Event::Rule => out.push_str("———\n\n"),
            Event::TaskListMarker(done) => out.push_str(if done { "☑ " } else { "☐ " }),
            // Raw HTML from the model is shown, not interpreted.
            Event::Html(html) | Event::InlineHtml(html) => out.push_str(&escape_html(&html)),
            Event::FootnoteReference(r) => out.push_str(&format!("[{}]", escape_html(&r))),
            _ => {}
        }
    }
    trim_end_newlines(&mut out);
    out
}

fn trim_end_newlines(out: &mut String) {
    let trimmed = out.trim_end_matches('\n').len();
    out.truncate(trimmed);
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
