//! Build-time settings of the shared library.
//!
//! - ELF (Linux and other Unix): `libllmux.so` gets the SONAME
//!   `libllmux.so.<major>`, so programs linked against it record that name
//!   and keep working across compatible upgrades. Because such programs then
//!   look for `libllmux.so.<major>` at run time, the build also leaves a
//!   symlink `libllmux.so.<major> -> libllmux.so` next to the library in the
//!   cargo target directory (`<profile>/` and `<profile>/deps/`), so
//!   programs linked against a build tree run from it. `scripts/install.sh`
//!   installs the real file as `libllmux.so.<version>` with both links.
//! - macOS: the install name `@rpath/libllmux.<major>.dylib` and the
//!   library's current and compatibility versions.
//!
//! Only the cdylib gets these link arguments (`rustc-cdylib-link-arg`); the
//! staticlib and rlib are not linked here.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let major = env("CARGO_PKG_VERSION_MAJOR");
    let minor = env("CARGO_PKG_VERSION_MINOR");
    let patch = env("CARGO_PKG_VERSION_PATCH");
    let target_os = env("CARGO_CFG_TARGET_OS");
    match target_os.as_str() {
        "macos" | "ios" => {
            let link = |arg: String| println!("cargo:rustc-cdylib-link-arg={arg}");
            link(format!("-Wl,-install_name,@rpath/libllmux.{major}.dylib"));
            link(format!("-Wl,-current_version,{major}.{minor}.{patch}"));
            link(format!("-Wl,-compatibility_version,{major}.{minor}"));
        }
        "windows" => {}
        _ => {
            let soname = format!("libllmux.so.{major}");
            println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
            if let Some(profile_dir) = profile_dir() {
                for dir in [profile_dir.join("deps"), profile_dir] {
                    link_soname(&dir, &soname);
                }
            }
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// `<target>/<profile>` from `OUT_DIR` = `<target>/<profile>/build/llmux-<hash>/out`;
/// `None` when the layout is not cargo's usual one.
fn profile_dir() -> Option<PathBuf> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let build = out.parent()?.parent()?;
    if build.file_name()? != "build" {
        return None;
    }
    Some(build.parent()?.to_path_buf())
}

/// `dir/<soname> -> libllmux.so`, best effort: the link is a convenience for
/// programs run from the build tree and must never fail the build.
#[cfg(unix)]
fn link_soname(dir: &Path, soname: &str) {
    let link = dir.join(soname);
    if std::fs::read_link(&link).is_ok_and(|to| to == Path::new("libllmux.so")) {
        return;
    }
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let _ = std::fs::remove_file(&link);
    let _ = std::os::unix::fs::symlink("libllmux.so", &link);
}

#[cfg(not(unix))]
fn link_soname(_dir: &Path, _soname: &str) {}
