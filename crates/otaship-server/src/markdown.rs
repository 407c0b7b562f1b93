//! Release notes in Markdown, rendered to HTML that is safe to put in a page as it is.
//!
//! CommonMark with tables, strikethrough and task lists (pulldown-cmark). Whoever uploads a
//! build writes the notes, and testers read them on their phones, so what the notes may do is
//! narrowed to what text does:
//!
//! - raw HTML, block or inline (comments included), is shown as text, never passed through;
//! - a link keeps its target only when that is `http:`, `https:`, `mailto:` or relative,
//!   judged on the destination as the browser would read it (entities decoded, tabs and
//!   newlines dropped, leading control characters and spaces ignored, any case); any other
//!   link (`javascript:`, `data:`, `vbscript:`, ...) becomes its plain text;
//! - images become links to the image, so a page never loads anything from elsewhere;
//! - every link gets `rel="nofollow noopener noreferrer"`.
//!
//! Every other tag comes from pulldown-cmark's writer, which escapes all text and attributes.

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd};

/// What a link destination may not hold raw inside an attribute (beyond the controls).
const HREF_ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'\'').add(b'<').add(b'>').add(b'`');

/// Renders release notes as HTML safe to insert into a page unescaped.
pub fn to_html(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut events = Parser::new_ext(markdown, options).peekable();
    let mut out: Vec<Event<'_>> = Vec::new();
    // For each open link or image, whether it was written as an anchor (and needs `</a>`).
    let mut open: Vec<bool> = Vec::new();
    while let Some(event) = events.next() {
        match event {
            Event::Html(text) | Event::InlineHtml(text) => out.push(Event::Text(text)),
            // A block of raw HTML is shown as a paragraph of its text.
            Event::Start(Tag::HtmlBlock) => out.push(Event::Start(Tag::Paragraph)),
            Event::End(TagEnd::HtmlBlock) => out.push(Event::End(TagEnd::Paragraph)),
            Event::Start(Tag::Link { link_type, dest_url, title, .. }) => {
                let href = match link_type {
                    LinkType::Email => format!("mailto:{dest_url}"),
                    _ => dest_url.to_string(),
                };
                let anchor = !open.contains(&true) && is_safe_destination(&href);
                if anchor {
                    out.push(Event::InlineHtml(anchor_tag(&href, &title).into()));
                }
                open.push(anchor);
            }
            Event::Start(Tag::Image { dest_url, title, .. }) => {
                let anchor = !open.contains(&true) && is_safe_destination(&dest_url);
                if anchor {
                    out.push(Event::InlineHtml(anchor_tag(&dest_url, &title).into()));
                }
                open.push(anchor);
                // The alt text becomes the link's text; an image without one still needs some.
                if matches!(events.peek(), Some(Event::End(TagEnd::Image))) {
                    out.push(Event::Text(CowStr::Borrowed("image")));
                }
            }
            Event::End(TagEnd::Link | TagEnd::Image) => {
                if open.pop() == Some(true) {
                    out.push(Event::InlineHtml(CowStr::Borrowed("</a>")));
                }
            }
            other => out.push(other),
        }
    }
    let mut html = String::with_capacity(markdown.len() + markdown.len() / 4);
    pulldown_cmark::html::push_html(&mut html, out.into_iter());
    html
}

/// `<a href="…" title="…" rel="…">`, every attribute escaped.
fn anchor_tag(href: &str, title: &str) -> String {
    let href = utf8_percent_encode(href, HREF_ESCAPED).to_string().replace('&', "&amp;");
    let title = if title.is_empty() { String::new() } else { format!(" title=\"{}\"", escape_attribute(title)) };
    format!("<a href=\"{href}\"{title} rel=\"nofollow noopener noreferrer\">")
}

fn escape_attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether a destination (entities already decoded by the parser) is `http:`, `https:`,
/// `mailto:` or relative, as a browser reads it: browsers drop tabs and newlines anywhere and
/// ignore leading control characters and spaces. Anything with a colon before the first `/`,
/// `?` or `#` names a scheme, and only the three are allowed; a scheme the browser would not
/// accept as one is refused too rather than second-guessed.
fn is_safe_destination(destination: &str) -> bool {
    let cleaned: String = destination
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let end = cleaned.find(['/', '?', '#']).unwrap_or(cleaned.len());
    match cleaned[..end].find(':') {
        None => true,
        Some(colon) => {
            let scheme = cleaned[..colon].to_ascii_lowercase();
            matches!(scheme.as_str(), "http" | "https" | "mailto")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tag in the output is one the renderer makes, with only the attributes it writes:
    /// text is escaped, so each `<` starts a real tag. Nothing runs script, loads anything or
    /// carries an unsafe URL.
    fn assert_inert(source: &str, html: &str) {
        let allowed_tags = [
            "p",
            "a",
            "em",
            "strong",
            "del",
            "code",
            "pre",
            "ul",
            "ol",
            "li",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "blockquote",
            "hr",
            "br",
            "table",
            "thead",
            "tbody",
            "tr",
            "th",
            "td",
            "input",
        ];
        for piece in html.split('<').skip(1) {
            let end = piece.find('>').unwrap_or_else(|| panic!("{source:?}: an unclosed tag in {html}"));
            let tag = piece[..end].trim_end_matches('/').trim();
            let tag = tag.strip_prefix('/').unwrap_or(tag);
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let name = &tag[..name_end];
            assert!(allowed_tags.contains(&name), "{source:?} gave <{name}>: {html}");
            let mut rest = tag[name_end..].trim_start();
            while !rest.is_empty() {
                let (attribute, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{source:?}: {tag}"));
                let (value, after) = after.split_once('"').unwrap_or_else(|| panic!("{source:?}: {tag}"));
                rest = after.trim_start();
                let fine = match (name, attribute) {
                    ("a", "href") => is_safe_destination(&value.replace("&amp;", "&")),
                    ("a", "rel") => value == "nofollow noopener noreferrer",
                    ("a", "title") => true,
                    ("th" | "td", "style") => value.starts_with("text-align: ") && value.len() < 20,
                    ("input", "type") => value == "checkbox",
                    ("input", "disabled" | "checked") => value.is_empty(),
                    ("ol", "start") => value.bytes().all(|byte| byte.is_ascii_digit()),
                    ("code", "class") => value.starts_with("language-"),
                    _ => false,
                };
                assert!(fine, "{source:?} gave {attribute}=\"{value}\" on <{name}>: {html}");
                assert!(!value.contains(['"', '<', '>']), "{source:?}: {tag}");
            }
            if name == "a" && !piece.starts_with('/') {
                assert!(tag.contains(" rel=\"nofollow noopener noreferrer\""), "{source:?}: {tag}");
            }
            if name == "input" {
                assert!(tag.contains("disabled=\"\""), "{source:?}: {tag}");
            }
        }
    }

    const PAYLOADS: &[&str] = &[
        "<script>alert(1)</script>",
        "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
        "text <script>window.__xss=1</script> more",
        "<img src=x onerror=alert(1)>",
        "inline <img src=x onerror=\"alert(1)\"> image",
        "<svg onload=alert(1)>",
        "<svg><script>alert(1)</script></svg>",
        "<iframe src=\"javascript:alert(1)\"></iframe>",
        "<a href=\"javascript:alert(1)\">click</a>",
        "<div style=\"background:url(javascript:alert(1))\">x</div>",
        "<!-- <script>alert(1)</script> -->",
        "<!-->\n<img src=x onerror=alert(1)>",
        "<details open ontoggle=alert(1)>",
        "<body onload=alert(1)>",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        "<form><button formaction=javascript:alert(1)>x</button></form>",
        "<object data=\"data:text/html,<script>alert(1)</script>\"></object>",
        "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
        "<base href=\"https://evil.example/\">",
        "<style>body{background:red}</style>",
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x]( javascript:alert(1) )",
        "[x](<javascript:alert(1)>)",
        "[x](&#106;avascript:alert(1))",
        "[x](&#x6A;avascript&#x3A;alert(1))",
        "[x](javascript&colon;alert(1))",
        "[x](java&#09;script:alert(1))",
        "[x](java&#10;script:alert(1))",
        "[x](&#1;javascript:alert(1))",
        "[x](&#x20;javascript:alert(1))",
        "[x](\\javascript:alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](VBScript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[x](DATA:text/html,<script>alert(1)</script>)",
        "[x](file:///etc/passwd)",
        "[x][ref]\n\n[ref]: javascript:alert(1)",
        "[x][ref]\n\n[ref]: <javascript:alert(1)> \"t\"",
        "<javascript:alert(1)>",
        "<JAVASCRIPT:alert(1)>",
        "<data:text/html,<script>alert(1)</script>>",
        "<vbscript:msgbox(1)>",
        "![x](javascript:alert(1))",
        "![x](https://evil.example/pixel.png)",
        "![](https://evil.example/pixel.png)",
        "![x\"onerror=\"alert(1)](https://evil.example/x.png)",
        "[x](https://example.com/\"onmouseover=\"alert(1))",
        "[x](<https://example.com/\" onmouseover=\"alert(1)>)",
        "[x](https://example.com/ \"title\\\" onmouseover=\\\"alert(1)\")",
        "[x](https://example.com/ 'a\" onmouseover=\"alert(1)')",
        "[x](https://example.com/ \"<script>alert(1)</script>\")",
        "[x](https://example.com/'onmouseover='alert(1))",
        "[<img src=x onerror=alert(1)>](https://example.com)",
        "[![x](javascript:alert(1))](https://example.com)",
        "[link](https://example.com/?q=<script>alert(1)</script>)",
        "`<script>alert(1)</script>`",
        "```html\n<script>alert(1)</script>\n```",
        "```\"><script>alert(1)</script>\nx\n```",
        "| a | b |\n|---|---|\n| <script>alert(1)</script> | <img src=x onerror=alert(1)> |",
        "- [ ] <img src=x onerror=alert(1)>\n- [x] done",
        "> <script>alert(1)</script>",
        "# <script>alert(1)</script> {#id onclick=alert(1)}",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&#60;script&#62;alert(1)&#60;/script&#62;",
        "<scr<script>ipt>alert(1)</script>",
        "<<script>script>alert(1)<</script>/script>",
        "<a\nhref=\"javascript:alert(1)\">x</a>",
        "<img\nsrc=x\nonerror=alert(1)>",
        "<?php echo 1; ?>",
        "<![CDATA[<script>alert(1)</script>]]>",
        "<!DOCTYPE html><script>alert(1)</script>",
    ];

    #[test]
    fn no_payload_yields_executable_markup() {
        for payload in PAYLOADS {
            let html = to_html(payload);
            assert_inert(payload, &html);
        }
        // And all of them at once, as one set of notes.
        let all = PAYLOADS.join("\n\n");
        assert_inert(&all, &to_html(&all));
    }

    #[test]
    fn the_checker_refuses_what_it_must() {
        for bad in [
            "<img src=\"x\">",
            "<p onclick=\"x\">a</p>",
            "<a href=\"javascript:x\" rel=\"nofollow noopener noreferrer\">a</a>",
            "<a href=\"https://example.com\">a</a>",
            "<td style=\"background: url(x)\">a</td>",
            "<input type=\"text\" disabled=\"\"/>",
            "<p>a <script</p>",
        ] {
            let caught = std::panic::catch_unwind(|| assert_inert("checker", bad));
            assert!(caught.is_err(), "the checker let {bad} through");
        }
        assert_inert("checker", "<p><a href=\"/x\" rel=\"nofollow noopener noreferrer\">a</a></p>");
    }

    #[test]
    fn raw_html_is_shown_as_text() {
        assert_eq!(to_html("<script>alert(1)</script>"), "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n");
        assert_eq!(to_html("a <b>bold</b> move"), "<p>a &lt;b&gt;bold&lt;/b&gt; move</p>\n");
        assert_eq!(to_html("<!-- hidden -->"), "<p>&lt;!-- hidden --&gt;</p>\n");
    }

    #[test]
    fn unsafe_links_become_their_text() {
        for (source, text) in [
            ("[click me](javascript:alert(1))", "click me"),
            ("[click me](JaVaScRiPt:alert(1))", "click me"),
            ("[click me](&#106;avascript:alert(1))", "click me"),
            ("[click me](java&#09;script:alert(1))", "click me"),
            ("[click me](data:text/html,x)", "click me"),
        ] {
            assert_eq!(to_html(source), format!("<p>{text}</p>\n"), "{source}");
        }
        assert_eq!(to_html("<javascript:alert(1)>"), "<p>javascript:alert(1)</p>\n");
    }

    #[test]
    fn safe_links_keep_their_target_and_get_rel() {
        assert_eq!(
            to_html("[docs](https://example.com/a?b=1&c=2 \"The \\\"docs\\\"\")"),
            "<p><a href=\"https://example.com/a?b=1&amp;c=2\" title=\"The &quot;docs&quot;\" \
             rel=\"nofollow noopener noreferrer\">docs</a></p>\n"
        );
        assert_eq!(
            to_html("<https://example.com>"),
            "<p><a href=\"https://example.com\" rel=\"nofollow noopener noreferrer\">https://example.com</a></p>\n"
        );
        assert_eq!(
            to_html("<qa@example.com>"),
            "<p><a href=\"mailto:qa@example.com\" rel=\"nofollow noopener noreferrer\">qa@example.com</a></p>\n"
        );
        for relative in ["/apps/x", "notes.html", "#top", "?page=2", "./a:b", "//example.com/x"] {
            assert!(to_html(&format!("[r]({relative})")).contains("<a href="), "{relative}");
        }
        // Quotes in a destination cannot end the attribute.
        let html = to_html("[x](<https://example.com/\" onmouseover=\"alert(1)>)");
        assert!(html.contains("href=\"https://example.com/%22%20onmouseover=%22alert(1)\""), "{html}");
    }

    #[test]
    fn images_become_links_and_load_nothing() {
        assert_eq!(
            to_html("![the screen](https://example.com/s.png \"Screen\")"),
            "<p><a href=\"https://example.com/s.png\" title=\"Screen\" rel=\"nofollow noopener noreferrer\">the \
             screen</a></p>\n"
        );
        assert!(to_html("![](https://example.com/s.png)").contains(">image</a>"));
        assert_eq!(to_html("![alt](javascript:alert(1))"), "<p>alt</p>\n");
        // An image inside a link is the link's text, not a second anchor.
        let html = to_html("[![logo](https://example.com/l.png)](https://example.com)");
        assert_eq!(html.matches("<a ").count(), 1, "{html}");
        assert!(html.contains(">logo</a>"), "{html}");
    }

    #[test]
    fn markdown_renders() {
        let html = to_html(
            "# Version 2\n\n## Fixed\n\n- the **crash** on save\n- *slow* start\n\n1. one\n2. two\n\n\
             `inline` and\n\n```rust\nfn main() {}\n```\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n\n\
             ~~old~~ new\n\n- [x] done\n- [ ] to do\n\n> quoted\n\n---\n",
        );
        for expected in [
            "<h1>Version 2</h1>",
            "<h2>Fixed</h2>",
            "<ul>\n<li>the <strong>crash</strong> on save</li>\n<li><em>slow</em> start</li>\n</ul>",
            "<ol>\n<li>one</li>\n<li>two</li>\n</ol>",
            "<code>inline</code>",
            "<pre><code class=\"language-rust\">fn main() {}\n</code></pre>",
            "<table><thead><tr><th style=\"text-align: left\">a</th><th style=\"text-align: right\">b</th></tr></thead>",
            "<td style=\"text-align: left\">1</td>",
            "<del>old</del> new",
            "<input disabled=\"\" type=\"checkbox\" checked=\"\"/>",
            "<blockquote>\n<p>quoted</p>\n</blockquote>",
            "<hr />",
        ] {
            assert!(html.contains(expected), "{expected} in {html}");
        }
        assert_inert("markdown", &html);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(to_html("a < b & c > d"), "<p>a &lt; b &amp; c &gt; d</p>\n");
        assert_eq!(to_html("Tom & \"Jerry\""), "<p>Tom &amp; \"Jerry\"</p>\n");
    }
}
