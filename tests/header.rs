//! `include/llmux.h` is what cbindgen 0.29.4 (a dev-dependency, pinned in
//! Cargo.toml) generates from `src/ffi` with `cbindgen.toml`, and its version
//! macros match Cargo.toml. No cbindgen binary is needed.
//!
//! After changing the C ABI, regenerate the header with
//! `LLMUX_UPDATE_HEADER=1 cargo test --test header` (or, with the binary,
//! `cbindgen --output include/llmux.h .`) and commit it.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generated() -> String {
    let config = cbindgen::Config::from_root_or_default(root());
    let bindings = cbindgen::Builder::new()
        .with_crate(root())
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header from src/ffi");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("cbindgen wrote UTF-8")
}

fn committed(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn header_matches_cbindgen_output() {
    let path = root().join("include").join("llmux.h");
    let want = generated();
    if std::env::var_os("LLMUX_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &want).expect("write include/llmux.h");
        return;
    }
    let have = committed(&path);
    if have != want {
        let first = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
        let line = |text: &str| {
            text.lines()
                .nth(first)
                .unwrap_or("<end of file>")
                .to_string()
        };
        panic!(
            "include/llmux.h is stale: first difference at line {}\n  committed: {}\n  generated: {}\n\
             regenerate it with `LLMUX_UPDATE_HEADER=1 cargo test --test header` and commit it",
            first + 1,
            line(&have),
            line(&want)
        );
    }
}

#[test]
fn header_version_macros_match_cargo() {
    let header = committed(&root().join("include").join("llmux.h"));
    let expect = [
        (
            "LLMUX_VERSION_MAJOR",
            env!("CARGO_PKG_VERSION_MAJOR").to_string(),
        ),
        (
            "LLMUX_VERSION_MINOR",
            env!("CARGO_PKG_VERSION_MINOR").to_string(),
        ),
        (
            "LLMUX_VERSION_PATCH",
            env!("CARGO_PKG_VERSION_PATCH").to_string(),
        ),
        (
            "LLMUX_VERSION",
            format!("\"{}\"", env!("CARGO_PKG_VERSION")),
        ),
    ];
    for (name, value) in expect {
        let line = format!("#define {name} {value}");
        assert!(
            header.lines().any(|l| l.trim_end() == line),
            "include/llmux.h lacks `{line}`: update after_includes in cbindgen.toml"
        );
    }
}
