//! The result codes, event kinds and protocols are defined once, in
//! `src/ffi` (and so in the generated `include/llmux.h`); the Python and Go
//! bindings mirror them by hand. This test reads the header and checks
//! every mirror, both ways: each header constant is in the binding with the
//! same value, and the binding has no constant the header lacks.

use std::collections::BTreeMap;
use std::path::Path;

fn read(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `NAME = value` pairs of the C enums whose constants start with `prefix`
/// (`LLMUX_RESULT_`), names without the prefix.
fn header_enum(header: &str, prefix: &str) -> BTreeMap<String, i64> {
    header
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_end_matches(',');
            let (name, value) = l.split_once(" = ")?;
            let short = name.trim().strip_prefix(prefix)?;
            Some((short.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// `NAME = value` lines in the body of Python class `class_name`.
fn python_enum(src: &str, class_name: &str) -> BTreeMap<String, i64> {
    let start = format!("class {class_name}(");
    let body = src
        .split_once(&start)
        .unwrap_or_else(|| panic!("no class {class_name} in _ffi.py"))
        .1;
    body.lines()
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter_map(|l| {
            let (name, value) = l.trim().split_once(" = ")?;
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// `ResultXxx ResultCode = N` lines of bindings/go/errors.go.
fn go_results(src: &str) -> BTreeMap<String, i64> {
    src.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (name, ty, eq, value) = (it.next()?, it.next()?, it.next()?, it.next()?);
            (ty == "ResultCode" && eq == "=").then_some(())?;
            Some((name.strip_prefix("Result")?.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// `ERR_NULL_ARGUMENT` -> `NullArgument`; `ERR_INVALID_UTF8` -> `InvalidUTF8`.
fn go_name(c_name: &str) -> String {
    c_name
        .trim_start_matches("ERR_")
        .split('_')
        .map(|w| match w {
            "UTF8" | "JSON" | "OK" => w.to_owned(),
            _ => {
                let lower = w.to_ascii_lowercase();
                let mut c = lower.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect()
}

#[test]
fn python_mirrors_every_header_enum() {
    let header = read("include/llmux.h");
    let py = read("bindings/python/src/llmux/_ffi.py");
    for (prefix, class) in [
        ("LLMUX_RESULT_", "Result"),
        ("LLMUX_EVENT_KIND_", "EventKind"),
        ("LLMUX_PROTOCOL_", "Protocol"),
    ] {
        let c = header_enum(&header, prefix);
        assert!(!c.is_empty(), "no {prefix}* constants in the header");
        assert_eq!(
            python_enum(&py, class),
            c,
            "bindings/python/src/llmux/_ffi.py class {class} differs from include/llmux.h {prefix}*"
        );
    }
}

#[test]
fn go_mirrors_the_result_codes_and_reads_the_others_from_the_header() {
    let header = read("include/llmux.h");
    let c: BTreeMap<String, i64> = header_enum(&header, "LLMUX_RESULT_")
        .into_iter()
        .map(|(k, v)| (go_name(&k), v))
        .collect();
    let go = go_results(&read("bindings/go/errors.go"));
    assert_eq!(go, c, "bindings/go/errors.go differs from include/llmux.h");
    // Protocols and event kinds come from cgo (C.LLMUX_...), not copies.
    let ffi = read("bindings/go/ffi.go");
    for prefix in ["LLMUX_PROTOCOL_", "LLMUX_EVENT_KIND_"] {
        for name in header_enum(&header, prefix).keys() {
            assert!(
                ffi.contains(&format!("C.{prefix}{name}")),
                "bindings/go/ffi.go does not read {prefix}{name} from the header"
            );
        }
    }
}

#[test]
fn the_parsers_read_what_they_should() {
    assert_eq!(go_name("ERR_INVALID_UTF8"), "InvalidUTF8");
    assert_eq!(go_name("ERR_NULL_ARGUMENT"), "NullArgument");
    assert_eq!(go_name("OK"), "OK");
    let h = "  LLMUX_RESULT_OK = 0,\n  LLMUX_RESULT_ERR_X = 7001,\n";
    assert_eq!(header_enum(h, "LLMUX_RESULT_").len(), 2);
}
