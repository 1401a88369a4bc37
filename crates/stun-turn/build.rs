//! Builds the kernel path's TC program (bpf/relay.bpf.c) when the `kernel-path` feature is on.
//! It needs Debian's `clang` and the kernel's UAPI headers (`linux-libc-dev`, installed with the
//! C toolchain); a build without the feature needs neither.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=bpf/relay.bpf.c");
    println!("cargo:rerun-if-env-changed=NATKIT_BPF_CLANG");
    if std::env::var_os("CARGO_FEATURE_KERNEL_PATH").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("relay.bpf.o");
    let clang = std::env::var("NATKIT_BPF_CLANG").unwrap_or_else(|_| "clang".to_owned());
    // asm/types.h lives under the multiarch include directory, which `-target bpf` does not search.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("target arch");
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", "bpf/relay.bpf.c", "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} could not build bpf/relay.bpf.c ({s}); see its messages above"),
        Err(e) => panic!(
            "the kernel-path feature builds a BPF program with {clang}, which cannot run ({e}): \
             install it (apt-get install clang) or set NATKIT_BPF_CLANG, or build without \
             --features kernel-path"
        ),
    }
}
