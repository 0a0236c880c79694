//! Build facts for `/api/v1/status/buildinfo` and `tripod_build_info`: the git revision and
//! branch (when building from a checkout), the date of the revision and the compiler version.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .map(|text| text.trim().to_string())
            .filter(|text| !text.is_empty())
    };
    let revision = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let branch = git(&["rev-parse", "--abbrev-ref", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    // The date of the revision, so that building the same revision twice gives the same answer.
    let build_date = git(&["log", "-1", "--format=%cI"]).unwrap_or_else(|| "unknown".into());

    println!("cargo:rustc-env=TRIPOD_REVISION={revision}");
    println!("cargo:rustc-env=TRIPOD_BRANCH={branch}");
    println!("cargo:rustc-env=TRIPOD_BUILD_DATE={build_date}");
    println!("cargo:rustc-env=TRIPOD_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
