//! The crate page (`src/lib.rs`'s docs, the front page of `cargo doc`) opens with the README's
//! quickstart: the same code, so that the two cannot drift apart. Both are compiled as doc tests.

use std::fs;
use std::path::Path;

/// The body of the first "```rust,no_run" block in `text` after `after`.
fn first_example(text: &str, after: &str) -> String {
    let rest = text.split(after).nth(1).unwrap_or_else(|| panic!("no {after:?}"));
    let body = rest
        .split("```rust,no_run\n")
        .nth(1)
        .expect("a rust,no_run example")
        .split("```\n")
        .next()
        .unwrap();
    body.to_owned()
}

#[test]
fn the_crate_page_opens_with_the_readme_quickstart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    let lib = fs::read_to_string(root.join("src/lib.rs")).unwrap();
    // The crate page is the `//!` lines, without their prefix.
    let page: String = lib
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.strip_prefix("//! ").unwrap_or(l.trim_start_matches("//!")))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let readme_example = first_example(&readme, "\n## Quickstart\n");
    let page_example = first_example(&page, "\n## Quickstart\n");
    assert!(readme_example.contains("Redlock::builder()"));
    assert_eq!(
        page_example, readme_example,
        "the crate page's quickstart differs from the README's"
    );
}
