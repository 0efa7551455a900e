//! The translation rules written once per protocol in code
//! (`protocol::openai::chat::{DROPPED, REFUSED}`,
//! `protocol::anthropic::messages::DROPPED`,
//! `protocol::responses::request::{DROPPED, REFUSED, REFUSED_INBOUND}`) are the lists docs/protocols.md
//! shows between its `translation-rules` markers: this test renders them
//! and compares. After changing a rule, rewrite the block with
//! `LLMUX_UPDATE_DOCS=1 cargo test --test translation_docs`.

use llmux::protocol::{anthropic, openai, responses};
use std::path::Path;

const START: &str = "<!-- translation-rules:start -->";
const END: &str = "<!-- translation-rules:end -->";

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The block as the code's rules render it.
fn rendered() -> String {
    format!(
        "- Chat Completions fields dropped on the way to another protocol: {}; any other \
         undeclared field is dropped too.\n\
         - Chat Completions fields refused (`translation_error`): {}.\n\
         - Anthropic Messages fields dropped on the way to another protocol: {}; any other \
         undeclared field is dropped too; `mcp_servers` is refused.\n\
         - Responses fields dropped on the way to another protocol: {}; any other undeclared \
         field is dropped too.\n\
         - Responses fields refused (`translation_error`): {}.\n\
         - Refused on the way to a Responses endpoint: {}.\n",
        list(openai::chat::DROPPED),
        list(openai::chat::REFUSED),
        list(anthropic::messages::DROPPED),
        list(responses::request::DROPPED),
        list(responses::request::REFUSED),
        list(responses::request::REFUSED_INBOUND),
    )
}

#[test]
fn the_docs_translation_rules_are_the_codes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/protocols.md");
    let text = std::fs::read_to_string(&path).expect("docs/protocols.md");
    let (head, rest) = text
        .split_once(START)
        .unwrap_or_else(|| panic!("no {START} in docs/protocols.md"));
    let (block, tail) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("no {END} in docs/protocols.md"));
    let want = format!("\n{}", rendered());
    if std::env::var_os("LLMUX_UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{head}{START}{want}{END}{tail}")).expect("write");
        return;
    }
    assert_eq!(
        block, want,
        "docs/protocols.md's translation rules differ from the code's; \
         regenerate with LLMUX_UPDATE_DOCS=1 cargo test --test translation_docs"
    );
}
