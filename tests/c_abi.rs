//! The C ABI, exercised from C: compiles the programs in `tests/c/` with gcc
//! (warnings as errors) against the real `libllmux.so` / `libllmux.a`, runs
//! them against in-process mock upstreams, then runs them again under
//! valgrind.
//!
//! Needs `gcc`; needs `valgrind` unless `LLMUX_SKIP_VALGRIND=1`.
//! The C programs are written to `<target>/c-tests/`.

use llmux_fleet::{Behavior, MockServer};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The C programs to build and run. `test_health` covers
/// `llmux_health_export` / `llmux_health_import` and runs while the header
/// declares them.
fn programs() -> Vec<&'static str> {
    let mut v = vec!["test_stream", "test_errors", "test_host_driven"];
    let header = std::fs::read_to_string(manifest_dir().join("include").join("llmux.h"))
        .expect("read include/llmux.h");
    if header.contains("llmux_health_export(") && header.contains("llmux_health_import(") {
        v.push("test_health");
    }
    if header.contains("llmux_engine_reload(") {
        v.push("test_reload");
    }
    v
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `CARGO_TARGET_DIR` (relative to the manifest if relative) or `./target`.
fn target_dir_from_env() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                manifest_dir().join(p)
            }
        }
        _ => manifest_dir().join("target"),
    }
}

/// The directory holding the `libllmux.so` / `libllmux.a` that cargo built
/// along with this test. `cargo test` builds every crate type of the library
/// into `<target>/<profile>/deps/` but only `cargo build` copies them up to
/// `<target>/<profile>/`, so the copies there may be stale: prefer `deps/`.
fn lib_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let mut profiles = Vec::new();
        if let Ok(exe) = std::env::current_exe() {
            // <target>/<profile>/deps/c_abi-<hash>
            if let Some(profile) = exe.parent().and_then(Path::parent) {
                profiles.push(profile.to_path_buf());
            }
        }
        profiles.push(target_dir_from_env().join("debug"));
        let candidates: Vec<PathBuf> = profiles
            .iter()
            .flat_map(|p| [p.join("deps"), p.clone()])
            .collect();
        let dir = candidates
            .iter()
            .find(|d| d.join("libllmux.so").is_file() && d.join("libllmux.a").is_file())
            .unwrap_or_else(|| {
                panic!(
                    "libllmux.so / libllmux.a not found in {candidates:?}; run `cargo build --lib` first"
                )
            })
            .clone();
        let dir = dir.canonicalize().expect("canonicalize the library directory");
        check_fresh(&dir);
        dir
    })
}

/// The cdylib and staticlib come out of the same rustc invocation as the
/// rlib this test linked; refuse to test libraries older than that rlib.
fn check_fresh(dir: &Path) {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let deps = if dir.ends_with("deps") {
        dir.to_path_buf()
    } else {
        dir.join("deps")
    };
    let newest_rlib = std::fs::read_dir(&deps)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n == "libllmux.rlib" || (n.starts_with("libllmux-") && n.ends_with(".rlib"))
        })
        .filter_map(|e| mtime(&e.path()))
        .max();
    let Some(rlib) = newest_rlib else {
        return;
    };
    for lib in ["libllmux.so", "libllmux.a"] {
        let t = mtime(&dir.join(lib)).expect("library mtime");
        if let Ok(behind) = rlib.duration_since(t) {
            assert!(
                behind < Duration::from_secs(5),
                "{} is older than the rlib this test was built against; run `cargo build --lib`",
                dir.join(lib).display()
            );
        }
    }
}

fn out_dir() -> PathBuf {
    // <target>/<profile>[/deps] -> <target>/c-tests
    let profile = if lib_dir().ends_with("deps") {
        lib_dir().parent().expect("profile directory")
    } else {
        lib_dir().as_path()
    };
    let dir = profile
        .parent()
        .map(|t| t.join("c-tests"))
        .unwrap_or_else(|| target_dir_from_env().join("c-tests"));
    std::fs::create_dir_all(&dir).expect("create c-tests directory");
    dir
}

/// Compiles `tests/c/<name>.c` (once per test process and link mode).
fn build(name: &str, static_link: bool) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(String, bool), PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(p) = built.get(&(name.to_string(), static_link)) {
        return p.clone();
    }
    let lib = lib_dir();
    let src = manifest_dir()
        .join("tests")
        .join("c")
        .join(format!("{name}.c"));
    let exe_name = if static_link {
        format!("{name}_static")
    } else {
        name.to_string()
    };
    let out = out_dir().join(&exe_name);
    // Write to a private name, then rename: other test processes may share
    // the target directory.
    let tmp = out_dir().join(format!(".{exe_name}.{}.tmp", std::process::id()));
    let mut cmd = Command::new("gcc");
    cmd.args([
        "-std=c11",
        "-g",
        "-O0",
        "-Wall",
        "-Wextra",
        "-Wpedantic",
        "-Werror",
    ])
    .arg(format!("-I{}", manifest_dir().join("include").display()))
    .arg(&src)
    .arg("-o")
    .arg(&tmp);
    if static_link {
        // The archive by path: no chance of picking up the .so instead.
        cmd.arg(lib.join("libllmux.a"));
    } else {
        cmd.arg(format!("-L{}", lib.display()))
            .arg("-lllmux")
            .arg(format!("-Wl,-rpath,{}", lib.display()));
    }
    cmd.args(["-lpthread", "-ldl", "-lm"]);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run gcc (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "gcc failed for {}:\n{}{}",
        src.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&tmp, &out).expect("move the compiled program into place");
    if !static_link {
        // The dynamic build must really use the shared library.
        let ldd = Command::new("ldd").arg(&out).output();
        if let Ok(ldd) = ldd {
            let text = String::from_utf8_lossy(&ldd.stdout);
            assert!(
                text.contains("libllmux.so"),
                "{} does not load libllmux.so:\n{text}",
                out.display()
            );
        }
    }
    built.insert((name.to_string(), static_link), out.clone());
    out
}

/// Mock upstreams for one program run.
fn servers_for(program: &str) -> Vec<MockServer> {
    let names: &[&str] = match program {
        "test_stream" => &["alpha", "beta"],
        _ => &["solo"],
    };
    names
        .iter()
        .map(|n| MockServer::start(n, Behavior::default()).expect("start a mock server"))
        .collect()
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `cmd` with a deadline, capturing both streams. Kills the child (by
/// its own handle) if the deadline passes.
fn run(mut cmd: Command, timeout: Duration, what: &str) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the child") {
            break st;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = t_out.join().unwrap_or_default();
            let stderr = t_err.join().unwrap_or_default();
            panic!(
                "{what} did not finish within {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

fn program_command(exe: &Path, servers: &[MockServer], light: bool) -> Command {
    let mut cmd = Command::new(exe);
    for s in servers {
        cmd.arg(s.base_url());
    }
    cmd.env_remove("LLMUX_TEST_BASE_URLS");
    if light {
        cmd.env("LLMUX_TEST_LIGHT", "1");
    } else {
        cmd.env_remove("LLMUX_TEST_LIGHT");
    }
    cmd
}

/// Asserts a clean exit and the summary line; returns the number of checks.
fn assert_passed(name: &str, r: &Run, what: &str) -> u64 {
    assert_eq!(
        r.code,
        Some(0),
        "{what} failed (exit {:?})\nstdout:\n{}\nstderr:\n{}",
        r.code,
        r.stdout,
        r.stderr
    );
    let prefix = format!("{name}: ");
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with(&prefix) && l.ends_with(" checks passed"))
        .unwrap_or_else(|| panic!("{what}: no summary line in stdout:\n{}", r.stdout));
    let n: u64 = line[prefix.len()..line.len() - " checks passed".len()]
        .parse()
        .unwrap_or_else(|_| panic!("{what}: bad summary line {line:?}"));
    assert!(n > 10, "{what}: only {n} checks ran");
    n
}

fn run_program(name: &str, exe: &Path) {
    let servers = servers_for(name);
    let what = format!("{}", exe.display());
    let r = run(
        program_command(exe, &servers, false),
        Duration::from_secs(300),
        &what,
    );
    let n = assert_passed(name, &r, &what);
    // llmux never writes to stdout or stderr: only the program's summary.
    assert_eq!(
        r.stdout.trim_end(),
        format!("{name}: {n} checks passed"),
        "unexpected stdout from {what}"
    );
    assert!(r.stderr.is_empty(), "{what} wrote to stderr:\n{}", r.stderr);
    let requests: usize = servers.iter().map(|s| s.request_count()).sum();
    assert!(requests > 0, "{what}: the mock upstreams saw no traffic");
    eprintln!("{what}: {n} checks passed in {:.1?}", r.elapsed);
}

#[test]
fn c_programs_pass_against_the_shared_library() {
    for name in programs() {
        let exe = build(name, false);
        run_program(name, &exe);
    }
}

#[test]
fn c_program_links_statically() {
    let exe = build("test_stream", true);
    // Nothing from the build directory is loaded at run time.
    if let Ok(ldd) = Command::new("ldd").arg(&exe).output() {
        let text = String::from_utf8_lossy(&ldd.stdout);
        assert!(
            !text.contains("libllmux"),
            "the static build loads libllmux:\n{text}"
        );
    }
    run_program("test_stream", &exe);
}

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn c_programs_are_valgrind_clean() {
    if std::env::var("LLMUX_SKIP_VALGRIND").as_deref() == Ok("1") {
        eprintln!("LLMUX_SKIP_VALGRIND=1: skipping the valgrind runs");
        return;
    }
    assert!(
        valgrind_available(),
        "valgrind is not installed: install it (apt-get install valgrind) or set LLMUX_SKIP_VALGRIND=1"
    );
    for name in programs() {
        let exe = build(name, false);
        let servers = servers_for(name);
        let inner = program_command(&exe, &servers, true);
        let mut cmd = Command::new("valgrind");
        cmd.args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect",
            "--child-silent-after-fork=yes",
        ])
        .arg(inner.get_program())
        .args(inner.get_args());
        cmd.env_remove("LLMUX_TEST_BASE_URLS")
            .env("LLMUX_TEST_LIGHT", "1");
        let what = format!("valgrind {}", exe.display());
        let r = run(cmd, Duration::from_secs(900), &what);
        let n = assert_passed(name, &r, &what);
        assert!(
            r.stderr.contains("ERROR SUMMARY: 0 errors"),
            "{what}: valgrind reported errors:\n{}",
            r.stderr
        );
        let summary: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| {
                l.contains("ERROR SUMMARY")
                    || l.contains("in use at exit")
                    || l.contains("total heap usage")
                    || l.contains("definitely lost")
                    || l.contains("indirectly lost")
                    || l.contains("All heap blocks were freed")
            })
            .collect();
        eprintln!(
            "{what}: {n} checks passed in {:.1?}\n{}",
            r.elapsed,
            summary.join("\n")
        );
    }
}

/// `version = "x.y.z"` from the `[package]` table of Cargo.toml.
fn cargo_version() -> String {
    let text = std::fs::read_to_string(manifest_dir().join("Cargo.toml")).expect("read Cargo.toml");
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if in_package {
            if let Some(rest) = line.strip_prefix("version") {
                let rest = rest.trim_start();
                if let Some(v) = rest.strip_prefix('=') {
                    return v.trim().trim_matches('"').to_string();
                }
            }
        }
    }
    panic!("no version in the [package] table of Cargo.toml");
}

/// The value of `#define NAME value` in the header.
fn header_define(header: &str, name: &str) -> String {
    header
        .lines()
        .filter_map(|l| l.trim().strip_prefix("#define "))
        .find_map(|l| {
            let mut it = l.splitn(2, char::is_whitespace);
            (it.next() == Some(name)).then(|| it.next().unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| panic!("include/llmux.h has no #define {name}"))
}

#[test]
fn header_version_matches_cargo_toml() {
    let version = cargo_version();
    let header = std::fs::read_to_string(manifest_dir().join("include").join("llmux.h"))
        .expect("read llmux.h");
    let mut parts = version.split(['.', '-', '+']);
    for macro_name in [
        "LLMUX_VERSION_MAJOR",
        "LLMUX_VERSION_MINOR",
        "LLMUX_VERSION_PATCH",
    ] {
        let want = parts
            .next()
            .unwrap_or_else(|| panic!("version {version:?} is not x.y.z"));
        assert_eq!(
            header_define(&header, macro_name),
            want,
            "{macro_name} does not match Cargo.toml version {version}"
        );
    }
    assert_eq!(
        header_define(&header, "LLMUX_VERSION"),
        format!("\"{version}\""),
        "LLMUX_VERSION does not match Cargo.toml"
    );
    // And the library reports the same at run time.
    let v = unsafe { std::ffi::CStr::from_ptr(llmux::ffi::llmux_version()) };
    assert_eq!(v.to_str().unwrap(), version);
}
